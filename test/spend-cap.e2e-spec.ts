/**
 * Spend caps of key records (API.md §11): `/start` refuses with `402 spend_cap_exceeded`
 * (data.spent, data.cap, data.resets_at) when what the key's settlements charged in the current
 * UTC period plus what its live holds hold, plus the new hold, would pass the cap; settlements are
 * never refused for the cap; holds and ledger entries record the key_id that made them (null for
 * environment keys). Against the real app on a throwaway PostgreSQL database and RabbitMQ vhost,
 * with a second app instance on the same database for the cross-instance race.
 *
 * Every amount is exact: the unit price table of test/support/grants.ts (one input token = one
 * micro-credit), expected figures in bigint micro-credits (micros / formatMicros).
 *
 * Assumptions where the contract is silent (each also said where it is used):
 * - "would pass the cap" is strict: spent + held + new hold = cap is allowed, one micro more is not.
 * - data.spent of a refusal is what the key has spent this period (charges + live holds) WITHOUT
 *   the refused hold; data.cap is the cap's amount; both 6-decimal strings. resets_at is an ISO
 *   8601 UTC instant (compared as an instant, not as a spelling).
 * - A charge of a hold counts toward the key that placed the hold, whoever settles it (a queue
 *   message carries no key at all); a direct charge (no usage_key) counts toward the settling key,
 *   and a direct charge from the queue toward no key (key_id null).
 * - An uncapped key's spend is recorded too (key_id on its holds and entries), so a cap set later by
 *   PATCH counts what it already spent this period.
 * - The tests assume they do not straddle UTC midnight (or a month's end): the period they check
 *   is the one they started in.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { DEMO_KEY } from '../src/database/seed-demo';
import { formatMicros, micros } from './support/catalog';
import { queuesDrained, withDb } from './support/faults';
import { createUnitPricing, FEATURE, MODEL, usagesFor } from './support/grants';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { ApiResponse, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

const MULTI_QUEUE = 'credits_process_end_multimodel_queue';
const LEGACY_QUEUE = 'credits_process_end_queue';
/** Holds 1 credit (FEATURE) or 3 credits; SHORT holds 1 credit for SHORT_TTL seconds. */
const THREE = 'cap-three';
const SHORT = 'cap-short';
const SHORT_TTL = 3;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

type Cap = { amount: string; period: 'day' | 'month' } | null;
interface Key {
  key_id: string;
  key: string;
}

const nextUtcMidnight = () => {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
};
const firstOfNextUtcMonth = () => {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
};

describe('spend caps of key records', () => {
  let t: TestApp;
  let t2: TestApp;
  let vhost: TestVhost;
  const run = randomBytes(3).toString('hex');
  let n = 0;
  const uniqueId = (prefix: string) => `${prefix}-${run}-${++n}`;

  beforeAll(async () => {
    vhost = await createTestVhost();
    t = await startTestApp({ RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: '100,200' });
    await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
    await createUnitPricing(t.request);
    for (const body of [
      { feature_endpoint_id: THREE, name: 'Cap three', min_holding_credits: '3', profit_margin: '0' },
      { feature_endpoint_id: SHORT, name: 'Cap short', min_holding_credits: '1', profit_margin: '0', hold_ttl_seconds: SHORT_TTL },
    ]) {
      expect((await t.request('POST', '/api/features', { body })).status).toBe(201);
    }
    // The second instance: same database, no broker (only used for HTTP races).
    t2 = await startTestApp({}, t.db);
  }, 120_000);
  afterAll(async () => {
    await t2?.close();
    await t?.close();
    await vhost?.delete();
  }, 60_000);

  // --- helpers ---------------------------------------------------------------------------------

  const sql = <T = Record<string, any>>(text: string, params: unknown[] = []) =>
    withDb(t.db.url, async (c) => (await c.query(text, params)).rows as T[]);

  async function issueKey(spend_cap: Cap): Promise<Key> {
    const res = await t.request('POST', '/api/keys', { body: { name: uniqueId('cap key'), scope: 'service', spend_cap } });
    expect(res.status).toBe(201);
    return res.body.data;
  }

  async function newWallet(credits = '1000'): Promise<string> {
    const user_id = uniqueId('cap-user');
    expect((await t.request('POST', '/api/wallets', { body: { user_id, initial_credits: credits } })).status).toBe(201);
    return user_id;
  }

  const start = (key: string, userId: string, feature = FEATURE, app: TestApp = t) =>
    app.request('POST', '/api/credits-process/start', { key, body: { user_id: userId, feature_endpoint_id: feature } });

  async function accessible(key: string, userId: string, feature = FEATURE, app: TestApp = t): Promise<any> {
    const res = await start(key, userId, feature, app);
    expect({ status: res.status, word: res.body?.data?.status, body: res.status === 200 ? undefined : res.body }).toEqual({
      status: 200,
      word: 'accessible',
      body: undefined,
    });
    return res.body.data;
  }

  /** A 402 spend_cap_exceeded with exactly these figures and the period's end. */
  function expectCapRefusal(res: ApiResponse, spent: string, cap: string, period: 'day' | 'month' = 'day') {
    expect({ status: res.status, success: res.body?.success, word: res.body?.data?.status }).toEqual({
      status: 402,
      success: false,
      word: 'spend_cap_exceeded',
    });
    expect(res.body.data.message).toEqual(expect.any(String));
    expect({ spent: res.body.data.spent, cap: res.body.data.cap }).toEqual({ spent, cap });
    expect(res.body.data.resets_at).toMatch(ISO_UTC);
    const resets = period === 'day' ? nextUtcMidnight() : firstOfNextUtcMonth();
    expect(new Date(res.body.data.resets_at).toISOString()).toBe(resets.toISOString());
  }

  const settle = (key: string, body: Record<string, unknown>, app: TestApp = t) =>
    app.request('POST', '/api/credits-process/end-multimodel', { key, body });

  /** Settles a hold for exactly `amount` with `key`; returns the answer's data. */
  async function settleHold(key: string, userId: string, usageKey: string, amount: string, feature = FEATURE): Promise<any> {
    const res = await settle(key, { user_id: userId, usage_key: usageKey, feature_endpoint_id: feature, usages: usagesFor(amount) });
    expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status: 200, word: 'settled' });
    expect(res.body.data.credits_charged).toBe(formatMicros(micros(amount)));
    return res.body.data;
  }

  /** A direct charge (no usage_key) of exactly `amount` with `key`; returns the answer's data. */
  async function directCharge(key: string, userId: string, amount: string, idempotencyKey = uniqueId('direct')): Promise<any> {
    const res = await settle(key, {
      user_id: userId,
      feature_endpoint_id: FEATURE,
      idempotency_key: idempotencyKey,
      usages: usagesFor(amount),
    });
    expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status: 200, word: 'settled' });
    expect(res.body.data.credits_charged).toBe(formatMicros(micros(amount)));
    return res.body.data;
  }

  const cancel = (key: string, usageKey: string) =>
    t.request('POST', '/api/credits-process/cancel', { key, body: { usage_key: usageKey } });

  async function keyRecord(keyId: string): Promise<any> {
    const res = await t.request('GET', `/api/keys/${keyId}`);
    expect(res.status).toBe(200);
    return res.body.data;
  }
  const spentOf = async (keyId: string) => (await keyRecord(keyId)).spent_this_period as string;

  async function patchCap(keyId: string, spend_cap: Cap, app: TestApp = t): Promise<void> {
    const res = await app.request('PATCH', `/api/keys/${keyId}`, { body: { spend_cap } });
    expect({ status: res.status, body: res.status === 200 ? undefined : res.body }).toEqual({ status: 200, body: undefined });
    expect(res.body.data.spend_cap).toEqual(spend_cap && { amount: formatMicros(micros(spend_cap.amount)), period: spend_cap.period });
  }

  /** Everything a refused start must leave as it was: the wallets, their holds and ledger, the key's row, the events. */
  async function snapshot(userIds: string[], keyId: string) {
    const [row] = await sql(
      `SELECT (SELECT json_agg(json_build_object('u', user_id, 'b', balance::text, 'h', held::text, 'v', version, 'at', updated_at) ORDER BY user_id)
                 FROM wallets WHERE user_id = ANY($1)) AS wallets,
              (SELECT count(*)::int FROM holds WHERE user_id = ANY($1)) AS holds,
              (SELECT count(*)::int FROM ledger_entries WHERE user_id = ANY($1)) AS entries,
              (SELECT count(*)::int FROM events) AS events,
              (SELECT row_to_json(k) FROM (SELECT held::text, period_spent::text, period_starts_at, updated_at
                                             FROM api_keys WHERE key_id = $2) k) AS key_row`,
      [userIds, keyId],
    );
    return row;
  }

  async function metric(outcome: string): Promise<number> {
    const res = await t.request('GET', '/metrics', { key: null });
    expect(res.status).toBe(200);
    const line = String(res.body)
      .split('\n')
      .find((l) => l.startsWith('credits_starts_total{') && l.includes(`outcome="${outcome}"`));
    return line ? Number(line.split(/\s+/).pop()) : 0;
  }

  /**
   * What the key spent this period computed from the usages the test itself made with it (never
   * from the key_id columns): Σ charges of those usage keys + Σ amount of those still held.
   */
  async function spentFromBooks(usageKeys: string[]): Promise<string> {
    const [row] = await sql<{ spent: string }>(
      `SELECT (COALESCE((SELECT -sum(amount) FROM ledger_entries WHERE usage_key = ANY($1::uuid[]) AND kind = 'charge'), 0)
             + COALESCE((SELECT sum(amount) FROM holds WHERE usage_key = ANY($1::uuid[]) AND status = 'held'), 0))::text AS spent`,
      [usageKeys],
    );
    return formatMicros(micros(row.spent));
  }

  /**
   * The service's reconciliation is clean, and the cap counters of the keys named agree with the
   * books. The counters (api_keys.held, period_spent, period_starts_at: migration 1764000000017)
   * are what the cap is decided on, while spent_this_period is computed from the books: a drift
   * between the two (a release counted twice, a charge not counted) would not show in
   * spent_this_period, only in who is let through later — so they are read directly.
   */
  async function reconciliationClean(keyIds: string[] = []): Promise<void> {
    const res = await t.request('GET', '/api/reconciliation');
    expect(res.status).toBe(200);
    expect(res.body.data.mismatches).toEqual([]);
    const rows = await sql<Record<string, string>>(
      `SELECT k.key_id::text,
              k.held::text AS held_counter,
              COALESCE((SELECT sum(amount) FROM holds h WHERE h.key_id = k.key_id AND h.status = 'held'), 0)::text AS live_holds,
              (CASE WHEN k.period_starts_at = p.starts THEN k.period_spent ELSE 0 END)::text AS spent_counter,
              COALESCE((SELECT -sum(amount) FROM ledger_entries e
                         WHERE e.key_id = k.key_id AND e.kind = 'charge' AND e.created_at >= p.starts), 0)::text AS charged
         FROM api_keys k
         CROSS JOIN LATERAL (SELECT date_trunc(k.spend_cap_period, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS starts) p
        WHERE k.key_id = ANY($1::uuid[])`,
      [keyIds],
    );
    expect(rows).toHaveLength(keyIds.length);
    for (const r of rows) {
      expect({ key: r.key_id, held: formatMicros(micros(r.held_counter)), spent: formatMicros(micros(r.spent_counter)) }).toEqual({
        key: r.key_id,
        held: formatMicros(micros(r.live_holds)),
        spent: formatMicros(micros(r.charged)),
      });
    }
  }

  // --- the cap at /start -----------------------------------------------------------------------

  it('cap 10 per day, holds of 1: ten starts pass, the eleventh is 402 spend_cap_exceeded and writes nothing', async () => {
    const key = await issueKey({ amount: '10', period: 'day' });
    const user = await newWallet();
    for (let i = 0; i < 10; i++) await accessible(key.key, user);
    expect(await spentOf(key.key_id)).toBe('10.000000');

    const before = await snapshot([user], key.key_id);
    const refusalsBefore = await metric('spend_cap_exceeded');
    const res = await start(key.key, user);
    expectCapRefusal(res, '10.000000', '10.000000');
    expect(await snapshot([user], key.key_id)).toEqual(before);
    // The wallet itself had plenty of room: it was the key that was refused.
    const wallet = (await t.request('GET', `/api/wallets/${user}`)).body.data;
    expect({ balance: wallet.balance, held: wallet.held, credits: wallet.credits }).toEqual({
      balance: '1000.000000',
      held: '10.000000',
      credits: '990.000000',
    });
    // §3: credits_starts_total counts a denial under its status word.
    expect(await metric('spend_cap_exceeded')).toBe(refusalsBefore + 1);
    expect(await spentOf(key.key_id)).toBe('10.000000');
    const record = await keyRecord(key.key_id);
    expect(new Date(record.period_resets_at).toISOString()).toBe(nextUtcMidnight().toISOString());
  });

  it('the new hold may bring the key exactly to its cap, not one micro-credit past it', async () => {
    const key = await issueKey({ amount: '7.000001', period: 'day' });
    const user = await newWallet();
    await accessible(key.key, user, THREE);
    await accessible(key.key, user, THREE); // 6
    await accessible(key.key, user); // 7
    expectCapRefusal(await start(key.key, user), '7.000000', '7.000001');
    await patchCap(key.key_id, { amount: '8', period: 'day' });
    await accessible(key.key, user); // exactly 8 = cap
    expectCapRefusal(await start(key.key, user), '8.000000', '8.000000');
  });

  it('the cap is the key’s, over every wallet it starts on', async () => {
    const key = await issueKey({ amount: '4', period: 'day' });
    const [u1, u2, u3] = [await newWallet(), await newWallet(), await newWallet()];
    await accessible(key.key, u1);
    await accessible(key.key, u1);
    await accessible(key.key, u2);
    await accessible(key.key, u3);
    const before = await snapshot([u1, u2, u3], key.key_id);
    for (const u of [u1, u2, u3]) expectCapRefusal(await start(key.key, u), '4.000000', '4.000000');
    expect(await snapshot([u1, u2, u3], key.key_id)).toEqual(before);
  });

  // --- races -----------------------------------------------------------------------------------

  /** Fires the starts all at once; checks exactly `room` accessible, the rest refused, and the books. */
  async function race(key: Key, starts: { user: string; app: TestApp }[], room: number, cap: string) {
    const answers = await Promise.all(starts.map((s) => start(key.key, s.user, FEATURE, s.app)));
    const ok = answers.filter((r) => r.status === 200);
    const refused = answers.filter((r) => r.status !== 200);
    expect({ accessible: ok.length, refused: refused.length }).toEqual({ accessible: room, refused: starts.length - room });
    for (const r of ok) expect(r.body.data.status).toBe('accessible');
    // Every refusal found the key full: with holds of 1 and a whole cap that is spent = cap.
    for (const r of refused) expectCapRefusal(r, cap, cap);
    const users = [...new Set(starts.map((s) => s.user))];
    const [books] = await sql(
      `SELECT (SELECT count(*)::int FROM holds WHERE user_id = ANY($1) AND status = 'held') AS live,
              (SELECT COALESCE(sum(held), 0)::text FROM wallets WHERE user_id = ANY($1)) AS held`,
      [users],
    );
    expect({ live: books.live, held: formatMicros(micros(books.held)) }).toEqual({
      live: Number(micros(cap) / 1_000_000n),
      held: cap,
    });
    expect(await spentFromBooks(ok.map((r) => r.body.data.usage_key))).toBe(cap);
    expect(await spentOf(key.key_id)).toBe(cap);
    await reconciliationClean([key.key_id]);
  }

  it('30 racing starts on one wallet with room for 10 under the cap: exactly 10 accessible, 20 spend_cap_exceeded', async () => {
    const key = await issueKey({ amount: '10', period: 'day' });
    const user = await newWallet();
    await race(
      key,
      Array.from({ length: 30 }, () => ({ user, app: t })),
      10,
      '10.000000',
    );
  });

  it('30 racing starts spread over 5 wallets (no shared wallet lock to hide behind): exactly 10 accessible', async () => {
    const key = await issueKey({ amount: '10', period: 'day' });
    const users = await Promise.all(Array.from({ length: 5 }, () => newWallet()));
    await race(
      key,
      Array.from({ length: 30 }, (_, i) => ({ user: users[i % users.length], app: t })),
      10,
      '10.000000',
    );
  });

  it('30 racing starts split over two app instances on one database and 3 wallets: exactly 10 accessible', async () => {
    const key = await issueKey({ amount: '10', period: 'day' });
    const users = await Promise.all(Array.from({ length: 3 }, () => newWallet()));
    // Both instances know the key before the race (so neither is still looking it up).
    const warm = await newWallet();
    await accessible(key.key, warm, FEATURE, t);
    await accessible(key.key, warm, FEATURE, t2);
    const [usageA, usageB] = (await sql<{ usage_key: string }>(`SELECT usage_key FROM holds WHERE user_id = $1`, [warm])).map(
      (r) => r.usage_key,
    );
    for (const u of [usageA, usageB]) expect((await cancel(key.key, u)).body.data.status).toBe('cancelled');
    expect(await spentOf(key.key_id)).toBe('0.000000');
    await race(
      key,
      Array.from({ length: 30 }, (_, i) => ({ user: users[i % users.length], app: i % 2 === 0 ? t : t2 })),
      10,
      '10.000000',
    );
  });

  // --- settlements -----------------------------------------------------------------------------

  it('a settlement charging more than the cap is settled, never refused; the charge then counts and /start is refused', async () => {
    const key = await issueKey({ amount: '10', period: 'day' });
    const user = await newWallet();
    const first = await accessible(key.key, user);
    const second = await accessible(key.key, user);
    const settled = await settleHold(key.key, user, first.usage_key, '25');
    expect(settled.balance).toBe('975.000000');
    // 25 charged + 1 still held.
    expect(await spentOf(key.key_id)).toBe('26.000000');
    expectCapRefusal(await start(key.key, user), '26.000000', '10.000000');
    // The key is far past its cap: its other hold still settles (as a settlement by the
    // environment key, attributed to the hold's key).
    await settleHold(SERVICE_KEY, user, second.usage_key, '3.5');
    expect(await spentOf(key.key_id)).toBe('28.500000');
    expectCapRefusal(await start(key.key, user), '28.500000', '10.000000');
    expect(await spentFromBooks([first.usage_key, second.usage_key])).toBe('28.500000');
    await reconciliationClean([key.key_id]);
  });

  it('a direct charge (no usage_key) by a capped key counts toward its spend, and is never refused either', async () => {
    const key = await issueKey({ amount: '10', period: 'day' });
    const user = await newWallet();
    const idem = uniqueId('direct');
    await directCharge(key.key, user, '7', idem);
    expect(await spentOf(key.key_id)).toBe('7.000000');
    await accessible(key.key, user, THREE); // 7 + 3 = 10: exactly the cap
    expectCapRefusal(await start(key.key, user), '10.000000', '10.000000');
    await directCharge(key.key, user, '50'); // past the cap: still charged
    expect(await spentOf(key.key_id)).toBe('60.000000');
    // Repeating a direct charge charges nothing more, and adds nothing to the key's spend.
    const again = await settle(key.key, { user_id: user, feature_endpoint_id: FEATURE, idempotency_key: idem, usages: usagesFor('7') });
    expect({ status: again.status, word: again.body.data.status }).toEqual({ status: 200, word: 'already_settled' });
    expect(await spentOf(key.key_id)).toBe('60.000000');
    expectCapRefusal(await start(key.key, user), '60.000000', '10.000000');
    await reconciliationClean([key.key_id]);
  });

  it('cancel frees the room at once; a repeated cancel frees nothing more', async () => {
    const key = await issueKey({ amount: '3', period: 'day' });
    const user = await newWallet();
    const holds = [await accessible(key.key, user), await accessible(key.key, user), await accessible(key.key, user)];
    expectCapRefusal(await start(key.key, user), '3.000000', '3.000000');
    expect((await cancel(key.key, holds[0].usage_key)).body.data.status).toBe('cancelled');
    expect(await spentOf(key.key_id)).toBe('2.000000');
    // The environment key cancels a capped key's hold just as well: the room is the hold's key's.
    expect((await cancel(SERVICE_KEY, holds[1].usage_key)).body.data.status).toBe('cancelled');
    expect(await spentOf(key.key_id)).toBe('1.000000');
    for (let i = 0; i < 3; i++) {
      const again = await cancel(key.key, holds[0].usage_key);
      expect({ status: again.status, word: again.body.data.status }).toEqual({ status: 200, word: 'cancelled' });
    }
    expect(await spentOf(key.key_id)).toBe('1.000000');
    await accessible(key.key, user);
    await accessible(key.key, user);
    // Had a repeated cancel released the key twice, a fourth hold would fit here.
    expectCapRefusal(await start(key.key, user), '3.000000', '3.000000');
    await reconciliationClean([key.key_id]);
  });

  it('hold expiry frees the room; a late settlement of the expired hold then counts its charge', async () => {
    const key = await issueKey({ amount: '2', period: 'day' });
    const user = await newWallet();
    const a = await accessible(key.key, user, SHORT);
    const b = await accessible(key.key, user, SHORT);
    const refused = await start(key.key, user);
    // Sanity of the test itself: the refusal came while both holds were still live.
    expect(Date.now()).toBeLessThan(new Date(a.expires_at).getTime());
    expectCapRefusal(refused, '2.000000', '2.000000');

    // Polling /start: each refused try writes nothing; the first accessible one ends the wait.
    const freed = await waitFor(
      'the expired holds to free the key’s room',
      async () => {
        const res = await start(key.key, user);
        return res.status === 200 ? res.body.data : undefined;
      },
      (SHORT_TTL + 15) * 1000,
      100,
    );
    expect(Date.now()).toBeGreaterThanOrEqual(new Date(a.expires_at).getTime());
    // Both expired holds freed their room: the freed start plus one more = 2.
    await waitFor(
      'the second expired hold to free its room',
      async () => new Date(b.expires_at).getTime() <= Date.now() && (await start(key.key, user)).status === 200,
      (SHORT_TTL + 15) * 1000,
      100,
    );
    expectCapRefusal(await start(key.key, user), '2.000000', '2.000000');
    for (const h of [a, b]) {
      const story = await t.request('GET', `/api/credits-process/usages/${h.usage_key}`, { key: key.key });
      expect(story.body.data.status).toBe('expired');
    }

    // The work was done: the expired hold is settled late, and its charge is the key's spend.
    const late = await settleHold(key.key, user, a.usage_key, '0.5', SHORT);
    expect(late.late).toBe(true);
    expect(await spentOf(key.key_id)).toBe('2.500000');
    expect(await spentFromBooks([a.usage_key, b.usage_key, freed.usage_key])).toBe('1.500000'); // 0.5 + the live one
    expectCapRefusal(await start(key.key, user), '2.500000', '2.000000');
    await reconciliationClean([key.key_id]);
  }, 60_000);

  // --- per key ---------------------------------------------------------------------------------

  it('two capped keys do not share room; environment keys and uncapped keys are never capped', async () => {
    const a = await issueKey({ amount: '3', period: 'day' });
    const b = await issueKey({ amount: '3', period: 'day' });
    const open = await issueKey(null);
    const user = await newWallet();
    for (let i = 0; i < 3; i++) await accessible(a.key, user);
    expectCapRefusal(await start(a.key, user), '3.000000', '3.000000');
    for (let i = 0; i < 3; i++) await accessible(b.key, user);
    expectCapRefusal(await start(b.key, user), '3.000000', '3.000000');

    const env = await Promise.all(Array.from({ length: 20 }, () => start(SERVICE_KEY, user)));
    expect(env.map((r) => r.status)).toEqual(Array(20).fill(200));
    for (let i = 0; i < 15; i++) await accessible(open.key, user);
    expect(await spentOf(a.key_id)).toBe('3.000000');
    expect(await spentOf(b.key_id)).toBe('3.000000');
    expect(await spentOf(open.key_id)).toBe('15.000000');
    expect((await keyRecord(open.key_id)).spend_cap).toBeNull();
    // The environment key settling a hold of its own past any cap: nothing refuses, nobody's spend moves.
    await settleHold(SERVICE_KEY, user, env[0].body.data.usage_key, '100');
    await directCharge(SERVICE_KEY, user, '100');
    expect(await spentOf(a.key_id)).toBe('3.000000');
    expect(await spentOf(b.key_id)).toBe('3.000000');
  });

  it('two capped keys racing on one wallet (their starts batched together): exactly 5 each', async () => {
    const a = await issueKey({ amount: '5', period: 'day' });
    const b = await issueKey({ amount: '5', period: 'day' });
    const user = await newWallet();
    const keys = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b));
    const answers = await Promise.all(keys.map((k, i) => start(k.key, user, FEATURE, i % 4 < 2 ? t : t2)));
    for (const k of [a, b]) {
      const mine = answers.filter((_, i) => keys[i] === k);
      expect(mine.filter((r) => r.status === 200)).toHaveLength(5);
      for (const r of mine.filter((x) => x.status !== 200)) expectCapRefusal(r, '5.000000', '5.000000');
      expect(await spentOf(k.key_id)).toBe('5.000000');
    }
    await reconciliationClean([a.key_id, b.key_id]);
  });

  it('a start refused for its key’s cap takes no room of the wallet from the starts racing with it', async () => {
    const full = await issueKey({ amount: '1', period: 'day' });
    await accessible(full.key, await newWallet()); // the key is full
    const tight = await newWallet('2');
    const calls = [
      ...Array.from({ length: 10 }, () => ({ key: full.key, full: true })),
      { key: SERVICE_KEY, full: false },
      { key: SERVICE_KEY, full: false },
    ];
    const answers = await Promise.all(calls.map((c, i) => start(c.key, tight, FEATURE, i % 2 === 0 ? t : t2)));
    expect(answers.filter((_, i) => !calls[i].full).map((r) => [r.status, r.body.data.status])).toEqual([
      [200, 'accessible'],
      [200, 'accessible'],
    ]);
    // The full key's starts: refused for its cap, or (once the environment key took the wallet's
    // last credits, the cap being checked last) for credits — never accessible.
    for (const r of answers.filter((_, i) => calls[i].full)) {
      expect([r.status, r.body.data.status]).toEqual([402, expect.stringMatching(/^(spend_cap_exceeded|insufficient_credits)$/)]);
    }
    expect((await t.request('GET', `/api/wallets/${tight}`)).body.data).toMatchObject({ held: '2.000000', credits: '0.000000' });
    await reconciliationClean([full.key_id]);
  });

  it('a start refused for the wallet’s credits takes no room of the key: 12 racing starts over a poor and a rich wallet, cap 5 → exactly 5', async () => {
    const key = await issueKey({ amount: '5', period: 'day' });
    const poor = await newWallet('2');
    const rich = await newWallet();
    const users = Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? poor : rich));
    const answers = await Promise.all(users.map((u, i) => start(key.key, u, FEATURE, i % 4 < 2 ? t : t2)));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(5);
    for (const r of answers.filter((x) => x.status !== 200)) {
      expect([r.status, r.body.data.status]).toEqual([402, expect.stringMatching(/^(spend_cap_exceeded|insufficient_credits)$/)]);
    }
    // The rich wallet got 6 tries: at least 3 of the 5 are its (the poor one has room for 2).
    const richOk = answers.filter((r, i) => r.status === 200 && users[i] === rich).length;
    expect(richOk).toBeGreaterThanOrEqual(3);
    expect(await spentOf(key.key_id)).toBe('5.000000');
    const [poorWallet, richWallet] = [
      (await t.request('GET', `/api/wallets/${poor}`)).body.data,
      (await t.request('GET', `/api/wallets/${rich}`)).body.data,
    ];
    expect(formatMicros(micros(poorWallet.held) + micros(richWallet.held))).toBe('5.000000');
    await reconciliationClean([key.key_id]);
  });

  it('a monthly cap resets on the first of next month (UTC)', async () => {
    const key = await issueKey({ amount: '5', period: 'month' });
    const user = await newWallet();
    await directCharge(key.key, user, '2.5');
    await accessible(key.key, user);
    await accessible(key.key, user);
    expectCapRefusal(await start(key.key, user), '4.500000', '5.000000', 'month');
    const record = await keyRecord(key.key_id);
    expect(record).toMatchObject({
      spend_cap: { amount: '5.000000', period: 'month' },
      spend_period: 'month',
      spent_this_period: '4.500000',
    });
    expect(new Date(record.period_resets_at).toISOString()).toBe(firstOfNextUtcMonth().toISOString());
  });

  it('what was charged in an earlier period no longer counts', async () => {
    // There is no way to wait for midnight: the test moves the key's charge, and the period the
    // key's counters (api_keys.period_starts_at, migration 1764000000017) were last written in,
    // one day back — the state the service would find on the first start after midnight. The
    // append-only trigger is bypassed in this session only (throwaway database).
    const key = await issueKey({ amount: '5', period: 'day' });
    const user = await newWallet();
    const hold = await accessible(key.key, user);
    await settleHold(key.key, user, hold.usage_key, '5');
    expectCapRefusal(await start(key.key, user), '5.000000', '5.000000');
    await withDb(t.db.url, async (c) => {
      await c.query(`SET session_replication_role = replica`);
      await c.query(`UPDATE ledger_entries SET created_at = created_at - interval '1 day' WHERE usage_key = $1`, [hold.usage_key]);
      await c.query(`UPDATE api_keys SET period_starts_at = period_starts_at - interval '1 day' WHERE key_id = $1`, [key.key_id]);
    });
    expect(await spentOf(key.key_id)).toBe('0.000000');
    for (let i = 0; i < 5; i++) await accessible(key.key, user);
    expectCapRefusal(await start(key.key, user), '5.000000', '5.000000');
  });

  // --- PATCH -----------------------------------------------------------------------------------

  it('PATCH the cap: lowered below what is spent → refused; raised → allowed; null → uncapped; set again → counts all', async () => {
    const key = await issueKey({ amount: '10', period: 'day' });
    const user = await newWallet();
    const hold = await accessible(key.key, user);
    await settleHold(key.key, user, hold.usage_key, '6');

    await patchCap(key.key_id, { amount: '5', period: 'day' });
    const before = await snapshot([user], key.key_id);
    expectCapRefusal(await start(key.key, user), '6.000000', '5.000000');
    expect(await snapshot([user], key.key_id)).toEqual(before);

    await patchCap(key.key_id, { amount: '20', period: 'day' });
    await accessible(key.key, user); // 7

    await patchCap(key.key_id, null);
    const many = await Promise.all(Array.from({ length: 25 }, () => start(key.key, user)));
    expect(many.map((r) => r.status)).toEqual(Array(25).fill(200));
    expect(await spentOf(key.key_id)).toBe('32.000000');

    // Setting a cap again counts what the key spent while it had none (6 charged + 26 held).
    await patchCap(key.key_id, { amount: '30', period: 'day' });
    expectCapRefusal(await start(key.key, user), '32.000000', '30.000000');
    // A monthly cap of the same key counts the same spend, and says when the month ends.
    await patchCap(key.key_id, { amount: '32.5', period: 'month' });
    expectCapRefusal(await start(key.key, user), '32.000000', '32.500000', 'month');
    await patchCap(key.key_id, { amount: '33', period: 'month' });
    await accessible(key.key, user);
  });

  it('PATCHes of a capped key racing its starts and settlements on both instances: no 5xx, and the counters equal the books', async () => {
    // Capped → capped only: docs/api.md says a cap set on an UNCAPPED key while its starts are in
    // flight may miss those holds until they end (a start that read the key as uncapped).
    const key = await issueKey({ amount: '40', period: 'day' });
    const user = await newWallet();
    const held = await Promise.all(Array.from({ length: 6 }, () => accessible(key.key, user)));
    const calls: Promise<ApiResponse>[] = [];
    for (let i = 0; i < 24; i++) calls.push(start(key.key, user, FEATURE, i % 2 === 0 ? t : t2));
    held.forEach((h, i) =>
      calls.push(
        settle(key.key, { user_id: user, usage_key: h.usage_key, feature_endpoint_id: FEATURE, usages: usagesFor('0.75') }, i % 2 ? t : t2),
      ),
    );
    for (const [i, amount] of ['12', '30', '20.5'].entries()) {
      calls.push(t.request('PATCH', `/api/keys/${key.key_id}`, { body: { spend_cap: { amount, period: i === 1 ? 'month' : 'day' } } }));
    }
    const answers = await Promise.all(calls);
    for (const r of answers)
      expect({ status: r.status, body: [200, 402].includes(r.status) ? null : r.body }).toEqual({ status: r.status, body: null });
    for (const r of answers.filter((x) => x.status === 402)) expect(r.body.data.status).toBe('spend_cap_exceeded');
    await reconciliationClean([key.key_id]);
    const usageKeys = (await sql<{ usage_key: string }>(`SELECT usage_key::text FROM holds WHERE user_id = $1`, [user])).map(
      (r) => r.usage_key,
    );
    expect(await spentOf(key.key_id)).toBe(await spentFromBooks(usageKeys));
  });

  it('a cap set by PATCH on a key that never had one counts what it already spent this period', async () => {
    const key = await issueKey(null);
    const user = await newWallet();
    await directCharge(key.key, user, '8');
    await accessible(key.key, user);
    await accessible(key.key, user);
    await patchCap(key.key_id, { amount: '10', period: 'day' });
    expectCapRefusal(await start(key.key, user), '10.000000', '10.000000');
  });

  it('a PATCH on one instance is enforced by the other within the key cache TTL', async () => {
    // Assumption: an instance may use the key record it read for KEY_CACHE_TTL_MS (1 s, §11's
    // revocation rule); a cap change is seen by the other instance at the latest then.
    const key = await issueKey({ amount: '100', period: 'day' });
    const user = await newWallet();
    await accessible(key.key, user, FEATURE, t2);
    await accessible(key.key, user, FEATURE, t2);
    await patchCap(key.key_id, { amount: '2', period: 'day' });
    const patchedAt = Date.now();
    expectCapRefusal(await start(key.key, user, FEATURE, t), '2.000000', '2.000000');
    const res = await waitFor(
      'instance 2 to enforce the lowered cap',
      async () => {
        const r = await start(key.key, user, FEATURE, t2);
        return r.status === 402 ? r : r.status === 200 ? undefined : r;
      },
      5_000,
      100,
    );
    // KEY_CACHE_TTL_MS (1 s) plus a request of slack on a loaded machine.
    expect(Date.now() - patchedAt).toBeLessThan(2_500);
    // Whatever instance 2 admitted in that window is the key's spend (holds of 1 each).
    expectCapRefusal(res, await spentOf(key.key_id), '2.000000');
  });

  // --- key_id on holds and ledger entries ------------------------------------------------------

  it('holds and ledger entries record the key that made them: the hold’s key for its charge, the settling key for a direct charge, null for environment keys', async () => {
    const key = await issueKey({ amount: '1000', period: 'day' });
    const other = await issueKey(null);
    const user = await newWallet();
    const holdKey = (usageKey: string) =>
      sql<{ key_id: string | null }>(`SELECT key_id::text FROM holds WHERE usage_key = $1`, [usageKey]).then((r) => r[0]?.key_id);
    const chargeKeys = (usageKey: string) =>
      sql<{ key_id: string | null }>(`SELECT key_id::text FROM ledger_entries WHERE usage_key = $1 AND kind = 'charge'`, [usageKey]).then(
        (r) => r.map((e) => e.key_id),
      );

    // Started by the capped key, settled by another record key: both rows say the capped key.
    const own = await accessible(key.key, user);
    expect(await holdKey(own.usage_key)).toBe(key.key_id);
    await settleHold(other.key, user, own.usage_key, '1.25');
    expect(await chargeKeys(own.usage_key)).toEqual([key.key_id]);

    // Started by the capped key, settled by the environment key: still the capped key.
    const own2 = await accessible(key.key, user);
    await settleHold(SERVICE_KEY, user, own2.usage_key, '0.75');
    expect(await chargeKeys(own2.usage_key)).toEqual([key.key_id]);

    // Started by the environment key, settled by the capped key: null, and not the capped key's spend.
    const env = await accessible(SERVICE_KEY, user);
    expect(await holdKey(env.usage_key)).toBeNull();
    await settleHold(key.key, user, env.usage_key, '4');
    expect(await chargeKeys(env.usage_key)).toEqual([null]);

    // Direct charges: the settling key.
    const direct = await directCharge(key.key, user, '0.000001');
    expect(await holdKey(direct.usage_key)).toBe(key.key_id);
    expect(await chargeKeys(direct.usage_key)).toEqual([key.key_id]);
    const envDirect = await directCharge(SERVICE_KEY, user, '3');
    expect(await holdKey(envDirect.usage_key)).toBeNull();
    expect(await chargeKeys(envDirect.usage_key)).toEqual([null]);

    expect(await spentOf(key.key_id)).toBe('2.000001'); // 1.25 + 0.75 + 0.000001
    expect(await spentOf(other.key_id)).toBe('0.000000');
    // Every entry carrying a key_id is one the capped key is answerable for.
    const entries = await sql<{ key_id: string; n: number }>(
      `SELECT key_id::text, count(*)::int AS n FROM ledger_entries WHERE user_id = $1 AND key_id IS NOT NULL GROUP BY key_id`,
      [user],
    );
    expect(entries.map((e) => e.key_id)).toEqual([key.key_id]);

    // The usage's story and the wallet's ledger show the same key_id (docs/api.md).
    const story = async (usageKey: string) =>
      (await t.request('GET', `/api/credits-process/usages/${usageKey}`, { key: SERVICE_KEY })).body.data;
    expect((await story(own.usage_key)).key_id).toBe(key.key_id);
    expect((await story(direct.usage_key)).key_id).toBe(key.key_id);
    expect((await story(env.usage_key)).key_id).toBeNull();
    const own2Story = await story(own2.usage_key);
    expect(own2Story.ledger_entries.filter((e: { kind: string }) => e.kind === 'charge').map((e: { key_id: string }) => e.key_id)).toEqual([
      key.key_id,
    ]);
    const listed = (await t.request('GET', `/api/wallets/${user}/transactions?limit=200`)).body.data.items as {
      kind: string;
      usage_key: string;
      key_id: string | null;
    }[];
    const charges = Object.fromEntries(listed.filter((e) => e.kind === 'charge').map((e) => [e.usage_key, e.key_id]));
    expect(charges).toEqual({
      [own.usage_key]: key.key_id,
      [own2.usage_key]: key.key_id,
      [env.usage_key]: null,
      [direct.usage_key]: key.key_id,
      [envDirect.usage_key]: null,
    });
    await reconciliationClean([key.key_id]);
  });

  it('a refund gives no room back: the charge stays the key’s spend (lead’s choice; §9/§11 are silent)', async () => {
    const key = await issueKey({ amount: '5', period: 'day' });
    const user = await newWallet();
    const hold = await accessible(key.key, user);
    await settleHold(key.key, user, hold.usage_key, '4');
    const refund = await t.request('POST', `/api/credits-process/usages/${hold.usage_key}/refund`, {
      key: key.key,
      body: { amount: '3', reason: 'generation failed' },
    });
    expect(refund.status).toBe(200);
    expect(await spentOf(key.key_id)).toBe('4.000000');
    await accessible(key.key, user); // 5: the cap
    expectCapRefusal(await start(key.key, user), '5.000000', '5.000000');
    await reconciliationClean([key.key_id]);
  });

  it('the cap is checked after every other check of /start: a wallet short of credits says so', async () => {
    const key = await issueKey({ amount: '2', period: 'day' });
    const poor = await newWallet('2');
    await accessible(key.key, poor);
    await accessible(key.key, poor);
    const short = await start(key.key, poor);
    expect([short.status, short.body.data.status, short.body.data.credits, short.body.data.required]).toEqual([
      402,
      'insufficient_credits',
      '0.000000',
      '1.000000',
    ]);
    const noWallet = await start(key.key, uniqueId('nobody'));
    expect([noWallet.status, noWallet.body.data.status]).toEqual([404, 'wallet_not_found']);
    const unknownFeature = await start(key.key, poor, 'no-such-feature');
    expect([unknownFeature.status, unknownFeature.body.data.status]).toEqual([404, 'feature_not_found']);
    expect((await t.request('PATCH', `/api/wallets/${poor}`, { body: { status: 'suspended' } })).status).toBe(200);
    const suspended = await start(key.key, poor);
    expect([suspended.status, suspended.body.data.status]).toEqual([403, 'wallet_suspended']);
    // With credits the key's own limit is what refuses.
    expectCapRefusal(await start(key.key, await newWallet()), '2.000000', '2.000000');
  });

  it('rotation keeps the key’s spend and cap: the new secret finds the room the old one used', async () => {
    const key = await issueKey({ amount: '3', period: 'day' });
    const user = await newWallet();
    await accessible(key.key, user);
    await accessible(key.key, user);
    const rotated = await t.request('POST', `/api/keys/${key.key_id}/rotate`, { body: {} });
    expect(rotated.status).toBe(200);
    const fresh = rotated.body.data.key as string;
    expect((await start(key.key, user)).status).toBe(401);
    await accessible(fresh, user);
    expectCapRefusal(await start(fresh, user), '3.000000', '3.000000');
  });

  // --- spent_this_period -----------------------------------------------------------------------

  it('spent_this_period = charges this period + live holds, exactly; the cap decides on that exact figure', async () => {
    const key = await issueKey({ amount: '100', period: 'day' });
    const user = await newWallet();
    const usageKeys: string[] = [];
    const h1 = await accessible(key.key, user);
    const h2 = await accessible(key.key, user);
    const h3 = await accessible(key.key, user);
    usageKeys.push(h1.usage_key, h2.usage_key, h3.usage_key);
    expect(await spentOf(key.key_id)).toBe('3.000000');
    await settleHold(key.key, user, h1.usage_key, '2.345678'); // charged more than its hold of 1
    expect((await cancel(key.key, h2.usage_key)).body.data.status).toBe('cancelled');
    await settleHold(key.key, user, h3.usage_key, '0.000001'); // charged less than its hold
    usageKeys.push((await directCharge(key.key, user, '0.000001')).usage_key);
    usageKeys.push((await accessible(key.key, user, THREE)).usage_key);
    // 2.345678 + 0 + 0.000001 + 0.000001 + 3 (held)
    const expected = formatMicros(micros('2.345678') + 1n + 1n + micros('3'));
    expect(expected).toBe('5.345680');
    expect(await spentFromBooks(usageKeys)).toBe(expected);
    expect(await spentOf(key.key_id)).toBe(expected);

    // The refusal says the same figure; a cap one micro-credit short of spent + hold refuses,
    // exactly spent + hold admits.
    const exact = formatMicros(micros(expected) + micros('1'));
    await patchCap(key.key_id, { amount: formatMicros(micros(exact) - 1n), period: 'day' });
    expectCapRefusal(await start(key.key, user), expected, formatMicros(micros(exact) - 1n));
    await patchCap(key.key_id, { amount: exact, period: 'day' });
    await accessible(key.key, user);
    expect(await spentOf(key.key_id)).toBe(exact);
  });

  // --- the queue -------------------------------------------------------------------------------

  it('a queue settlement of a capped key’s hold counts toward that key; a direct charge from the queue toward no key', async () => {
    const key = await issueKey({ amount: '10', period: 'day' });
    const user = await newWallet();
    const hold = await accessible(key.key, user);
    const legacyHold = await accessible(key.key, user);
    const directId = uniqueId('queue-direct');
    await publish(vhost.url, MULTI_QUEUE, [
      { user_id: user, usage_key: hold.usage_key, feature_endpoint_id: FEATURE, usages: usagesFor('12.5') },
      { user_id: user, feature_endpoint_id: FEATURE, idempotency_key: directId, usages: usagesFor('1') },
    ]);
    await publish(vhost.url, LEGACY_QUEUE, [
      {
        user_id: user,
        usage_key: legacyHold.usage_key,
        feature_endpoint_id: FEATURE,
        ai_model: MODEL,
        input_tokens: 250_000,
        output_tokens: 0,
      },
    ]);
    await waitFor('the three queue settlements', async () => {
      const [row] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ledger_entries WHERE user_id = $1 AND kind = 'charge'`, [
        user,
      ]);
      return row.n === 3;
    });
    for (const h of [hold, legacyHold]) {
      const story = await t.request('GET', `/api/credits-process/usages/${h.usage_key}`, { key: key.key });
      expect(story.body.data.status).toBe('settled');
    }
    const entries = await sql<{ usage_key: string; key_id: string | null; amount: string }>(
      `SELECT usage_key::text, key_id::text, amount::text FROM ledger_entries WHERE user_id = $1 AND kind = 'charge'`,
      [user],
    );
    const byUsage = Object.fromEntries(entries.map((e) => [e.usage_key, e]));
    expect(byUsage[hold.usage_key].key_id).toBe(key.key_id);
    expect(byUsage[legacyHold.usage_key].key_id).toBe(key.key_id);
    const direct = entries.find((e) => e.usage_key !== hold.usage_key && e.usage_key !== legacyHold.usage_key)!;
    expect({ key_id: direct.key_id, amount: formatMicros(micros(direct.amount)) }).toEqual({ key_id: null, amount: '-1.000000' });
    expect(await spentOf(key.key_id)).toBe('12.750000'); // 12.5 + 0.25, the direct 1 is no key's
    expectCapRefusal(await start(key.key, user), '12.750000', '10.000000');
    const failures = (await t.request('GET', '/api/settlement-failures?limit=200')).body.data.items as { payload: string }[];
    expect(failures.filter((f) => f.payload.includes(user))).toEqual([]);
  });
  it('the counters stay equal to the books through a storm: duplicate settlements on both instances and the queue, cancels, expiries, late settlements, repeated direct charges', async () => {
    const a = await issueKey({ amount: '100000', period: 'day' });
    const b = await issueKey({ amount: '100000', period: 'month' });
    const users = await Promise.all(Array.from({ length: 3 }, () => newWallet('100000')));
    const apps = [t, t2];
    const placed = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        accessible((i % 2 === 0 ? a : b).key, users[i % users.length], i % 3 === 0 ? SHORT : FEATURE, apps[i % 2]),
      ),
    );
    const amount = (i: number) => formatMicros(BigInt(i + 1) * 123_457n); // 0.123457 … exact, distinct
    const settleBody = (h: any, i: number) => ({
      user_id: h.user_id,
      usage_key: h.usage_key,
      feature_endpoint_id: h.feature_endpoint_id,
      usages: usagesFor(amount(i)),
    });
    const key = (i: number) => (i % 2 === 0 ? a : b).key;
    const calls: Promise<ApiResponse>[] = [];
    placed.forEach((h, i) => {
      if (h.feature_endpoint_id === SHORT) return; // left to expire, some settled late below
      // The same settlement on both instances at once; every third also cancelled; every fourth also from the queue.
      calls.push(settle(key(i), settleBody(h, i), t), settle(SERVICE_KEY, settleBody(h, i), t2));
      if (i % 3 === 1) calls.push(cancel(key(i), h.usage_key));
    });
    // Repeated direct charges on both instances with one idempotency key each.
    for (const [i, k] of [a, b].entries()) {
      const body = { user_id: users[i], feature_endpoint_id: FEATURE, idempotency_key: uniqueId('storm'), usages: usagesFor('0.5') };
      calls.push(settle(k.key, body, t), settle(k.key, body, t2), settle(k.key, body, t));
    }
    // New starts of both keys in the middle of it.
    for (let i = 0; i < 10; i++) calls.push(start(key(i), users[i % users.length], FEATURE, apps[i % 2]));
    const queued = placed.filter((h, i) => h.feature_endpoint_id !== SHORT && i % 4 === 0);
    const published = publish(
      vhost.url,
      MULTI_QUEUE,
      queued.map((h) => settleBody(h, placed.indexOf(h))),
    );
    const answers = await Promise.all(calls);
    await published;
    // Settled, already_settled or cancelled (200), or a cancel/settle that lost to the other (409): never a 5xx.
    for (const r of answers)
      expect({ status: r.status, body: [200, 409].includes(r.status) ? null : r.body }).toEqual({ status: r.status, body: null });

    // Let the queue drain and every short hold expire (swept), then settle half of them late.
    await waitFor('the queue to drain', () => queuesDrained(vhost.name, [MULTI_QUEUE]), 30_000, 200);
    const shorts = placed.filter((h) => h.feature_endpoint_id === SHORT);
    await waitFor(
      'the short holds to be swept',
      async () => {
        const [row] = await sql<{ n: number }>(
          `SELECT count(*)::int AS n FROM holds WHERE usage_key = ANY($1::uuid[]) AND status = 'held'`,
          [shorts.map((h) => h.usage_key)],
        );
        return row.n === 0;
      },
      (SHORT_TTL + 20) * 1000,
      200,
    );
    const late = await Promise.all(
      shorts.flatMap((h, i) =>
        i % 2 === 0
          ? [settle(SERVICE_KEY, settleBody(h, placed.indexOf(h)), t), settle(SERVICE_KEY, settleBody(h, placed.indexOf(h)), t2)]
          : [],
      ),
    );
    for (const r of late) expect([r.status, r.body.data.status]).toEqual([200, expect.stringMatching(/^(settled|already_settled)$/)]);

    await reconciliationClean([a.key_id, b.key_id]);
    for (const k of [a, b]) {
      const usageKeys = (await sql<{ usage_key: string }>(`SELECT usage_key::text FROM holds WHERE key_id = $1`, [k.key_id])).map(
        (r) => r.usage_key,
      );
      expect(await spentOf(k.key_id)).toBe(await spentFromBooks(usageKeys));
    }
  }, 90_000);
});

describe('the seeded demo key (SEED_DEMO=true)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ SEED_DEMO: 'true' });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('enforces its 200-credit daily cap: 41 racing starts of 5 on a wallet of 1000 → exactly 40 accessible', async () => {
    const key = DEMO_KEY.secret; // public by design (docs/demo.md)
    expect(DEMO_KEY.spendCap).toEqual({ amount: '200', period: 'day' });
    const answers = await Promise.all(
      Array.from({ length: 41 }, () =>
        t.request('POST', '/api/credits-process/start', { key, body: { user_id: 'demo-user', feature_endpoint_id: 'ai_chat_v1' } }),
      ),
    );
    expect(answers.filter((r) => r.status === 200)).toHaveLength(40);
    const refused = answers.filter((r) => r.status !== 200);
    expect(refused.map((r) => [r.status, r.body.data.status, r.body.data.spent, r.body.data.cap])).toEqual([
      [402, 'spend_cap_exceeded', '200.000000', '200.000000'],
    ]);
    const wallet = (await t.request('GET', '/api/wallets/demo-user')).body.data;
    expect({ held: wallet.held, credits: wallet.credits }).toEqual({ held: '200.000000', credits: '800.000000' });
  });
});
