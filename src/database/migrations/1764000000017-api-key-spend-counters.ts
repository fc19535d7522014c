import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Spend-cap counters on the key's own row (API.md §11; plan: /work/notes/spend-cap-plan.md).
 * PLACE_HOLDS locks a capped key's row (after the wallets) and checks
 *   period_spent (if period_starts_at is the current UTC period, else 0) + held + the new holds ≤ cap
 * against the row as re-read under the lock, exactly as it checks a wallet's `held`: that is what
 * makes 30 racing starts on room for 10 give exactly 10. A sum over holds or ledger entries in the
 * same statement would be read from the statement's snapshot, not after the lock, and let racing
 * starts through. Written only by the ledger's statements, and only for keys with a cap (an
 * uncapped key's row is never a point of contention); a PATCH that sets a cap recomputes them.
 */
export class ApiKeySpendCounters1764000000017 implements MigrationInterface {
  name = 'ApiKeySpendCounters1764000000017';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE api_keys
        ADD COLUMN held             numeric(38,6) NOT NULL DEFAULT 0,
        ADD COLUMN period_starts_at timestamptz,
        ADD COLUMN period_spent     numeric(38,6) NOT NULL DEFAULT 0`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE api_keys DROP COLUMN held, DROP COLUMN period_starts_at, DROP COLUMN period_spent`);
  }
}
