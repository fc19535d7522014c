import { MigrationInterface, QueryRunner } from 'typeorm';

/** API keys as records (API.md §11) and the append-only audit log of admin writes (§12). */
export class ApiKeysAndAuditLog1764000000006 implements MigrationInterface {
  name = 'ApiKeysAndAuditLog1764000000006';

  async up(q: QueryRunner): Promise<void> {
    // Only a hash of a secret is kept (sha-256 of 32 random bytes: a fast hash is enough for a
    // secret nobody chose). `previous_*` is the secret a rotation replaced, valid for its grace.
    await q.query(`
      CREATE TABLE api_keys (
        key_id                 uuid          PRIMARY KEY,
        name                   varchar(128)  NOT NULL,
        scope                  varchar(16)   NOT NULL CHECK (scope IN ('service', 'admin')),
        prefix                 varchar(16)   NOT NULL,
        secret_hash            char(64)      NOT NULL UNIQUE,
        previous_secret_hash   char(64)      UNIQUE,
        previous_valid_until   timestamptz,
        allowed_features       varchar(128)[] NOT NULL DEFAULT '{}',
        spend_cap_amount       numeric(38,6) CHECK (spend_cap_amount >= 0),
        spend_cap_period       varchar(8)    CHECK (spend_cap_period IN ('day', 'month')),
        expires_at             timestamptz,
        revoked_at             timestamptz,
        created_at             timestamptz   NOT NULL DEFAULT now(),
        updated_at             timestamptz   NOT NULL DEFAULT now(),
        CHECK ((spend_cap_amount IS NULL) = (spend_cap_period IS NULL))
      )`);
    // What a key made: its holds and ledger entries (null for the environment's keys).
    await q.query(`ALTER TABLE holds ADD COLUMN key_id uuid REFERENCES api_keys (key_id)`);
    await q.query(`ALTER TABLE ledger_entries ADD COLUMN key_id uuid REFERENCES api_keys (key_id)`);
    await q.query(`CREATE INDEX holds_live_by_key ON holds (key_id) WHERE status = 'held' AND key_id IS NOT NULL`);
    await q.query(`CREATE INDEX ledger_entries_by_key ON ledger_entries (key_id, created_at) WHERE key_id IS NOT NULL`);

    await q.query(`
      CREATE TABLE audit_log (
        id            bigserial     PRIMARY KEY,
        at            timestamptz   NOT NULL DEFAULT now(),
        actor_key_id  uuid,
        actor_name    varchar(128)  NOT NULL,
        action        varchar(64)   NOT NULL,
        target        varchar(256)  NOT NULL,
        request_id    varchar(128),
        changes       jsonb         NOT NULL DEFAULT '{}'
      )`);
    await q.query(`CREATE INDEX audit_log_by_target ON audit_log (target, id)`);
    await q.query(`CREATE INDEX audit_log_by_actor ON audit_log (actor_key_id, id)`);
    await q.query(`
      CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit_log is append-only';
      END $$`);
    await q.query(`
      CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
      FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()`);
    // TRUNCATE is not a row event: refuse it too.
    await q.query(`
      CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
      FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE audit_log`);
    await q.query(`DROP FUNCTION audit_log_append_only`);
    await q.query(`ALTER TABLE ledger_entries DROP COLUMN key_id`);
    await q.query(`ALTER TABLE holds DROP COLUMN key_id`);
    await q.query(`DROP TABLE api_keys`);
  }
}
