import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { micros } from './support/catalog';
import { waitFor } from './support/wait';

/**
 * The ledger's side of grants (API.md §8, §9), against the real app and PostgreSQL: what each
 * charge draws, debt, expiry, voids and refunds, and the books after many of them at once. Each
 * test owns its wallet; the sweeper is off (GRANT_SWEEP_INTERVAL_MS=0) except where a test starts
 * its own app, so an expiry happens only where a test makes it happen.
 */

let t: TestApp;
const run = randomBytes(3).toString('hex');
let counter = 0;
const uniqueId = (prefix: string) => `${prefix}-${run}-${++counter}`;

let featureId: string;
let model: string;

beforeAll(async () => {
  t = await startTestApp({ GRANT_SWEEP_INTERVAL_MS: '0' });
  featureId = uniqueId('feature');
  expect(
    (await t.request('POST', '/api/features', { body: { feature_endpoint_id: featureId, name: 'f', min_holding_credits: '1' } })).status,
  ).toBe(201);
  model = uniqueId('model');
  // With the default conversion rate, 10 input tokens of this model cost 1 credit.
  expect(
    (
      await t.request('POST', '/api/pricing/models', {
        body: { ai_model: model, input_price_per_million: '1000', output_price_per_million: '0', profit_margin: '0' },
      })
    ).status,
  ).toBe(201);
  const settings = await t.request('GET', '/api/pricing/settings');
  expect(settings.status).toBe(200);
}, 60000);

afterAll(async () => {
  await t?.close();
});

async function wallet(initial?: string): Promise<string> {
  const userId = uniqueId('user');
  const res = await t.request('POST', '/api/wallets', { body: { user_id: userId, ...(initial ? { initial_credits: initial } : {}) } });
  expect(res.status).toBe(201);
  return userId;
}

async function grant(userId: string, body: Record<string, unknown>): Promise<any> {
  const res = await t.request('POST', `/api/wallets/${userId}/grants`, { body });
  expect(res.status).toBe(201);
  return res.body.data;
}

/** A direct charge of `credits` whole credits. */
async function charge(userId: string, credits: number): Promise<any> {
  const res = await t.request('POST', '/api/credits-process/end-multimodel', {
    key: SERVICE_KEY,
    body: {
      user_id: userId,
      feature_endpoint_id: featureId,
      usages: [{ ai_model: model, input_tokens: credits * 10, output_tokens: 0 }],
    },
  });
  expect(res.status).toBe(200);
  return res.body.data;
}

async function entry(userId: string, id: string): Promise<any> {
  const res = await t.request('GET', `/api/wallets/${userId}/transactions?limit=200`);
  return res.body.data.items.find((e: any) => e.id === id);
}

async function grants(userId: string): Promise<any[]> {
  return (await t.request('GET', `/api/wallets/${userId}/grants?limit=200`)).body.data.items;
}

async function reconcileClean(): Promise<void> {
  const res = await t.request('GET', '/api/reconciliation');
  expect(res.status).toBe(200);
  expect(res.body.data.mismatches).toEqual([]);
}

const refund = (usageKey: string, body: Record<string, unknown>) =>
  t.request('POST', `/api/credits-process/usages/${usageKey}/refund`, { key: SERVICE_KEY, body });

describe('drawing', () => {
  it('draws by priority, then soonest expiry (none last), then oldest, and spans grants to the micro-credit', async () => {
    const userId = await wallet('5'); // paid, priority 50, no expiry
    const later = await grant(userId, { amount: '3', priority: 50, expires_at: new Date(Date.now() + 86_400_000 * 2).toISOString() });
    const sooner = await grant(userId, { amount: '2', priority: 50, expires_at: new Date(Date.now() + 86_400_000).toISOString() });
    const first = await grant(userId, { amount: '1', kind: 'promotional', priority: 10 });
    const listed = await grants(userId);
    expect(listed.map((g) => g.grant_id).slice(0, 3)).toEqual([first.grant.grant_id, sooner.grant.grant_id, later.grant.grant_id]);

    const settled = await charge(userId, 4);
    const e = await entry(userId, settled.transaction_id);
    expect(e.metadata.draws).toEqual([
      { grant_id: first.grant.grant_id, amount: '1.000000' },
      { grant_id: sooner.grant.grant_id, amount: '2.000000' },
      { grant_id: later.grant.grant_id, amount: '1.000000' },
    ]);
    const after = await grants(userId);
    expect(after.find((g) => g.grant_id === first.grant.grant_id).status).toBe('depleted');
    expect(after.find((g) => g.grant_id === later.grant.grant_id).remaining).toBe('2.000000');
    await reconcileClean();
  });

  it('takes what no grant covers as debt, which the next grant pays first', async () => {
    const userId = await wallet('1');
    const settled = await charge(userId, 3);
    expect(settled.balance).toBe('-2.000000');
    const e = await entry(userId, settled.transaction_id);
    expect(e.metadata.draws).toEqual([{ grant_id: expect.any(String), amount: '1.000000' }, { debt: '2.000000' }]);

    const topUp = await t.request('POST', `/api/wallets/${userId}/top-up`, { body: { amount: '5' } });
    expect(topUp.body.data).toMatchObject({ debt_paid: '2.000000', grant_id: expect.any(String) });
    const paid = (await grants(userId)).find((g) => g.grant_id === topUp.body.data.grant_id);
    expect(paid).toMatchObject({ amount: '5.000000', remaining: '3.000000', debt_paid: '2.000000', status: 'active' });
    expect(topUp.body.data.wallet).toMatchObject({ balance: '3.000000', grants: { paid: '3.000000', promotional: '0.000000' } });
    await reconcileClean();
  });

  it('keeps every grant at or above zero and the books exact under 120 concurrent charges', async () => {
    const userId = await wallet('20');
    await grant(userId, { amount: '15', kind: 'promotional', priority: 10, expires_at: new Date(Date.now() + 3_600_000).toISOString() });
    await grant(userId, { amount: '25', priority: 60 });
    const results = await Promise.all(Array.from({ length: 120 }, () => charge(userId, 1)));
    expect(results.every((r) => r.status === 'settled')).toBe(true);
    const items = (await t.request('GET', `/api/wallets/${userId}/transactions?limit=200`)).body.data.items.filter(
      (e: any) => e.kind === 'charge',
    );
    expect(items).toHaveLength(120);
    let drawn = 0n;
    for (const e of items) {
      const sum = e.metadata.draws.reduce((s: bigint, d: any) => s + micros(d.amount ?? d.debt), 0n);
      expect(sum).toBe(-micros(e.amount));
      drawn += sum;
    }
    expect(drawn).toBe(120_000_000n);
    const all = await grants(userId);
    expect(all.every((g) => micros(g.remaining) >= 0n)).toBe(true);
    const w = (await t.request('GET', `/api/wallets/${userId}`)).body.data;
    expect(w.balance).toBe('-60.000000');
    await reconcileClean();
  });
});

describe('expiry', () => {
  it('does not let /start use a grant past its expiry before the sweeper runs, and then expires it', async () => {
    const userId = await wallet();
    await grant(userId, { amount: '10', expires_at: new Date(Date.now() + 1500).toISOString() });
    const ok = await t.request('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: { user_id: userId, feature_endpoint_id: featureId },
    });
    expect(ok.status).toBe(200);
    // Past the grant's expiry (the sweeper is off in this app).
    const expiresAt = Date.parse((await grants(userId))[0].expires_at);
    await waitFor('the grant to pass its expiry', async () => Date.now() > expiresAt, 5000);
    const refused = await t.request('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: { user_id: userId, feature_endpoint_id: featureId },
    });
    expect(refused.status).toBe(402);
    // The refused start expired it on demand: a grant_expired entry of what remained, the live hold kept.
    const ledger = (await t.request('GET', `/api/wallets/${userId}/transactions`)).body.data.items;
    expect(ledger[0]).toMatchObject({ kind: 'grant_expired', amount: '-10.000000', held_after: '1.000000' });
    expect(ledger[0].metadata.grant_id).toBe((await grants(userId))[0].grant_id);
    expect((await grants(userId))[0]).toMatchObject({ status: 'expired', remaining: '0.000000', expired: '10.000000' });
    await reconcileClean();
  });
});

describe('refunds', () => {
  it('gives back to the grants drawn, last drawn first, and never more than was charged', async () => {
    const userId = await wallet();
    const a = await grant(userId, { amount: '2', priority: 10 });
    const b = await grant(userId, { amount: '5', priority: 20 });
    const settled = await charge(userId, 4); // 2 from a, 2 from b
    const part = await refund(settled.usage_key, { amount: '3', reason: 'bad answer' });
    expect(part.status).toBe(200);
    expect(part.body.data).toMatchObject({
      status: 'refunded',
      amount: '3.000000',
      credits_charged: '4.000000',
      credits_refunded: '3.000000',
      balance: '6.000000',
      returned: [
        { grant_id: b.grant.grant_id, amount: '2.000000', expired: false },
        { grant_id: a.grant.grant_id, amount: '1.000000', expired: false },
      ],
    });
    const over = await refund(settled.usage_key, { amount: '1.000001', reason: 'again' });
    expect(over.status).toBe(409);
    expect(over.body.data).toMatchObject({ status: 'refund_exceeds_charge', refundable: '1.000000' });
    const rest = await refund(settled.usage_key, { reason: 'the rest', idempotency_key: 'k1' });
    expect(rest.body.data).toMatchObject({ status: 'refunded', amount: '1.000000', credits_refunded: '4.000000' });
    const again = await refund(settled.usage_key, { reason: 'the rest', idempotency_key: 'k1' });
    expect(again.body.data).toMatchObject({ status: 'already_refunded', transaction_id: rest.body.data.transaction_id });
    expect((await t.request('GET', `/api/credits-process/usages/${settled.usage_key}`, { key: SERVICE_KEY })).body.data).toMatchObject({
      credits_refunded: '4.000000',
    });
    await reconcileClean();
  });

  it('expires again at once what goes back to a voided grant, and cancels debt first', async () => {
    const userId = await wallet();
    const g = await grant(userId, { amount: '2' });
    const settled = await charge(userId, 3); // 2 from g, 1 debt
    expect(
      (await t.request('POST', `/api/wallets/${userId}/grants/${g.grant.grant_id}/void`, { body: { reason: 'x' } })).body.data.status,
    ).toBe('voided');
    const res = await refund(settled.usage_key, { reason: 'all' });
    expect(res.body.data).toMatchObject({
      amount: '3.000000',
      debt_cancelled: '1.000000',
      returned: [{ grant_id: g.grant.grant_id, amount: '2.000000', expired: true }],
      balance: '0.000000',
    });
    const ledger = (await t.request('GET', `/api/wallets/${userId}/transactions`)).body.data.items;
    expect(ledger.slice(0, 2).map((e: any) => [e.kind, e.amount])).toEqual([
      ['grant_expired', '-2.000000'],
      ['refund', '3.000000'],
    ]);
    await reconcileClean();
  });

  it('lets 20 concurrent refunds give back exactly what was charged, no more', async () => {
    const userId = await wallet('10');
    const settled = await charge(userId, 5);
    const answers = await Promise.all(Array.from({ length: 20 }, () => refund(settled.usage_key, { amount: '0.5', reason: 'r' })));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(10);
    expect(answers.filter((r) => r.status === 409).every((r) => r.body.data.status === 'refund_exceeds_charge')).toBe(true);
    expect((await t.request('GET', `/api/wallets/${userId}`)).body.data.balance).toBe('10.000000');
    await reconcileClean();
  });

  it('refuses a held usage and an unknown one', async () => {
    const userId = await wallet('10');
    const held = await t.request('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: { user_id: userId, feature_endpoint_id: featureId },
    });
    expect((await refund(held.body.data.usage_key, { reason: 'r' })).body.data.status).toBe('not_settled');
    expect((await refund(randomUUID(), { reason: 'r' })).status).toBe(404);
  });
});
