import { Inject, Injectable, Logger } from '@nestjs/common';
import { drain, PeriodicSweep } from '../common/periodic-sweep';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { LedgerService } from '../ledger/ledger.service';

/** Holds expired per statement. */
const SWEEP_BATCH = 500;

/**
 * Marks expired holds every HOLD_SWEEP_INTERVAL_MS so `held` stops counting them. Several
 * instances may sweep at once (LedgerService.expireHolds claims rows with SKIP LOCKED). /start also expires a
 * wallet's own holds on demand, so correctness never waits for this timer.
 */
@Injectable()
export class HoldSweeper extends PeriodicSweep {
  protected readonly logger = new Logger(HoldSweeper.name);

  constructor(
    private readonly ledger: LedgerService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super();
  }

  protected get intervalMs(): number {
    return this.config.holdSweepIntervalMs;
  }

  protected async run() {
    const expired = await drain(SWEEP_BATCH, () => this.ledger.expireHolds(undefined, SWEEP_BATCH));
    return expired > 0 ? { message: 'expired holds released', fields: { expired } } : undefined;
  }
}
