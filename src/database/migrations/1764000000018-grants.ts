import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Credit grants (API.md §8, §9): a wallet's balance is made of grants, plus debt.
 *
 * Invariants, checked by reconciliation:
 *   wallets.balance = Σ grants.remaining (every status) − wallets.debt
 *   grants.remaining = amount − debt_paid − Σ its draws in ledger metadata − expired − voided + refunded
 *
 * Only src/ledger/ writes `grants` and `wallets.debt` (the one owner of money). The upgrade turns
 * each existing wallet's balance into one paid grant with no expiry (or into debt when it is below
 * zero), so a v1 database reconciles clean right after it.
 */
export class Grants1764000000018 implements MigrationInterface {
  name = 'Grants1764000000018';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE grants (
        grant_id        uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id         varchar(128)  NOT NULL REFERENCES wallets (user_id),
        kind            varchar(16)   NOT NULL CHECK (kind IN ('paid', 'promotional')),
        -- How it came: POST …/grants, initial_credits, a top-up, a positive adjustment, or the v1 upgrade.
        origin          varchar(16)   NOT NULL CHECK (origin IN ('grant', 'initial', 'top_up', 'adjustment', 'upgrade')),
        amount          numeric(38,6) NOT NULL CHECK (amount > 0),
        remaining       numeric(38,6) NOT NULL CHECK (remaining >= 0),
        priority        smallint      NOT NULL DEFAULT 50 CHECK (priority BETWEEN 0 AND 100),
        expires_at      timestamptz,
        status          varchar(16)   NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'depleted', 'expired', 'voided')),
        debt_paid       numeric(38,6) NOT NULL DEFAULT 0 CHECK (debt_paid >= 0),
        expired         numeric(38,6) NOT NULL DEFAULT 0 CHECK (expired >= 0),
        voided          numeric(38,6) NOT NULL DEFAULT 0 CHECK (voided >= 0),
        refunded        numeric(38,6) NOT NULL DEFAULT 0 CHECK (refunded >= 0),
        idempotency_key varchar(128),
        request_hash    varchar(64),
        description     varchar(500),
        void_reason     varchar(500),
        created_at      timestamptz   NOT NULL DEFAULT now(),
        closed_at       timestamptz
      )`);
    await q.query(`CREATE UNIQUE INDEX grants_idempotency ON grants (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL`);
    // The drawing order of a wallet's active grants: priority, soonest expiry (none last), oldest.
    await q.query(
      `CREATE INDEX grants_draw_order ON grants (user_id, priority, expires_at NULLS LAST, created_at, grant_id) WHERE status = 'active'`,
    );
    await q.query(`CREATE INDEX grants_by_user ON grants (user_id, created_at, grant_id)`);
    // The expiry sweeper's scan.
    await q.query(`CREATE INDEX grants_expiring ON grants (expires_at) WHERE status IN ('active', 'depleted') AND expires_at IS NOT NULL`);

    await q.query(`ALTER TABLE wallets ADD COLUMN debt numeric(38,6) NOT NULL DEFAULT 0 CHECK (debt >= 0)`);
    await q.query(`ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check`);
    await q.query(`
      ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
        CHECK (kind IN ('initial', 'top_up', 'adjustment', 'charge', 'grant', 'grant_expired', 'grant_voided', 'refund'))`);

    // The upgrade: what each wallet holds becomes one paid grant, or debt.
    await q.query(`
      INSERT INTO grants (user_id, kind, origin, amount, remaining, description)
      SELECT user_id, 'paid', 'upgrade', balance, balance, 'balance before grants' FROM wallets WHERE balance > 0`);
    await q.query(`UPDATE wallets SET debt = -balance WHERE balance < 0`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check`);
    await q.query(`
      ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
        CHECK (kind IN ('initial', 'top_up', 'adjustment', 'charge'))`);
    await q.query(`ALTER TABLE wallets DROP COLUMN debt`);
    await q.query(`DROP TABLE grants`);
  }
}
