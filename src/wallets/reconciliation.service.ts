import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { Money } from '../common/money';
import type { MismatchDoc, ReconciliationResponseDoc } from './dto/wallet-responses.dto';

/** A wallet whose books disagree, as answered. */
export type Mismatch = MismatchDoc;

/** What the check reads for a wallet: numeric columns as pg returns them (text). */
interface MismatchRow {
  user_id: string;
  balance: string;
  held: string;
  ledger_sum: string;
  last_balance_after: string | null;
  live_holds: string;
}

/** The API's picture of a mismatch (STYLE.md §7), typed as its documentation class. */
export function mismatchView(r: MismatchRow): MismatchDoc {
  return {
    user_id: r.user_id,
    balance: Money.fromDb(r.balance).toString(),
    ledger_sum: Money.fromDb(r.ledger_sum).toString(),
    last_balance_after: r.last_balance_after === null ? null : Money.fromDb(r.last_balance_after).toString(),
    held: Money.fromDb(r.held).toString(),
    live_holds: Money.fromDb(r.live_holds).toString(),
  };
}

/**
 * Checks the books: every wallet's balance equals the sum of its ledger (and the last entry's
 * balance_after), and `held` equals the sum of its live holds. Read in one REPEATABLE READ
 * snapshot so concurrent traffic cannot produce a false mismatch.
 */
@Injectable()
export class ReconciliationService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async run(): Promise<ReconciliationResponseDoc> {
    return this.dataSource.transaction('REPEATABLE READ', async (manager) => {
      // Compared in SQL, exactly (numeric), so only mismatches cross the wire: a million wallets
      // must not become a million rows in the service's memory.
      const [{ n }]: { n: string }[] = await manager.query(`SELECT count(*)::text AS n FROM wallets`);
      const rows: MismatchRow[] = await manager.query(
        `SELECT * FROM (
             SELECT w.user_id, w.balance, w.held,
                    COALESCE(l.total, 0) AS ledger_sum,
                    (SELECT e.balance_after FROM ledger_entries e WHERE e.user_id = w.user_id ORDER BY e.id DESC LIMIT 1) AS last_balance_after,
                    COALESCE(h.total, 0) AS live_holds
             FROM wallets w
             LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM ledger_entries GROUP BY user_id) l ON l.user_id = w.user_id
             LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM holds WHERE status = 'held' GROUP BY user_id) h ON h.user_id = w.user_id
           ) c
           -- A wallet with no entry yet must have a zero balance.
           WHERE balance <> ledger_sum OR held <> live_holds OR COALESCE(last_balance_after, 0) <> balance
           ORDER BY user_id LIMIT $1`,
        [MAX_MISMATCHES],
      );
      return { wallets_checked: Number(n), mismatches: rows.map(mismatchView) };
    });
  }
}

/** More than this many mismatching wallets are not listed (the first ones by user_id are). */
export const MAX_MISMATCHES = 1000;
