import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { ApiResponse, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';

/**
 * The credits process of API.md §4 against the real app and a real PostgreSQL database.
 * Every credits-process call uses the SERVICE key (the scope partners hold); set-up and the
 * ledger reads use the admin key. Each test works on its own wallet(s), so tests are independent;
 * the last one checks the books of everything the file did.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MONEY = /^-?\d+\.\d{6}$/;
const ZERO = '0.000000';

let t: TestApp;
const run = randomBytes(3).toString('hex');
let counter = 0;
/** A fresh identifier per call, so every test owns its wallets, features and models. */
const uniqueId = (prefix: string) => `${prefix}-${run}-${++counter}`;

/** Exact micro-credits of a money string (no floats in the test's arithmetic either). */
function micros(money: string): bigint {
  expect(money).toMatch(MONEY);
  const negative = money.startsWith('-');
  const [whole, frac] = money.replace('-', '').split('.');
  const value = BigInt(whole) * 1_000_000n + BigInt(frac);
  return negative ? -value : value;
}

function money(value: bigint): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  return `${negative ? '-' : ''}${abs / 1_000_000n}.${(abs % 1_000_000n).toString().padStart(6, '0')}`;
}

// --- set-up helpers (admin key) --------------------------------------------------------------

async function createWallet(initialCredits: string, plan?: string): Promise<string> {
  const userId = uniqueId('user');
  const res = await t.request('POST', '/api/wallets', {
    body: { user_id: userId, initial_credits: initialCredits, ...(plan ? { plan } : {}) },
  });
  expect(res.status).toBe(201);
  return userId;
}

interface FeatureOptions {
  min_holding_credits: string;
  profit_margin?: string;
  fixed_cost?: string;
  allowed_plans?: string[];
  hold_ttl_seconds?: number;
}

async function createFeature(options: FeatureOptions): Promise<string> {
  const featureId = uniqueId('feature');
  const res = await t.request('POST', '/api/features', {
    body: { feature_endpoint_id: featureId, name: `Feature ${featureId}`, ...options },
  });
  expect(res.status).toBe(201);
  return featureId;
}

interface ModelOptions {
  input_price_per_million: string;
  output_price_per_million: string;
  cached_input_price_per_million?: string;
  profit_margin?: string;
}

async function createModel(options: ModelOptions): Promise<string> {
  const aiModel = uniqueId('model');
  const res = await t.request('POST', '/api/pricing/models', { body: { ai_model: aiModel, ...options } });
  expect(res.status).toBe(201);
  return aiModel;
}

// --- the partner's calls (service key) -------------------------------------------------------

const start = (userId: string, featureId: string) =>
  t.request('POST', '/api/credits-process/start', { key: SERVICE_KEY, body: { user_id: userId, feature_endpoint_id: featureId } });

const settle = (body: unknown, headers?: Record<string, string>) =>
  t.request('POST', '/api/credits-process/end-multimodel', { key: SERVICE_KEY, body, headers });

const settleLegacy = (body: unknown, headers?: Record<string, string>) =>
  t.request('POST', '/api/credits-process/end', { key: SERVICE_KEY, body, headers });

const cancel = (usageKey: string) => t.request('POST', '/api/credits-process/cancel', { key: SERVICE_KEY, body: { usage_key: usageKey } });

const usage = (usageKey: string) => t.request('GET', `/api/credits-process/usages/${encodeURIComponent(usageKey)}`, { key: SERVICE_KEY });

async function startAccessible(userId: string, featureId: string): Promise<any> {
  const res = await start(userId, featureId);
  expect(res.status).toBe(200);
  expect(res.body.data.status).toBe('accessible');
  return res.body.data;
}

// --- reads -----------------------------------------------------------------------------------

async function wallet(userId: string): Promise<any> {
  const res = await t.request('GET', `/api/wallets/${userId}`, { key: SERVICE_KEY });
  expect(res.status).toBe(200);
  return res.body.data;
}

/** The whole ledger of a wallet, newest first. */
async function ledger(userId: string): Promise<any[]> {
  const res = await t.request('GET', `/api/wallets/${userId}/transactions?limit=200`);
  expect(res.status).toBe(200);
  expect(res.body.data.next_cursor).toBeNull();
  return res.body.data.items;
}

/** Everything a settlement could change on a wallet: the wallet (incl. updated_at) and its ledger. */
async function books(userId: string) {
  return { wallet: await wallet(userId), ledger: await ledger(userId) };
}

/** The wallet's figures agree with its ledger: balance = Σ amounts = newest balance_after. */
async function expectBooksAgree(userId: string): Promise<void> {
  const { wallet: w, ledger: entries } = await books(userId);
  const sum = entries.reduce((acc, e) => acc + micros(e.amount), 0n);
  expect(money(sum)).toBe(w.balance);
  expect(entries[0].balance_after).toBe(w.balance);
  expect(money(micros(w.balance) - micros(w.held))).toBe(w.credits);
}

function expectFailure(res: ApiResponse, httpStatus: number, status: string): void {
  expect({ httpStatus: res.status, status: res.body?.data?.status }).toEqual({ httpStatus, status });
  expect(res.body.success).toBe(false);
  expect(typeof res.body.data.message).toBe('string');
  expect(res.body.data.message.length).toBeGreaterThan(0);
}

/** Polls `probe` until `done` holds (or fails after `timeoutMs`): synchronisation without fixed sleeps. */
async function eventually<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms; last value: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function count<T>(items: T[], predicate: (item: T) => boolean): number {
  return items.filter(predicate).length;
}

// --- the price table every test shares --------------------------------------------------------

/** Model A: 2.50 / 10.00 USD per million, cached input 1.25, its own margin 20 %. */
let modelA: string;
/** Model B: 0.075 / 0.60 USD per million, no cached price (defaults to input), no margin (default 0). */
let modelB: string;
/** Model P: 100 USD per million input, for overruns. */
let modelPricey: string;
/** The seed's feature: hold 5, fixed cost 0.25, no margin of its own. */
let seedFeature: string;

/**
 * The seed flow's two usages. Worked by hand (credits_per_usd = 100, default margin 0):
 *   A: cost_usd = ((1234 − 1000)·2.50 + 1000·1.25 + 567·10.00) / 10^6 = (585 + 1250 + 5670) / 10^6 = 0.007505
 *      margin = model's 0.2 → credits = 0.007505 · 1.2 · 100 = 0.9006
 *   B: cost_usd = (1003·0.075 + 777·0.60) / 10^6 = (75.225 + 466.2) / 10^6 = 0.000541425  (shown "0.000541")
 *      margin = default 0   → credits = 0.000541425 · 1 · 100 = 0.0541425                   (shown "0.054143")
 *   Σ credits + fixed_cost = 0.9006 + 0.0541425 + 0.25 = 1.2047425
 *   round_half_up(…, 6) = 1.204743   (half-even would give 1.204742; a float sum is 1.20474249…)
 *   balance 100 − 1.204743 = 98.795257
 */
const seedUsages = () => [
  { ai_model: modelA, input_tokens: 1234, output_tokens: 567, cached_input_tokens: 1000 },
  { ai_model: modelB, input_tokens: 1003, output_tokens: 777 },
];
const SEED_CHARGE = '1.204743';

beforeAll(async () => {
  t = await startTestApp({ HOLD_SWEEP_INTERVAL_MS: '200' });
  modelA = await createModel({
    input_price_per_million: '2.5',
    output_price_per_million: '10',
    cached_input_price_per_million: '1.25',
    profit_margin: '0.2',
  });
  modelB = await createModel({ input_price_per_million: '0.075', output_price_per_million: '0.6' });
  modelPricey = await createModel({ input_price_per_million: '100', output_price_per_million: '0' });
  seedFeature = await createFeature({ min_holding_credits: '5', fixed_cost: '0.25' });
});

afterAll(async () => {
  await t?.close();
});

describe('credits process: the seed flow', () => {
  it('start holds, end-multimodel charges the exact hand-computed figure, and wallet, ledger and usage agree', async () => {
    const userId = await createWallet('100');
    const before = Date.now();
    const startRes = await start(userId, seedFeature);
    expect(startRes.status).toBe(200);
    expect(startRes.body).toEqual({
      success: true,
      data: {
        status: 'accessible',
        usage_key: expect.stringMatching(UUID),
        user_id: userId,
        feature_endpoint_id: seedFeature,
        credits: '95.000000',
        balance: '100.000000',
        held: '5.000000',
        hold_amount: '5.000000',
        expires_at: expect.any(String),
      },
    });
    const started = startRes.body.data;
    // Default HOLD_TTL_SECONDS is 900.
    const ttlMs = Date.parse(started.expires_at) - before;
    expect(ttlMs).toBeGreaterThan(895_000);
    expect(ttlMs).toBeLessThan(905_000);
    expect(started.expires_at).toMatch(/Z$/);

    expect(await wallet(userId)).toMatchObject({
      balance: '100.000000',
      held: '5.000000',
      credits: '95.000000',
      plan: 'free',
      status: 'active',
    });
    const held = await usage(started.usage_key);
    expect(held.status).toBe(200);
    expect(held.body.data).toMatchObject({
      usage_key: started.usage_key,
      status: 'held',
      hold_amount: '5.000000',
      expires_at: started.expires_at,
      ledger_entries: [],
    });

    const res = await settle({ user_id: userId, usage_key: started.usage_key, feature_endpoint_id: seedFeature, usages: seedUsages() });
    expect(res.status).toBe(200);
    expect(res.body.success).toBe(true);
    expect(res.body.data).toMatchObject({
      status: 'settled',
      usage_key: started.usage_key,
      transaction_id: expect.any(String),
      credits_charged: SEED_CHARGE,
      credits: '98.795257',
      balance: '98.795257',
      held: ZERO,
      late: false,
    });
    expect(res.body.data.usages).toEqual([
      { ai_model: modelA, input_tokens: 1234, output_tokens: 567, cached_input_tokens: 1000, cost_usd: '0.007505', credits: '0.900600' },
      { ai_model: modelB, input_tokens: 1003, output_tokens: 777, cached_input_tokens: 0, cost_usd: '0.000541', credits: '0.054143' },
    ]);
    const settlement = res.body.data;

    expect(await wallet(userId)).toMatchObject({ balance: '98.795257', held: ZERO, credits: '98.795257' });

    const entries = await ledger(userId);
    expect(entries).toHaveLength(2);
    const [charge, initial] = entries;
    expect(initial).toMatchObject({ kind: 'initial', amount: '100.000000', balance_after: '100.000000' });
    expect(charge).toMatchObject({
      id: settlement.transaction_id,
      kind: 'charge',
      amount: `-${SEED_CHARGE}`,
      balance_after: '98.795257',
      usage_key: started.usage_key,
    });
    // The entry keeps the prices, margins and rate it used (API.md §5).
    expect(charge.metadata.pricing).toEqual({
      credits_per_usd: '100.000000',
      default_profit_margin: ZERO,
      feature: { feature_endpoint_id: seedFeature, profit_margin: null, fixed_cost: '0.250000' },
      models: {
        [modelA]: {
          version: 1,
          input_price_per_million: '2.500000',
          output_price_per_million: '10.000000',
          cached_input_price_per_million: '1.250000',
          profit_margin: '0.200000',
          margin_source: 'model',
        },
        [modelB]: {
          version: 1,
          input_price_per_million: '0.075000',
          output_price_per_million: '0.600000',
          cached_input_price_per_million: '0.075000',
          profit_margin: ZERO,
          margin_source: 'default',
        },
      },
    });
    expect(charge.metadata.usages).toEqual(settlement.usages);
    await expectBooksAgree(userId);

    const byKey = await t.request('GET', `/api/wallets/${userId}/transactions?usage_key=${started.usage_key}`);
    expect(byKey.body.data.items.map((e: any) => e.id)).toEqual([settlement.transaction_id]);

    const story = await usage(started.usage_key);
    expect(story.status).toBe(200);
    expect(story.body.data).toMatchObject({
      usage_key: started.usage_key,
      status: 'settled',
      user_id: userId,
      feature_endpoint_id: seedFeature,
      hold_amount: '5.000000',
      late: false,
      settlement: { transaction_id: settlement.transaction_id, credits_charged: SEED_CHARGE },
    });
    expect(story.body.data.ledger_entries).toEqual([charge]);
  });

  it('the legacy /end (single model at top level) settles the same way, and repeats as already_settled', async () => {
    const userId = await createWallet('100');
    const started = await startAccessible(userId, seedFeature);
    // A alone: 0.9006 (see seedUsages) + fixed 0.25 = 1.1506.
    const body = {
      user_id: userId,
      usage_key: started.usage_key,
      feature_endpoint_id: seedFeature,
      ai_model: modelA,
      input_tokens: 1234,
      output_tokens: 567,
      cached_input_tokens: 1000,
    };
    const first = await settleLegacy(body);
    expect(first.status).toBe(200);
    expect(first.body.data).toMatchObject({
      status: 'settled',
      credits_charged: '1.150600',
      balance: '98.849400',
      held: ZERO,
      late: false,
    });
    expect(first.body.data.usages).toEqual([
      { ai_model: modelA, input_tokens: 1234, output_tokens: 567, cached_input_tokens: 1000, cost_usd: '0.007505', credits: '0.900600' },
    ]);
    const again = await settleLegacy(body);
    expect(again.status).toBe(200);
    expect(again.body.data).toEqual({ ...first.body.data, status: 'already_settled' });
    // The multi-model route sees the same authorization as settled too.
    const viaMulti = await settle({
      user_id: userId,
      usage_key: started.usage_key,
      feature_endpoint_id: seedFeature,
      usages: seedUsages(),
    });
    expect(viaMulti.body.data).toEqual({ ...first.body.data, status: 'already_settled' });

    const charges = (await ledger(userId)).filter((e) => e.kind === 'charge');
    expect(charges.map((e) => [e.id, e.amount])).toEqual([[first.body.data.transaction_id, '-1.150600']]);
    await expectBooksAgree(userId);

    // The legacy form validates like the multi-model one.
    const bad = await settleLegacy({ ...body, usage_key: undefined, input_tokens: '10' });
    expectFailure(bad, 400, 'validation_error');
    expect(bad.body.data.errors.map((e: any) => e.field)).toContain('input_tokens');
  });

  it('POST /api/pricing/quote (service key) answers what a settlement charges and writes nothing', async () => {
    // Feature margin 0.5 overrides the models' own (A's 0.2) and the default:
    //   A: (1000·2.50 + 1000·10.00) / 10^6 = 0.0125 USD → ·1.5·100 = 1.875
    //   B: (1·0.075 + 1·0.60) / 10^6 = 0.000000675 USD → ·1.5·100 = 0.00010125
    //   Σ = 1.87510125 → 1.875101
    const featureId = await createFeature({ min_holding_credits: '1', profit_margin: '0.5' });
    const usages = [
      { ai_model: modelA, input_tokens: 1000, output_tokens: 1000 },
      { ai_model: modelB, input_tokens: 1, output_tokens: 1 },
    ];
    const userId = await createWallet('10');
    const allWalletsBefore = await t.request('GET', '/api/wallets?limit=200');
    const booksBefore = await books(userId);

    const quote = await t.request('POST', '/api/pricing/quote', { key: SERVICE_KEY, body: { feature_endpoint_id: featureId, usages } });
    expect(quote.status).toBe(200);
    expect(quote.body.data).toMatchObject({ status: 'quoted', feature_endpoint_id: featureId, credits_charged: '1.875101' });
    // The maximum token count is accepted (1e9 · 2.50 / 10^6 = 2500 USD · 1.5 · 100 = 375000).
    const big = await t.request('POST', '/api/pricing/quote', {
      key: SERVICE_KEY,
      body: { feature_endpoint_id: featureId, usages: [{ ai_model: modelA, input_tokens: 1_000_000_000, output_tokens: 0 }] },
    });
    expect(big.status).toBe(200);
    expect(big.body.data.credits_charged).toBe('375000.000000');

    expect(await t.request('GET', '/api/wallets?limit=200')).toMatchObject({ body: allWalletsBefore.body });
    expect(await books(userId)).toEqual(booksBefore);

    const started = await startAccessible(userId, featureId);
    const settled = await settle({ user_id: userId, usage_key: started.usage_key, feature_endpoint_id: featureId, usages });
    expect(settled.status).toBe(200);
    expect(settled.body.data.credits_charged).toBe(quote.body.data.credits_charged);
    expect(settled.body.data.usages).toEqual(quote.body.data.usages);
    expect(settled.body.data.balance).toBe('8.124899');
  });
});

describe('credits process: concurrency', () => {
  it('60 concurrent starts on a wallet with room for exactly 10 holds give exactly 10 accessible and 50 × 402', async () => {
    const userId = await createWallet('50');
    const results = await Promise.all(Array.from({ length: 60 }, () => start(userId, seedFeature)));

    const accessible = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 402);
    expect({ accessible: accessible.length, refused: refused.length }).toEqual({ accessible: 10, refused: 50 });
    for (const r of accessible) expect(r.body.data).toMatchObject({ status: 'accessible', hold_amount: '5.000000', balance: '50.000000' });
    for (const r of refused) {
      expectFailure(r, 402, 'insufficient_credits');
      expect(r.body.data.required).toBe('5.000000');
      expect(micros(r.body.data.credits)).toBeLessThan(5_000_000n);
    }
    // The holds were placed one after another: each saw the previous ones.
    const heldSeen = accessible.map((r) => micros(r.body.data.held)).sort((a, b) => (a < b ? -1 : 1));
    expect(heldSeen.map(money)).toEqual(Array.from({ length: 10 }, (_, i) => money(BigInt(i + 1) * 5_000_000n)));
    expect(new Set(accessible.map((r) => r.body.data.usage_key)).size).toBe(10);

    expect(await wallet(userId)).toMatchObject({ balance: '50.000000', held: '50.000000', credits: ZERO });
    expect(await ledger(userId)).toHaveLength(1);
    for (const r of accessible) expect((await usage(r.body.data.usage_key)).body.data.status).toBe('held');
  });

  it('25 concurrent identical settlements of one usage_key charge once: 1 settled, 24 already_settled, same figures', async () => {
    const userId = await createWallet('100');
    const started = await startAccessible(userId, seedFeature);
    const body = { user_id: userId, usage_key: started.usage_key, feature_endpoint_id: seedFeature, usages: seedUsages() };

    const results = await Promise.all(Array.from({ length: 25 }, () => settle(body)));
    expect(results.map((r) => r.status)).toEqual(Array(25).fill(200));
    const statuses = results.map((r) => r.body.data.status);
    expect({ settled: count(statuses, (s) => s === 'settled'), already: count(statuses, (s) => s === 'already_settled') }).toEqual({
      settled: 1,
      already: 24,
    });
    const first = results.find((r) => r.body.data.status === 'settled')!.body.data;
    expect(first).toMatchObject({ credits_charged: SEED_CHARGE, balance: '98.795257', held: ZERO });
    for (const r of results) expect(r.body.data).toEqual({ ...first, status: r.body.data.status });

    const charges = (await ledger(userId)).filter((e) => e.kind === 'charge');
    expect(charges.map((e) => [e.id, e.amount])).toEqual([[first.transaction_id, `-${SEED_CHARGE}`]]);
    expect(await wallet(userId)).toMatchObject({ balance: '98.795257', held: ZERO });
    await expectBooksAgree(userId);

    const later = await settle(body);
    expect(later.body.data).toEqual({ ...first, status: 'already_settled' });
  });

  it('concurrent cancels of one hold release it once', async () => {
    const userId = await createWallet('20');
    const started = await startAccessible(userId, seedFeature);
    const results = await Promise.all(Array.from({ length: 10 }, () => cancel(started.usage_key)));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(results.every((r) => r.body.data.status === 'cancelled')).toBe(true);
    const released = results.map((r) => r.body.data.released);
    expect({ once: count(released, (r) => r === '5.000000'), zero: count(released, (r) => r === ZERO) }).toEqual({ once: 1, zero: 9 });
    expect(await wallet(userId)).toMatchObject({ balance: '20.000000', held: ZERO });
  });
  it('a settlement racing a cancel of the same hold: exactly one wins and the hold is released once', async () => {
    const rounds = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const userId = await createWallet('20');
        const started = await startAccessible(userId, seedFeature);
        const body = { user_id: userId, usage_key: started.usage_key, feature_endpoint_id: seedFeature, usages: seedUsages() };
        const [settled, cancelled] = await Promise.all([settle(body), cancel(started.usage_key)]);
        return { userId, settled, cancelled };
      }),
    );
    for (const { userId, settled, cancelled } of rounds) {
      const charges = (await ledger(userId)).filter((e) => e.kind === 'charge');
      if (settled.status === 200) {
        expect(settled.body.data).toMatchObject({ status: 'settled', credits_charged: SEED_CHARGE, held: ZERO });
        expectFailure(cancelled, 409, 'already_settled');
        expect(charges).toHaveLength(1);
        expect(await wallet(userId)).toMatchObject({ balance: '18.795257', held: ZERO });
      } else {
        expectFailure(settled, 409, 'conflict');
        expect(cancelled.body.data).toMatchObject({ status: 'cancelled', released: '5.000000' });
        expect(charges).toHaveLength(0);
        expect(await wallet(userId)).toMatchObject({ balance: '20.000000', held: ZERO });
      }
      await expectBooksAgree(userId);
    }
  });
});

describe('credits process: refused settlements change nothing', () => {
  it('mismatch, unknown key, unknown model and invalid token counts leave wallet, held and ledger exactly as they were', async () => {
    const userId = await createWallet('100');
    const otherUser = await createWallet('100');
    const otherFeature = await createFeature({ min_holding_credits: '1' });
    const started = await startAccessible(userId, seedFeature);
    const base = { user_id: userId, usage_key: started.usage_key, feature_endpoint_id: seedFeature };
    const valid = { ai_model: modelA, input_tokens: 10, output_tokens: 10 };
    const unknownModel = uniqueId('no-such-model');
    const before = await books(userId);
    const otherBefore = await books(otherUser);

    const cases: { name: string; body: unknown; http: number; status: string; field?: string }[] = [
      { name: 'key of another user', body: { ...base, user_id: otherUser, usages: [valid] }, http: 409, status: 'usage_key_mismatch' },
      {
        name: 'key of another feature',
        body: { ...base, feature_endpoint_id: otherFeature, usages: [valid] },
        http: 409,
        status: 'usage_key_mismatch',
      },
      { name: 'unknown uuid key', body: { ...base, usage_key: randomUUID(), usages: [valid] }, http: 404, status: 'usage_key_not_found' },
      { name: 'non-uuid key', body: { ...base, usage_key: 'not-a-usage-key', usages: [valid] }, http: 404, status: 'usage_key_not_found' },
      { name: 'unknown model', body: { ...base, usages: [{ ...valid, ai_model: unknownModel }] }, http: 422, status: 'unknown_model' },
      {
        name: 'unknown model after a valid usage',
        body: { ...base, usages: [valid, { ...valid, ai_model: unknownModel }] },
        http: 422,
        status: 'unknown_model',
      },
      {
        name: 'cached > input',
        body: { ...base, usages: [{ ...valid, cached_input_tokens: 11 }] },
        http: 400,
        status: 'validation_error',
        field: 'usages.0.cached_input_tokens',
      },
      {
        name: 'count as string',
        body: { ...base, usages: [{ ...valid, input_tokens: '10' }] },
        http: 400,
        status: 'validation_error',
        field: 'usages.0.input_tokens',
      },
      {
        name: 'negative count',
        body: { ...base, usages: [{ ...valid, output_tokens: -1 }] },
        http: 400,
        status: 'validation_error',
        field: 'usages.0.output_tokens',
      },
      {
        name: 'fractional count',
        body: { ...base, usages: [{ ...valid, input_tokens: 1.5 }] },
        http: 400,
        status: 'validation_error',
        field: 'usages.0.input_tokens',
      },
      {
        name: 'count over 1e9',
        body: { ...base, usages: [{ ...valid, input_tokens: 1_000_000_001 }] },
        http: 400,
        status: 'validation_error',
        field: 'usages.0.input_tokens',
      },
      {
        name: 'cached count over 1e9',
        body: { ...base, usages: [{ ...valid, cached_input_tokens: 1_000_000_001 }] },
        http: 400,
        status: 'validation_error',
        field: 'usages.0.cached_input_tokens',
      },
      { name: '0 usages', body: { ...base, usages: [] }, http: 400, status: 'validation_error', field: 'usages' },
      { name: '101 usages', body: { ...base, usages: Array(101).fill(valid) }, http: 400, status: 'validation_error', field: 'usages' },
      { name: 'no usages', body: { ...base }, http: 400, status: 'validation_error', field: 'usages' },
      {
        name: 'usage_key null',
        body: { ...base, usage_key: null, usages: [valid] },
        http: 400,
        status: 'validation_error',
        field: 'usage_key',
      },
      {
        name: 'idempotency_key null',
        body: { ...base, idempotency_key: null, usages: [valid] },
        http: 400,
        status: 'validation_error',
        field: 'idempotency_key',
      },
    ];

    for (const c of cases) {
      const res = await settle(c.body);
      expect({ case: c.name, http: res.status, status: res.body.data.status }).toEqual({ case: c.name, http: c.http, status: c.status });
      expectFailure(res, c.http, c.status);
      if (c.field)
        expect({ case: c.name, fields: res.body.data.errors.map((e: any) => e.field) }).toEqual({
          case: c.name,
          fields: expect.arrayContaining([c.field]),
        });
      if (c.status === 'unknown_model') {
        expect(res.body.data.ai_model).toBe(unknownModel);
        expect(res.body.data.message).toContain(unknownModel);
      }
      expect({ case: c.name, books: await books(userId) }).toEqual({ case: c.name, books: before });
      expect((await usage(started.usage_key)).body.data.status).toBe('held');
    }
    expect(await books(otherUser)).toEqual(otherBefore);

    // The hold survived every refusal and still settles normally (10·2.5 + 10·10 = 125 → 0.000125 USD · 1.2 · 100 = 0.015 + 0.25).
    const ok = await settle({ ...base, usages: [valid] });
    expect(ok.status).toBe(200);
    expect(ok.body.data).toMatchObject({ status: 'settled', credits_charged: '0.265000', balance: '99.735000', held: ZERO });
    await expectBooksAgree(userId);
  });
});

describe('credits process: start refusals in the contract order', () => {
  it('wallet_not_found, wallet_suspended, feature_not_found, feature_inactive, feature_not_permitted, insufficient_credits', async () => {
    const userId = await createWallet('0');
    expect((await wallet(userId)).plan).toBe('free');
    const proOnly = await createFeature({ min_holding_credits: '5', allowed_plans: ['pro'] });
    const missingFeature = uniqueId('no-such-feature');
    const before = await books(userId);

    // Each step leaves the earlier checks failing too, so the answer proves the order.
    expectFailure(await start(uniqueId('no-such-user'), missingFeature), 404, 'wallet_not_found');

    expect((await t.request('PATCH', `/api/wallets/${userId}`, { body: { status: 'suspended' } })).status).toBe(200);
    expectFailure(await start(userId, missingFeature), 403, 'wallet_suspended');
    expectFailure(await start(userId, proOnly), 403, 'wallet_suspended');
    expect((await t.request('PATCH', `/api/wallets/${userId}`, { body: { status: 'active' } })).status).toBe(200);

    expectFailure(await start(userId, missingFeature), 404, 'feature_not_found');

    expect((await t.request('PATCH', `/api/features/${proOnly}`, { body: { active: false } })).status).toBe(200);
    expectFailure(await start(userId, proOnly), 403, 'feature_inactive');
    expect((await t.request('PATCH', `/api/features/${proOnly}`, { body: { active: true } })).status).toBe(200);

    expectFailure(await start(userId, proOnly), 403, 'feature_not_permitted');

    expect((await t.request('PATCH', `/api/wallets/${userId}`, { body: { plan: 'pro' } })).status).toBe(200);
    const poor = await start(userId, proOnly);
    expectFailure(poor, 402, 'insufficient_credits');
    expect(poor.body.data).toMatchObject({ credits: ZERO, required: '5.000000' });

    // Nothing was held or written by any refusal.
    const after = await books(userId);
    expect({ balance: after.wallet.balance, held: after.wallet.held, ledger: after.ledger }).toEqual({
      balance: before.wallet.balance,
      held: before.wallet.held,
      ledger: before.ledger,
    });

    // And with every check passing, it is accessible.
    expect((await t.request('POST', `/api/wallets/${userId}/top-up`, { body: { amount: '5' } })).status).toBe(200);
    const ok = await startAccessible(userId, proOnly);
    expect(ok).toMatchObject({ credits: ZERO, balance: '5.000000', held: '5.000000' });
  });

  it('the API key is required and the service scope covers §4 but not the admin ledger', async () => {
    const userId = await createWallet('10');
    expectFailure(
      await t.request('POST', '/api/credits-process/start', { key: null, body: { user_id: userId, feature_endpoint_id: seedFeature } }),
      401,
      'unauthorized',
    );
    expectFailure(await t.request('GET', `/api/wallets/${userId}/transactions`, { key: SERVICE_KEY }), 403, 'forbidden');
    expectFailure(await t.request('GET', '/api/reconciliation', { key: SERVICE_KEY }), 403, 'forbidden');
    expect((await wallet(userId)).held).toBe(ZERO);
  });
});

describe('credits process: cancel', () => {
  it('cancel releases the hold, a second cancel is harmless, and settling a cancelled key is a 409 conflict', async () => {
    const userId = await createWallet('20');
    const started = await startAccessible(userId, seedFeature);
    const ledgerBefore = await ledger(userId);

    const first = await cancel(started.usage_key);
    expect(first.status).toBe(200);
    expect(first.body.data).toEqual({ status: 'cancelled', usage_key: started.usage_key, released: '5.000000' });
    expect(await wallet(userId)).toMatchObject({ balance: '20.000000', held: ZERO, credits: '20.000000' });

    const second = await cancel(started.usage_key);
    expect(second.status).toBe(200);
    expect(second.body.data).toEqual({ status: 'cancelled', usage_key: started.usage_key, released: ZERO });
    expect(await wallet(userId)).toMatchObject({ balance: '20.000000', held: ZERO });

    const story = await usage(started.usage_key);
    expect(story.body.data).toMatchObject({ status: 'cancelled', settlement: null, ledger_entries: [] });

    const late = await settle({ user_id: userId, usage_key: started.usage_key, feature_endpoint_id: seedFeature, usages: seedUsages() });
    expectFailure(late, 409, 'conflict');
    expect(await ledger(userId)).toEqual(ledgerBefore);
    expect(await wallet(userId)).toMatchObject({ balance: '20.000000', held: ZERO });

    expectFailure(await cancel(randomUUID()), 404, 'usage_key_not_found');
    expectFailure(await cancel('not-a-usage-key'), 404, 'usage_key_not_found');
  });

  it('cancel after settle is 409 already_settled and changes nothing', async () => {
    const userId = await createWallet('20');
    const started = await startAccessible(userId, seedFeature);
    const settled = await settle({ user_id: userId, usage_key: started.usage_key, feature_endpoint_id: seedFeature, usages: seedUsages() });
    expect(settled.body.data.status).toBe('settled');
    const before = await books(userId);

    expectFailure(await cancel(started.usage_key), 409, 'already_settled');
    expect(await books(userId)).toEqual(before);
    expect((await usage(started.usage_key)).body.data.status).toBe('settled');
  });
});

describe('credits process: hold expiry', () => {
  it('a 2 s hold expires and frees the credits; a late settlement is still charged with late: true, releasing nothing twice', async () => {
    const featureId = await createFeature({ min_holding_credits: '5', hold_ttl_seconds: 2 });
    const userId = await createWallet('8'); // room for one hold of 5
    const before = Date.now();
    const first = await startAccessible(userId, featureId);
    const ttlMs = Date.parse(first.expires_at) - before;
    expect(ttlMs).toBeGreaterThan(1_000);
    expect(ttlMs).toBeLessThan(3_500);
    expectFailure(await start(userId, featureId), 402, 'insufficient_credits');

    const expired = await eventually(
      () => usage(first.usage_key),
      (r) => r.body.data.status === 'expired',
    );
    expect(expired.body.data).toMatchObject({ status: 'expired', hold_amount: '5.000000', settlement: null, ledger_entries: [] });
    // The sweeper (HOLD_SWEEP_INTERVAL_MS=200) releases it without anyone calling /start.
    const released = await eventually(
      () => wallet(userId),
      (w) => w.held === ZERO,
    );
    expect(released).toMatchObject({ balance: '8.000000', held: ZERO, credits: '8.000000' });

    const second = await startAccessible(userId, featureId);
    expect(second).toMatchObject({ balance: '8.000000', held: '5.000000', credits: '3.000000' });

    const lateBody = {
      user_id: userId,
      usage_key: first.usage_key,
      feature_endpoint_id: featureId,
      usages: [{ ai_model: modelA, input_tokens: 100_000, output_tokens: 0 }],
    };
    // 100000 · 2.50 / 10^6 = 0.25 USD · 1.2 (A's margin) · 100 = 30 → balance 8 − 30 = −22; held stays the second hold's 5.
    const late = await settle(lateBody);
    expect(late.status).toBe(200);
    expect(late.body.data).toMatchObject({
      status: 'settled',
      late: true,
      credits_charged: '30.000000',
      balance: '-22.000000',
      held: '5.000000',
      credits: '-27.000000',
    });
    expect(await wallet(userId)).toMatchObject({ balance: '-22.000000', held: '5.000000' });
    const again = await settle(lateBody);
    expect(again.body.data).toEqual({ ...late.body.data, status: 'already_settled' });

    const story = await usage(first.usage_key);
    expect(story.body.data).toMatchObject({ status: 'settled', late: true });
    expect(story.body.data.ledger_entries.map((e: any) => e.id)).toEqual([late.body.data.transaction_id]);
    expect((await usage(second.usage_key)).body.data.status).toBe('held');
    await expectBooksAgree(userId);

    // Close the second hold so nothing keeps changing after this test.
    expect((await cancel(second.usage_key)).body.data).toMatchObject({ status: 'cancelled', released: '5.000000' });
    expect(await wallet(userId)).toMatchObject({ balance: '-22.000000', held: ZERO });
    const reconciliation = await t.request('GET', '/api/reconciliation');
    expect(reconciliation.body.data.mismatches).toEqual([]);
  });
});

describe('credits process: overrun', () => {
  it('a settlement bigger than the balance takes it below zero, and the next start is refused with 402', async () => {
    const userId = await createWallet('10');
    const noMinimum = await createFeature({ min_holding_credits: '0' });
    const started = await startAccessible(userId, seedFeature);
    // 5000 · 100 / 10^6 = 0.5 USD · 100 = 50 credits + fixed 0.25 = 50.25 → 10 − 50.25 = −40.25.
    const res = await settle({
      user_id: userId,
      usage_key: started.usage_key,
      feature_endpoint_id: seedFeature,
      usages: [{ ai_model: modelPricey, input_tokens: 5000, output_tokens: 0 }],
    });
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({
      status: 'settled',
      credits_charged: '50.250000',
      balance: '-40.250000',
      held: ZERO,
      credits: '-40.250000',
    });
    expect((await ledger(userId))[0]).toMatchObject({ kind: 'charge', amount: '-50.250000', balance_after: '-40.250000' });
    await expectBooksAgree(userId);

    const refused = await start(userId, seedFeature);
    expectFailure(refused, 402, 'insufficient_credits');
    expect(refused.body.data).toMatchObject({ credits: '-40.250000', required: '5.000000' });
    // Even a feature that holds nothing is refused to a wallet below zero.
    expectFailure(await start(userId, noMinimum), 402, 'insufficient_credits');
    expect(await wallet(userId)).toMatchObject({ balance: '-40.250000', held: ZERO });

    // Topped up, it is accessible again.
    expect((await t.request('POST', `/api/wallets/${userId}/top-up`, { body: { amount: '45.25' } })).status).toBe(200);
    expect(await startAccessible(userId, seedFeature)).toMatchObject({ balance: '5.000000', held: '5.000000', credits: ZERO });
  });
});

describe('credits process: direct charges', () => {
  // A alone with 1000 input, 0 output: 1000 · 2.50 / 10^6 = 0.0025 USD · 1.2 · 100 = 0.3 + fixed 0.25 = 0.55.
  const directUsages = () => [{ ai_model: modelA, input_tokens: 1000, output_tokens: 0 }];

  it('idempotency_key in the body makes a repeated direct charge (sequential and 10× concurrent) charge once', async () => {
    const userId = await createWallet('100');
    const body = { user_id: userId, feature_endpoint_id: seedFeature, idempotency_key: 'order-1', usages: directUsages() };

    const first = await settle(body);
    expect(first.status).toBe(200);
    expect(first.body.data).toMatchObject({
      status: 'settled',
      usage_key: expect.stringMatching(UUID),
      credits_charged: '0.550000',
      balance: '99.450000',
      held: ZERO,
      late: false,
    });
    const second = await settle(body);
    expect(second.status).toBe(200);
    expect(second.body.data).toEqual({ ...first.body.data, status: 'already_settled' });

    const concurrentBody = { ...body, idempotency_key: 'order-2' };
    const results = await Promise.all(Array.from({ length: 10 }, () => settle(concurrentBody)));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    const statuses = results.map((r) => r.body.data.status);
    expect({ settled: count(statuses, (s) => s === 'settled'), already: count(statuses, (s) => s === 'already_settled') }).toEqual({
      settled: 1,
      already: 9,
    });
    const winner = results.find((r) => r.body.data.status === 'settled')!.body.data;
    for (const r of results) expect(r.body.data).toEqual({ ...winner, status: r.body.data.status });
    expect(winner.transaction_id).not.toBe(first.body.data.transaction_id);

    const charges = (await ledger(userId)).filter((e) => e.kind === 'charge');
    expect(charges.map((e) => e.id).sort()).toEqual([first.body.data.transaction_id, winner.transaction_id].sort());
    expect(await wallet(userId)).toMatchObject({ balance: '98.900000', held: ZERO });

    // The same key with another body is refused and charges nothing.
    const before = await books(userId);
    const reused = await settle({ ...body, usages: [{ ai_model: modelA, input_tokens: 1001, output_tokens: 0 }] });
    expectFailure(reused, 409, 'conflict');
    expect(await books(userId)).toEqual(before);

    // The key is the user's own: another user may use the same words.
    const otherUser = await createWallet('100');
    const other = await settle({ ...body, user_id: otherUser });
    expect(other.body.data).toMatchObject({ status: 'settled', balance: '99.450000' });

    const story = await usage(first.body.data.usage_key);
    expect(story.body.data).toMatchObject({ status: 'settled', direct_charge: true, idempotency_key: 'order-1' });
    expect(story.body.data.ledger_entries.map((e: any) => e.id)).toEqual([first.body.data.transaction_id]);
    await expectBooksAgree(userId);
  });

  it('the Idempotency-Key header works the same, including the 409 for another body', async () => {
    const userId = await createWallet('100');
    const body = { user_id: userId, feature_endpoint_id: seedFeature, usages: directUsages() };
    const headers = { 'Idempotency-Key': `hdr-${run}` };

    const first = await settle(body, headers);
    expect(first.body.data).toMatchObject({ status: 'settled', credits_charged: '0.550000' });
    const results = await Promise.all(Array.from({ length: 10 }, () => settle(body, headers)));
    for (const r of results) expect(r.body.data).toEqual({ ...first.body.data, status: 'already_settled' });
    // The legacy route honours the header as well and sees the same charge.
    const legacy = await settleLegacy(
      { user_id: userId, feature_endpoint_id: seedFeature, ai_model: modelA, input_tokens: 1000, output_tokens: 0 },
      headers,
    );
    expect(legacy.body.data).toEqual({ ...first.body.data, status: 'already_settled' });

    const before = await books(userId);
    expectFailure(
      await settle({ ...body, usages: [{ ai_model: modelB, input_tokens: 1000, output_tokens: 0 }] }, headers),
      409,
      'conflict',
    );
    expect(await books(userId)).toEqual(before);
    expect((await ledger(userId)).filter((e) => e.kind === 'charge')).toHaveLength(1);
    expect(await wallet(userId)).toMatchObject({ balance: '99.450000' });

    // A header over the 128-character limit is refused like the body field, never cut short:
    // two long keys sharing their first 128 characters must not collide into one charge.
    const long = 'k'.repeat(128);
    const tooLong = await settle(body, { 'Idempotency-Key': `${long}-a` });
    expectFailure(tooLong, 400, 'validation_error');
    expect(tooLong.body.data.errors.map((e: any) => e.field)).toEqual(['Idempotency-Key']);
    expectFailure(await settle(body, { 'Idempotency-Key': `${long}-b` }), 400, 'validation_error');
    expect(await books(userId)).toEqual(before);
  });

  it('a refused direct charge writes nothing, not even its idempotency key', async () => {
    const userId = await createWallet('100');
    const before = await books(userId);
    const body = { user_id: userId, feature_endpoint_id: seedFeature, idempotency_key: 'order-x', usages: directUsages() };
    const unknownModel = uniqueId('no-such-model');

    expectFailure(await settle({ ...body, usages: [{ ai_model: unknownModel, input_tokens: 1, output_tokens: 1 }] }), 422, 'unknown_model');
    expectFailure(await settle({ ...body, feature_endpoint_id: uniqueId('no-such-feature') }), 404, 'feature_not_found');
    expectFailure(
      await settle({ ...body, usages: [{ ai_model: modelA, input_tokens: 1, output_tokens: 1, cached_input_tokens: 2 }] }),
      400,
      'validation_error',
    );
    expectFailure(await settle({ ...body, user_id: uniqueId('no-such-user') }), 404, 'wallet_not_found');
    expect(await books(userId)).toEqual(before);

    // The key was not consumed by the refusals: the valid body settles now, once.
    const ok = await settle(body);
    expect(ok.body.data).toMatchObject({ status: 'settled', credits_charged: '0.550000', balance: '99.450000' });
    expect((await settle(body)).body.data).toEqual({ ...ok.body.data, status: 'already_settled' });
  });

  it('without any idempotency key each direct charge is a new charge', async () => {
    const userId = await createWallet('100');
    const body = { user_id: userId, feature_endpoint_id: seedFeature, usages: directUsages() };
    const a = await settle(body);
    const b = await settle(body);
    expect([a.body.data.status, b.body.data.status]).toEqual(['settled', 'settled']);
    expect(a.body.data.transaction_id).not.toBe(b.body.data.transaction_id);
    expect(await wallet(userId)).toMatchObject({ balance: '98.900000', held: ZERO });
    await expectBooksAgree(userId);
  });
});

describe('credits process: usage story', () => {
  it('GET /usages/:usage_key answers 404 usage_key_not_found for an unknown uuid and a non-uuid', async () => {
    expectFailure(await usage(randomUUID()), 404, 'usage_key_not_found');
    expectFailure(await usage('not-a-usage-key'), 404, 'usage_key_not_found');
  });
});

describe('credits process: expiry without the sweeper (HOLD_SWEEP_INTERVAL_MS=0)', () => {
  // A second app on its own database, with the timer off: correctness must not wait for it.
  let quiet: TestApp;
  beforeAll(async () => {
    quiet = await startTestApp({ HOLD_SWEEP_INTERVAL_MS: '0' });
  });
  afterAll(async () => {
    await quiet?.close();
  });

  it('an expired but unswept hold is released exactly once: by a late settlement, or by /start on demand', async () => {
    const q = (method: string, path: string, body?: unknown, key: string = SERVICE_KEY) => quiet.request(method, path, { key, body });
    const admin = (method: string, path: string, body?: unknown) => quiet.request(method, path, { body });
    expect(
      (await admin('POST', '/api/pricing/models', { ai_model: 'm1', input_price_per_million: '1', output_price_per_million: '0' })).status,
    ).toBe(201);
    expect(
      (await admin('POST', '/api/features', { feature_endpoint_id: 'short', name: 'short', min_holding_credits: '5', hold_ttl_seconds: 1 }))
        .status,
    ).toBe(201);
    for (const u of ['w1', 'w2']) expect((await admin('POST', '/api/wallets', { user_id: u, initial_credits: '8' })).status).toBe(201);
    const h1 = (await q('POST', '/api/credits-process/start', { user_id: 'w1', feature_endpoint_id: 'short' })).body.data;
    const h2 = (await q('POST', '/api/credits-process/start', { user_id: 'w2', feature_endpoint_id: 'short' })).body.data;
    expect([h1.status, h2.status]).toEqual(['accessible', 'accessible']);

    await eventually(
      () => q('GET', `/api/credits-process/usages/${h2.usage_key}`),
      (r) => r.body.data.status === 'expired',
    );
    expect((await q('GET', `/api/credits-process/usages/${h1.usage_key}`)).body.data.status).toBe('expired');

    // 1000 · 1 / 10^6 = 0.001 USD · 100 = 0.1 credits.
    const usages = [{ ai_model: 'm1', input_tokens: 1000, output_tokens: 0 }];
    const late = await q('POST', '/api/credits-process/end-multimodel', {
      user_id: 'w1',
      usage_key: h1.usage_key,
      feature_endpoint_id: 'short',
      usages,
    });
    expect(late.status).toBe(200);
    expect(late.body.data).toMatchObject({ status: 'settled', late: true, credits_charged: '0.100000', balance: '7.900000', held: ZERO });

    // w2: /start expires the wallet's own stale hold itself, then holds again (held 5, not 10).
    const again = await q('POST', '/api/credits-process/start', { user_id: 'w2', feature_endpoint_id: 'short' });
    expect(again.status).toBe(200);
    expect(again.body.data).toMatchObject({ status: 'accessible', balance: '8.000000', held: '5.000000', credits: '3.000000' });
    const late2 = await q('POST', '/api/credits-process/end-multimodel', {
      user_id: 'w2',
      usage_key: h2.usage_key,
      feature_endpoint_id: 'short',
      usages,
    });
    expect(late2.body.data).toMatchObject({ status: 'settled', late: true, balance: '7.900000', held: '5.000000' });
    expect((await q('POST', '/api/credits-process/cancel', { usage_key: again.body.data.usage_key })).body.data.released).toBe('5.000000');

    const reconciliation = await quiet.request('GET', '/api/reconciliation');
    expect(reconciliation.body.data).toEqual({ wallets_checked: 2, mismatches: [] });
  });
});

describe('books after the whole file', () => {
  it('reconciliation finds every wallet balanced (balance = Σ ledger, held = Σ live holds)', async () => {
    let walletCount = 0;
    let cursor: string | null = null;
    do {
      const page: ApiResponse = await t.request('GET', `/api/wallets?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      walletCount += page.body.data.items.length;
      cursor = page.body.data.next_cursor;
    } while (cursor);

    const res = await t.request('GET', '/api/reconciliation');
    expect(res.status).toBe(200);
    expect(res.body.data.mismatches).toEqual([]);
    expect(res.body.data.wallets_checked).toBeGreaterThan(0);
    expect(res.body.data.wallets_checked).toBe(walletCount);
  });
});
