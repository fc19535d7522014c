import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { LedgerService } from '../ledger/ledger.service';

/** Grants expired per statement; a full batch means there may be more, swept at once. */
const SWEEP_BATCH = 500;

/**
 * Expires the grants past their expiry every GRANT_SWEEP_INTERVAL_MS (API.md §8): what remains
 * leaves the balance as a `grant_expired` entry. Several instances may sweep at once (the ledger
 * re-checks each grant under its wallet's lock: a grant expires once). /start does not wait for
 * it: a grant past its expiry is not available to a hold, and a refused start expires the wallet's
 * due grants itself.
 */
@Injectable()
export class GrantSweeper implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(GrantSweeper.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly ledger: LedgerService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.grantSweepIntervalMs === 0) return;
    this.timer = setInterval(() => {
      this.running ??= this.sweep().finally(() => (this.running = undefined));
    }, this.config.grantSweepIntervalMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private async sweep(): Promise<void> {
    try {
      let due: number;
      do {
        due = await this.ledger.expireGrants(undefined, SWEEP_BATCH);
        if (due > 0) this.logger.log({ due }, 'expired grants swept');
      } while (due >= SWEEP_BATCH);
    } catch (error) {
      this.logger.warn({ err: error }, 'grant sweep failed; retrying on the next tick');
    }
  }
}
