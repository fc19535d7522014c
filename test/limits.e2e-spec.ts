import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { databaseOptions } from '../src/database/database.options';
import { MIGRATIONS } from '../src/database/migrations';
import { checkBooks, ExpectedUsage } from './support/books';
import { DEAD_LETTER_QUEUE, formatMicros, LEGACY_QUEUE, micros, MULTI_QUEUE } from './support/catalog';
import { createTestDatabase, TestDatabase } from './support/database';
import { withDb } from './support/faults';
import { createTestVhost, publish, queueDepth, TestVhost } from './support/rabbit';
import { ApiResponse, RequestOptions, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/**
 * Settlements at every documented limit, on both transports: the largest charge the limits allow
 * is written exactly, the books reconcile, and nothing answers 5xx or is dead-lettered.
 *
 * The limits are written here as literals (what the DTOs and the docs promise) and each is shown
 * to be the limit: one micro-unit or one token more is refused with 400.
 */

const MAX_PRICE = '1000000'; // USD per million tokens
const MAX_MARGIN = '100';
const MAX_RATE = '1000000000'; // credits per USD
const MAX_CREDITS = '1000000000000'; // any credit amount in a request (MAX_REQUEST_CREDITS)
const MAX_TOKENS = 1_000_000_000;
const MAX_USAGES = 100;

// Hand-computed (API.md §5), every price at 1,000,000 USD per million tokens:
//   one usage   cost_usd = (10^9 · 10^6 + 10^9 · 10^6) / 10^6 = 2·10^9 USD (cached tokens cost the same)
//               credits  = 2·10^9 · (1 + 100) · 10^9 = 202·10^18
//   /end        202·10^18 + 10^12 fixed cost         = 202,000,001,000,000,000,000
//   100 usages  100 · 202·10^18 + 10^12 fixed cost   = 20,200,000,001,000,000,000,000
const USAGE_COST_USD = '2000000000.000000';
const USAGE_CREDITS = '202000000000000000000.000000';
const SINGLE_CHARGE = '202000001000000000000.000000';
const MULTI_CHARGE = '20200000001000000000000.000000';
const HOLD = '1000000000000.000000';

const maxUsage = (cached: boolean) => ({
  ai_model: 'max-model',
  input_tokens: MAX_TOKENS,
  output_tokens: MAX_TOKENS,
  ...(cached ? { cached_input_tokens: MAX_TOKENS } : {}),
});
const maxUsages = Array.from({ length: MAX_USAGES }, (_, i) => maxUsage(i % 2 === 1));
const FEATURE = 'max-feature';

describe('settlements at the documented limits', () => {
  let t: TestApp;
  let vhost: TestVhost;
  const run = randomBytes(3).toString('hex');
  let counter = 0;
  const uniqueId = (prefix: string) => `${prefix}-${run}-${++counter}`;
  /** Every status the service answered in this file: none may be a 5xx. */
  const statuses: number[] = [];
  /** Credits each wallet was given, and every charge the books must show, for checkBooks. */
  const initial = new Map<string, bigint>();
  const expected: ExpectedUsage[] = [];

  async function call<T = any>(method: string, path: string, options?: RequestOptions): Promise<ApiResponse<T>> {
    const res = await t.request<T>(method, path, options);
    statuses.push(res.status);
    return res;
  }

  async function wallet(userId: string) {
    return (await call('GET', `/api/wallets/${userId}`)).body.data as { balance: string; held: string; credits: string };
  }

  async function walletWith(topUps: number): Promise<string> {
    const userId = uniqueId('max-user');
    expect((await call('POST', '/api/wallets', { body: { user_id: userId, initial_credits: MAX_CREDITS } })).status).toBe(201);
    for (let i = 0; i < topUps; i++) await topUp(userId);
    initial.set(userId, micros(MAX_CREDITS) * BigInt(1 + topUps));
    return userId;
  }

  async function topUp(userId: string) {
    const res = await call('POST', `/api/wallets/${userId}/top-up`, { body: { amount: MAX_CREDITS } });
    if (res.status !== 200) console.log('TOPUP', JSON.stringify(res.body));
    expect(res.status).toBe(200);
    expect(res.body.data.status).toBe('applied');
  }

  async function hold(userId: string): Promise<string> {
    const res = await call('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: { user_id: userId, feature_endpoint_id: FEATURE },
    });
    expect(res.status).toBe(200);
    expect(res.body.data.hold_amount).toBe(HOLD);
    return res.body.data.usage_key;
  }

  const ledgerEntries = async () =>
    BigInt(await withDb(t.db.url, async (c) => (await c.query('SELECT count(*) AS n FROM ledger_entries')).rows[0].n));
  const failureCount = async () => (await call('GET', '/api/settlement-failures?limit=200')).body.data.items.length as number;

  beforeAll(async () => {
    vhost = await createTestVhost();
    t = await startTestApp({ RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: '100,200' });
    await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
    // Every value at its limit is accepted.
    const settings = await call('PUT', '/api/pricing/settings', { body: { credits_per_usd: MAX_RATE, default_profit_margin: MAX_MARGIN } });
    expect(settings.status).toBe(200);
    const model = await call('POST', '/api/pricing/models', {
      body: {
        ai_model: 'max-model',
        input_price_per_million: MAX_PRICE,
        output_price_per_million: MAX_PRICE,
        cached_input_price_per_million: MAX_PRICE,
        profit_margin: MAX_MARGIN,
      },
    });
    expect(model.status).toBe(201);
    const feature = await call('POST', '/api/features', {
      body: {
        feature_endpoint_id: FEATURE,
        name: 'At the limits',
        min_holding_credits: MAX_CREDITS,
        profit_margin: MAX_MARGIN,
        fixed_cost: MAX_CREDITS,
      },
    });
    expect(feature.status).toBe(201);
  });

  afterAll(async () => {
    await t?.close();
    await vhost?.delete();
  });

  it('adds up: the hand-computed figures agree with a bigint computation', () => {
    const E18 = 10n ** 18n; // micro-credits of 10^12 credits
    expect(micros(USAGE_CREDITS)).toBe(2_000_000_000n * 101n * 1_000_000_000n * 1_000_000n);
    expect(formatMicros(micros(USAGE_CREDITS) + E18)).toBe(SINGLE_CHARGE);
    expect(formatMicros(100n * micros(USAGE_CREDITS) + E18)).toBe(MULTI_CHARGE);
  });

  it('refuses one step beyond each limit with 400 validation_error, writing nothing', async () => {
    const before = await ledgerEntries();
    const userId = await walletWith(0);
    const afterWallet = await ledgerEntries();
    const refused: [string, string, unknown][] = [
      ['PUT', '/api/pricing/settings', { credits_per_usd: '1000000000.000001' }],
      ['PUT', '/api/pricing/settings', { default_profit_margin: '100.000001' }],
      ['PATCH', '/api/pricing/models/max-model', { input_price_per_million: '1000000.000001' }],
      ['PATCH', '/api/pricing/models/max-model', { profit_margin: '100.000001' }],
      ['PATCH', `/api/features/${FEATURE}`, { fixed_cost: '1000000000000.000001' }],
      ['PATCH', `/api/features/${FEATURE}`, { min_holding_credits: '1000000000000.000001' }],
      ['POST', '/api/wallets', { user_id: uniqueId('refused'), initial_credits: '1000000000000.000001' }],
      ['POST', `/api/wallets/${userId}/top-up`, { amount: '1000000000000.000001' }],
      ['POST', `/api/wallets/${userId}/adjust`, { amount: '-1000000000000.000001', reason: 'too much' }],
      ['POST', '/api/pricing/quote', { feature_endpoint_id: FEATURE, usages: [{ ...maxUsage(false), input_tokens: MAX_TOKENS + 1 }] }],
      ['POST', '/api/pricing/quote', { feature_endpoint_id: FEATURE, usages: [...maxUsages, maxUsage(false)] }],
      [
        'POST',
        '/api/credits-process/end',
        { user_id: userId, feature_endpoint_id: FEATURE, ...maxUsage(false), output_tokens: MAX_TOKENS + 1 },
      ],
      [
        'POST',
        '/api/credits-process/end-multimodel',
        { user_id: userId, feature_endpoint_id: FEATURE, usages: [...maxUsages, maxUsage(true)] },
      ],
    ];
    for (const [method, path, body] of refused) {
      const res = await call(method, path, { body });
      expect({ path, body, status: res.status, word: res.body.data?.status }).toEqual({
        path,
        body,
        status: 400,
        word: 'validation_error',
      });
    }
    expect(await ledgerEntries()).toBe(afterWallet);
    expect(afterWallet).toBe(before + 1n);
    expect(await wallet(userId)).toMatchObject({ balance: '1000000000000.000000', held: '0.000000' });
  });

  it('quotes 100 usages at every limit exactly', async () => {
    const res = await call('POST', '/api/pricing/quote', { key: SERVICE_KEY, body: { feature_endpoint_id: FEATURE, usages: maxUsages } });
    expect(res.status).toBe(200);
    expect(res.body.data.credits_charged).toBe(MULTI_CHARGE);
    expect(res.body.data.usages).toHaveLength(MAX_USAGES);
    for (const u of res.body.data.usages) expect(u).toMatchObject({ cost_usd: USAGE_COST_USD, credits: USAGE_CREDITS });
  });

  it('HTTP /end-multimodel settles a maximum hold with the maximum charge, exactly, and repeats it as already_settled', async () => {
    const userId = await walletWith(1);
    const usageKey = await hold(userId);
    const res = await call('POST', '/api/credits-process/end-multimodel', {
      key: SERVICE_KEY,
      body: { user_id: userId, usage_key: usageKey, feature_endpoint_id: FEATURE, usages: maxUsages },
    });
    // 2·10^12 − 20,200,000,001,000,000,000,000
    const balance = '-20199999999000000000000.000000';
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ status: 'settled', credits_charged: MULTI_CHARGE, balance, held: '0.000000', credits: balance });
    expect(formatMicros(initial.get(userId)! - micros(MULTI_CHARGE))).toBe(balance);
    expected.push({ userId, usageKey, charge: micros(MULTI_CHARGE) });

    const again = await call('POST', '/api/credits-process/end-multimodel', {
      key: SERVICE_KEY,
      body: { user_id: userId, usage_key: usageKey, feature_endpoint_id: FEATURE, usages: maxUsages },
    });
    expect(again.status).toBe(200);
    expect(again.body.data).toMatchObject({ status: 'already_settled', credits_charged: MULTI_CHARGE, balance });
    const story = await call('GET', `/api/credits-process/usages/${usageKey}`, { key: SERVICE_KEY });
    expect(story.status).toBe(200);
    expect(story.body.data.settlement.credits_charged).toBe(MULTI_CHARGE);
    expect(await wallet(userId)).toMatchObject({ balance, held: '0.000000' });
  });

  it('HTTP /end (legacy) takes a direct charge at the limits, exactly, once per idempotency key', async () => {
    const userId = await walletWith(0);
    const body = { user_id: userId, feature_endpoint_id: FEATURE, idempotency_key: 'legacy-max', ...maxUsage(true) };
    const res = await call('POST', '/api/credits-process/end', { key: SERVICE_KEY, body });
    // 10^12 − 202,000,001,000,000,000,000
    const balance = '-202000000000000000000.000000';
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ status: 'settled', credits_charged: SINGLE_CHARGE, balance });
    const again = await call('POST', '/api/credits-process/end', { key: SERVICE_KEY, body });
    expect(again.body.data).toMatchObject({ status: 'already_settled', credits_charged: SINGLE_CHARGE, balance });
    expected.push({ userId, idempotencyKey: 'legacy-max', charge: micros(SINGLE_CHARGE) });
    expect(await wallet(userId)).toMatchObject({ balance });
  });

  it('one wallet takes 24 concurrent maximum charges and top-ups at the maximum between them, every figure exact', async () => {
    const userId = await walletWith(0);
    const charges = 24;
    const topUps = 6;
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < charges; i++) {
      const key = `many-${i}`;
      expected.push({ userId, idempotencyKey: key, charge: micros(MULTI_CHARGE) });
      work.push(
        call('POST', '/api/credits-process/end-multimodel', {
          key: SERVICE_KEY,
          body: { user_id: userId, feature_endpoint_id: FEATURE, idempotency_key: key, usages: maxUsages },
        }).then((res) => {
          expect(res.status).toBe(200);
          expect(res.body.data).toMatchObject({ status: 'settled', credits_charged: MULTI_CHARGE });
        }),
      );
      if (i % (charges / topUps) === 0) work.push(topUp(userId));
    }
    await Promise.all(work);
    initial.set(userId, initial.get(userId)! + BigInt(topUps) * micros(MAX_CREDITS));
    // 7·10^12 − 24 · 20,200,000,001,000,000,000,000 = 7·10^12 − 484,800,000,024,000,000,000,000
    const balance = '-484800000017000000000000.000000';
    expect(formatMicros(initial.get(userId)! - BigInt(charges) * micros(MULTI_CHARGE))).toBe(balance);
    expect(await wallet(userId)).toMatchObject({ balance, held: '0.000000' });
    const last = (await call('GET', `/api/wallets/${userId}/transactions?limit=1`)).body.data.items[0];
    expect(last.balance_after).toBe(balance);
  });

  it('both RabbitMQ queues settle holds and direct charges at the limits: charged once, exactly, nothing failed or dead-lettered', async () => {
    const failuresBefore = await failureCount();
    const userId = await walletWith(1);
    const multiKey = await hold(userId);
    const legacyKey = await hold(userId); // available was exactly one hold: ≥ is enough
    const messages: [string, unknown][] = [
      [MULTI_QUEUE, { user_id: userId, usage_key: multiKey, feature_endpoint_id: FEATURE, usages: maxUsages }],
      [LEGACY_QUEUE, { user_id: userId, usage_key: legacyKey, feature_endpoint_id: FEATURE, ...maxUsage(false) }],
      [MULTI_QUEUE, { user_id: userId, idempotency_key: 'queue-multi', feature_endpoint_id: FEATURE, usages: maxUsages }],
      [LEGACY_QUEUE, { user_id: userId, idempotency_key: 'queue-legacy', feature_endpoint_id: FEATURE, ...maxUsage(true) }],
    ];
    for (const [queue, message] of messages) await publish(vhost.url, queue, [message, message]);
    expected.push(
      { userId, usageKey: multiKey, charge: micros(MULTI_CHARGE) },
      { userId, usageKey: legacyKey, charge: micros(SINGLE_CHARGE) },
      { userId, idempotencyKey: 'queue-multi', charge: micros(MULTI_CHARGE) },
      { userId, idempotencyKey: 'queue-legacy', charge: micros(SINGLE_CHARGE) },
    );
    // 2·10^12 − 2 · 20,200,000,001,000,000,000,000 − 2 · 202,000,001,000,000,000,000
    const balance = '-40804000002000000000000.000000';
    expect(formatMicros(initial.get(userId)! - 2n * micros(MULTI_CHARGE) - 2n * micros(SINGLE_CHARGE))).toBe(balance);
    // Either every charge lands, or something went wrong: stop waiting as soon as it does.
    await waitFor(
      'the four charges (or a failure)',
      async () =>
        (await wallet(userId)).balance === balance ||
        (await queueDepth(vhost.url, DEAD_LETTER_QUEUE)) > 0 ||
        (await failureCount()) > failuresBefore,
      30_000,
    );
    // The duplicates of each message are processed too (queues drained), without charging.
    await waitFor(
      'both queues to drain',
      async () => (await queueDepth(vhost.url, MULTI_QUEUE)) + (await queueDepth(vhost.url, LEGACY_QUEUE)) === 0,
    );
    expect(await queueDepth(vhost.url, DEAD_LETTER_QUEUE)).toBe(0);
    expect(await failureCount()).toBe(failuresBefore);
    expect(await wallet(userId)).toMatchObject({ balance, held: '0.000000' });
  });

  it('keeps the books: every charge once and exact, every wallet reconciled, no 5xx answered', async () => {
    // Settlement is asynchronous on the queue: wait until every expected charge is there.
    const books = await waitFor('every charge', async () => {
      const b = await checkBooks(t.db.url, initial, expected);
      return b.chargeEntries >= expected.length && b;
    });
    expect({
      duplicates: books.duplicates,
      lost: books.lost,
      unexpected: books.unexpected,
      wrongAmount: books.wrongAmount,
      walletMismatches: books.walletMismatches,
    }).toEqual({ duplicates: 0, lost: 0, unexpected: 0, wrongAmount: [], walletMismatches: [] });
    const rec = await call('GET', '/api/reconciliation');
    expect(rec.status).toBe(200);
    expect(rec.body.data.mismatches).toEqual([]);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
  });

  it('has columns wide enough for what the limits accept: a billion maximum charges on one wallet', async () => {
    const columns = await withDb(
      t.db.url,
      async (c) =>
        (
          await c.query<{ col: string; precision: number; scale: number }>(
            `SELECT table_name || '.' || column_name AS col, numeric_precision AS precision, numeric_scale AS scale
           FROM information_schema.columns
           WHERE table_schema = 'public' AND data_type = 'numeric' AND table_name IN ('wallets', 'ledger_entries', 'holds', 'features')
           ORDER BY 1`,
          )
        ).rows,
    );
    const integerDigits = Object.fromEntries(columns.map((c) => [c.col, c.precision - c.scale]));
    expect(columns.every((c) => c.scale === 6)).toBe(true);
    const digits = (money: string) => money.split('.')[0].replace('-', '').length;
    // A running sum (balance, held, and their copies on each entry) and a charge: 10^9 maximum charges.
    const accumulating = [
      'ledger_entries.amount',
      'ledger_entries.balance_after',
      'ledger_entries.held_after',
      'wallets.balance',
      'wallets.held',
    ];
    for (const col of accumulating) expect({ col, fits: integerDigits[col] >= digits(MULTI_CHARGE) + 9 }).toEqual({ col, fits: true });
    // One request amount: a hold, a feature's minimum or fixed cost.
    for (const col of ['holds.amount', 'features.min_holding_credits', 'features.fixed_cost'])
      expect({ col, fits: integerDigits[col] >= digits(HOLD) }).toEqual({ col, fits: true });
  });
});

describe('upgrade from the schema of 1764000000002', () => {
  let db: TestDatabase;
  let t: TestApp | undefined;
  const OLD_MAX = '999999999999999999.999999'; // the largest numeric(24,6)

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  const relfilenodes = () =>
    withDb(db.url, async (c) =>
      Object.fromEntries(
        (
          await c.query<{ relname: string; relfilenode: string }>(
            `SELECT relname, relfilenode::text FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'i') AND relname NOT LIKE 'migrations%' ORDER BY relname`,
          )
        ).rows.map((r) => [r.relname, r.relfilenode]),
      ),
    );

  it('widens the money columns in place, keeps every value and the books, and then holds what the old columns could not', async () => {
    const old = new DataSource({
      ...databaseOptions(db.url, { poolSize: 1, embedded: false }),
      migrations: MIGRATIONS.slice(0, 3),
      migrationsRun: false,
    });
    await old.initialize();
    try {
      expect((await old.runMigrations({ transaction: 'each' })).map((m) => m.name)).toEqual([
        'WalletsAndLedger1764000000000',
        'FeaturesAndPricing1764000000001',
        'HoldsAndSettlementFailures1764000000002',
      ]);
      // Books at the old columns' edges: a full wallet, a wallet as far below zero, a live hold.
      await old.query(`INSERT INTO features (feature_endpoint_id, name, min_holding_credits) VALUES ('old-feature', 'Old', 5)`);
      await old.query(`INSERT INTO wallets (user_id, plan, status, balance, held, version) VALUES
        ('old-full', 'free', 'active', ${OLD_MAX}, 0, 1), ('old-deep', 'free', 'active', -${OLD_MAX}, 0, 1),
        ('old-held', 'free', 'active', 100, 5, 1)`);
      await old.query(`INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after) VALUES
        ('old-full', 'initial', ${OLD_MAX}, ${OLD_MAX}, 0), ('old-deep', 'adjustment', -${OLD_MAX}, -${OLD_MAX}, 0),
        ('old-held', 'initial', 100, 100, 0)`);
      await old.query(`INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at)
        VALUES ('6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10', 'old-held', 'old-feature', 5, 'held', now() + interval '1 hour')`);
    } finally {
      await old.destroy();
    }
    const before = await relfilenodes();

    t = await startTestApp({}, db);
    const applied = await withDb(db.url, async (c) =>
      (await c.query<{ name: string }>('SELECT name FROM migrations ORDER BY id')).rows.map((r) => r.name),
    );
    // Applied by this start (the database was at 1764000000002); later migrations may follow it.
    expect(applied).toContain('WideMoneyColumns1764000000003');

    // No table rewritten, no index rebuilt: the files are the same ones.
    // Every relation that existed before keeps its file (later migrations add tables of their own).
    const after = await relfilenodes();
    expect(Object.fromEntries(Object.keys(before).map((name) => [name, after[name]]))).toEqual(before);
    const types = await withDb(db.url, async (c) =>
      Object.fromEntries(
        (
          await c.query<{ col: string; type: string }>(
            `SELECT table_name || '.' || column_name AS col, format('%s,%s', numeric_precision, numeric_scale) AS type
             FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('wallets', 'ledger_entries', 'holds') AND data_type = 'numeric'`,
          )
        ).rows.map((r) => [r.col, r.type]),
      ),
    );
    expect(types).toEqual({
      'wallets.balance': '38,6',
      'wallets.held': '38,6',
      'ledger_entries.amount': '38,6',
      'ledger_entries.balance_after': '38,6',
      'ledger_entries.held_after': '38,6',
      'holds.amount': '24,6',
      // Added by the grants migration (1764000000018), at the ledger's width.
      'wallets.debt': '38,6',
    });
    // The re-added check is validated and still refuses a negative held.
    const check = await withDb(
      db.url,
      async (c) => (await c.query(`SELECT convalidated FROM pg_constraint WHERE conname = 'wallets_held_check'`)).rows,
    );
    expect(check).toEqual([{ convalidated: true }]);
    await expect(withDb(db.url, (c) => c.query(`UPDATE wallets SET held = -1 WHERE user_id = 'old-held'`))).rejects.toMatchObject({
      code: '23514',
    });

    const view = async (userId: string) => (await t!.request('GET', `/api/wallets/${userId}`)).body.data;
    expect(await view('old-full')).toMatchObject({ balance: OLD_MAX, held: '0.000000' });
    expect(await view('old-deep')).toMatchObject({ balance: `-${OLD_MAX}` });
    expect(await view('old-held')).toMatchObject({ balance: '100.000000', held: '5.000000', credits: '95.000000' });
    expect((await t.request('GET', '/api/reconciliation')).body.data).toEqual({ wallets_checked: 3, mismatches: [] });

    // Past the old columns' edge, both ways.
    const topUp = await t.request('POST', '/api/wallets/old-full/top-up', { body: { amount: MAX_CREDITS } });
    expect(topUp.status).toBe(200);
    expect(topUp.body.data.wallet.balance).toBe('1000000999999999999.999999');
    const adjust = await t.request('POST', '/api/wallets/old-deep/adjust', {
      body: { amount: `-${MAX_CREDITS}`, reason: 'past the old edge' },
    });
    expect(adjust.status).toBe(200);
    expect((await view('old-deep')).balance).toBe('-1000000999999999999.999999');
    expect((await t.request('GET', '/api/reconciliation')).body.data).toEqual({ wallets_checked: 3, mismatches: [] });
  });
});
