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
        -- How it came: POST …/grants, initial_credits, a top-up, a positive adjustment, the v1 upgrade, or a
        -- refund of credits no grant had given (debt a later grant paid, or a charge made before grants).
        origin          varchar(16)   NOT NULL CHECK (origin IN ('grant', 'initial', 'top_up', 'adjustment', 'refund', 'upgrade')),
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

    // A usage's refunds (its charges have ledger_entries_one_charge_per_usage).
    await q.query(`CREATE INDEX ledger_entries_refunds ON ledger_entries (usage_key) WHERE kind = 'refund'`);
    await q.query(LEDGER_APPLY);

    // The upgrade: what each wallet holds becomes one paid grant, or debt.
    await q.query(`
      INSERT INTO grants (user_id, kind, origin, amount, remaining, description)
      SELECT user_id, 'paid', 'upgrade', balance, balance, 'balance before grants' FROM wallets WHERE balance > 0`);
    await q.query(`UPDATE wallets SET debt = -balance WHERE balance < 0`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION ledger_apply`);
    await q.query(`DROP INDEX ledger_entries_refunds`);
    await q.query(`ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check`);
    await q.query(`
      ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
        CHECK (kind IN ('initial', 'top_up', 'adjustment', 'charge'))`);
    await q.query(`ALTER TABLE wallets DROP COLUMN debt`);
    await q.query(`DROP TABLE grants`);
  }
}

/**
 * `ledger_apply`: how each posting of a `moveMoney` statement moves grants and debt — the one place
 * that decides it (src/ledger/money-movement.ts calls it, after the statement has locked every
 * wallet concerned, with the postings in (user_id, ord) order). It is VOLATILE on purpose: in READ
 * COMMITTED each of its queries takes a fresh snapshot, so it reads the grants as committed by
 * whoever held the wallet's lock before; and as every writer of `grants` runs here under the
 * wallet's lock, nothing else can change a wallet's grants while it runs. It never writes
 * `wallets` (the statement's UPDATE does, with the debt_delta returned here).
 *
 * Per posting it returns the ledger entries to write: sub 0 is the posting's own entry (with its
 * amount, which it decides for expiries, voids and "refund all"); a refund returning credits to an
 * expired or voided grant adds one `grant_expired` entry (sub 1, 2, …) per grant. A posting with
 * no row writes no entry (a grant someone else already expired).
 *
 *   charge, adjustment < 0  draws from the active, unexpired grants in drawing order; what they do
 *                           not cover is debt. extra.draws = [{grant_id, amount}…, {debt}]
 *   initial, top_up, adjustment > 0, grant
 *                           a new grant (spec: kind, priority, expires_at, idempotency_key,
 *                           request_hash, description), paying the debt first. extra {grant_id, debt_paid}
 *   grant_expired, grant_voided (spec: grant_id, reason)
 *                           removes what remains of the grant. extra {grant_id}
 *   refund (amount NULL = all that is left)
 *                           gives back to what the usage's charges drew: their unfunded part first
 *                           (cancelling debt; what a later grant already paid comes back as a new
 *                           paid grant), then the grants, last drawn first. extra {returned, …}
 * Errors it raises (SQLSTATE P0001, message = the API's error word): refund_exceeds_charge, not_settled.
 */
const LEDGER_APPLY = `
CREATE FUNCTION ledger_apply(p_ord bigint[], p_user varchar[], p_kind varchar[], p_amount numeric[], p_usage uuid[], p_spec jsonb[], p_debt numeric[])
RETURNS TABLE (ord bigint, sub int, kind varchar, amount numeric, debt_delta numeric, description varchar, extra jsonb)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  i int;
  v_user varchar;
  v_kind varchar;
  v_amount numeric;
  v_spec jsonb;
  v_wallet varchar;
  v_debt numeric;
  g record;
  v_need numeric;
  v_take numeric;
  v_cancel numeric;
  v_grant uuid;
  v_draws jsonb;
  v_returned jsonb;
  v_expire jsonb;
  v_left numeric;
  v_unfunded numeric;
  v_expired boolean;
  -- The drawable grants of the current wallet, in drawing order, as its draws leave them: read once
  -- per wallet and written back once (flush), however many of its charges the statement draws.
  c_ids uuid[];
  c_rem numeric[];
  c_was numeric[];
  c_dirty boolean := false;
  j int;
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_ord, 1), 0) + 1 LOOP
    -- Write the cached grants back when the wallet changes, before anything else touches grants,
    -- and after the last posting (the extra turn of the loop).
    IF c_dirty AND (i > array_length(p_ord, 1) OR p_user[i] IS DISTINCT FROM v_wallet
                    OR NOT (p_kind[i] IN ('charge', 'adjustment') AND p_amount[i] < 0)) THEN
      -- One UPDATE by primary key per grant drawn (a join with unnest() was planned as a scan of
      -- every grant: twice the statement's PostgreSQL time in npm run bench).
      FOR j IN 1 .. array_length(c_ids, 1) LOOP
        CONTINUE WHEN c_rem[j] = c_was[j];
        UPDATE grants t SET remaining = c_rem[j],
               status = CASE WHEN c_rem[j] = 0 THEN 'depleted' ELSE t.status END,
               closed_at = CASE WHEN c_rem[j] = 0 THEN now() ELSE t.closed_at END
        WHERE t.grant_id = c_ids[j];
      END LOOP;
      c_dirty := false;
    END IF;
    EXIT WHEN i > coalesce(array_length(p_ord, 1), 0);
    v_user := p_user[i]; v_kind := p_kind[i]; v_amount := p_amount[i]; v_spec := coalesce(p_spec[i], '{}');
    IF v_wallet IS DISTINCT FROM v_user THEN
      -- The debt as the statement locked the wallet (then kept here as postings change it).
      v_debt := p_debt[i];
      v_wallet := v_user;
      c_ids := NULL;
    END IF;
    ord := p_ord[i]; sub := 0; kind := v_kind; amount := v_amount; debt_delta := 0; description := NULL; extra := '{}';

    IF v_kind IN ('charge', 'adjustment') AND v_amount < 0 THEN
      IF c_ids IS NULL THEN
        SELECT coalesce(array_agg(t.grant_id ORDER BY t.priority, t.expires_at NULLS LAST, t.created_at, t.grant_id), '{}'),
               coalesce(array_agg(t.remaining ORDER BY t.priority, t.expires_at NULLS LAST, t.created_at, t.grant_id), '{}')
          INTO c_ids, c_rem
        FROM grants t
        WHERE t.user_id = v_user AND t.status = 'active' AND t.remaining > 0 AND (t.expires_at IS NULL OR t.expires_at > now());
        c_was := c_rem;
      END IF;
      v_need := -v_amount; v_draws := '[]';
      FOR j IN 1 .. coalesce(array_length(c_ids, 1), 0) LOOP
        EXIT WHEN v_need = 0;
        v_take := least(v_need, c_rem[j]);
        CONTINUE WHEN v_take = 0;
        c_rem[j] := c_rem[j] - v_take;
        c_dirty := true;
        v_draws := v_draws || jsonb_build_object('grant_id', c_ids[j], 'amount', round(v_take, 6)::text);
        v_need := v_need - v_take;
      END LOOP;
      IF v_need > 0 THEN
        v_draws := v_draws || jsonb_build_object('debt', round(v_need, 6)::text);
        debt_delta := v_need; v_debt := v_debt + v_need;
      END IF;
      extra := jsonb_build_object('draws', v_draws);
      RETURN NEXT;

    ELSIF v_kind IN ('initial', 'top_up', 'adjustment', 'grant') AND v_amount > 0 THEN
      c_ids := NULL;
      v_take := least(v_debt, v_amount);
      INSERT INTO grants (user_id, kind, origin, amount, remaining, priority, expires_at, status, debt_paid,
                          idempotency_key, request_hash, description, closed_at)
      VALUES (v_user, coalesce(v_spec->>'kind', 'paid'), v_kind, v_amount, v_amount - v_take,
              coalesce((v_spec->>'priority')::smallint, 50), (v_spec->>'expires_at')::timestamptz,
              CASE WHEN v_amount = v_take THEN 'depleted' ELSE 'active' END, v_take,
              v_spec->>'idempotency_key', v_spec->>'request_hash', v_spec->>'description',
              CASE WHEN v_amount = v_take THEN now() END)
      RETURNING grant_id INTO v_grant;
      debt_delta := -v_take; v_debt := v_debt - v_take;
      extra := jsonb_build_object('grant_id', v_grant, 'debt_paid', round(v_take, 6)::text);
      RETURN NEXT;

    ELSIF v_kind IN ('grant_expired', 'grant_voided') THEN
      c_ids := NULL;
      v_grant := (v_spec->>'grant_id')::uuid;
      SELECT t.remaining INTO v_left FROM grants t
      WHERE t.grant_id = v_grant AND t.user_id = v_user AND t.status IN ('active', 'depleted')
        AND (v_kind = 'grant_voided' OR t.expires_at <= now());
      CONTINUE WHEN NOT FOUND;
      IF v_kind = 'grant_expired' THEN
        UPDATE grants t SET expired = t.expired + t.remaining, remaining = 0, status = 'expired', closed_at = now()
        WHERE t.grant_id = v_grant;
      ELSE
        UPDATE grants t SET voided = t.voided + t.remaining, remaining = 0, status = 'voided', closed_at = now(),
               void_reason = v_spec->>'reason'
        WHERE t.grant_id = v_grant;
      END IF;
      CONTINUE WHEN v_left = 0;
      amount := -v_left;
      extra := jsonb_build_object('grant_id', v_grant);
      RETURN NEXT;

    ELSIF v_kind = 'refund' THEN
      c_ids := NULL;
      -- What the usage's charges drew, and what its refunds gave back, read under the wallet's lock
      -- (concurrent refunds of one usage run one after the other here).
      SELECT -sum(e.amount) INTO v_left FROM ledger_entries e WHERE e.usage_key = p_usage[i] AND e.kind = 'charge';
      IF v_left IS NULL THEN
        RAISE EXCEPTION 'not_settled' USING DETAIL = 'the usage has no charge';
      END IF;
      v_left := v_left - coalesce((SELECT sum(e.amount) FROM ledger_entries e WHERE e.usage_key = p_usage[i] AND e.kind = 'refund'), 0);
      amount := coalesce(v_amount, v_left);
      IF amount <= 0 OR amount > v_left THEN
        RAISE EXCEPTION 'refund_exceeds_charge' USING DETAIL = round(v_left, 6)::text;
      END IF;
      v_need := amount; v_returned := '[]'; v_expire := '[]';

      -- 1. The unfunded part (debt, or a charge from before grants), less what refunds gave back of it.
      SELECT coalesce(sum(CASE WHEN e.metadata ? 'draws'
                               THEN (SELECT coalesce(sum((d->>'debt')::numeric), 0) FROM jsonb_array_elements(e.metadata->'draws') d)
                               ELSE -e.amount END), 0)
        INTO v_unfunded FROM ledger_entries e WHERE e.usage_key = p_usage[i] AND e.kind = 'charge';
      v_unfunded := v_unfunded - coalesce((SELECT sum((e.metadata->>'unfunded_returned')::numeric) FROM ledger_entries e
                                           WHERE e.usage_key = p_usage[i] AND e.kind = 'refund'), 0);
      v_unfunded := least(v_need, greatest(v_unfunded, 0));
      v_take := v_unfunded;
      v_cancel := least(v_take, v_debt);
      IF v_take > 0 THEN
        debt_delta := -v_cancel; v_debt := v_debt - v_cancel; v_need := v_need - v_take;
        IF v_take > v_cancel THEN
          INSERT INTO grants (user_id, kind, origin, amount, remaining, description)
          VALUES (v_user, 'paid', 'refund', v_take - v_cancel, v_take - v_cancel, 'refund of ' || p_usage[i])
          RETURNING grant_id INTO v_grant;
          v_returned := v_returned || jsonb_build_object('grant_id', v_grant, 'amount', round(v_take - v_cancel, 6)::text, 'expired', false);
        END IF;
      END IF;

      -- 2. The grants it drew, last drawn first, each at most what it gave less what came back to it.
      FOR g IN
        SELECT d.grant_id, d.drawn - coalesce(r.back, 0) AS open_amount, t.status, t.expires_at
        FROM (SELECT (x->>'grant_id')::uuid AS grant_id, sum((x->>'amount')::numeric) AS drawn, max(ARRAY[e.id, n]) AS last
              FROM ledger_entries e, jsonb_array_elements(e.metadata->'draws') WITH ORDINALITY AS dr(x, n)
              WHERE e.usage_key = p_usage[i] AND e.kind = 'charge' AND x ? 'grant_id' GROUP BY 1) d
        LEFT JOIN (SELECT (x->>'grant_id')::uuid AS grant_id, sum((x->>'amount')::numeric) AS back
                   FROM ledger_entries e, jsonb_array_elements(e.metadata->'returned') x
                   WHERE e.usage_key = p_usage[i] AND e.kind = 'refund' GROUP BY 1) r USING (grant_id)
        JOIN grants t USING (grant_id)
        ORDER BY d.last DESC
      LOOP
        EXIT WHEN v_need = 0;
        v_take := least(v_need, g.open_amount);
        CONTINUE WHEN v_take <= 0;
        v_expired := g.status IN ('expired', 'voided') OR coalesce(g.expires_at <= now(), false);
        IF v_expired THEN
          -- Back and out again at once: a refund never extends a grant's life.
          UPDATE grants t SET refunded = t.refunded + v_take, expired = t.expired + v_take,
                 status = CASE WHEN t.status IN ('active', 'depleted') AND t.remaining = 0 THEN 'expired' ELSE t.status END,
                 closed_at = coalesce(t.closed_at, now())
          WHERE t.grant_id = g.grant_id;
          v_expire := v_expire || jsonb_build_object('grant_id', g.grant_id, 'amount', round(v_take, 6)::text);
        ELSE
          UPDATE grants t SET refunded = t.refunded + v_take, remaining = t.remaining + v_take, status = 'active', closed_at = NULL
          WHERE t.grant_id = g.grant_id;
        END IF;
        v_returned := v_returned || jsonb_build_object('grant_id', g.grant_id, 'amount', round(v_take, 6)::text, 'expired', v_expired);
        v_need := v_need - v_take;
      END LOOP;
      IF v_need <> 0 THEN
        RAISE EXCEPTION 'ledger_apply: the draws of usage % do not cover its refund', p_usage[i];
      END IF;
      extra := jsonb_build_object('returned', v_returned, 'unfunded_returned', round(v_unfunded, 6)::text,
                                  'debt_cancelled', round(-debt_delta, 6)::text);
      RETURN NEXT;
      FOR g IN SELECT x, n FROM jsonb_array_elements(v_expire) WITH ORDINALITY AS y(x, n) LOOP
        sub := g.n; kind := 'grant_expired'; amount := -(g.x->>'amount')::numeric; debt_delta := 0;
        description := 'refunded to an expired grant';
        extra := jsonb_build_object('grant_id', g.x->>'grant_id', 'usage_key', p_usage[i]);
        RETURN NEXT;
      END LOOP;

    ELSE
      RETURN NEXT;
    END IF;
  END LOOP;
END
$fn$`;
