import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Usage } from './workload';

/**
 * The bare-SQL baseline: the work of one credits cycle written by hand for the fewest round trips,
 * with the service's guarantees kept. Two statements per cycle, each its own (autocommit)
 * transaction, both prepared:
 *
 *  start  — one CTE: feature check, conditional UPDATE of the wallet (`balance − held ≥ hold`,
 *           so N racing starts with room for K give exactly K) and INSERT of the hold.
 *  settle — one CTE, i.e. one transaction: prices the usages from the current price table in
 *           exact `numeric` (rounded once, half up, as API.md §5), claims the hold with a
 *           conditional UPDATE under its row lock (`status IN ('held','expired')`: a second
 *           settlement finds nothing to claim and charges nothing), charges the wallet and
 *           releases the hold in one UPDATE, and appends the ledger entry with the same pricing
 *           snapshot. The ledger id is drawn first so the hold can point at its entry in the same
 *           statement; the replayable answer is that ledger entry (as in the service).
 *
 * Neither statement reads before it writes, so a cycle is exactly two round trips; the service
 * cannot need fewer. Rare paths (unknown key, unknown model, insufficient credits) return no row
 * and would be diagnosed by a follow-up read, as the service does; the benchmark never takes them.
 */

export const START_SQL = `
WITH f AS (
  SELECT feature_endpoint_id, min_holding_credits, COALESCE(hold_ttl_seconds, $3) AS ttl, allowed_plans
  FROM features WHERE feature_endpoint_id = $2 AND active
), w AS (
  UPDATE wallets w SET held = w.held + f.min_holding_credits, version = w.version + 1, updated_at = now()
  FROM f
  WHERE w.user_id = $1 AND w.status = 'active'
    AND (cardinality(f.allowed_plans) = 0 OR w.plan = ANY (f.allowed_plans))
    AND w.balance - w.held > 0
    AND w.balance - w.held >= f.min_holding_credits
  RETURNING w.balance, w.held, f.min_holding_credits, f.ttl
), h AS (
  INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at)
  SELECT $4, $1, $2, w.min_holding_credits, 'held', now() + make_interval(secs => w.ttl) FROM w
  RETURNING expires_at
)
SELECT w.balance::text, w.held::text, w.min_holding_credits::text AS hold_amount, h.expires_at FROM w, h`;

export const SETTLE_SQL = `
WITH u AS (
  SELECT * FROM unnest($4::text[], $5::int8[], $6::int8[], $7::int8[])
    WITH ORDINALITY AS u(ai_model, input_tokens, output_tokens, cached_input_tokens, ord)
), s AS (
  SELECT credits_per_usd, default_profit_margin FROM pricing_settings WHERE id = 1
), f AS (
  SELECT profit_margin, COALESCE(fixed_cost, 0) AS fixed_cost FROM features WHERE feature_endpoint_id = $3
), p AS (
  SELECT u.*, m.version, m.input_price_per_million AS ip, m.output_price_per_million AS op,
         COALESCE(m.cached_input_price_per_million, m.input_price_per_million) AS cp,
         COALESCE(f.profit_margin, m.profit_margin, s.default_profit_margin) AS margin,
         CASE WHEN f.profit_margin IS NOT NULL THEN 'feature' WHEN m.profit_margin IS NOT NULL THEN 'model' ELSE 'default' END AS margin_source,
         s.credits_per_usd, s.default_profit_margin, f.profit_margin AS feature_margin, f.fixed_cost
  FROM u JOIN ai_models m USING (ai_model) CROSS JOIN s CROSS JOIN f
  WHERE u.cached_input_tokens <= u.input_tokens
), n AS (
  -- n = cost in USD × 10^6 (tokens × USD per million tokens): every product below is exact.
  SELECT p.*, (input_tokens - cached_input_tokens) * ip + cached_input_tokens * cp + output_tokens * op AS n FROM p
), q AS (
  SELECT round(sum(n * (1 + margin) * credits_per_usd) * 0.000001 + min(fixed_cost), 6) AS charge,
         count(*) AS priced,
         jsonb_agg(jsonb_build_object('ai_model', ai_model, 'input_tokens', input_tokens, 'output_tokens', output_tokens,
           'cached_input_tokens', cached_input_tokens, 'cost_usd', round(n * 0.000001, 6)::text,
           'credits', round(n * (1 + margin) * credits_per_usd * 0.000001, 6)::text) ORDER BY ord) AS usages,
         jsonb_build_object(
           'credits_per_usd', min(credits_per_usd)::text, 'default_profit_margin', min(default_profit_margin)::text,
           'feature', jsonb_build_object('feature_endpoint_id', $3::text, 'profit_margin', min(feature_margin)::text, 'fixed_cost', min(fixed_cost)::text),
           'models', jsonb_object_agg(ai_model, jsonb_build_object('version', version, 'input_price_per_million', ip::text,
             'output_price_per_million', op::text, 'cached_input_price_per_million', cp::text, 'profit_margin', margin::text,
             'margin_source', margin_source))) AS pricing
  FROM n
), old AS (
  SELECT usage_key, status, expires_at FROM holds WHERE usage_key = $1 AND user_id = $2 AND feature_endpoint_id = $3 FOR UPDATE
), c AS (
  UPDATE holds h SET status = 'settled', closed_at = now(), late = (old.status = 'expired' OR old.expires_at < now())
  FROM old, q
  WHERE h.usage_key = old.usage_key AND old.status IN ('held', 'expired') AND q.priced = cardinality($4::text[])
  -- An expired hold was already released by the sweeper: release only a live one.
  RETURNING h.late, q.charge, q.usages, q.pricing, CASE WHEN old.status = 'held' THEN h.amount ELSE 0 END AS release
), w AS (
  UPDATE wallets w SET balance = w.balance - c.charge, held = w.held - c.release, version = w.version + 1, updated_at = now()
  FROM c WHERE w.user_id = $2
  RETURNING w.balance, w.held
), l AS (
  INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key, description, metadata)
  SELECT $2, 'charge', -c.charge, w.balance, w.held, $1, 'usage of ' || $3,
         jsonb_build_object('channel', 'baseline', 'feature_endpoint_id', $3::text, 'late', c.late, 'usages', c.usages, 'pricing', c.pricing)
  FROM c, w
  RETURNING id
)
SELECT l.id::text AS transaction_id, c.charge::text AS credits_charged, c.late, w.balance::text, w.held::text, c.usages FROM c, w, l`;

export interface StartRow {
  balance: string;
  held: string;
  hold_amount: string;
  expires_at: Date;
}

export interface SettleRow {
  transaction_id: string;
  credits_charged: string;
  late: boolean;
  balance: string;
  held: string;
  usages: unknown[];
}

type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

/** The baseline's /start: returns the new usage key, or undefined when no hold was placed. */
export async function baselineStart(db: Queryable, userId: string, featureId: string, holdTtlSeconds: number) {
  const usageKey = randomUUID();
  const { rows } = await db.query<StartRow>({
    name: 'bench_start',
    text: START_SQL,
    values: [userId, featureId, holdTtlSeconds, usageKey],
  });
  return rows.length === 1 ? { usageKey, row: rows[0] } : undefined;
}

/** The baseline's /end-multimodel with a usage key: the settled figures, or undefined when nothing was claimed. */
export async function baselineSettle(db: Queryable, userId: string, featureId: string, usageKey: string, usages: Usage[]) {
  const { rows } = await db.query<SettleRow>({
    name: 'bench_settle',
    text: SETTLE_SQL,
    values: [
      usageKey,
      userId,
      featureId,
      usages.map((u) => u.ai_model),
      usages.map((u) => u.input_tokens),
      usages.map((u) => u.output_tokens),
      usages.map((u) => u.cached_input_tokens),
    ],
  });
  return rows[0];
}
