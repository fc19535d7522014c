/**
 * Grant and debt invariants under concurrency (API.md §8, §9): random sequences of operations on
 * one wallet — grants with random priority, kind and expiry (some expiring during the run),
 * direct charges, start/end charges, refunds, voids and top-ups — sent in batches, each batch all
 * at once. Afterwards, read straight from the database and through the API:
 *   no grant's remaining below zero; balance = Σ ledger = Σ remaining of active grants − debt;
 *   each grant's remaining = amount − debt_paid − Σ draws − expired − voided + refunded;
 *   every charge's draws add up to the charge exactly (debt only last);
 *   the charges, credits added and refunds on the ledger are exactly the ones the test made;
 *   no usage refunded more than it was charged; reconciliation clean.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import {
  createUnitPricing,
  expectDrawsOf,
  FEATURE,
  formatMicros,
  grantBooksProblems,
  grantsPath,
  ledger,
  micros,
  reconcile,
  sql,
  usagesFor,
} from './support/grants';

type Expiry = 'none' | 'far' | 'soon';

type Op =
  | { kind: 'grant'; amount: bigint; priority: number; promotional: boolean; expiry: Expiry; soonMs: number }
  | { kind: 'top_up'; amount: bigint }
  | { kind: 'charge'; amount: bigint }
  | { kind: 'start_end'; amount: bigint }
  | { kind: 'refund'; target: number; amount: bigint | null }
  | { kind: 'void'; target: number };

const credits = (max: number) => fc.bigInt({ min: 1n, max: BigInt(max) });

const grantOp = fc.record({
  kind: fc.constant('grant' as const),
  amount: credits(5_000_000),
  priority: fc.integer({ min: 0, max: 100 }),
  promotional: fc.boolean(),
  expiry: fc.constantFrom<Expiry>('none', 'far', 'soon'),
  soonMs: fc.integer({ min: 600, max: 1_500 }),
});

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: grantOp },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('top_up' as const), amount: credits(3_000_000) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('charge' as const), amount: credits(6_000_000) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('start_end' as const), amount: credits(4_000_000) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('refund' as const),
      target: fc.nat(),
      amount: fc.option(credits(3_000_000), { nil: null }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('void' as const), target: fc.nat() }) },
);

const scenario = fc.record({
  initial: fc.array(grantOp, { minLength: 0, maxLength: 3 }),
  batches: fc.array(fc.array(op, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 4 }),
});

describe('grant and debt invariants (property)', () => {
  let t: TestApp;
  let run = 0;

  beforeAll(async () => {
    // A quicker sweeper so grants expiring during a run are swept within it.
    t = await startTestApp({ GRANT_SWEEP_INTERVAL_MS: '250' });
    await createUnitPricing(t.request);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('keeps the books exact for concurrent grants, charges, refunds, voids and top-ups', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ initial, batches }) => {
        const userId = `gprop-${++run}-${Date.now()}`;
        expect((await t.request('POST', '/api/wallets', { body: { user_id: userId } })).status).toBe(201);

        const grantIds: string[] = [];
        /** Settled usages with what they were charged, and what the test saw refunded. */
        const charged = new Map<string, bigint>();
        const refunded = new Map<string, bigint>();
        let added = 0n;
        const chargesMade: bigint[] = [];

        const grantBody = (g: Extract<Op, { kind: 'grant' }>) => ({
          amount: formatMicros(g.amount),
          priority: g.priority,
          kind: g.promotional ? 'promotional' : 'paid',
          ...(g.expiry === 'none' ? {} : { expires_at: new Date(Date.now() + (g.expiry === 'far' ? 86_400_000 : g.soonMs)).toISOString() }),
        });

        async function perform(o: Op, settledBefore: string[]): Promise<void> {
          switch (o.kind) {
            case 'grant': {
              const res = await t.request('POST', grantsPath(userId), { body: grantBody(o) });
              expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status: 201, word: 'applied' });
              grantIds.push(res.body.data.grant.grant_id);
              added += o.amount;
              return;
            }
            case 'top_up': {
              const res = await t.request('POST', `/api/wallets/${userId}/top-up`, { body: { amount: formatMicros(o.amount) } });
              expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status: 200, word: 'applied' });
              grantIds.push(res.body.data.grant_id);
              added += o.amount;
              return;
            }
            case 'charge': {
              const res = await t.request('POST', '/api/credits-process/end-multimodel', {
                key: SERVICE_KEY,
                body: { user_id: userId, feature_endpoint_id: FEATURE, usages: usagesFor(formatMicros(o.amount)) },
              });
              expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status: 200, word: 'settled' });
              charged.set(res.body.data.usage_key, o.amount);
              chargesMade.push(o.amount);
              return;
            }
            case 'start_end': {
              const started = await t.request('POST', '/api/credits-process/start', {
                key: SERVICE_KEY,
                body: { user_id: userId, feature_endpoint_id: FEATURE },
              });
              if (started.status === 402) {
                expect(started.body.data.status).toBe('insufficient_credits');
                return;
              }
              expect({ status: started.status, word: started.body?.data?.status }).toEqual({ status: 200, word: 'accessible' });
              const usageKey = started.body.data.usage_key;
              const res = await t.request('POST', '/api/credits-process/end-multimodel', {
                key: SERVICE_KEY,
                body: { user_id: userId, usage_key: usageKey, feature_endpoint_id: FEATURE, usages: usagesFor(formatMicros(o.amount)) },
              });
              expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status: 200, word: 'settled' });
              charged.set(usageKey, o.amount);
              chargesMade.push(o.amount);
              return;
            }
            case 'refund': {
              if (settledBefore.length === 0) return;
              const usageKey = settledBefore[o.target % settledBefore.length];
              const res = await t.request('POST', `/api/credits-process/usages/${usageKey}/refund`, {
                key: SERVICE_KEY,
                body: { reason: 'property refund', ...(o.amount === null ? {} : { amount: formatMicros(o.amount) }) },
              });
              if (res.status === 409) {
                expect(res.body.data.status).toBe('refund_exceeds_charge');
                return;
              }
              expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status: 200, word: 'refunded' });
              const amount = micros(res.body.data.amount);
              expect(amount > 0n).toBe(true);
              if (o.amount !== null) expect(amount).toBe(o.amount);
              refunded.set(usageKey, (refunded.get(usageKey) ?? 0n) + amount);
              return;
            }
            case 'void': {
              if (grantIds.length === 0) return;
              const grantId = grantIds[o.target % grantIds.length];
              const res = await t.request('POST', `${grantsPath(userId)}/${grantId}/void`, { body: { reason: 'property void' } });
              // Where §8 is silent: a grant that has expired has nothing left to void (409 conflict).
              if (res.status === 409) {
                expect(res.body.data.status).toBe('conflict');
                return;
              }
              expect(res.status).toBe(200);
              expect(['voided', 'already_voided']).toContain(res.body.data.status);
              return;
            }
          }
        }

        for (const g of initial) await perform(g, []);
        for (const batch of batches) {
          // Refunds in a batch target usages settled by earlier batches (so they are settled).
          const settledBefore = [...charged.keys()];
          // Settled, not all: a failed request must not leave others in flight past the property.
          const outcomes = await Promise.allSettled(batch.map((o) => perform(o, settledBefore)));
          for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
        }

        // Let every grant past its expiry be swept (the soon ones expire within ~1.5 s).
        await waitFor(
          'expired grants to be swept',
          async () =>
            (
              await sql<{ n: string }>(
                t.db.url,
                `SELECT count(*)::text AS n FROM grants WHERE user_id = $1 AND status = 'active' AND expires_at <= now()`,
                [userId],
              )
            )[0].n === '0',
          10_000,
          100,
        );
        // Anything that expired but is still within the sweep would break the snapshot: read
        // the books once no grant is due, then check.
        expect(await grantBooksProblems(t.db.url, [userId])).toEqual([]);

        const entries = await ledger(t.request, userId);
        const wallet = (await t.request('GET', `/api/wallets/${userId}`)).body.data;
        expect(entries.length > 0 ? entries[0].balance_after : '0.000000').toBe(wallet.balance);
        expect(formatMicros(entries.reduce((s, e) => s + micros(e.amount), 0n))).toBe(wallet.balance);
        expect(wallet.held).toBe('0.000000');

        // Charges: exactly the ones made, each drawn exactly.
        const chargeEntries = entries.filter((e) => e.kind === 'charge');
        expect(chargeEntries.map((e) => formatMicros(-micros(e.amount))).sort()).toEqual(chargesMade.map(formatMicros).sort());
        // A refund of debt that a later grant had already paid comes back as a new paid grant
        // (origin refund, README "Choices"): draws may name those too, and only those besides ours.
        const refundGrants = entries
          .filter((e) => e.kind === 'refund')
          .flatMap((e) => (e.metadata.returned as { grant_id: string }[]).map((r) => r.grant_id));
        for (const e of chargeEntries) {
          const draws = expectDrawsOf(e);
          for (const d of draws) if ('grant_id' in d) expect([...grantIds, ...refundGrants]).toContain(d.grant_id);
        }
        // Credits added: exactly the grants and top-ups made.
        const addedEntries = entries.filter((e) => e.kind === 'grant' || e.kind === 'top_up');
        expect(formatMicros(addedEntries.reduce((s, e) => s + micros(e.amount), 0n))).toBe(formatMicros(added));
        // Refunds: exactly the applied ones, none beyond its charge.
        const refundEntries = entries.filter((e) => e.kind === 'refund');
        const refundedTotal = [...refunded.values()].reduce((s, v) => s + v, 0n);
        expect(formatMicros(refundEntries.reduce((s, e) => s + micros(e.amount), 0n))).toBe(formatMicros(refundedTotal));
        for (const [usageKey, amount] of refunded) expect(amount <= charged.get(usageKey)!).toBe(true);
        // What left the balance otherwise: voids and expiries, never positive.
        for (const e of entries.filter((x) => x.kind === 'grant_voided' || x.kind === 'grant_expired'))
          expect(micros(e.amount) <= 0n).toBe(true);

        const report = await reconcile(t.request);
        expect(report.mismatches).toEqual([]);
      }),
      // ~0.5 s a run (more when a grant expires mid-run); the time limit bounds shrinking too.
      { numRuns: 25, interruptAfterTimeLimit: 45_000 },
    );
  }, 120_000);
});
