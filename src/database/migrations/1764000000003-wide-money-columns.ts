import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Widens the columns that hold a computed charge or a running sum from numeric(24,6) (below 10^18
 * credits) to numeric(38,6) (below 10^32 credits).
 *
 * Why: the request limits (prices ≤ 1,000,000 USD per million tokens, margin ≤ 100, rate ≤ 10^9
 * credits per USD, ≤ 10^9 tokens per count, ≤ 100 usages, fixed cost ≤ 10^12 credits) accept a
 * settlement of 20,200,000,001,000,000,000,000 credits (23 integer digits): it overflowed
 * numeric(24,6) after the work was done (HTTP 500; on the queue, retried then dead-lettered).
 * With 32 integer digits one such charge is 2·10^-10 of the column, so a wallet can take about
 * 4.9·10^9 of them in a row; 38 is also the widest decimal most partner databases hold.
 *
 * Cost: raising a numeric's precision at the same scale is binary-coercible, so no table is
 * rewritten and no index rebuilt (the upgrade test checks relfilenode). PostgreSQL still re-checks
 * a CHECK constraint on an altered column by scanning the table under ACCESS EXCLUSIVE: wallets'
 * `held >= 0` is therefore re-added NOT VALID and validated once that lock is gone (VALIDATE takes
 * SHARE UPDATE EXCLUSIVE; writes go on). ledger_entries has no such check: its change is constant
 * time whatever its length.
 *
 * Left at numeric(24,6), because their values are bounded by a request limit that fits: holds.amount
 * (a hold is a feature's min_holding_credits ≤ 10^12; a direct charge's row holds 0) — widening it
 * would re-check `amount >= 0` over one row per authorization for nothing — and the feature and
 * price columns.
 */
export class WideMoneyColumns1764000000003 implements MigrationInterface {
  name = 'WideMoneyColumns1764000000003';
  /** The validation must run after the commit that releases the exclusive locks. */
  transaction = false;

  async up(q: QueryRunner): Promise<void> {
    const own = !q.isTransactionActive;
    if (own) await q.startTransaction();
    try {
      // wallets before ledger_entries: the order in which settlements and top-ups lock them.
      await q.query(`
        ALTER TABLE wallets
          DROP CONSTRAINT wallets_held_check,
          ALTER COLUMN balance TYPE numeric(38,6),
          ALTER COLUMN held TYPE numeric(38,6),
          ADD CONSTRAINT wallets_held_check CHECK (held >= 0) NOT VALID`);
      await q.query(`
        ALTER TABLE ledger_entries
          ALTER COLUMN amount TYPE numeric(38,6),
          ALTER COLUMN balance_after TYPE numeric(38,6),
          ALTER COLUMN held_after TYPE numeric(38,6)`);
      if (own) await q.commitTransaction();
    } catch (error) {
      if (own) await q.rollbackTransaction();
      throw error;
    }
    // Re-running up() after a crash here is harmless: the same steps again, then this.
    await q.query(`ALTER TABLE wallets VALIDATE CONSTRAINT wallets_held_check`);
  }

  /** Refuses (numeric field overflow) rather than truncates when a value no longer fits. */
  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE wallets ALTER COLUMN balance TYPE numeric(24,6), ALTER COLUMN held TYPE numeric(24,6)`);
    await q.query(`
      ALTER TABLE ledger_entries
        ALTER COLUMN amount TYPE numeric(24,6),
        ALTER COLUMN balance_after TYPE numeric(24,6),
        ALTER COLUMN held_after TYPE numeric(24,6)`);
  }
}
