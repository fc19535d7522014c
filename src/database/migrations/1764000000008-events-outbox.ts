import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Events out (API.md §10): the transactional outbox, its delivery state, webhooks and the attempts
 * made on them, and the triggers that write the events.
 *
 * Why triggers: an event must exist if and only if its change committed. The ledger changes a
 * wallet with one set-based statement whatever the batch (moveMoney, placeHolds, expireHolds…),
 * and a trigger runs inside that statement, under the wallet's row lock, for each wallet it
 * changed once: every writer of `wallets` — today's and the next one — writes its events with no
 * code of its own, batched or not, and 200 concurrent charges that cross one threshold write one
 * event (the statement's OLD → NEW crosses it once; a later statement finds it already fallen).
 */
export class EventsOutbox1764000000008 implements MigrationInterface {
  name = 'EventsOutbox1764000000008';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE pricing_settings ADD COLUMN default_low_balance_thresholds numeric(38,6)[] NOT NULL DEFAULT '{}'`);

    // A wallet's alert state, apart from `wallets` (the ledger's table): its own thresholds (null =
    // the settings' default), the thresholds it fell below and was told about (re-armed by
    // wallet.recovered), and whether wallet.depleted was sent. Written under the wallet's lock.
    await q.query(`
      CREATE TABLE wallet_alerts (
        user_id     varchar(128)    PRIMARY KEY REFERENCES wallets (user_id),
        thresholds  numeric(38,6)[],
        fallen      numeric(38,6)[] NOT NULL DEFAULT '{}',
        depleted    boolean         NOT NULL DEFAULT false
      )`);

    // The outbox. `seq` orders the events (one wallet's events are written under its row lock, so
    // their seq order is their commit order); `dispatched_at` = fanned out to event_deliveries.
    await q.query(`
      CREATE TABLE events (
        id            uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
        seq           bigint        GENERATED ALWAYS AS IDENTITY UNIQUE,
        type          varchar(64)   NOT NULL,
        user_id       varchar(128),
        data          jsonb         NOT NULL,
        created_at    timestamptz   NOT NULL DEFAULT now(),
        dispatched_at timestamptz
      )`);
    await q.query(`CREATE INDEX events_undispatched ON events (seq) WHERE dispatched_at IS NULL`);
    await q.query(`CREATE INDEX events_by_type ON events (type, seq)`);
    await q.query(`CREATE INDEX events_by_user ON events (user_id, seq)`);
    await q.query(`CREATE INDEX events_by_created ON events (created_at)`);

    // The secret is kept as is: signing needs it (it is never logged, audited or answered after creation).
    await q.query(`
      CREATE TABLE webhooks (
        webhook_id  uuid          PRIMARY KEY,
        url         varchar(2048) NOT NULL,
        events      varchar(64)[] NOT NULL,
        description varchar(500),
        secret      varchar(128)  NOT NULL,
        active      boolean       NOT NULL DEFAULT true,
        created_at  timestamptz   NOT NULL DEFAULT now(),
        updated_at  timestamptz   NOT NULL DEFAULT now()
      )`);

    // One row per (event, endpoint): the exchange (webhook_id null) or a webhook. A relay claims a
    // due row by setting claimed_until (its lease) under SKIP LOCKED; the row's end state is
    // written with that lease as token.
    await q.query(`
      CREATE TABLE event_deliveries (
        id              bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id        uuid         NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        seq             bigint       NOT NULL,
        user_id         varchar(128),
        webhook_id      uuid         REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
        endpoint        varchar(64)  GENERATED ALWAYS AS (COALESCE(webhook_id::text, 'exchange')) STORED,
        state           varchar(16)  NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts        integer      NOT NULL DEFAULT 0,
        round_attempts  integer      NOT NULL DEFAULT 0,
        next_attempt_at timestamptz  NOT NULL DEFAULT now(),
        claimed_until   timestamptz,
        UNIQUE (event_id, endpoint)
      )`);
    await q.query(`CREATE INDEX event_deliveries_pending ON event_deliveries (endpoint, user_id, seq) WHERE state = 'pending'`);
    await q.query(`CREATE INDEX event_deliveries_due ON event_deliveries (seq) WHERE state = 'pending'`);

    // Every attempt on a webhook.
    await q.query(`
      CREATE TABLE webhook_deliveries (
        id              bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id        uuid         NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        webhook_id      uuid         NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
        attempt         integer      NOT NULL,
        status_code     integer,
        error           varchar(500),
        duration_ms     integer      NOT NULL,
        at              timestamptz  NOT NULL DEFAULT now(),
        outcome         varchar(16)  NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
        next_attempt_at timestamptz
      )`);
    await q.query(`CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id)`);
    await q.query(`CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id)`);

    // wallet.low_balance / depleted / recovered, from the wallet's available credits before and
    // after the statement (API.md §10). Runs only when available credits changed (WHEN below).
    await q.query(`
      CREATE FUNCTION wallet_balance_events() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        old_credits numeric := OLD.balance - OLD.held;
        new_credits numeric := NEW.balance - NEW.held;
        credits_text text := (NEW.balance - NEW.held)::numeric(38,6)::text;
        balance_text text := NEW.balance::numeric(38,6)::text;
        alert wallet_alerts%ROWTYPE;
        ts numeric(38,6)[];
        t numeric(38,6);
        v_fallen numeric(38,6)[];
        v_depleted boolean;
        highest numeric;
        changed boolean := false;
      BEGIN
        SELECT * INTO alert FROM wallet_alerts WHERE user_id = NEW.user_id;
        IF FOUND AND alert.thresholds IS NOT NULL THEN
          ts := alert.thresholds;
        ELSE
          SELECT default_low_balance_thresholds INTO ts FROM pricing_settings WHERE id = 1;
        END IF;
        v_fallen := COALESCE(alert.fallen, '{}');
        v_depleted := COALESCE(alert.depleted, false);
        IF new_credits < old_credits THEN
          FOR t IN SELECT x FROM unnest(ts) AS x ORDER BY x DESC LOOP
            IF old_credits >= t AND new_credits < t AND NOT (t = ANY (v_fallen)) THEN
              INSERT INTO events (type, user_id, data) VALUES ('wallet.low_balance', NEW.user_id,
                jsonb_build_object('user_id', NEW.user_id, 'threshold', t::text, 'credits', credits_text, 'balance', balance_text));
              v_fallen := v_fallen || t;
              changed := true;
            END IF;
          END LOOP;
          IF old_credits > 0 AND new_credits <= 0 AND NOT v_depleted THEN
            INSERT INTO events (type, user_id, data) VALUES ('wallet.depleted', NEW.user_id,
              jsonb_build_object('user_id', NEW.user_id, 'credits', credits_text, 'balance', balance_text));
            v_depleted := true;
            changed := true;
          END IF;
        ELSIF cardinality(v_fallen) > 0 OR v_depleted THEN
          -- Depleted counts as having fallen below 0: with no threshold, rising above 0 recovers.
          highest := GREATEST((SELECT max(x) FROM unnest(v_fallen) AS x), CASE WHEN v_depleted THEN 0 END);
          IF new_credits > highest THEN
            INSERT INTO events (type, user_id, data) VALUES ('wallet.recovered', NEW.user_id,
              jsonb_build_object('user_id', NEW.user_id, 'credits', credits_text, 'balance', balance_text));
            v_fallen := '{}';
            v_depleted := false;
            changed := true;
          END IF;
        END IF;
        IF changed THEN
          INSERT INTO wallet_alerts (user_id, fallen, depleted) VALUES (NEW.user_id, v_fallen, v_depleted)
          ON CONFLICT (user_id) DO UPDATE SET fallen = EXCLUDED.fallen, depleted = EXCLUDED.depleted;
        END IF;
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER wallets_balance_events AFTER UPDATE OF balance, held ON wallets
      FOR EACH ROW WHEN ((OLD.balance - OLD.held) IS DISTINCT FROM (NEW.balance - NEW.held))
      EXECUTE FUNCTION wallet_balance_events()`);

    await q.query(`
      CREATE FUNCTION settlement_failure_event() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO events (type, user_id, data) VALUES ('settlement_failure.recorded', NULL,
          jsonb_build_object('id', NEW.id::text, 'queue', NEW.queue, 'reason', NEW.reason));
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER settlement_failures_recorded_event AFTER INSERT ON settlement_failures
      FOR EACH ROW EXECUTE FUNCTION settlement_failure_event()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER settlement_failures_recorded_event ON settlement_failures`);
    await q.query(`DROP FUNCTION settlement_failure_event`);
    await q.query(`DROP TRIGGER wallets_balance_events ON wallets`);
    await q.query(`DROP FUNCTION wallet_balance_events`);
    await q.query(`DROP TABLE webhook_deliveries`);
    await q.query(`DROP TABLE event_deliveries`);
    await q.query(`DROP TABLE webhooks`);
    await q.query(`DROP TABLE events`);
    await q.query(`DROP TABLE wallet_alerts`);
    await q.query(`ALTER TABLE pricing_settings DROP COLUMN default_low_balance_thresholds`);
  }
}
