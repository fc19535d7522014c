import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { LedgerService } from '../ledger/ledger.service';

/**
 * Marks expired holds every HOLD_SWEEP_INTERVAL_MS so `held` stops counting them. Several
 * instances may sweep at once (LedgerService.expireHolds claims rows with SKIP LOCKED). /start also expires a
 * wallet's own holds on demand, so correctness never waits for this timer.
 */
/** Holds expired per statement; a full batch means there may be more, swept at once. */
const SWEEP_BATCH = 500;

@Injectable()
export class HoldSweeper implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(HoldSweeper.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly ledger: LedgerService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.holdSweepIntervalMs === 0) return;
    this.timer = setInterval(() => {
      this.running ??= this.sweep().finally(() => (this.running = undefined));
    }, this.config.holdSweepIntervalMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private async sweep(): Promise<void> {
    try {
      let expired: number;
      do {
        expired = await this.ledger.expireHolds(undefined, SWEEP_BATCH);
        if (expired > 0) this.logger.log({ expired }, 'expired holds released');
      } while (expired >= SWEEP_BATCH);
    } catch (error) {
      this.logger.warn({ err: error }, 'hold sweep failed; retrying on the next tick');
    }
  }
}
