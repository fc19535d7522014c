import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { createCatalog, expectedCharge, formatMicros, micros, MULTI_QUEUE, rng, UsageLine } from './support/catalog';
import { waitForSettlements, withDb } from './support/faults';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { ApiResponse, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/**
 * One test per hand-made mutant of the money SQL (test/mutants/README.md has the list, and
 * `test/mutants/apply.sh` applies each): each test fails on a MONEY assertion — balance, held,
 * held = Σ live holds, charges per key, reconciliation — when its mutant is applied, and says so
 * in its name. Only the public surface is used (HTTP, the queue, reading and tampering the tables
 * with SQL), so the tests keep their meaning when the statements move.
 *
 * Batches are forced with BATCH_CONCURRENCY=1: while one batch runs every request that arrives
 * waits for the next, so a burst fired with Promise.all on warm sockets is settled by statements
 * carrying several requests (each burst checks that it was). Money is asserted before answers, so
 * a mutant is reported by what it does to the books.
 */

const HOLD = 5_000_000n; // chat's min_holding_credits
const ZERO = '0.000000';
const USAGES: UsageLine[] = [{ ai_model: 'gpt-4o', input_tokens: 1_200, output_tokens: 300, cached_input_tokens: 200 }];
const CHARGE = expectedCharge('chat', USAGES);
const TOOL_USAGES: UsageLine[] = [{ ai_model: 'mini-x', input_tokens: 40_000, output_tokens: 2_000 }];
const TOOL_CHARGE = expectedCharge('tool', TOOL_USAGES);

let t: TestApp;
let vhost: TestVhost;
const run = randomBytes(3).toString('hex');
let counter = 0;
const uniqueId = (prefix: string) => `${prefix}-${run}-${++counter}`;
/** A feature that holds nothing: only the "available > 0" rule refuses a wallet at exactly 0. */
let freeFeature: string;

// --- calls -----------------------------------------------------------------------------------

const start = (user_id: string, feature_endpoint_id = 'chat') =>
  t.request('POST', '/api/credits-process/start', { key: SERVICE_KEY, body: { user_id, feature_endpoint_id } });
const settle = (user_id: string, usage_key: string, feature_endpoint_id = 'chat', usages = USAGES) =>
  t.request('POST', '/api/credits-process/end-multimodel', { key: SERVICE_KEY, body: { user_id, usage_key, feature_endpoint_id, usages } });
const direct = (user_id: string, idempotency_key: string) =>
  t.request('POST', '/api/credits-process/end-multimodel', {
    key: SERVICE_KEY,
    body: { user_id, feature_endpoint_id: 'tool', idempotency_key, usages: TOOL_USAGES },
  });
const cancel = (usage_key: string) => t.request('POST', '/api/credits-process/cancel', { key: SERVICE_KEY, body: { usage_key } });

async function createWallet(credits: string): Promise<string> {
  const user_id = uniqueId('mut');
  const res = await t.request('POST', '/api/wallets', { body: { user_id, initial_credits: credits } });
  expect(res.status).toBe(201);
  return user_id;
}

/** Holds placed one after another (set-up; the bursts under test are fired with Promise.all). */
async function holdsFor(userId: string, count: number, feature = 'chat'): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await start(userId, feature);
    expect(res.status).toBe(200);
    keys.push(res.body.data.usage_key);
  }
  return keys;
}

function ok(res: ApiResponse, status = 200): any {
  expect({ status: res.status, body: res.status === status ? 'as expected' : res.body }).toEqual({ status, body: 'as expected' });
  return res.body.data;
}

// --- bursts and the batching they must go through ---------------------------------------------

/** Opens keep-alive sockets first: a burst on cold sockets reaches the server spread out, unbatched. */
async function warmUp(n: number): Promise<void> {
  const res = await Promise.all(Array.from({ length: n }, () => t.request('GET', '/health/live', { key: null })));
  expect(res.every((r) => r.status === 200)).toBe(true);
}

async function batchCounters(kind: 'start' | 'settle'): Promise<{ statements: number; alone: number }> {
  const text = (await t.request('GET', '/metrics', { key: null })).body as string;
  const value = (name: string, extra = '') => {
    const m = new RegExp(`^${name}\\{kind="${kind}"${extra}\\} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };
  return { statements: value('credits_batch_size_count'), alone: value('credits_batch_size_bucket', ',le="1"') };
}

/**
 * Fires every call at once and checks that some statement carried several of them: a test whose
 * burst was never batched would prove nothing about the batch statements.
 */
async function burst<T>(kind: 'start' | 'settle', calls: (() => Promise<T>)[]): Promise<T[]> {
  await warmUp(calls.length + 10);
  const before = await batchCounters(kind);
  const answers = await Promise.all(calls.map((c) => c()));
  const after = await batchCounters(kind);
  const statements = after.statements - before.statements;
  const several = statements - (after.alone - before.alone);
  expect({ kind, batchedSeveral: several > 0 }).toEqual({ kind, batchedSeveral: true });
  return answers;
}

// --- the books, read straight from the database -----------------------------------------------

interface Books {
  balance: bigint;
  held: bigint;
  /** Σ amount of the wallet's holds in status held. */
  liveHolds: bigint;
  liveCount: number;
  /** Charge entries per usage_key (micro-credits charged, positive). */
  charges: Map<string, bigint[]>;
  ledgerSum: bigint;
}

async function books(userId: string): Promise<Books> {
  return withDb(t.db.url, async (c) => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const w = (await c.query(`SELECT balance::text, held::text FROM wallets WHERE user_id = $1`, [userId])).rows[0];
    const live = (
      await c.query(`SELECT COALESCE(sum(amount), 0)::text AS s, count(*)::int AS n FROM holds WHERE user_id = $1 AND status = 'held'`, [
        userId,
      ])
    ).rows[0];
    const entries = (
      await c.query(`SELECT kind, amount::text, usage_key::text FROM ledger_entries WHERE user_id = $1 ORDER BY id`, [userId])
    ).rows;
    await c.query('COMMIT');
    const charges = new Map<string, bigint[]>();
    let ledgerSum = 0n;
    for (const e of entries) {
      ledgerSum += micros(e.amount);
      if (e.kind === 'charge') charges.set(e.usage_key, [...(charges.get(e.usage_key) ?? []), -micros(e.amount)]);
    }
    return { balance: micros(w.balance), held: micros(w.held), liveHolds: micros(live.s), liveCount: live.n, charges, ledgerSum };
  });
}

/**
 * The wallet's books are exactly `want`: balance, held, held = Σ live holds, balance = Σ ledger,
 * and the service's own reconciliation finds nothing wrong with it.
 */
async function expectBooks(userId: string, want: { balance: bigint; held: bigint; liveCount?: number }): Promise<Books> {
  const b = await books(userId);
  expect({
    balance: formatMicros(b.balance),
    held: formatMicros(b.held),
    heldOfLiveHolds: formatMicros(b.liveHolds),
    ledgerSum: formatMicros(b.ledgerSum),
    ...(want.liveCount === undefined ? {} : { liveCount: b.liveCount }),
  }).toEqual({
    balance: formatMicros(want.balance),
    held: formatMicros(want.held),
    heldOfLiveHolds: formatMicros(want.held),
    ledgerSum: formatMicros(want.balance),
    ...(want.liveCount === undefined ? {} : { liveCount: want.liveCount }),
  });
  expect(await mismatchesOf([userId])).toEqual([]);
  return b;
}

async function mismatchesOf(users: string[]): Promise<unknown[]> {
  const res = await t.request('GET', '/api/reconciliation');
  expect(res.status).toBe(200);
  return (res.body.data.mismatches as { user_id: string }[]).filter((m) => users.includes(m.user_id));
}

/** Every key charged exactly once, `amount` each. */
function expectChargedOnce(b: Books, keys: string[], amount: bigint): void {
  const wrong = keys.filter((k) => (b.charges.get(k) ?? []).join() !== amount.toString()).map((k) => `${k}: [${b.charges.get(k) ?? ''}]`);
  expect(wrong).toEqual([]);
}

/** Sets the holds' expiry in the past and waits until the sweeper has expired (and released) them. */
async function sweep(keys: string[]): Promise<void> {
  await withDb(t.db.url, (c) =>
    c.query(`UPDATE holds SET expires_at = now() - interval '1 minute' WHERE usage_key = ANY($1::uuid[]) AND status = 'held'`, [keys]),
  );
  await waitFor('the sweeper to expire the holds', () =>
    withDb(t.db.url, async (c) => {
      const { rows } = await c.query(`SELECT count(*)::int AS n FROM holds WHERE usage_key = ANY($1::uuid[]) AND status = 'expired'`, [
        keys,
      ]);
      return rows[0].n === keys.length;
    }),
  );
}

async function chargedMetric(): Promise<number> {
  const text = (await t.request('GET', '/metrics', { key: null })).body as string;
  const m = /^credits_charged_total (\S+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

// --- set-up ----------------------------------------------------------------------------------

beforeAll(async () => {
  vhost = await createTestVhost();
  t = await startTestApp({
    RABBITMQ_URL: vhost.url,
    RABBITMQ_RETRY_DELAYS_MS: '100,200',
    // One batch at a time: whatever arrives while it runs forms the next one (see the header).
    BATCH_CONCURRENCY: '1',
    // Holds are expired on purpose (expires_at set in the past); the sweeper releases them quickly.
    HOLD_SWEEP_INTERVAL_MS: '100',
  });
  await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
  await createCatalog(t.request);
  freeFeature = uniqueId('free');
  const res = await t.request('POST', '/api/features', {
    body: { feature_endpoint_id: freeFeature, name: freeFeature, min_holding_credits: '0' },
  });
  expect(res.status).toBe(201);
});

afterAll(async () => {
  await t?.close();
  await vhost?.delete();
});

// --- starts ----------------------------------------------------------------------------------

describe('holds', () => {
  it('kills (a) batched fit `>=` → `>`: exact-fit starts inside a batch are placed, held = balance, nothing left over', async () => {
    // Room for exactly 7 holds of 5: the 7th fits exactly. And 6.5 = 5 + 1.5: chat and tool, in
    // either order, the second fits exactly.
    const sevens = await Promise.all(Array.from({ length: 4 }, () => createWallet('35')));
    const pairs = await Promise.all(Array.from({ length: 8 }, () => createWallet('6.5')));
    const calls = rng(11).shuffle([
      ...sevens.flatMap((u) => Array.from({ length: 10 }, () => ({ user: u, feature: 'chat' }))),
      ...pairs.flatMap((u) => [
        { user: u, feature: 'chat' },
        { user: u, feature: 'tool' },
      ]),
    ]);
    const answers = await burst(
      'start',
      calls.map((c) => () => start(c.user, c.feature)),
    );

    for (const u of sevens) await expectBooks(u, { balance: 35_000_000n, held: 35_000_000n, liveCount: 7 });
    for (const u of pairs) await expectBooks(u, { balance: 6_500_000n, held: 6_500_000n, liveCount: 2 });

    const of = (u: string) => answers.filter((_, i) => calls[i].user === u);
    for (const u of sevens) {
      expect(of(u).filter((r) => r.status === 200)).toHaveLength(7);
      for (const r of of(u).filter((x) => x.status !== 200))
        expect({ status: r.status, data: r.body.data }).toEqual({
          status: 402,
          data: { status: 'insufficient_credits', message: expect.any(String), credits: ZERO, required: '5.000000' },
        });
    }
    for (const u of pairs) expect(of(u).map((r) => r.status)).toEqual([200, 200]);
  });

  it('kills (d) `available > 0` → `>= 0`: a wallet at exactly 0 available gets no hold, alone or in a batch', async () => {
    const empty = await createWallet('0');
    const full = await createWallet('5');
    await holdsFor(full, 1); // balance 5, held 5: available exactly 0
    const others = await Promise.all(Array.from({ length: 4 }, () => createWallet('100')));

    // Alone (a batch of one).
    const lone = [await start(empty, freeFeature), await start(full, freeFeature)];
    // In a batch, among starts that succeed.
    const calls = rng(12).shuffle([
      ...Array.from({ length: 6 }, () => ({ user: empty, feature: freeFeature })),
      ...Array.from({ length: 6 }, () => ({ user: full, feature: freeFeature })),
      ...others.flatMap((u) => Array.from({ length: 4 }, () => ({ user: u, feature: 'chat' }))),
    ]);
    const answers = await burst(
      'start',
      calls.map((c) => () => start(c.user, c.feature)),
    );

    // No authorization was granted on zero credits: not one hold row, held unchanged.
    await expectBooks(empty, { balance: 0n, held: 0n, liveCount: 0 });
    await expectBooks(full, { balance: 5_000_000n, held: 5_000_000n, liveCount: 1 });
    for (const u of others) await expectBooks(u, { balance: 100_000_000n, held: 4n * HOLD, liveCount: 4 });
    const refused = [...lone, ...answers.filter((_, i) => calls[i].feature === freeFeature)];
    for (const r of refused)
      expect({ status: r.status, data: r.body.data }).toEqual({
        status: 402,
        data: { status: 'insufficient_credits', message: expect.any(String), credits: ZERO, required: ZERO },
      });
  });
});

// --- settlements -------------------------------------------------------------------------------

describe('settlements', () => {
  it('kills (b) ON CONFLICT dropped from the batched direct charge: retries of settled direct charges inside a batch, with new ones, each charged once', async () => {
    const users = await Promise.all(Array.from({ length: 3 }, () => createWallet('1000')));
    const settledKeys = users.flatMap((u) => [0, 1, 2].map(() => ({ user: u, key: uniqueId('idem-old') })));
    const first = new Map<string, any>();
    for (const s of settledKeys) first.set(s.key, ok(await direct(s.user, s.key)));
    const fresh = users.flatMap((u) => [0, 1, 2].map(() => ({ user: u, key: uniqueId('idem-new') })));
    // Each retried twice and each new one sent twice: conflicts with committed rows, and twins.
    const calls = rng(13).shuffle([...settledKeys, ...settledKeys, ...fresh, ...fresh]);
    const answers = await burst(
      'settle',
      calls.map((c) => () => direct(c.user, c.key)),
    );

    for (const u of users) {
      const b = await expectBooks(u, { balance: 1_000_000_000n - 6n * TOOL_CHARGE, held: 0n });
      expect([...b.charges.values()].map((v) => v.join())).toEqual(Array(6).fill(TOOL_CHARGE.toString()));
    }
    const authorizations = await withDb(
      t.db.url,
      async (c) =>
        (
          await c.query(`SELECT idempotency_key, count(*)::int AS n FROM holds WHERE user_id = ANY($1) GROUP BY 1 HAVING count(*) <> 1`, [
            users,
          ])
        ).rows,
    );
    expect(authorizations).toEqual([]);

    calls.forEach((c, i) => {
      const a = ok(answers[i]);
      if (first.has(c.key)) expect(a).toEqual({ ...first.get(c.key), status: 'already_settled' });
      else expect(a.credits_charged).toBe(formatMicros(TOOL_CHARGE));
    });
    for (const f of fresh) {
      const words = answers
        .filter((_, i) => calls[i].key === f.key)
        .map((r) => r.body.data.status)
        .sort();
      expect(words).toEqual(['already_settled', 'settled']);
    }
  });

  it('kills (g) a swept hold released twice by the batch: settling expired holds inside a batch releases nothing more, held = Σ live holds', async () => {
    // Per wallet: 3 holds swept (expired, released), 3 live holds settled with them, 4 kept live.
    // The kept ones keep held ≥ what a double release would take, so the mutant writes wrong money
    // instead of tripping the CHECK (held >= 0).
    const users = await Promise.all(Array.from({ length: 3 }, () => createWallet('1000')));
    const plan = [];
    for (const u of users) {
      const [s1, s2, s3, l1, l2, l3, ...kept] = await holdsFor(u, 10);
      plan.push({ user: u, swept: [s1, s2, s3], live: [l1, l2, l3], kept });
    }
    await sweep(plan.flatMap((p) => p.swept));
    for (const p of plan) await expectBooks(p.user, { balance: 1_000_000_000n, held: 7n * HOLD, liveCount: 7 });

    const calls = rng(14).shuffle(plan.flatMap((p) => [...p.swept, ...p.live].map((key) => ({ user: p.user, key }))));
    const answers = await burst(
      'settle',
      calls.map((c) => () => settle(c.user, c.key)),
    );

    for (const p of plan) {
      const b = await expectBooks(p.user, { balance: 1_000_000_000n - 6n * CHARGE, held: 4n * HOLD, liveCount: 4 });
      expectChargedOnce(b, [...p.swept, ...p.live], CHARGE);
    }
    const swept = new Set(plan.flatMap((p) => p.swept));
    calls.forEach((c, i) => expect(ok(answers[i])).toMatchObject({ status: 'settled', usage_key: c.key, late: swept.has(c.key) }));
  });

  it('kills (h) twins in one batch: one usage_key settled twice and one idempotency key charged twice in the same batch, over HTTP and the queue, charge once', async () => {
    const users = await Promise.all(Array.from({ length: 3 }, () => createWallet('1000')));
    const holds = (await Promise.all(users.map((u) => holdsFor(u, 4)))).flatMap((keys, i) => keys.map((key) => ({ user: users[i], key })));
    const keyed = users.flatMap((u) => [0, 1].map(() => ({ user: u, key: uniqueId('idem-twin') })));
    type Call = { kind: 'hold' | 'direct'; user: string; key: string };
    const calls: Call[] = rng(15).shuffle([
      ...holds.flatMap((h) => [0, 1].map((): Call => ({ kind: 'hold', ...h }))),
      ...keyed.flatMap((d) => [0, 1].map((): Call => ({ kind: 'direct', ...d }))),
    ]);
    const answers = await burst(
      'settle',
      calls.map((c) => () => (c.kind === 'hold' ? settle(c.user, c.key) : direct(c.user, c.key))),
    );

    for (const u of users) {
      const b = await expectBooks(u, { balance: 1_000_000_000n - 4n * CHARGE - 2n * TOOL_CHARGE, held: 0n, liveCount: 0 });
      expectChargedOnce(
        b,
        holds.filter((h) => h.user === u).map((h) => h.key),
        CHARGE,
      );
      expect(b.charges.size).toBe(6);
    }
    for (const key of [...holds, ...keyed].map((h) => h.key)) {
      const pair = answers.filter((_, i) => calls[i].key === key).map((r) => ok(r));
      expect(pair.map((a) => a.status).sort()).toEqual(['already_settled', 'settled']);
      expect(pair[0].transaction_id).toBe(pair[1].transaction_id);
    }

    // The queue: every message published three times in one go; the consumer's batches carry twins.
    const queued = (await Promise.all(users.map((u) => holdsFor(u, 5)))).flatMap((keys, i) => keys.map((key) => ({ user: users[i], key })));
    const bodies = queued.map((h) => ({ user_id: h.user, usage_key: h.key, feature_endpoint_id: 'chat', usages: USAGES }));
    const before = await batchCounters('settle');
    await publish(vhost.url, MULTI_QUEUE, [...bodies, ...bodies, ...bodies]);
    const queuedKeys = queued.map((h) => h.key);
    await waitForSettlements(
      vhost.name,
      [MULTI_QUEUE],
      () =>
        withDb(t.db.url, async (c) =>
          Number(
            (
              await c.query(`SELECT count(*)::int AS n FROM ledger_entries WHERE kind = 'charge' AND usage_key = ANY($1::uuid[])`, [
                queuedKeys,
              ])
            ).rows[0].n,
          ),
        ),
      queuedKeys.length,
      60_000,
    );
    for (const u of users) {
      const b = await expectBooks(u, { balance: 1_000_000_000n - 9n * CHARGE - 2n * TOOL_CHARGE, held: 0n, liveCount: 0 });
      expectChargedOnce(
        b,
        queued.filter((h) => h.user === u).map((h) => h.key),
        CHARGE,
      );
    }
    const after = await batchCounters('settle');
    expect({ queueBatchedSeveral: after.statements - before.statements - (after.alone - before.alone) > 0 }).toEqual({
      queueBatchedSeveral: true,
    });
    const failures = (await t.request('GET', '/api/settlement-failures')).body.data.items;
    expect(failures).toEqual([]);
  });

  it('kills (e) usage-key lower-casing dropped: an UPPERCASE usage_key settles (alone, in a batch, beside its lowercase twin) and cancels, charged once, counted once', async () => {
    const userId = await createWallet('1000');
    const [alone, twin, cancelled, ...inBatch] = await holdsFor(userId, 9);
    const others = await Promise.all(Array.from({ length: 2 }, () => createWallet('1000')));
    const otherHolds = async () =>
      (await Promise.all(others.map((u) => holdsFor(u, 4)))).flatMap((keys, i) => keys.map((key) => ({ user: others[i], key })));

    const loneAnswer = await settle(userId, alone.toUpperCase());
    // A batch of UPPERCASE keys (no twin in it: a twin makes the statement fail and fall back).
    const calls = rng(16).shuffle([...inBatch.map((key) => ({ user: userId, key: key.toUpperCase() })), ...(await otherHolds())]);
    const chargedBefore = await chargedMetric();
    const answers = await burst(
      'settle',
      calls.map((c) => () => settle(c.user, c.key)),
    );
    const counted = (await chargedMetric()) - chargedBefore;
    // The same key in both spellings in one batch.
    const twinCalls = rng(17).shuffle([{ user: userId, key: twin.toUpperCase() }, { user: userId, key: twin }, ...(await otherHolds())]);
    const twinAnswers = await burst(
      'settle',
      twinCalls.map((c) => () => settle(c.user, c.key)),
    );
    const cancelAnswer = await cancel(cancelled.toUpperCase());

    const b = await expectBooks(userId, { balance: 1_000_000_000n - 8n * CHARGE, held: 0n, liveCount: 0 });
    expectChargedOnce(b, [alone, twin, ...inBatch], CHARGE);
    for (const u of others) await expectBooks(u, { balance: 1_000_000_000n - 8n * CHARGE, held: 0n, liveCount: 0 });
    // The money the service counts as charged by the batch: all 14 settlements, none as "already".
    expect(counted).toBeCloseTo(Number(formatMicros(14n * CHARGE)), 4);
    calls.forEach((c, i) => expect(ok(answers[i])).toMatchObject({ status: 'settled', credits_charged: formatMicros(CHARGE) }));
    const twins = twinAnswers.filter((_, i) => twinCalls[i].key.toLowerCase() === twin).map((r) => ok(r).status);
    expect(twins.sort()).toEqual(['already_settled', 'settled']);

    // Each answer names the key in its one spelling, the one the ledger and the usage story use.
    expect(ok(loneAnswer)).toMatchObject({ status: 'settled', usage_key: alone, credits_charged: formatMicros(CHARGE) });
    [...calls, ...twinCalls].forEach((c, i) => expect(ok([...answers, ...twinAnswers][i]).usage_key).toBe(c.key.toLowerCase()));
    expect(ok(cancelAnswer)).toEqual({ status: 'cancelled', usage_key: cancelled, released: '5.000000' });
    expect(ok(await cancel(cancelled.toUpperCase()))).toEqual({ status: 'cancelled', usage_key: cancelled, released: ZERO });
  });
});

// --- cancel ------------------------------------------------------------------------------------

describe('cancel', () => {
  it('kills (f) cancel claiming an expired hold: cancelling a swept hold (once, twice, at once) releases nothing more, held = Σ live holds', async () => {
    const userId = await createWallet('100');
    const [x1, x2, ...kept] = await holdsFor(userId, 5);
    await sweep([x1, x2]);
    await expectBooks(userId, { balance: 100_000_000n, held: 3n * HOLD, liveCount: 3 });

    const answers = [await cancel(x1), ...(await Promise.all([cancel(x2), cancel(x2), cancel(x2.toUpperCase())]))];

    await expectBooks(userId, { balance: 100_000_000n, held: 3n * HOLD, liveCount: 3 });
    for (const r of answers) expect(ok(r)).toMatchObject({ status: 'cancelled', released: ZERO });
    // The swept holds keep their story; the kept ones still hold.
    for (const key of [x1, x2])
      expect(ok(await t.request('GET', `/api/credits-process/usages/${key}`, { key: SERVICE_KEY })).status).toBe('expired');
    expect(kept).toHaveLength(3);
  });
});

// --- reconciliation ----------------------------------------------------------------------------

describe('reconciliation', () => {
  it('kills (c) reconciliation without `held = Σ live holds`: a held-only tamper is reported, with both figures', async () => {
    const userId = await createWallet('100');
    await holdsFor(userId, 2);
    await expectBooks(userId, { balance: 100_000_000n, held: 2n * HOLD, liveCount: 2 });
    // Only held moves: balance, the ledger and the holds stay as they were.
    await withDb(t.db.url, (c) => c.query(`UPDATE wallets SET held = held + 1 WHERE user_id = $1`, [userId]));
    try {
      expect(await mismatchesOf([userId])).toEqual([
        {
          user_id: userId,
          balance: '100.000000',
          ledger_sum: '100.000000',
          last_balance_after: '100.000000',
          held: '11.000000',
          live_holds: '10.000000',
          grants_less_debt: '100.000000',
          grant_mismatches: [],
        },
      ]);
    } finally {
      await withDb(t.db.url, (c) => c.query(`UPDATE wallets SET held = held - 1 WHERE user_id = $1`, [userId]));
    }
    expect(await mismatchesOf([userId])).toEqual([]);
  });
});
