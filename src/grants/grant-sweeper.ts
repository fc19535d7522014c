import { Inject, Injectable, Logger } from '@nestjs/common';
import { drain, PeriodicSweep } from '../common/periodic-sweep';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { LedgerService } from '../ledger/ledger.service';

/** Grants expired per statement. */
const SWEEP_BATCH = 500;

/**
 * Expires the grants past their expiry every GRANT_SWEEP_INTERVAL_MS (API.md §8): what remains
 * leaves the balance as a `grant_expired` entry. Several instances may sweep at once (the ledger
 * re-checks each grant under its wallet's lock: a grant expires once). /start does not wait for
 * it: a grant past its expiry is not available to a hold, and a refused start expires the wallet's
 * due grants itself.
 */
@Injectable()
export class GrantSweeper extends PeriodicSweep {
  protected readonly logger = new Logger(GrantSweeper.name);

  constructor(
    private readonly ledger: LedgerService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super();
  }

  protected get intervalMs(): number {
    return this.config.grantSweepIntervalMs;
  }

  protected async run() {
    const due = await drain(SWEEP_BATCH, () => this.ledger.expireGrants(undefined, SWEEP_BATCH));
    return due > 0 ? { message: 'expired grants swept', fields: { due } } : undefined;
  }
}
