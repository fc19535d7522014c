import { MigrationInterface, QueryRunner } from 'typeorm';

export class HoldsAndSettlementFailures1764000000002 implements MigrationInterface {
  name = 'HoldsAndSettlementFailures1764000000002';

  async up(q: QueryRunner): Promise<void> {
    // One row per authorization (usage_key): a hold placed by /start, or a direct charge.
    await q.query(`
      CREATE TABLE holds (
        usage_key           uuid          PRIMARY KEY,
        user_id             varchar(128)  NOT NULL REFERENCES wallets (user_id),
        feature_endpoint_id varchar(128)  NOT NULL REFERENCES features (feature_endpoint_id),
        amount              numeric(24,6) NOT NULL CHECK (amount >= 0),
        status              varchar(16)   NOT NULL CHECK (status IN ('held', 'settled', 'cancelled', 'expired')),
        expires_at          timestamptz   NOT NULL,
        idempotency_key     varchar(128),
        request_hash        varchar(64),
        late                boolean       NOT NULL DEFAULT false,
        direct              boolean       NOT NULL DEFAULT false,
        created_at          timestamptz   NOT NULL DEFAULT now(),
        closed_at           timestamptz
      )`);
    await q.query(`CREATE INDEX holds_live_by_expiry ON holds (expires_at) WHERE status = 'held'`);
    await q.query(`CREATE INDEX holds_live_by_user ON holds (user_id) WHERE status = 'held'`);
    // A direct charge's idempotency key can be used once per user.
    await q.query(`CREATE UNIQUE INDEX holds_direct_idempotency ON holds (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL`);

    // Queue messages that could not be applied, kept whole for an operator to replay or discard.
    await q.query(`
      CREATE TABLE settlement_failures (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue        varchar(128) NOT NULL,
        payload      text         NOT NULL,
        payload_encoding varchar(8) NOT NULL DEFAULT 'utf8' CHECK (payload_encoding IN ('utf8', 'base64')),
        error_status varchar(64)  NOT NULL,
        reason       text         NOT NULL,
        status       varchar(16)  NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'replayed', 'discarded')),
        attempts     integer      NOT NULL DEFAULT 1,
        resolution   jsonb,
        created_at   timestamptz  NOT NULL DEFAULT now(),
        resolved_at  timestamptz
      )`);
    await q.query(`CREATE INDEX settlement_failures_pending ON settlement_failures (id) WHERE status = 'pending'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE settlement_failures`);
    await q.query(`DROP TABLE holds`);
  }
}
