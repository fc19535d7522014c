import { expect } from '@jest/globals';
import { formatMicros, micros } from './catalog';
import { withDb } from './faults';
import { SERVICE_KEY } from './http';
import type { ApiResponse, RequestOptions } from './http';

/**
 * Helpers for the grants, debt and refund suites (API.md §8, §9): a price table where a token
 * costs exactly one micro-credit (so a test charges any exact amount it likes), readers for the
 * wallet, its grants and its ledger, and an SQL check of the grant invariants that does not rely
 * on the service's own reconciliation (which a build without grants would also pass).
 */

export { formatMicros, micros };

type Request = <T = any>(method: string, path: string, options?: RequestOptions) => Promise<ApiResponse<T>>;

/** The one model and feature the grant suites charge through. */
export const MODEL = 'micro-credit';
export const FEATURE = 'grants-unit';
/** What /start holds on FEATURE. */
export const HOLD = '1.000000';

/**
 * credits_per_usd 100, no margin anywhere, and a model at 0.01 USD per million input tokens:
 * one input token = 10^-8 USD = 10^-6 credits. A usage of N input tokens charges N micro-credits.
 */
export async function createUnitPricing(request: Request): Promise<void> {
  const steps: [string, string, unknown][] = [
    ['PUT', '/api/pricing/settings', { credits_per_usd: '100', default_profit_margin: '0' }],
    ['POST', '/api/pricing/models', { ai_model: MODEL, input_price_per_million: '0.01', output_price_per_million: '0' }],
    ['POST', '/api/features', { feature_endpoint_id: FEATURE, name: 'Grants unit', min_holding_credits: HOLD, profit_margin: '0' }],
  ];
  for (const [method, path, body] of steps) {
    const res = await request(method, path, { body });
    if (res.status >= 300) throw new Error(`${method} ${path} failed: ${res.status} ${JSON.stringify(res.body)}`);
  }
}

/** The usages that charge exactly `amount` credits on the unit price table. */
export function usagesFor(amount: string) {
  const tokens = micros(amount);
  if (tokens <= 0n || tokens > 1_000_000_000n) throw new Error(`cannot charge ${amount} with one usage`);
  return [{ ai_model: MODEL, input_tokens: Number(tokens), output_tokens: 0 }];
}

/** A direct charge (no hold) of exactly `amount`; returns the settlement answer's data. */
export async function directCharge(request: Request, userId: string, amount: string, idempotencyKey?: string): Promise<any> {
  const res = await request('POST', '/api/credits-process/end-multimodel', {
    key: SERVICE_KEY,
    body: {
      user_id: userId,
      feature_endpoint_id: FEATURE,
      usages: usagesFor(amount),
      ...(idempotencyKey ? { idempotency_key: idempotencyKey } : {}),
    },
  });
  expect({ status: res.status, body: res.body }).toMatchObject({ status: 200, body: { data: { status: 'settled' } } });
  expect(res.body.data.credits_charged).toBe(formatMicros(micros(amount)));
  return res.body.data;
}

/** /start that must be accessible; returns its data (usage_key, …). */
export async function startHold(request: Request, userId: string): Promise<any> {
  const res = await request('POST', '/api/credits-process/start', {
    key: SERVICE_KEY,
    body: { user_id: userId, feature_endpoint_id: FEATURE },
  });
  expect({ status: res.status, status_word: res.body?.data?.status }).toEqual({ status: 200, status_word: 'accessible' });
  return res.body.data;
}

/** Settles a hold for exactly `amount`; returns the settlement answer's data. */
export async function settleHold(request: Request, userId: string, usageKey: string, amount: string): Promise<any> {
  const res = await request('POST', '/api/credits-process/end-multimodel', {
    key: SERVICE_KEY,
    body: { user_id: userId, usage_key: usageKey, feature_endpoint_id: FEATURE, usages: usagesFor(amount) },
  });
  expect({ status: res.status, status_word: res.body?.data?.status }).toEqual({ status: 200, status_word: 'settled' });
  expect(res.body.data.credits_charged).toBe(formatMicros(micros(amount)));
  return res.body.data;
}

export async function createWallet(request: Request, userId: string, initialCredits?: string): Promise<any> {
  const res = await request('POST', '/api/wallets', {
    body: { user_id: userId, ...(initialCredits !== undefined ? { initial_credits: initialCredits } : {}) },
  });
  expect({ status: res.status, body: res.body }).toMatchObject({ status: 201, body: { success: true } });
  return res.body.data;
}

export interface GrantBody {
  amount: string | number;
  kind?: 'paid' | 'promotional';
  priority?: number;
  expires_at?: string | null;
  idempotency_key?: string;
  description?: string;
}

export const grantsPath = (userId: string) => `/api/wallets/${encodeURIComponent(userId)}/grants`;

/** POST …/grants that must apply (201); returns the answer's data ({ status, grant, wallet, … }). */
export async function addGrant(request: Request, userId: string, body: GrantBody): Promise<any> {
  const res = await request('POST', grantsPath(userId), { body });
  expect({ status: res.status, status_word: res.body?.data?.status }).toEqual({ status: 201, status_word: 'applied' });
  return res.body.data;
}

export async function wallet(request: Request, userId: string): Promise<any> {
  const res = await request('GET', `/api/wallets/${encodeURIComponent(userId)}`);
  expect(res.status).toBe(200);
  return res.body.data;
}

/** Every grant of the wallet (all pages), in the order the service lists them. */
export async function listGrants(request: Request, userId: string, status?: string): Promise<any[]> {
  const items: any[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 50; page++) {
    const query = new URLSearchParams();
    if (status) query.set('status', status);
    if (cursor) query.set('cursor', cursor);
    const qs = query.toString();
    const res: ApiResponse = await request('GET', `${grantsPath(userId)}${qs ? `?${qs}` : ''}`);
    expect(res.status).toBe(200);
    expect(Array.isArray(res.body.data.items)).toBe(true);
    items.push(...res.body.data.items);
    cursor = res.body.data.next_cursor;
    if (cursor === null) return items;
  }
  throw new Error('more than 50 pages of grants');
}

export async function grantById(request: Request, userId: string, grantId: string): Promise<any> {
  const found = (await listGrants(request, userId)).find((g) => g.grant_id === grantId);
  expect(found).toBeDefined();
  return found;
}

/** The whole ledger, newest first. */
export async function ledger(request: Request, userId: string): Promise<any[]> {
  const items: any[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 50; page++) {
    const res: ApiResponse = await request(
      'GET',
      `/api/wallets/${encodeURIComponent(userId)}/transactions?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    expect(res.status).toBe(200);
    items.push(...res.body.data.items);
    cursor = res.body.data.next_cursor;
    if (cursor === null) return items;
  }
  throw new Error('more than 50 pages of ledger');
}

/** The charge entry a usage wrote. */
export async function chargeEntry(request: Request, userId: string, usageKey: string): Promise<any> {
  const entries = (await ledger(request, userId)).filter((e) => e.kind === 'charge' && e.usage_key === usageKey);
  expect(entries).toHaveLength(1);
  return entries[0];
}

/**
 * Assumption where §8 is silent on the spelling: a draw's amount is a positive 6-decimal string
 * (what was taken from the grant), while the charge entry's own amount is negative, as in v1.
 */
export type Draw = { grant_id: string; amount: string } | { debt: string };

export function drawsSum(draws: Draw[]): bigint {
  return draws.reduce((sum, d) => sum + micros('debt' in d ? d.debt : d.amount), 0n);
}

/** A charge entry's draws: present, each amount positive, adding up to the charge exactly. */
export function expectDrawsOf(entry: any): Draw[] {
  const draws = entry?.metadata?.draws as Draw[] | undefined;
  expect(Array.isArray(draws)).toBe(true);
  for (const d of draws!) expect(micros('debt' in d ? d.debt : d.amount) > 0n).toBe(true);
  expect(formatMicros(drawsSum(draws!))).toBe(formatMicros(-micros(entry.amount)));
  // At most one debt part, and only last.
  const debtIndex = draws!.findIndex((d) => 'debt' in d);
  if (debtIndex >= 0) expect(debtIndex).toBe(draws!.length - 1);
  return draws!;
}

/**
 * `debt_paid` of a grant or top-up answer. Assumption (§8 says "the answer … says debt_paid"):
 * it is a field of the answer's data, beside `status`.
 */
export function debtPaidOf(data: any): string {
  expect(typeof data?.debt_paid).toBe('string');
  return data.debt_paid;
}

export async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  return withDb(url, async (c) => (await c.query(text, params)).rows as T[]);
}

export async function debtOf(url: string, userId: string): Promise<string> {
  const [row] = await sql<{ debt: string }>(url, 'SELECT debt::text AS debt FROM wallets WHERE user_id = $1', [userId]);
  return formatMicros(micros(row.debt));
}

export async function reconcile(request: Request): Promise<{ wallets_checked: number; mismatches: unknown[] }> {
  const res = await request('GET', '/api/reconciliation');
  expect(res.status).toBe(200);
  return res.body.data;
}

/**
 * The books of §8 read straight from the database, for the wallets named (all when absent):
 * problems found, as sentences ([] = clean). Checks: no grant's remaining below zero; balance =
 * Σ ledger = newest balance_after; balance = Σ remaining of active grants − debt (remaining of
 * depleted, expired and voided grants is zero); held = Σ live holds; each grant's remaining =
 * amount − debt_paid − Σ its draws (every ledger entry's metadata.draws) − expired − voided + refunded
 * (the columns the grants migration documents).
 */
export async function grantBooksProblems(url: string, userIds?: string[]): Promise<string[]> {
  return withDb(url, async (c) => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    try {
      const filter = userIds ? 'WHERE w.user_id = ANY($1)' : '';
      const params = userIds ? [userIds] : [];
      const wallets = (
        await c.query<Record<string, string>>(
          `SELECT w.user_id, w.balance::text, w.held::text, w.debt::text,
                  (SELECT COALESCE(SUM(amount), 0)::text FROM ledger_entries l WHERE l.user_id = w.user_id) AS ledger_sum,
                  (SELECT balance_after::text FROM ledger_entries l WHERE l.user_id = w.user_id ORDER BY id DESC LIMIT 1) AS last_after,
                  (SELECT COALESCE(SUM(remaining), 0)::text FROM grants g WHERE g.user_id = w.user_id AND g.status = 'active') AS active_remaining,
                  (SELECT COALESCE(SUM(remaining), 0)::text FROM grants g WHERE g.user_id = w.user_id AND g.status <> 'active') AS closed_remaining,
                  (SELECT COALESCE(SUM(amount), 0)::text FROM holds h WHERE h.user_id = w.user_id AND h.status = 'held') AS live_holds
             FROM wallets w ${filter}`,
          params,
        )
      ).rows;
      const grants = (
        await c.query<Record<string, string>>(
          `SELECT g.grant_id::text, g.user_id, g.status, g.amount::text, g.remaining::text, g.debt_paid::text, g.expired::text,
                  g.voided::text, g.refunded::text,
                  (SELECT COALESCE(SUM((d->>'amount')::numeric), 0)::text
                     FROM ledger_entries l, jsonb_array_elements(CASE WHEN jsonb_typeof(l.metadata->'draws') = 'array'
                                                                      THEN l.metadata->'draws' ELSE '[]'::jsonb END) d
                    WHERE l.user_id = g.user_id AND d->>'grant_id' = g.grant_id::text) AS drawn
             FROM grants g JOIN wallets w ON w.user_id = g.user_id ${filter}`,
          params,
        )
      ).rows;
      const problems: string[] = [];
      for (const w of wallets) {
        const balance = micros(w.balance);
        if (micros(w.ledger_sum) !== balance) problems.push(`${w.user_id}: balance ${w.balance} ≠ Σ ledger ${w.ledger_sum}`);
        if (w.last_after !== null && micros(w.last_after) !== balance)
          problems.push(`${w.user_id}: balance ${w.balance} ≠ newest balance_after ${w.last_after}`);
        if (micros(w.active_remaining) - micros(w.debt) !== balance)
          problems.push(`${w.user_id}: balance ${w.balance} ≠ Σ active remaining ${w.active_remaining} − debt ${w.debt}`);
        if (micros(w.closed_remaining) !== 0n) problems.push(`${w.user_id}: closed grants still hold ${w.closed_remaining}`);
        if (micros(w.held) !== micros(w.live_holds)) problems.push(`${w.user_id}: held ${w.held} ≠ live holds ${w.live_holds}`);
        if (micros(w.debt) < 0n) problems.push(`${w.user_id}: debt ${w.debt} below zero`);
      }
      for (const g of grants) {
        const remaining = micros(g.remaining);
        if (remaining < 0n) problems.push(`grant ${g.grant_id}: remaining ${g.remaining} below zero`);
        const expected =
          micros(g.amount) - micros(g.debt_paid) - micros(g.drawn) - micros(g.expired) - micros(g.voided) + micros(g.refunded);
        if (expected !== remaining)
          problems.push(
            `grant ${g.grant_id}: remaining ${g.remaining} ≠ amount ${g.amount} − debt_paid ${g.debt_paid} − drawn ${g.drawn} − expired ${g.expired} − voided ${g.voided} + refunded ${g.refunded}`,
          );
        if (g.status === 'active' && remaining === 0n) problems.push(`grant ${g.grant_id}: active with nothing left`);
      }
      return problems;
    } finally {
      await c.query('COMMIT');
    }
  });
}

/** The service's reconciliation is clean and so are the books read by SQL. */
export async function expectBooksClean(request: Request, url: string, userIds?: string[]): Promise<void> {
  const report = await reconcile(request);
  expect(report.mismatches).toEqual([]);
  expect(await grantBooksProblems(url, userIds)).toEqual([]);
}

/** An ISO timestamp `ms` from now. */
export const fromNow = (ms: number) => new Date(Date.now() + ms).toISOString();
