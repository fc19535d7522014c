/**
 * Ledger invariants under concurrency (issue 4): random sequences of top-ups (some repeated with
 * their idempotency key) and signed adjustments, all sent at once to one wallet. Afterwards the
 * balance equals the sum of the ledger and the exact expected sum, computed here in bigint
 * micro-credits independently of the service's own money code, and balance_after chains.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { ApiResponse, startTestApp, TestApp } from './support/test-app';

const UNIT = 1_000_000n;

/** Exact micro-credits of a decimal text such as "-12.5" (the oracle; no float anywhere). */
function micros(text: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) throw new Error(`not a decimal: ${text}`);
  const value = BigInt(m[2]) * UNIT + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] ? -value : value;
}

function format(value: bigint): string {
  const abs = value < 0n ? -value : value;
  return `${value < 0n ? '-' : ''}${abs / UNIT}.${(abs % UNIT).toString().padStart(6, '0')}`;
}

interface Amount {
  text: string;
  micros: bigint;
  /** Sent as a JSON number rather than a string (only when that number prints back exactly). */
  asNumber: boolean;
}

/** A non-zero decimal with 0..6 fraction digits, mostly small, sometimes up to a billion. */
const positiveAmount: fc.Arbitrary<Amount> = fc
  .record({
    whole: fc.oneof(fc.bigInt({ min: 0n, max: 20n }), fc.bigInt({ min: 0n, max: 1_000_000_000n })),
    frac: fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), maxLength: 6 }),
    asNumber: fc.boolean(),
  })
  .map(({ whole, frac, asNumber }) => {
    const text = frac ? `${whole}.${frac}` : `${whole}`;
    return { text, micros: micros(text), asNumber };
  })
  .filter((a) => a.micros !== 0n);

const signedAmount: fc.Arbitrary<Amount> = fc
  .tuple(positiveAmount, fc.boolean())
  .map(([a, negative]) => (negative ? { ...a, text: `-${a.text}`, micros: -a.micros } : a));

type Op = { kind: 'top_up'; amount: Amount; keyed: boolean } | { kind: 'adjust'; amount: Amount };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('top_up' as const), amount: positiveAmount, keyed: fc.boolean() }),
  fc.record({ kind: fc.constant('adjust' as const), amount: signedAmount }),
);

const scenario = fc.record({
  initial: fc.option(positiveAmount, { nil: undefined }),
  ops: fc.array(op, { minLength: 1, maxLength: 30 }),
  /** Which keyed top-ups are sent a second time, and where the repeat goes in the batch. */
  repeats: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 6 }),
});

function wire(a: Amount): string | number {
  if (!a.asNumber) return a.text;
  const n = Number(a.text);
  // Only numbers whose JSON text is the same exact decimal (no exponent, no rounding).
  return /^-?\d+(\.\d+)?$/.test(String(n)) && micros(String(n)) === a.micros ? n : a.text;
}

describe('wallet ledger invariants (property)', () => {
  let t: TestApp;
  let run = 0;

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it('balance = Σ ledger = the exact expected sum, for concurrent top-ups and adjustments', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ initial, ops, repeats }) => {
        const userId = `prop-${++run}-${Date.now()}`;
        const created = await t.request('POST', '/api/wallets', {
          body: { user_id: userId, ...(initial ? { initial_credits: wire(initial) } : {}) },
        });
        expect(created.status).toBe(201);

        // Each op becomes one request; keyed top-ups get a key unique to the op.
        const requests = ops.map((o, i) =>
          o.kind === 'top_up'
            ? {
                path: 'top-up',
                body: { amount: wire(o.amount), ...(o.keyed ? { idempotency_key: `op-${i}` } : {}) },
                key: o.keyed ? `op-${i}` : null,
              }
            : { path: 'adjust', body: { amount: wire(o.amount), reason: `property op ${i}` }, key: null },
        );
        const keyed = requests.filter((r) => r.key !== null);
        const batch = [...requests];
        if (keyed.length > 0) {
          for (const [which, where] of repeats) batch.splice(where % (batch.length + 1), 0, keyed[which % keyed.length]);
        }

        const responses: ApiResponse[] = await Promise.all(
          batch.map((r) => t.request('POST', `/api/wallets/${userId}/${r.path}`, { body: r.body })),
        );
        for (const res of responses) {
          expect(res.status).toBe(200);
          expect(['applied', 'already_applied']).toContain(res.body.data.status);
        }
        // Every keyed request applied exactly once, however many times it was sent.
        for (const r of keyed) {
          const answers = responses.filter((res, i) => batch[i] === r);
          expect(answers.filter((res) => res.body.data.status === 'applied')).toHaveLength(1);
          expect(new Set(answers.map((res) => res.body.data.transaction.id)).size).toBe(1);
        }

        const expected = (initial?.micros ?? 0n) + ops.reduce((sum, o) => sum + o.amount.micros, 0n);

        const wallet = await t.request('GET', `/api/wallets/${userId}`);
        expect(wallet.body.data.balance).toBe(format(expected));
        expect(wallet.body.data.held).toBe('0.000000');
        expect(wallet.body.data.credits).toBe(format(expected));

        const history = await t.request('GET', `/api/wallets/${userId}/transactions?limit=200`);
        expect(history.status).toBe(200);
        expect(history.body.data.next_cursor).toBeNull();
        const entries: { amount: string; balance_after: string }[] = history.body.data.items;
        // One entry per distinct operation (plus the initial credits), none doubled, none lost.
        const expectedAmounts = [...(initial ? [initial.micros] : []), ...ops.map((o) => o.amount.micros)].map(format).sort();
        expect(entries.map((e) => e.amount).sort()).toEqual(expectedAmounts);
        expect(entries.reduce((sum, e) => sum + micros(e.amount), 0n)).toBe(expected);
        expect(entries[0].balance_after).toBe(wallet.body.data.balance);
        // Oldest to newest, each balance_after is the previous one plus the entry's amount:
        // concurrent postings were serialized, never interleaved.
        let running = 0n;
        for (const e of [...entries].reverse()) {
          running += micros(e.amount);
          expect(e.balance_after).toBe(format(running));
        }
      }),
      { numRuns: 40 },
    );
  }, 180_000);
});
