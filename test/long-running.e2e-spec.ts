import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { withDb } from './support/faults';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/**
 * Long-running usage (API.md §13), the parts the ledger does: a hold by estimate, extend (with and
 * without more hold, racing starts, never reviving an expired hold) and the price lock. Real app,
 * real PostgreSQL; each test owns its wallet and feature.
 */

let t: TestApp;
const run = randomBytes(3).toString('hex');
let counter = 0;
const uniqueId = (prefix: string) => `${prefix}-${run}-${++counter}`;
let model: string;

beforeAll(async () => {
  // No sweeper: a hold expires only by its time, so "past its expiry, not swept" is testable.
  t = await startTestApp({ HOLD_SWEEP_INTERVAL_MS: '0' });
  model = uniqueId('model');
  // 1,000,000 input tokens cost 1 USD = 100 credits at the default rate; no margin.
  const res = await t.request('POST', '/api/pricing/models', {
    body: { ai_model: model, input_price_per_million: '1', output_price_per_million: '0', profit_margin: '0' },
  });
  expect(res.status).toBe(201);
}, 60_000);

afterAll(async () => {
  await t?.close();
});

async function feature(body: Record<string, unknown> = {}): Promise<string> {
  const id = uniqueId('feature');
  const res = await t.request('POST', '/api/features', {
    body: { feature_endpoint_id: id, name: id, min_holding_credits: '1', profit_margin: '0', ...body },
  });
  expect(res.status).toBe(201);
  return id;
}

async function wallet(credits: string): Promise<string> {
  const userId = uniqueId('user');
  expect((await t.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: credits } })).status).toBe(201);
  return userId;
}

const start = (userId: string, featureId: string, extra: Record<string, unknown> = {}) =>
  t.request('POST', '/api/credits-process/start', {
    key: SERVICE_KEY,
    body: { user_id: userId, feature_endpoint_id: featureId, ...extra },
  });
const extend = (body: Record<string, unknown>) => t.request('POST', '/api/credits-process/extend', { key: SERVICE_KEY, body });
const walletOf = async (userId: string) => (await t.request('GET', `/api/wallets/${userId}`, { key: SERVICE_KEY })).body.data;

describe('hold by estimate', () => {
  it('holds the quote of the estimate when it is more than min_holding_credits, and the minimum otherwise', async () => {
    const f = await feature();
    const userId = await wallet('100');
    // 30,000 input tokens = 0.03 USD = 3 credits > the 1 credit minimum.
    const big = await start(userId, f, { estimate: { usages: [{ ai_model: model, input_tokens: 30_000, output_tokens: 0 }] } });
    expect(big.body.data).toMatchObject({ status: 'accessible', hold_amount: '3.000000', held: '3.000000' });
    const small = await start(userId, f, { estimate: { usages: [{ ai_model: model, input_tokens: 10, output_tokens: 0 }] } });
    expect(small.body.data).toMatchObject({ hold_amount: '1.000000', held: '4.000000' });
  });

  it('refuses an estimate with an unknown model (422) and one larger than the credits (402), writing nothing', async () => {
    const f = await feature();
    const userId = await wallet('2');
    const before = await walletOf(userId);
    const unknown = await start(userId, f, { estimate: { usages: [{ ai_model: 'no-such-model', input_tokens: 1, output_tokens: 0 }] } });
    expect([unknown.status, unknown.body.data.status]).toEqual([422, 'unknown_model']);
    const tooBig = await start(userId, f, { estimate: { usages: [{ ai_model: model, input_tokens: 30_000, output_tokens: 0 }] } });
    expect(tooBig.status).toBe(402);
    expect(tooBig.body.data).toMatchObject({ status: 'insufficient_credits', credits: '2.000000', required: '3.000000' });
    expect(await walletOf(userId)).toEqual(before);
  });
});

describe('extend', () => {
  it('moves the expiry and grows the hold, checked against available credits; a refusal changes nothing', async () => {
    const f = await feature({ hold_ttl_seconds: 60 });
    const userId = await wallet('10');
    const s = (await start(userId, f)).body.data;
    const longer = await extend({ usage_key: s.usage_key, ttl_seconds: 3600, additional_hold: '4' });
    expect(longer.status).toBe(200);
    expect(longer.body.data).toMatchObject({
      status: 'extended',
      usage_key: s.usage_key,
      hold_amount: '5.000000',
      held: '5.000000',
      credits: '5.000000',
    });
    expect(Date.parse(longer.body.data.expires_at) - Date.now()).toBeGreaterThan(3500_000);

    const before = (await t.request('GET', `/api/credits-process/usages/${s.usage_key}`, { key: SERVICE_KEY })).body.data;
    const refused = await extend({ usage_key: s.usage_key, ttl_seconds: 7200, additional_hold: '5.000001' });
    expect(refused.status).toBe(402);
    expect(refused.body.data).toMatchObject({ status: 'insufficient_credits', credits: '5.000000', required: '5.000001' });
    const after = (await t.request('GET', `/api/credits-process/usages/${s.usage_key}`, { key: SERVICE_KEY })).body.data;
    expect(after).toEqual(before);
    expect((await walletOf(userId)).held).toBe('5.000000');

    // Settling releases the whole grown hold.
    const settled = await t.request('POST', '/api/credits-process/end-multimodel', {
      key: SERVICE_KEY,
      body: {
        user_id: userId,
        feature_endpoint_id: f,
        usage_key: s.usage_key,
        usages: [{ ai_model: model, input_tokens: 10_000, output_tokens: 0 }],
      },
    });
    expect(settled.body.data).toMatchObject({ status: 'settled', credits_charged: '1.000000', held: '0.000000', balance: '9.000000' });
  });

  it('never holds more than is there when extends and starts race on one wallet', async () => {
    const f = await feature();
    const userId = await wallet('20');
    const first = (await start(userId, f)).body.data; // 1 held, 19 available
    const racers = await Promise.all([
      ...Array.from({ length: 10 }, () => extend({ usage_key: first.usage_key, additional_hold: '1' })),
      ...Array.from({ length: 20 }, () => start(userId, f)),
    ]);
    const ok = racers.filter((r) => r.status === 200).length;
    expect(ok).toBe(19);
    expect(racers.filter((r) => r.status !== 200).every((r) => r.status === 402)).toBe(true);
    expect(await walletOf(userId)).toMatchObject({ held: '20.000000', credits: '0.000000' });
    const live = await withDb(
      t.db.url,
      async (c) => (await c.query(`SELECT sum(amount)::text AS s FROM holds WHERE user_id = $1 AND status = 'held'`, [userId])).rows[0].s,
    );
    expect(live).toBe('20.000000');
  });

  it('answers a settled, a cancelled, an expired and an unknown usage with its own word, and brings no expired hold back', async () => {
    const f = await feature({ hold_ttl_seconds: 1 });
    const userId = await wallet('10');
    const settledKey = (await start(userId, f)).body.data.usage_key;
    await t.request('POST', '/api/credits-process/end-multimodel', {
      key: SERVICE_KEY,
      body: {
        user_id: userId,
        feature_endpoint_id: f,
        usage_key: settledKey,
        usages: [{ ai_model: model, input_tokens: 1, output_tokens: 0 }],
      },
    });
    expect((await extend({ usage_key: settledKey })).body.data.status).toBe('already_settled');
    const cancelledKey = (await start(userId, f)).body.data.usage_key;
    await t.request('POST', '/api/credits-process/cancel', { key: SERVICE_KEY, body: { usage_key: cancelledKey } });
    const cancelled = await extend({ usage_key: cancelledKey });
    expect([cancelled.status, cancelled.body.data.status]).toEqual([409, 'conflict']);
    const expiring = (await start(userId, f)).body.data;
    await waitFor('the hold to pass its expiry', async () => Date.now() > Date.parse(expiring.expires_at) + 50, 5000);
    const expired = await extend({ usage_key: expiring.usage_key, ttl_seconds: 600 });
    expect([expired.status, expired.body.data.status]).toEqual([409, 'hold_expired']);
    const row = await withDb(
      t.db.url,
      async (c) => (await c.query(`SELECT expires_at FROM holds WHERE usage_key = $1`, [expiring.usage_key])).rows[0],
    );
    expect(row.expires_at.toISOString()).toBe(expiring.expires_at);
    expect((await extend({ usage_key: randomUUID() })).status).toBe(404);
    expect((await extend({ usage_key: expiring.usage_key, ttl_seconds: 0 })).status).toBe(400);
  });
});

describe('price lock', () => {
  it('settles a locked feature at the prices of its start, and an unlocked one at the prices of now', async () => {
    const m = uniqueId('model');
    expect(
      (
        await t.request('POST', '/api/pricing/models', {
          body: { ai_model: m, input_price_per_million: '1', output_price_per_million: '0', profit_margin: '0' },
        })
      ).status,
    ).toBe(201);
    const locked = await feature({ price_lock: true });
    const live = await feature();
    const userId = await wallet('100');
    const a = (await start(userId, locked)).body.data;
    const b = (await start(userId, live)).body.data;
    // The price doubles between start and settlement (the pricing cache lives 1 s: wait for it to see the change).
    expect((await t.request('PATCH', `/api/pricing/models/${m}`, { body: { input_price_per_million: '2' } })).status).toBe(200);
    const usages = [{ ai_model: m, input_tokens: 10_000, output_tokens: 0 }];
    await waitFor('the new price to be in force', async () => {
      const q = await t.request('POST', '/api/pricing/quote', { key: SERVICE_KEY, body: { feature_endpoint_id: live, usages } });
      return q.body.data.credits_charged === '2.000000';
    });
    const settle = (featureId: string, usageKey: string) =>
      t.request('POST', '/api/credits-process/end-multimodel', {
        key: SERVICE_KEY,
        body: { user_id: userId, feature_endpoint_id: featureId, usage_key: usageKey, usages },
      });
    const lockedCharge = await settle(locked, a.usage_key);
    const liveCharge = await settle(live, b.usage_key);
    expect(lockedCharge.body.data.credits_charged).toBe('1.000000');
    expect(liveCharge.body.data.credits_charged).toBe('2.000000');
    const entries = (await t.request('GET', `/api/wallets/${userId}/transactions`)).body.data.items;
    const lockedEntry = entries.find((e: any) => e.usage_key === a.usage_key);
    const liveEntry = entries.find((e: any) => e.usage_key === b.usage_key);
    const hold = await withDb(
      t.db.url,
      async (c) => (await c.query(`SELECT created_at FROM holds WHERE usage_key = $1`, [a.usage_key])).rows[0],
    );
    expect(lockedEntry.metadata.priced_at).toBe(hold.created_at.toISOString());
    expect(liveEntry.metadata.priced_at).toBeUndefined();
  });
});
