import { MigrationInterface, QueryRunner } from 'typeorm';

export class WalletsAndLedger1764000000000 implements MigrationInterface {
  name = 'WalletsAndLedger1764000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE wallets (
        user_id    varchar(128)  PRIMARY KEY,
        plan       varchar(64)   NOT NULL,
        status     varchar(16)   NOT NULL CHECK (status IN ('active', 'suspended')),
        balance    numeric(24,6) NOT NULL DEFAULT 0,
        held       numeric(24,6) NOT NULL DEFAULT 0 CHECK (held >= 0),
        version    integer       NOT NULL,
        created_at timestamptz   NOT NULL DEFAULT now(),
        updated_at timestamptz   NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE ledger_entries (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id         varchar(128)  NOT NULL REFERENCES wallets (user_id),
        kind            varchar(16)   NOT NULL CHECK (kind IN ('initial', 'top_up', 'adjustment', 'charge')),
        amount          numeric(24,6) NOT NULL,
        balance_after   numeric(24,6) NOT NULL,
        held_after      numeric(24,6) NOT NULL,
        usage_key       uuid,
        idempotency_key varchar(128),
        description     varchar(500),
        metadata        jsonb         NOT NULL DEFAULT '{}',
        created_at      timestamptz   NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX ledger_entries_user_history ON ledger_entries (user_id, id)`);
    // A repeated top-up key can never add twice; a usage can never be charged twice.
    await q.query(
      `CREATE UNIQUE INDEX ledger_entries_idempotency ON ledger_entries (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL`,
    );
    await q.query(`CREATE UNIQUE INDEX ledger_entries_one_charge_per_usage ON ledger_entries (usage_key) WHERE kind = 'charge'`);
    // The ledger is append-only: corrections are new entries, never edits.
    await q.query(`
      CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'ledger_entries is append-only';
      END $$`);
    await q.query(`
      CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
      FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ledger_entries`);
    await q.query(`DROP FUNCTION ledger_entries_append_only`);
    await q.query(`DROP TABLE wallets`);
  }
}
