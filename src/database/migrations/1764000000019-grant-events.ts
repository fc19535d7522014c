import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The grant and refund events (API.md §10): `grant.expired` and `usage.refunded` are written by
 * triggers, as the wallet events are (1764000000008): inside the statement that changed the grant
 * or wrote the refund, so the event exists if and only if that change committed, whatever module
 * or batch wrote it. `grant.expiring` is not caused by a write (time passes), so the events
 * module's sweep writes it; `grant_notices` records which grants were noticed, once each.
 *
 * Neither trigger is on the charge hot path: a charge only lowers `remaining` (and may set
 * `status = 'depleted'`), which the WHEN clause of the grants trigger skips without calling the
 * function, and it writes ledger entries of kind `charge`, which the refund trigger's WHEN skips.
 */
export class GrantEvents1764000000019 implements MigrationInterface {
  name = 'GrantEvents1764000000019';

  async up(q: QueryRunner): Promise<void> {
    // grant.expired: what expired in this statement (API.md §10 "with credits left": the WHEN
    // requires `expired` to grow). A refund returned to a grant that has already expired expires
    // that part at once (§9): `expired` grows again on an expired grant, and that part is sent as
    // a grant.expired of its own, with only the difference.
    await q.query(`
      CREATE FUNCTION grant_expired_event() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO events (type, user_id, data) VALUES ('grant.expired', NEW.user_id,
          jsonb_build_object('user_id', NEW.user_id, 'grant_id', NEW.grant_id::text,
            'expired_amount', (NEW.expired - OLD.expired)::numeric(38,6)::text));
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER grants_expired_event AFTER UPDATE ON grants
      FOR EACH ROW WHEN (NEW.status = 'expired' AND NEW.expired > OLD.expired)
      EXECUTE FUNCTION grant_expired_event()`);

    // usage.refunded: one per refund ledger entry (one per refund applied, §9); `amount` is the
    // entry's, credits given back (positive).
    await q.query(`
      CREATE FUNCTION usage_refunded_event() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO events (type, user_id, data) VALUES ('usage.refunded', NEW.user_id,
          jsonb_build_object('user_id', NEW.user_id, 'usage_key', NEW.usage_key::text,
            'amount', NEW.amount::numeric(38,6)::text));
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER ledger_entries_refunded_event AFTER INSERT ON ledger_entries
      FOR EACH ROW WHEN (NEW.kind = 'refund')
      EXECUTE FUNCTION usage_refunded_event()`);

    // grant.expiring: a grant is noticed once (the primary key), however many sweeps, on however
    // many instances, see it in the notice window. Written only by the events module's sweep.
    await q.query(`
      CREATE TABLE grant_notices (
        grant_id   uuid        PRIMARY KEY REFERENCES grants (grant_id) ON DELETE CASCADE,
        noticed_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE grant_notices`);
    await q.query(`DROP TRIGGER ledger_entries_refunded_event ON ledger_entries`);
    await q.query(`DROP FUNCTION usage_refunded_event`);
    await q.query(`DROP TRIGGER grants_expired_event ON grants`);
    await q.query(`DROP FUNCTION grant_expired_event`);
  }
}
