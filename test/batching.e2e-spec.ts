import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { checkBooks, ExpectedUsage, reportFigures } from './support/books';
import {
  createCatalog,
  expectedCharge,
  formatMicros,
  LEGACY_QUEUE,
  micros,
  MULTI_QUEUE,
  randomUsages,
  rng,
  runPool,
  UsageLine,
} from './support/catalog';
import { scalar, waitForSettlements, withDb } from './support/faults';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { ApiResponse, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/**
 * The coalesced (batched) paths of commit 6489e4e under real concurrency: many requests fired at
 * once with Promise.all against the real app, real PostgreSQL and real RabbitMQ.
 *
 * Each scenario proves two things:
 *  - the answers and the books are exactly what one-by-one processing would have produced
 *    (API.md §4: exactly-K holds, one charge per key, contract errors for the bad ones only,
 *    ledger entries whose balance_after / held_after chain);
 *  - the requests WERE batched: the `credits_batch_size` histogram saw a statement carrying more
 *    than one request, and the rows written share one PostgreSQL transaction (`xmin`). The single
 *    path commits each start / settlement in its own transaction, so if batching were removed
 *    both assertions would fail.
 *
 * Catalogue (test/support/catalog.ts): feature `chat` holds 5 credits (margin 0.2), `tool` holds
 * 1.5 (fixed cost 0.01); models gpt-4o, mini-x, odd-7. Charges are checked against the
 * independent bigint calculator `expectedCharge`.
 */

const HOLD = 5_000_000n; // chat's min_holding_credits, in micro-credits
const ZERO = '0.000000';

let t: TestApp;
let vhost: TestVhost;
const run = randomBytes(3).toString('hex');
let counter = 0;
const uniqueId = (prefix: string) => `${prefix}-${run}-${++counter}`;

// --- calls -----------------------------------------------------------------------------------

const start = (user_id: string, feature_endpoint_id: string) =>
  t.request('POST', '/api/credits-process/start', { key: SERVICE_KEY, body: { user_id, feature_endpoint_id } });
const endMulti = (body: unknown, headers?: Record<string, string>) =>
  t.request('POST', '/api/credits-process/end-multimodel', { key: SERVICE_KEY, body, headers });
const endLegacy = (body: unknown) => t.request('POST', '/api/credits-process/end', { key: SERVICE_KEY, body });

async function createWallet(credits: string, plan?: string): Promise<string> {
  const user_id = uniqueId('user');
  const res = await t.request('POST', '/api/wallets', { body: { user_id, initial_credits: credits, ...(plan ? { plan } : {}) } });
  expect(res.status).toBe(201);
  return user_id;
}
const createWallets = (count: number, credits: string) => runPool(Array.from({ length: count }), 8, () => createWallet(credits));

async function wallet(userId: string): Promise<{ balance: string; held: string; credits: string; status: string }> {
  const res = await t.request('GET', `/api/wallets/${userId}`);
  expect(res.status).toBe(200);
  return res.body.data;
}

/** Places holds one after another (set-up only; the bursts under test are fired with Promise.all). */
async function holdsFor(userId: string, count: number, feature = 'chat'): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await start(userId, feature);
    expect(res.status).toBe(200);
    keys.push(res.body.data.usage_key);
  }
  return keys;
}

/**
 * Opens `n` keep-alive connections to the app right before a burst, as a partner's HTTP pool
 * would have them: a burst on cold sockets reaches the server spread over many event-loop turns
 * (TCP accepts), so its requests mostly arrive alone and nothing is left to batch.
 */
async function warmUp(n: number): Promise<void> {
  const res = await Promise.all(Array.from({ length: n }, () => t.request('GET', '/health/live', { key: null })));
  expect(res.every((r) => r.status === 200)).toBe(true);
}

function expectFailure(res: ApiResponse, status: number, word: string): void {
  expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status, word });
  expect(res.body).toEqual({ success: false, data: expect.objectContaining({ status: word, message: expect.any(String) }) });
}

// --- metrics ---------------------------------------------------------------------------------

type Samples = { name: string; labels: Record<string, string>; value: number }[];

async function scrape(app: TestApp = t): Promise<Samples> {
  const res = await app.request('GET', '/metrics', { key: null });
  expect(res.status).toBe(200);
  const samples: Samples = [];
  for (const line of (res.body as string).split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith('#')) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

function sample(samples: Samples, name: string, labels: Record<string, string>): number {
  const found = samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found?.value ?? 0;
}

interface BatchStats {
  /** Coalesced statements run. */
  statements: number;
  /** Requests they carried (Σ batch sizes). */
  requests: number;
  /** Statements that carried exactly one request. */
  alone: number;
}

function batchStats(samples: Samples, kind: 'start' | 'settle'): BatchStats {
  return {
    statements: sample(samples, 'credits_batch_size_count', { kind }),
    requests: sample(samples, 'credits_batch_size_sum', { kind }),
    alone: sample(samples, 'credits_batch_size_bucket', { kind, le: '1' }),
  };
}

/** Snapshot of the batching histogram and the outcome counters, to diff around a burst. */
async function snapshot() {
  const s = await scrape();
  return {
    start: batchStats(s, 'start'),
    settle: batchStats(s, 'settle'),
    starts: (outcome: string) => sample(s, 'credits_starts_total', { outcome }),
    settlements: (channel: string, outcome: string) => sample(s, 'credits_settlements_total', { channel, outcome }),
  };
}
type Snapshot = Awaited<ReturnType<typeof snapshot>>;

/**
 * Every one of `requests` went through the coalescer exactly once, and at least one statement
 * carried more than one of them. Returns the figures for the report.
 */
function expectBatched(before: Snapshot, after: Snapshot, kind: 'start' | 'settle', requests: number) {
  const statements = after[kind].statements - before[kind].statements;
  const alone = after[kind].alone - before[kind].alone;
  expect(after[kind].requests - before[kind].requests).toBe(requests);
  expect({ statementsCarryingSeveral: statements - alone > 0 }).toEqual({ statementsCarryingSeveral: true });
  expect(statements).toBeLessThan(requests);
  return { requests, statements, alone, meanBatch: +(requests / statements).toFixed(1) };
}

// --- the books, read straight from the test database -----------------------------------------

interface LedgerRow {
  id: bigint;
  kind: string;
  amount: bigint;
  balance_after: bigint;
  held_after: bigint;
  usage_key: string | null;
}

async function ledgerOf(userId: string): Promise<LedgerRow[]> {
  return withDb(t.db.url, async (c) => {
    const { rows } = await c.query<Record<string, string | null>>(
      `SELECT id::text, kind, amount::text, balance_after::text, held_after::text, usage_key::text
       FROM ledger_entries WHERE user_id = $1 ORDER BY ledger_entries.id`,
      [userId],
    );
    return rows.map((r) => ({
      id: BigInt(r.id!),
      kind: r.kind!,
      amount: micros(r.amount!),
      balance_after: micros(r.balance_after!),
      held_after: micros(r.held_after!),
      usage_key: r.usage_key,
    }));
  });
}

/**
 * Some PostgreSQL transaction wrote more than one of the rows (they share their `xmin`): the
 * set-based statement really ran. The single path commits every start / settlement by itself,
 * so without batching each row has its own xmin. `holds` counts holds still held (their xmin is
 * the start's), `charges` the charge entries of the settlements.
 */
async function expectWrittenTogether(what: 'holds' | 'charges', users: string[]): Promise<number> {
  const sql =
    what === 'holds'
      ? `SELECT xmin FROM holds WHERE status = 'held' AND NOT direct AND user_id = ANY($1)`
      : `SELECT xmin FROM ledger_entries WHERE kind = 'charge' AND user_id = ANY($1)`;
  const largest = await withDb(t.db.url, async (c) => {
    const { rows } = await c.query<{ n: string }>(
      `SELECT COALESCE(max(n), 0)::text AS n FROM (SELECT count(*) AS n FROM (${sql}) q GROUP BY q.xmin::text) g`,
      [users],
    );
    return Number(rows[0].n);
  });
  expect({ what, writtenByOneTransaction: largest > 1 }).toEqual({ what, writtenByOneTransaction: true });
  return largest;
}

/**
 * A wallet's ledger, in id order, chains exactly: each balance_after is the previous one plus the
 * entry's amount (from 0), each charge's held_after is the previous held minus what its hold
 * still held (starting from `heldBeforeCharges`, the wallet's held when the charges began; `null`
 * when starts ran concurrently, then only held_after ≥ 0 is checked), and the last entry agrees
 * with the wallet row. Returns the charge entries.
 */
async function expectChained(
  userId: string,
  heldBeforeCharges: bigint | null,
  holdAmount: (usageKey: string) => bigint = () => 0n,
): Promise<LedgerRow[]> {
  const entries = await ledgerOf(userId);
  const w = await wallet(userId);
  let balance = 0n;
  let held = heldBeforeCharges ?? 0n;
  const problems: string[] = [];
  for (const e of entries) {
    balance += e.amount;
    if (e.balance_after !== balance)
      problems.push(`entry ${e.id}: balance_after ${formatMicros(e.balance_after)}, chain says ${formatMicros(balance)}`);
    if (e.held_after < 0n) problems.push(`entry ${e.id}: held_after ${formatMicros(e.held_after)} < 0`);
    if (heldBeforeCharges !== null && e.kind === 'charge') {
      held -= holdAmount(e.usage_key!);
      if (e.held_after !== held) problems.push(`entry ${e.id}: held_after ${formatMicros(e.held_after)}, chain says ${formatMicros(held)}`);
    }
  }
  expect(problems).toEqual([]);
  const last = entries[entries.length - 1];
  expect(w.balance).toBe(formatMicros(last.balance_after));
  // Holds placed after the last entry change held without an entry: only comparable when no start ran since.
  if (heldBeforeCharges !== null) expect(w.held).toBe(formatMicros(last.held_after));
  expect(w.balance).toBe(formatMicros(entries.reduce((sum, e) => sum + e.amount, 0n)));
  return entries.filter((e) => e.kind === 'charge');
}

// --- set-up ----------------------------------------------------------------------------------

let proOnly: string;
let inactive: string;

beforeAll(async () => {
  vhost = await createTestVhost();
  // No sweeper: every hold here lives 15 minutes, and a sweeper tick would only add noise.
  t = await startTestApp({ RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: '100,200', HOLD_SWEEP_INTERVAL_MS: '0' });
  await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
  await createCatalog(t.request);
  proOnly = uniqueId('pro-only');
  inactive = uniqueId('inactive');
  for (const [feature_endpoint_id, extra] of [
    [proOnly, { allowed_plans: ['pro'] }],
    [inactive, { active: false }],
  ] as const) {
    const res = await t.request('POST', '/api/features', {
      body: { feature_endpoint_id, name: feature_endpoint_id, min_holding_credits: '5', ...extra },
    });
    expect(res.status).toBe(201);
  }
});

afterAll(async () => {
  await t?.close();
  await vhost?.delete();
});

// --- starts ----------------------------------------------------------------------------------

describe('batched starts', () => {
  it('100 concurrent starts on 50 wallets (2 each): all accessible, held = 2 × hold, balance unchanged, one hold row each', async () => {
    const users = await createWallets(50, '100');
    const order = rng(1).shuffle([...users, ...users]);
    await warmUp(120);
    const before = await snapshot();
    const answers = await Promise.all(order.map((u) => start(u, 'chat')));
    const after = await snapshot();

    expect(answers.map((r) => r.status)).toEqual(Array(100).fill(200));
    const keys = answers.map((r) => r.body.data.usage_key as string);
    expect(new Set(keys).size).toBe(100);
    for (const [i, r] of answers.entries()) {
      expect(r.body.data).toMatchObject({
        status: 'accessible',
        user_id: order[i],
        feature_endpoint_id: 'chat',
        balance: '100.000000',
        hold_amount: '5.000000',
      });
      expect(micros(r.body.data.credits)).toBe(100_000_000n - micros(r.body.data.held));
    }
    // Each wallet's two answers saw the holds placed one after the other: held 5, then 10.
    for (const u of users) {
      const seen = answers
        .filter((r) => r.body.data.user_id === u)
        .map((r) => r.body.data.held)
        .sort();
      expect(seen).toEqual(['10.000000', '5.000000']);
    }
    const wallets = await Promise.all(users.map(wallet));
    for (const w of wallets) expect(w).toMatchObject({ balance: '100.000000', held: '10.000000', credits: '90.000000' });

    const holds = await withDb(
      t.db.url,
      async (c) =>
        (
          await c.query<{ usage_key: string; user_id: string; amount: string; status: string }>(
            `SELECT usage_key::text, user_id, amount::text, status FROM holds WHERE user_id = ANY($1)`,
            [users],
          )
        ).rows,
    );
    expect(holds).toHaveLength(100);
    const byKey = new Map(holds.map((h) => [h.usage_key, h]));
    keys.forEach((k, i) => expect(byKey.get(k)).toEqual({ usage_key: k, user_id: order[i], amount: '5.000000', status: 'held' }));
    // No ledger entry for a hold: each wallet still has only its initial entry.
    for (const u of users.slice(0, 5)) expect((await ledgerOf(u)).map((e) => e.kind)).toEqual(['initial']);

    expect(after.starts('accessible') - before.starts('accessible')).toBe(100);
    const figures = expectBatched(before, after, 'start', 100);
    await expectWrittenTogether('holds', users);
    reportFigures('batching: 100 starts on 50 wallets', figures);
  });

  it('40 concurrent starts on one wallet with room for exactly 7: 7 accessible, 33 × 402 insufficient_credits', async () => {
    const userId = await createWallet('37'); // 7 × 5 = 35, 2 left
    await warmUp(120);
    const before = await snapshot();
    const answers = await Promise.all(Array.from({ length: 40 }, () => start(userId, 'chat')));
    const after = await snapshot();

    const accessible = answers.filter((r) => r.status === 200);
    const refused = answers.filter((r) => r.status !== 200);
    expect(accessible).toHaveLength(7);
    expect(refused).toHaveLength(33);
    for (const r of refused) {
      expect(r.status).toBe(402);
      expect(r.body).toEqual({
        success: false,
        data: { status: 'insufficient_credits', message: expect.any(String), credits: '2.000000', required: '5.000000' },
      });
    }
    // The 7 holds were placed one against what the previous ones left: held 5, 10, …, 35.
    const held = accessible.map((r) => micros(r.body.data.held)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(held).toEqual(Array.from({ length: 7 }, (_, i) => BigInt(i + 1) * HOLD));
    for (const r of accessible) expect(micros(r.body.data.credits)).toBe(37_000_000n - micros(r.body.data.held));

    expect(await wallet(userId)).toMatchObject({ balance: '37.000000', held: '35.000000', credits: '2.000000' });
    const rows = await withDb(
      t.db.url,
      async (c) =>
        (await c.query<{ usage_key: string }>(`SELECT usage_key::text FROM holds WHERE user_id = $1 AND status = 'held'`, [userId])).rows,
    );
    expect(rows.map((r) => r.usage_key).sort()).toEqual(accessible.map((r) => r.body.data.usage_key).sort());

    expect(after.starts('accessible') - before.starts('accessible')).toBe(7);
    expect(after.starts('insufficient_credits') - before.starts('insufficient_credits')).toBe(33);
    await expectWrittenTogether('holds', [userId]);
    reportFigures('batching: 40 starts, room for 7', expectBatched(before, after, 'start', 40));
  });

  it('a mixed burst: suspended wallet, plan not permitted, unknown wallet / feature, inactive feature and a tight wallet each get their own answer while the others succeed', async () => {
    const good = await createWallets(20, '50');
    const suspended = await createWallet('100');
    expect((await t.request('PATCH', `/api/wallets/${suspended}`, { body: { status: 'suspended' } })).status).toBe(200);
    const freePlan = await createWallet('100');
    const proPlan = await createWallet('100', 'pro');
    const tight = await createWallet('12'); // room for 2 holds of 5
    const unknownWallet = uniqueId('nobody');
    const unknownFeature = uniqueId('no-feature');

    type Case = { user: string; feature: string; expect: [number, string] };
    const cases: Case[] = [
      ...good.flatMap((user) => [0, 1, 2].map(() => ({ user, feature: 'chat', expect: [200, 'accessible'] as [number, string] }))),
      ...[0, 1, 2].map(() => ({ user: suspended, feature: 'chat', expect: [403, 'wallet_suspended'] as [number, string] })),
      ...[0, 1, 2].map(() => ({ user: freePlan, feature: proOnly, expect: [403, 'feature_not_permitted'] as [number, string] })),
      ...[0, 1].map(() => ({ user: proPlan, feature: proOnly, expect: [200, 'accessible'] as [number, string] })),
      ...[0, 1, 2].map(() => ({ user: unknownWallet, feature: 'chat', expect: [404, 'wallet_not_found'] as [number, string] })),
      ...[0, 1].map(() => ({ user: good[0], feature: unknownFeature, expect: [404, 'feature_not_found'] as [number, string] })),
      ...[0, 1].map(() => ({ user: good[1], feature: inactive, expect: [403, 'feature_inactive'] as [number, string] })),
      // The plan-refused start on the same wallet as permitted ones must not block them.
      { user: freePlan, feature: 'chat', expect: [200, 'accessible'] },
    ];
    const tightCases = Array.from({ length: 6 }, () => ({ user: tight, feature: 'chat' }));
    const burst = rng(2).shuffle([
      ...cases.map((c) => ({ ...c, tight: false })),
      ...tightCases.map((c) => ({ ...c, tight: true, expect: [0, ''] as [number, string] })),
    ]);

    await warmUp(120);
    const before = await snapshot();
    const answers = await Promise.all(burst.map((c) => start(c.user, c.feature)));
    const after = await snapshot();

    burst.forEach((c, i) => {
      if (c.tight) return;
      const [status, word] = c.expect;
      if (status === 200) {
        expect({ status: answers[i].status, word: answers[i].body.data.status, user: answers[i].body.data.user_id }).toEqual({
          status,
          word,
          user: c.user,
        });
      } else expectFailure(answers[i], status, word);
    });
    const tightAnswers = answers.filter((_, i) => burst[i].tight);
    expect(tightAnswers.filter((r) => r.status === 200)).toHaveLength(2);
    for (const r of tightAnswers.filter((r) => r.status !== 200)) {
      expect(r.body).toEqual({
        success: false,
        data: { status: 'insufficient_credits', message: expect.any(String), credits: '2.000000', required: '5.000000' },
      });
    }

    // Exactly the accessible ones hold; refused wallets hold nothing.
    for (const u of good) expect(await wallet(u)).toMatchObject({ balance: '50.000000', held: '15.000000' });
    expect(await wallet(suspended)).toMatchObject({ balance: '100.000000', held: ZERO, status: 'suspended' });
    expect(await wallet(freePlan)).toMatchObject({ balance: '100.000000', held: '5.000000' });
    expect(await wallet(proPlan)).toMatchObject({ balance: '100.000000', held: '10.000000' });
    expect(await wallet(tight)).toMatchObject({ balance: '12.000000', held: '10.000000' });
    const holdCount = await withDb(t.db.url, async (c) =>
      Number(
        (
          await c.query(`SELECT count(*)::int AS n FROM holds WHERE user_id = ANY($1)`, [
            [...good, suspended, freePlan, proPlan, tight, unknownWallet],
          ])
        ).rows[0].n,
      ),
    );
    expect(holdCount).toBe(60 + 0 + 1 + 2 + 2);

    const outcome = (word: string) => after.starts(word) - before.starts(word);
    expect({
      accessible: outcome('accessible'),
      wallet_suspended: outcome('wallet_suspended'),
      feature_not_permitted: outcome('feature_not_permitted'),
      wallet_not_found: outcome('wallet_not_found'),
      feature_not_found: outcome('feature_not_found'),
      feature_inactive: outcome('feature_inactive'),
      insufficient_credits: outcome('insufficient_credits'),
    }).toEqual({
      accessible: 65,
      wallet_suspended: 3,
      feature_not_permitted: 3,
      wallet_not_found: 3,
      feature_not_found: 2,
      feature_inactive: 2,
      insufficient_credits: 4,
    });
    await expectWrittenTogether('holds', [...good, proPlan, tight]);
    reportFigures('batching: mixed start burst', expectBatched(before, after, 'start', burst.length));
  });
});

// --- settlements -----------------------------------------------------------------------------

const charged = (feature: string, usages: UsageLine[]) => formatMicros(expectedCharge(feature, usages));

describe('batched settlements', () => {
  it('100 concurrent /end-multimodel of 100 holds on 4 wallets: all settled, each ledger chains exactly, held 0, balance = Σ ledger', async () => {
    const users = await createWallets(4, '1000');
    const holds = (await Promise.all(users.map((u) => holdsFor(u, 25)))).flatMap((keys, w) =>
      keys.map((usage_key) => ({ user_id: users[w], usage_key })),
    );
    for (const u of users) expect((await wallet(u)).held).toBe('125.000000');
    const r = rng(3);
    const bodies = r.shuffle(holds.map((h) => ({ ...h, feature_endpoint_id: 'chat', usages: randomUsages(r) })));

    await warmUp(120);
    const before = await snapshot();
    const answers = await Promise.all(bodies.map((b) => endMulti(b)));
    const after = await snapshot();

    const byKey = new Map<string, { body: (typeof bodies)[number]; answer: any }>();
    answers.forEach((res, i) => {
      expect({ key: bodies[i].usage_key, status: res.status, word: res.body.data?.status }).toEqual({
        key: bodies[i].usage_key,
        status: 200,
        word: 'settled',
      });
      expect(res.body.data).toMatchObject({
        usage_key: bodies[i].usage_key,
        user_id: bodies[i].user_id,
        late: false,
        credits_charged: charged('chat', bodies[i].usages),
      });
      byKey.set(bodies[i].usage_key, { body: bodies[i], answer: res.body.data });
    });

    for (const u of users) {
      const charges = await expectChained(u, 125_000_000n, () => HOLD);
      expect(charges).toHaveLength(25);
      expect((await wallet(u)).held).toBe(ZERO);
      const spent = charges.reduce((sum, e) => sum - e.amount, 0n);
      expect((await wallet(u)).balance).toBe(formatMicros(1_000_000_000n - spent));
      // Every answer carries its own entry's figures: balance / held as of its place in the chain.
      for (const e of charges) {
        const { answer } = byKey.get(e.usage_key!)!;
        expect({
          transaction_id: answer.transaction_id,
          balance: answer.balance,
          held: answer.held,
          credits_charged: answer.credits_charged,
        }).toEqual({
          transaction_id: e.id.toString(),
          balance: formatMicros(e.balance_after),
          held: formatMicros(e.held_after),
          credits_charged: formatMicros(-e.amount),
        });
      }
    }
    const settledHolds = await withDb(
      t.db.url,
      async (c) => (await c.query(`SELECT status, count(*)::int AS n FROM holds WHERE user_id = ANY($1) GROUP BY status`, [users])).rows,
    );
    expect(settledHolds).toEqual([{ status: 'settled', n: 100 }]);

    expect(after.settlements('http', 'settled') - before.settlements('http', 'settled')).toBe(100);
    const figures = expectBatched(before, after, 'settle', 100);
    await expectWrittenTogether('charges', users);
    reportFigures('batching: 100 settlements on 4 wallets', figures);
  });

  it('one usage_key settled 20 times at once, mixed with 20 others (/end and /end-multimodel): one settled, 19 already_settled with the same figures, charged once', async () => {
    const userId = await createWallet('500');
    const [hot, ...others] = await holdsFor(userId, 21);
    const usages = [{ ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300, cached_input_tokens: 200 }];
    const hotBody = { user_id: userId, usage_key: hot, feature_endpoint_id: 'chat', usages };
    const legacyUsage = { ai_model: 'odd-7', input_tokens: 12345, output_tokens: 678 };
    type Call = { kind: 'hot' | 'multi' | 'legacy'; key: string; send: () => Promise<ApiResponse>; charge: string };
    const calls: Call[] = [
      ...Array.from({ length: 20 }, (): Call => ({
        kind: 'hot',
        key: hot,
        send: () => endMulti(hotBody),
        charge: charged('chat', usages),
      })),
      ...others.map((key, i): Call =>
        i % 2 === 0
          ? {
              kind: 'multi',
              key,
              send: () => endMulti({ user_id: userId, usage_key: key, feature_endpoint_id: 'chat', usages }),
              charge: charged('chat', usages),
            }
          : {
              kind: 'legacy',
              key,
              send: () => endLegacy({ user_id: userId, usage_key: key, feature_endpoint_id: 'chat', ...legacyUsage }),
              charge: charged('chat', [legacyUsage]),
            },
      ),
    ];
    rng(4).shuffle(calls);

    await warmUp(120);
    const before = await snapshot();
    const answers = await Promise.all(calls.map((c) => c.send()));
    const after = await snapshot();

    for (const res of answers) expect(res.status).toBe(200);
    const hotAnswers = answers.filter((_, i) => calls[i].kind === 'hot').map((r) => r.body.data);
    expect(hotAnswers.filter((a) => a.status === 'settled')).toHaveLength(1);
    expect(hotAnswers.filter((a) => a.status === 'already_settled')).toHaveLength(19);
    const first = hotAnswers.find((a) => a.status === 'settled');
    for (const a of hotAnswers) {
      expect(a).toEqual({ ...first, status: a.status });
    }
    expect(first.credits_charged).toBe(charged('chat', usages));
    answers.forEach((res, i) => {
      if (calls[i].kind === 'hot') return;
      expect(res.body.data).toMatchObject({ status: 'settled', usage_key: calls[i].key, credits_charged: calls[i].charge });
    });

    const charges = await expectChained(userId, 105_000_000n, () => HOLD);
    expect(charges).toHaveLength(21);
    expect(charges.filter((e) => e.usage_key === hot).map((e) => e.id.toString())).toEqual([first.transaction_id]);
    const expectedSpent = micros(charged('chat', usages)) * 11n + micros(charged('chat', [legacyUsage])) * 10n;
    expect(await wallet(userId)).toMatchObject({ balance: formatMicros(500_000_000n - expectedSpent), held: ZERO });
    const story = (await t.request('GET', `/api/credits-process/usages/${hot}`, { key: SERVICE_KEY })).body.data;
    expect(story).toMatchObject({ status: 'settled' });
    expect(story.ledger_entries).toHaveLength(1);

    expect(after.settlements('http', 'settled') - before.settlements('http', 'settled')).toBe(21);
    expect(after.settlements('http', 'already_settled') - before.settlements('http', 'already_settled')).toBe(19);
    await expectWrittenTogether('charges', [userId]);
    reportFigures('batching: one key ×20 among 20 others', expectBatched(before, after, 'settle', 40));
  });

  it('direct charges: one idempotency key ×20 charges once, a key reused for another body is 409 conflict, no key means a charge each', async () => {
    const userId = await createWallet('1000');
    const usagesA = [{ ai_model: 'mini-x', input_tokens: 40_000, output_tokens: 2_000 }];
    const usagesX = [{ ai_model: 'gpt-4o', input_tokens: 1_000, output_tokens: 1_000 }];
    const usagesY = [{ ai_model: 'gpt-4o', input_tokens: 1_000, output_tokens: 1_001 }];
    const usagesN = [{ ai_model: 'odd-7', input_tokens: 777, output_tokens: 77 }];
    const keyA = uniqueId('idem-a');
    const keyB = uniqueId('idem-b');
    const direct = (usages: UsageLine[], idempotency_key?: string) => ({
      user_id: userId,
      feature_endpoint_id: 'tool',
      usages,
      ...(idempotency_key ? { idempotency_key } : {}),
    });
    type Call = { kind: 'A' | 'X' | 'Y' | 'none'; send: () => Promise<ApiResponse> };
    const calls: Call[] = [
      // Half carry the key in the body, half in the Idempotency-Key header: the same key either way.
      ...Array.from({ length: 20 }, (_, i): Call => ({
        kind: 'A',
        send: () => (i % 2 === 0 ? endMulti(direct(usagesA, keyA)) : endMulti(direct(usagesA), { 'idempotency-key': keyA })),
      })),
      // keyB used by two different bodies at once: whichever is written first wins, the other body is refused.
      ...Array.from({ length: 5 }, (): Call => ({ kind: 'X', send: () => endMulti(direct(usagesX, keyB)) })),
      ...Array.from({ length: 5 }, (): Call => ({ kind: 'Y', send: () => endMulti(direct(usagesY, keyB)) })),
      ...Array.from({ length: 10 }, (): Call => ({ kind: 'none', send: () => endMulti(direct(usagesN)) })),
    ];
    rng(5).shuffle(calls);

    await warmUp(120);
    const before = await snapshot();
    const answers = await Promise.all(calls.map((c) => c.send()));
    const after = await snapshot();
    const of = (kind: Call['kind']) => answers.filter((_, i) => calls[i].kind === kind);

    // keyA: one charge, 19 replays of it.
    const a = of('A');
    for (const r of a) expect(r.status).toBe(200);
    expect(a.filter((r) => r.body.data.status === 'settled')).toHaveLength(1);
    expect(a.filter((r) => r.body.data.status === 'already_settled')).toHaveLength(19);
    const firstA = a.find((r) => r.body.data.status === 'settled')!.body.data;
    for (const r of a) expect(r.body.data).toEqual({ ...firstA, status: r.body.data.status });
    expect(firstA.credits_charged).toBe(charged('tool', usagesA));

    // keyB: exactly one of X / Y won; its twins replay it, the other body gets 409 conflict.
    const xy = [...of('X'), ...of('Y')];
    const settledB = xy.filter((r) => r.status === 200 && r.body.data.status === 'settled');
    expect(settledB).toHaveLength(1);
    const winner = settledB[0].body.data;
    const winnerKind = winner.credits_charged === charged('tool', usagesX) ? 'X' : 'Y';
    expect(winner.credits_charged).toBe(charged('tool', winnerKind === 'X' ? usagesX : usagesY));
    for (const r of of(winnerKind)) expect(r.body.data).toEqual({ ...winner, status: r.body.data.status });
    expect(of(winnerKind).filter((r) => r.body.data.status === 'already_settled')).toHaveLength(4);
    for (const r of of(winnerKind === 'X' ? 'Y' : 'X')) expectFailure(r, 409, 'conflict');

    // No key: ten separate charges.
    const none = of('none');
    for (const r of none) expect(r.body.data).toMatchObject({ status: 'settled', credits_charged: charged('tool', usagesN) });
    expect(new Set(none.map((r) => r.body.data.transaction_id)).size).toBe(10);
    expect(new Set(none.map((r) => r.body.data.usage_key)).size).toBe(10);

    // After the burst, keyA with the same body replays the charge; with another body it is a conflict. Neither charges.
    const replay = await endMulti(direct(usagesA, keyA));
    expect(replay.body.data).toEqual({ ...firstA, status: 'already_settled' });
    expectFailure(await endMulti(direct(usagesN, keyA)), 409, 'conflict');

    const charges = await expectChained(userId, 0n);
    expect(charges).toHaveLength(12);
    const authorizations = await withDb(
      t.db.url,
      async (c) =>
        (
          await c.query(
            `SELECT idempotency_key, count(*)::int AS n FROM holds WHERE user_id = $1 AND idempotency_key IS NOT NULL GROUP BY 1 ORDER BY 1`,
            [userId],
          )
        ).rows,
    );
    expect(authorizations).toEqual(
      [
        { idempotency_key: keyA, n: 1 },
        { idempotency_key: keyB, n: 1 },
      ].sort((p, q) => p.idempotency_key.localeCompare(q.idempotency_key)),
    );
    const spent = micros(charged('tool', usagesA)) + micros(winner.credits_charged) + 10n * micros(charged('tool', usagesN));
    expect(await wallet(userId)).toMatchObject({ balance: formatMicros(1_000_000_000n - spent), held: ZERO });

    await expectWrittenTogether('charges', [userId]);
    reportFigures('batching: direct charges', expectBatched(before, after, 'settle', 40));
  });

  it('a mismatched user or feature, a cancelled hold, an unknown key, an unknown wallet and an unknown model each get their own error in the batch; the others settle; nothing is written for them', async () => {
    const owner = await createWallet('500');
    const stranger = await createWallet('100');
    await holdsFor(stranger, 1);
    const keys = await holdsFor(owner, 34);
    const [wrongUser, wrongFeature, unknownModel, cancelled, ...good] = keys;
    expect(
      (await t.request('POST', '/api/credits-process/cancel', { key: SERVICE_KEY, body: { usage_key: cancelled } })).body.data.status,
    ).toBe('cancelled');
    const strangerBefore = { wallet: await wallet(stranger), ledger: await ledgerOf(stranger) };
    const usages = [{ ai_model: 'gpt-4o', input_tokens: 5_000, output_tokens: 500 }];
    type Call = { key: string | null; body: unknown; expect: [number, string] };
    const calls: Call[] = [
      ...good.map((key): Call => ({
        key,
        body: { user_id: owner, usage_key: key, feature_endpoint_id: 'chat', usages },
        expect: [200, 'settled'],
      })),
      {
        key: wrongUser,
        body: { user_id: stranger, usage_key: wrongUser, feature_endpoint_id: 'chat', usages },
        expect: [409, 'usage_key_mismatch'],
      },
      {
        key: wrongFeature,
        body: { user_id: owner, usage_key: wrongFeature, feature_endpoint_id: 'tool', usages },
        expect: [409, 'usage_key_mismatch'],
      },
      {
        key: unknownModel,
        body: {
          user_id: owner,
          usage_key: unknownModel,
          feature_endpoint_id: 'chat',
          usages: [...usages, { ai_model: uniqueId('no-price'), input_tokens: 1, output_tokens: 1 }],
        },
        expect: [422, 'unknown_model'],
      },
      { key: cancelled, body: { user_id: owner, usage_key: cancelled, feature_endpoint_id: 'chat', usages }, expect: [409, 'conflict'] },
      {
        key: null,
        body: { user_id: owner, usage_key: randomUUID(), feature_endpoint_id: 'chat', usages },
        expect: [404, 'usage_key_not_found'],
      },
      {
        key: null,
        body: { user_id: uniqueId('nobody'), feature_endpoint_id: 'chat', idempotency_key: uniqueId('k'), usages },
        expect: [404, 'wallet_not_found'],
      },
    ];
    rng(6).shuffle(calls);

    await warmUp(120);
    const before = await snapshot();
    const answers = await Promise.all(calls.map((c) => endMulti(c.body)));
    const after = await snapshot();

    answers.forEach((res, i) => {
      const [status, word] = calls[i].expect;
      if (status === 200)
        expect({ status: res.status, word: res.body.data.status, key: res.body.data.usage_key }).toEqual({
          status,
          word,
          key: calls[i].key,
        });
      else expectFailure(res, status, word);
    });

    // The three refused holds are untouched: still held, no ledger entry.
    for (const key of [wrongUser, wrongFeature, unknownModel]) {
      const story = (await t.request('GET', `/api/credits-process/usages/${key}`, { key: SERVICE_KEY })).body.data;
      expect({ key, status: story.status, settlement: story.settlement, entries: story.ledger_entries }).toEqual({
        key,
        status: 'held',
        settlement: null,
        entries: [],
      });
    }
    expect({ wallet: await wallet(stranger), ledger: await ledgerOf(stranger) }).toEqual(strangerBefore);
    const charges = await expectChained(owner, 165_000_000n, () => HOLD);
    expect(charges.map((e) => e.usage_key).sort()).toEqual([...good].sort());
    expect(await wallet(owner)).toMatchObject({
      held: '15.000000',
      balance: formatMicros(500_000_000n - 30n * micros(charged('chat', usages))),
    });
    // …and they can still be settled by their rightful body.
    const late = await endMulti({ user_id: owner, usage_key: wrongUser, feature_endpoint_id: 'chat', usages });
    expect(late.body.data).toMatchObject({ status: 'settled', held: '10.000000' });

    const cancelledStory = (await t.request('GET', `/api/credits-process/usages/${cancelled}`, { key: SERVICE_KEY })).body.data;
    expect({ status: cancelledStory.status, entries: cancelledStory.ledger_entries }).toEqual({ status: 'cancelled', entries: [] });
    expect(after.settlements('http', 'failed') - before.settlements('http', 'failed')).toBe(6);
    await expectWrittenTogether('charges', [owner]);
    reportFigures('batching: errors inside a settlement batch', expectBatched(before, after, 'settle', 36));
  });
});

describe('late settlements in a batch', () => {
  it('expired holds (still held, and already swept) settle late in the same batch as on-time ones; a swept hold is not released twice', async () => {
    // `flash` holds 2 credits for 1 second.
    const w1 = await createWallet('100');
    const flash1 = await holdsFor(w1, 6, 'flash');
    const onTime = await holdsFor(w1, 4, 'chat');
    const w2 = await createWallet('4');
    const flash2 = await holdsFor(w2, 2, 'flash');
    const status = async (key: string) =>
      (await t.request('GET', `/api/credits-process/usages/${key}`, { key: SERVICE_KEY })).body.data.status;
    await waitFor(
      'the flash holds to expire',
      async () => (await Promise.all([...flash1, ...flash2].map(status))).every((s) => s === 'expired'),
      10_000,
      100,
    );
    // No sweeper runs here; a start that finds w2 full frees its expired holds (status 'expired', held released).
    const fresh = await start(w2, 'flash');
    expect(fresh.body.data).toMatchObject({ status: 'accessible', held: '2.000000' });
    const swept = await withDb(
      t.db.url,
      async (c) =>
        (await c.query(`SELECT status, count(*)::int AS n FROM holds WHERE usage_key = ANY($1::uuid[]) GROUP BY status`, [flash2])).rows,
    );
    expect(swept).toEqual([{ status: 'expired', n: 2 }]);
    expect((await wallet(w1)).held).toBe('32.000000'); // 6 × 2 + 4 × 5, expired but not swept

    const usages = [{ ai_model: 'mini-x', input_tokens: 10_000, output_tokens: 1_000 }];
    const calls = rng(9).shuffle([
      ...flash1.map((key) => ({ user: w1, key, feature: 'flash', late: true })),
      ...onTime.map((key) => ({ user: w1, key, feature: 'chat', late: false })),
      ...flash2.map((key) => ({ user: w2, key, feature: 'flash', late: true })),
    ]);
    await warmUp(20);
    const before = await snapshot();
    const answers = await Promise.all(
      calls.map((c) => endMulti({ user_id: c.user, usage_key: c.key, feature_endpoint_id: c.feature, usages })),
    );
    const after = await snapshot();

    answers.forEach((res, i) => {
      expect({
        key: calls[i].key,
        status: res.status,
        word: res.body.data.status,
        late: res.body.data.late,
        charged: res.body.data.credits_charged,
      }).toEqual({
        key: calls[i].key,
        status: 200,
        word: 'settled',
        late: calls[i].late,
        charged: charged(calls[i].feature, usages),
      });
    });
    const amountOf = new Map<string, bigint>([...flash1.map((k) => [k, 2_000_000n] as const), ...onTime.map((k) => [k, HOLD] as const)]);
    await expectChained(w1, 32_000_000n, (k) => amountOf.get(k)!);
    // w2: the swept holds release nothing more; only the fresh hold stays held.
    await expectChained(w2, 2_000_000n, () => 0n);
    expect(await wallet(w1)).toMatchObject({ held: ZERO });
    expect(await wallet(w2)).toMatchObject({ held: '2.000000', balance: formatMicros(4_000_000n - 2n * micros(charged('flash', usages))) });
    const lateFlags = await withDb(
      t.db.url,
      async (c) =>
        (
          await c.query(
            `SELECT h.late AS hold_late, (e.metadata->>'late')::bool AS entry_late, count(*)::int AS n FROM holds h JOIN ledger_entries e USING (usage_key)
                      WHERE h.user_id = ANY($1) AND e.kind = 'charge' GROUP BY 1, 2 ORDER BY 1, 2`,
            [[w1, w2]],
          )
        ).rows,
    );
    expect(lateFlags).toEqual([
      { hold_late: false, entry_late: false, n: 4 },
      { hold_late: true, entry_late: true, n: 8 },
    ]);
    await expectWrittenTogether('charges', [w1, w2]);
    reportFigures('batching: late settlements', expectBatched(before, after, 'settle', 12));
  });
});

describe('starts and settlements on the same wallets at once', () => {
  it('a burst of 75 starts, 50 hold settlements and 10 direct charges on 5 wallets keeps every ledger chained and held = Σ live holds', async () => {
    const users = await createWallets(5, '100');
    const initial = new Map(users.map((u) => [u, 100_000_000n]));
    const holds = (await Promise.all(users.map((u) => holdsFor(u, 10)))).flatMap((keys, w) =>
      keys.map((usage_key) => ({ user_id: users[w], usage_key })),
    );
    const usages = [{ ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 }];
    const directUsages = [{ ai_model: 'mini-x', input_tokens: 30_000, output_tokens: 3_000 }];
    // Each wallet: 50 available, 15 starts of 5 — how many fit depends on how many of its 10
    // settlements (each releasing 5, charging 0.72) commit first. Whatever the interleaving,
    // the books must agree.
    type Call = { kind: 'start' | 'settle' | 'direct'; user: string; send: () => Promise<ApiResponse> };
    const calls: Call[] = rng(8).shuffle([
      ...users.flatMap((u) => Array.from({ length: 15 }, (): Call => ({ kind: 'start', user: u, send: () => start(u, 'chat') }))),
      ...holds.map((h): Call => ({ kind: 'settle', user: h.user_id, send: () => endMulti({ ...h, feature_endpoint_id: 'chat', usages }) })),
      ...users.flatMap((u) =>
        [0, 1].map((): Call => ({
          kind: 'direct',
          user: u,
          send: () => endMulti({ user_id: u, feature_endpoint_id: 'chat', usages: directUsages }),
        })),
      ),
    ]);

    await warmUp(140);
    const before = await snapshot();
    const answers = await Promise.all(calls.map((c) => c.send()));
    const after = await snapshot();

    const expected: ExpectedUsage[] = [];
    let accessible = 0;
    let staleRefusals = 0;
    answers.forEach((res, i) => {
      const c = calls[i];
      if (c.kind === 'start') {
        if (res.status === 200) {
          accessible++;
          expect(res.body.data).toMatchObject({ status: 'accessible', user_id: c.user, hold_amount: '5.000000' });
        } else {
          expect(res.body).toEqual({
            success: false,
            data: { status: 'insufficient_credits', message: expect.any(String), credits: expect.any(String), required: '5.000000' },
          });
          // The refusal is decided by the conditional UPDATE and its figures are read by a later
          // statement; a start whose re-read shows room tries again, so a 402 never shows
          // enough credits (settlements of this burst release holds in between).
          if (micros(res.body.data.credits) >= HOLD) staleRefusals++;
        }
        return;
      }
      expect({ status: res.status, word: res.body.data.status }).toEqual({ status: 200, word: 'settled' });
      const charge = expectedCharge('chat', c.kind === 'settle' ? usages : directUsages);
      expect(res.body.data.credits_charged).toBe(formatMicros(charge));
      expected.push({ userId: c.user, usageKey: res.body.data.usage_key, charge });
    });
    // At least 9 per wallet fit whatever commits first (two direct charges take 1.512 of the 50
    // available); the books below are the real check.
    expect(accessible).toBeGreaterThanOrEqual(45);
    expect(staleRefusals).toBe(0);

    const books = await checkBooks(t.db.url, initial, expected);
    expect(books).toMatchObject({
      chargeEntries: 60,
      duplicates: 0,
      lost: 0,
      unexpected: 0,
      wrongAmount: [],
      walletMismatches: [],
      negativeHeld: 0,
    });
    expect(books.holdsByStatus).toEqual({ settled: 60, held: accessible });
    for (const u of users) expect(await expectChained(u, null)).toHaveLength(12);

    await expectWrittenTogether('holds', users);
    await expectWrittenTogether('charges', users);
    reportFigures('batching: starts and settlements interleaved', {
      start: expectBatched(before, after, 'start', 75),
      settle: expectBatched(before, after, 'settle', 60),
      accessible,
      staleRefusals,
    });
  });
});

// --- queue -----------------------------------------------------------------------------------

describe('batched queue settlement', () => {
  it('200 messages published at once (150 holds + 50 duplicates), 30 keys also settled over HTTP meanwhile: each hold charged exactly once, charge entries = distinct keys', async () => {
    const users = await createWallets(10, '2000');
    const initial = new Map(users.map((u) => [u, 2_000_000_000n]));
    // The 150 holds themselves are placed by one concurrent burst.
    const started = await Promise.all(users.flatMap((u) => Array.from({ length: 15 }, () => start(u, 'chat'))));
    expect(started.map((r) => r.status)).toEqual(Array(150).fill(200));
    const r = rng(7);
    const messages = started.map((s) => ({
      user_id: s.body.data.user_id,
      usage_key: s.body.data.usage_key,
      feature_endpoint_id: 'chat',
      usages: randomUsages(r),
    }));
    const expected: ExpectedUsage[] = messages.map((m) => ({
      userId: m.user_id,
      usageKey: m.usage_key,
      charge: expectedCharge('chat', m.usages),
    }));
    // A duplicate is the same message again (redelivery / producer retry).
    const duplicates = Array.from({ length: 50 }, () => r.pick(messages));
    const all = r.shuffle([...messages, ...duplicates]);
    const failuresBefore = (await t.request('GET', '/api/settlement-failures?limit=200')).body.data.items.length;

    const countCharges = () =>
      withDb(t.db.url, async (c) =>
        Number(
          (await c.query(`SELECT count(*)::int AS n FROM ledger_entries WHERE kind = 'charge' AND user_id = ANY($1)`, [users])).rows[0].n,
        ),
      );
    // 30 of the keys are also settled over HTTP while the messages are being consumed: both
    // channels go through the same coalescer, and still charge once.
    const viaHttp = messages.slice(0, 30);
    await warmUp(30);
    const before = await snapshot();
    const [httpAnswers] = await Promise.all([Promise.all(viaHttp.map((m) => endMulti(m))), publish(vhost.url, MULTI_QUEUE, all)]);
    await waitForSettlements(vhost.name, [MULTI_QUEUE, LEGACY_QUEUE], countCharges, 150, 25_000);
    const after = await snapshot();

    const books = await checkBooks(t.db.url, initial, expected);
    expect(books).toMatchObject({
      expectedUsages: 150,
      chargeEntries: 150,
      duplicates: 0,
      lost: 0,
      unexpected: 0,
      wrongAmount: [],
      walletMismatches: [],
      negativeHeld: 0,
      holdsByStatus: { settled: 150 },
    });
    for (const u of users) {
      const charges = await expectChained(u, 75_000_000n, () => HOLD);
      expect(new Set(charges.map((e) => e.usage_key)).size).toBe(charges.length);
      expect((await wallet(u)).held).toBe(ZERO);
    }
    expect((await t.request('GET', '/api/settlement-failures?limit=200')).body.data.items.length).toBe(failuresBefore);
    // An HTTP answer is the settlement itself or a replay of it, with the figures of its one entry.
    const entryOf = await withDb(
      t.db.url,
      async (c) =>
        new Map(
          (
            await c.query<{ usage_key: string; id: string }>(
              `SELECT usage_key::text, id::text FROM ledger_entries WHERE kind = 'charge' AND usage_key = ANY($1::uuid[])`,
              [viaHttp.map((m) => m.usage_key)],
            )
          ).rows.map((row) => [row.usage_key, row.id]),
        ),
    );
    httpAnswers.forEach((res, i) => {
      expect({ status: res.status, word: ['settled', 'already_settled'].includes(res.body.data.status) }).toEqual({
        status: 200,
        word: true,
      });
      expect(res.body.data).toMatchObject({
        usage_key: viaHttp[i].usage_key,
        transaction_id: entryOf.get(viaHttp[i].usage_key),
        credits_charged: formatMicros(expected[i].charge),
      });
    });
    const settledDelta = (channel: string) => after.settlements(channel, 'settled') - before.settlements(channel, 'settled');
    const replayedDelta = (channel: string) =>
      after.settlements(channel, 'already_settled') - before.settlements(channel, 'already_settled');
    expect(settledDelta('queue') + settledDelta('http')).toBe(150);
    expect(replayedDelta('queue') + replayedDelta('http')).toBe(50 + 30);
    expect(settledDelta('http') + replayedDelta('http')).toBe(30);
    expect(after.settlements('queue', 'failed') - before.settlements('queue', 'failed')).toBe(0);
    const figures = expectBatched(before, after, 'settle', 230);
    await expectWrittenTogether('charges', users);
    reportFigures('batching: 200 queue messages', figures);
  });
});

describe('a batch whose statement fails', () => {
  /**
   * A trigger makes every write of one feature's authorization fail (a stand-in for a bug in the
   * batch SQL, or one request's data the statement cannot take). Under BATCH_FALLBACK=fail, what
   * the tests run with, the failure reaches every request of its batch: a bug of the batch
   * statement cannot hide behind a one-by-one retry that gets the money right. Under `split`,
   * what production runs with, the batch's requests run alone (each still through the same
   * statement), only the faulty one fails, and the split is counted.
   */
  const BURST = 20;
  const POISON_AT = 10;
  let poison: string;

  beforeAll(async () => {
    poison = uniqueId('poison');
    const res = await t.request('POST', '/api/features', { body: { feature_endpoint_id: poison, name: poison, min_holding_credits: '5' } });
    expect(res.status).toBe(201);
    await withDb(t.db.url, (c) =>
      c.query(`
        CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.feature_endpoint_id = '${poison}' THEN RAISE EXCEPTION 'poisoned authorization'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER test_poison BEFORE INSERT ON holds FOR EACH ROW EXECUTE FUNCTION test_poison();`),
    );
  });

  afterAll(async () => {
    await withDb(t.db.url, (c) => c.query(`DROP TRIGGER IF EXISTS test_poison ON holds; DROP FUNCTION IF EXISTS test_poison()`));
  });

  const fallbacks = (samples: Samples, kind: 'start' | 'settle') => sample(samples, 'credits_batch_fallbacks_total', { kind });
  const holdRows = (users: string[]) =>
    scalar(t.db.url, `SELECT count(*) FROM holds WHERE user_id = ANY($1)`, [users]).then((n) => Number(n));

  /** One start per new wallet, all at once; the one at POISON_AT asks for the poisoned feature. */
  async function startBurst(app: TestApp) {
    const users = await createWallets(BURST, '100');
    await Promise.all(Array.from({ length: BURST }, () => app.request('GET', '/health/live', { key: null })));
    const answers = await Promise.all(
      users.map((user_id, i) =>
        app.request('POST', '/api/credits-process/start', {
          key: SERVICE_KEY,
          body: { user_id, feature_endpoint_id: i === POISON_AT ? poison : 'chat' },
        }),
      ),
    );
    return { users, answers };
  }

  /** One direct charge per new wallet, all at once; the one at POISON_AT is for the poisoned feature. */
  async function settleBurst(app: TestApp) {
    const users = await createWallets(BURST, '100');
    await Promise.all(Array.from({ length: BURST }, () => app.request('GET', '/health/live', { key: null })));
    const answers = await Promise.all(
      users.map((user_id, i) =>
        app.request('POST', '/api/credits-process/end-multimodel', {
          key: SERVICE_KEY,
          body: {
            user_id,
            feature_endpoint_id: i === POISON_AT ? poison : 'chat',
            usages: [{ ai_model: 'gpt-4o', input_tokens: 1_000, output_tokens: 100 }],
          },
        }),
      ),
    );
    return { users, answers };
  }

  it('BATCH_FALLBACK=fail: every request of the failed batch answers the error, nothing of it is written, nothing is retried alone', async () => {
    for (const [kind, burst] of [
      ['start', startBurst],
      ['settle', settleBurst],
    ] as const) {
      const before = fallbacks(await scrape(), kind);
      // A burst whose poisoned request happened to go out alone fails only itself: try again
      // until it shared its statement (a few bursts at most; batched bursts are the rule here).
      let shared: Awaited<ReturnType<typeof startBurst>> | undefined;
      for (let attempt = 0; attempt < 5 && !shared; attempt++) {
        const b = await burst(t);
        expectFailure(b.answers[POISON_AT], 500, 'internal_error');
        if (b.answers.filter((r) => r.status === 500).length > 1) shared = b;
      }
      expect({ kind, poisonedSharedABatch: shared !== undefined }).toEqual({ kind, poisonedSharedABatch: true });
      const failed = shared!.users.filter((_, i) => shared!.answers[i].status !== 200);
      const ok = shared!.users.filter((_, i) => shared!.answers[i].status === 200);
      for (const r of shared!.answers) if (r.status !== 200) expectFailure(r, 500, 'internal_error');
      // The failed requests wrote nothing (no hold, no authorization, no charge); the others one each.
      expect(await holdRows(failed)).toBe(0);
      expect(await holdRows(ok)).toBe(ok.length);
      for (const u of failed) expect(await wallet(u)).toMatchObject({ balance: '100.000000', held: ZERO });
      expect(fallbacks(await scrape(), kind)).toBe(before);
    }
  });

  it('BATCH_FALLBACK=split: the batch runs one by one, only the faulty request fails, the others are answered as alone; counted in credits_batch_fallbacks_total', async () => {
    const s = await startTestApp({ BATCH_FALLBACK: 'split', HOLD_SWEEP_INTERVAL_MS: '0' }, t.db);
    try {
      const scrapeS = () => scrape(s);
      for (const [kind, burst] of [
        ['start', startBurst],
        ['settle', settleBurst],
      ] as const) {
        const initial = fallbacks(await scrapeS(), kind);
        let split: Awaited<ReturnType<typeof startBurst>> | undefined;
        for (let attempt = 0; attempt < 5 && !split; attempt++) {
          const before = fallbacks(await scrapeS(), kind);
          const b = await burst(s);
          if (fallbacks(await scrapeS(), kind) > before) split = b;
          // Split or not, only the poisoned request fails.
          expectFailure(b.answers[POISON_AT], 500, 'internal_error');
          const others = b.answers.filter((_, i) => i !== POISON_AT);
          expect(others.map((r) => r.status)).toEqual(others.map(() => 200));
          expect(await holdRows(b.users)).toBe(BURST - 1);
        }
        expect({ kind, counted: split !== undefined }).toEqual({ kind, counted: true });
        expect(fallbacks(await scrapeS(), kind)).toBeGreaterThan(initial);
        // Each of the others was written once, exactly as alone.
        for (const [i, u] of split!.users.entries()) {
          const w = await wallet(u);
          if (i === POISON_AT) expect(w).toMatchObject({ balance: '100.000000', held: ZERO });
          else if (kind === 'start') expect(w).toMatchObject({ balance: '100.000000', held: '5.000000' });
          else
            expect(w.balance).toBe(
              formatMicros(100_000_000n - expectedCharge('chat', [{ ai_model: 'gpt-4o', input_tokens: 1_000, output_tokens: 100 }])),
            );
        }
      }
    } finally {
      await s.close();
    }
  });
});
