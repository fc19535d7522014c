import { Injectable } from '@nestjs/common';
import { LedgerService } from '../ledger/ledger.service';
import type { ReconciliationResponseDoc } from './dto/wallet-responses.dto';

/** The books checked by the ledger (`LedgerService.reconcile`), as the API shows them. */
@Injectable()
export class ReconciliationService {
  constructor(private readonly ledger: LedgerService) {}

  async run(): Promise<ReconciliationResponseDoc> {
    const { walletsChecked, mismatches } = await this.ledger.reconcile();
    return {
      wallets_checked: walletsChecked,
      mismatches: mismatches.map((m) => ({
        user_id: m.userId,
        balance: m.balance.toString(),
        ledger_sum: m.ledgerSum.toString(),
        last_balance_after: m.lastBalanceAfter?.toString() ?? null,
        held: m.held.toString(),
        live_holds: m.liveHolds.toString(),
        grants_less_debt: m.grantsLessDebt.toString(),
        grant_mismatches: m.grantMismatches.map((g) => ({
          grant_id: g.grantId,
          remaining: g.remaining.toString(),
          expected: g.expected.toString(),
        })),
      })),
    };
  }
}
