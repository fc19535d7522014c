/**
 * Refunds (API.md §9) over HTTP against the real app on a throwaway PostgreSQL database, and one
 * refund of a charge settled through the RabbitMQ queue. Charges use the unit price table of
 * test/support/grants.ts (one input token = one micro-credit), so every figure is exact.
 *
 * Assumptions where §9 is silent are written beside the assertions that make them:
 * - `credits_refunded` is the total refunded for the usage so far (this refund included), and
 *   `amount` is what this refund gave back.
 * - `transaction_id` is the refund's ledger entry id (as a settlement's is its charge entry's).
 * - Debt a refund cancels is not a grant: `returned` lists the grants only (an entry for the debt,
 *   if the service adds one, has no grant_id and is left out of the grant checks).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { ApiResponse, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import {
  addGrant,
  createUnitPricing,
  createWallet,
  debtOf,
  directCharge,
  expectBooksClean,
  FEATURE,
  formatMicros,
  fromNow,
  grantById,
  grantsPath,
  ledger,
  listGrants,
  micros,
  settleHold,
  startHold,
  usagesFor,
  wallet,
} from './support/grants';

const MONEY = /^-?\d+\.\d{6}$/;

const refundPath = (usageKey: string) => `/api/credits-process/usages/${encodeURIComponent(usageKey)}/refund`;

function expectFailure(res: ApiResponse, httpStatus: number, status: string): void {
  expect({ httpStatus: res.status, status: res.body?.data?.status }).toEqual({ httpStatus, status });
  expect(res.body.success).toBe(false);
  expect(typeof res.body.data.message).toBe('string');
}

describe('refunds (API.md §9)', () => {
  let t: TestApp;
  let seq = 0;
  const uid = (label: string) => `${label}-${++seq}-${randomUUID().slice(0, 8)}`;
  const refund = (usageKey: string, body: unknown) => t.request('POST', refundPath(usageKey), { key: SERVICE_KEY, body });
  /** A refund that must apply; returns its answer's data. */
  async function refunded(usageKey: string, body: Record<string, unknown>): Promise<any> {
    const res = await refund(usageKey, { reason: 'test refund', ...body });
    expect({ status: res.status, word: res.body?.data?.status }).toEqual({ status: 200, word: 'refunded' });
    return res.body.data;
  }
  const story = async (usageKey: string) => {
    const res = await t.request('GET', `/api/credits-process/usages/${usageKey}`, { key: SERVICE_KEY });
    expect(res.status).toBe(200);
    return res.body.data;
  };
  /** Everything a refused refund must leave as it was. */
  const snapshot = async (userId: string, usageKey?: string) => ({
    wallet: await wallet(t.request, userId),
    grants: await listGrants(t.request, userId),
    ledger: await ledger(t.request, userId),
    story: usageKey ? await story(usageKey) : null,
  });
  const grantsOnly = (returned: any[]) => returned.filter((r) => typeof r.grant_id === 'string');

  beforeAll(async () => {
    t = await startTestApp();
    await createUnitPricing(t.request);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('a full refund (no amount) gives back the whole charge to the grant it drew from, as one refund ledger entry', async () => {
    const userId = uid('full');
    const created = await createWallet(t.request, userId, '10');
    const G: string = created.grant_id;
    const charge = await directCharge(t.request, userId, '3');

    const data = await refunded(charge.usage_key, {});
    expect(data).toEqual(
      expect.objectContaining({
        status: 'refunded',
        usage_key: charge.usage_key,
        transaction_id: expect.anything(),
        amount: '3.000000',
        credits_charged: '3.000000',
        credits_refunded: '3.000000',
        balance: '10.000000',
        held: '0.000000',
        credits: '10.000000',
        returned: [{ grant_id: G, amount: '3.000000', expired: false }],
      }),
    );
    const entries = await ledger(t.request, userId);
    expect(entries[0]).toMatchObject({ kind: 'refund', amount: '3.000000', balance_after: '10.000000', usage_key: charge.usage_key });
    expect(String(entries[0].id)).toBe(String(data.transaction_id));
    expect(entries[0].metadata.returned).toEqual(expect.arrayContaining([expect.objectContaining({ grant_id: G })]));
    expect(await grantById(t.request, userId, G)).toMatchObject({ remaining: '10.000000', status: 'active' });

    // Nothing is left to refund.
    const more = await refund(charge.usage_key, { amount: '0.000001', reason: 'again' });
    expectFailure(more, 409, 'refund_exceeds_charge');
  });

  it('partial refunds add up to the charge and no further; the one that asks too much writes nothing', async () => {
    const userId = uid('partial');
    await createWallet(t.request, userId, '20');
    const hold = await startHold(t.request, userId);
    await settleHold(t.request, userId, hold.usage_key, '5');

    const one = await refunded(hold.usage_key, { amount: '1' });
    expect(one).toMatchObject({ amount: '1.000000', credits_charged: '5.000000', credits_refunded: '1.000000', balance: '16.000000' });
    const two = await refunded(hold.usage_key, { amount: 1.5 });
    expect(two).toMatchObject({ amount: '1.500000', credits_refunded: '2.500000', balance: '17.500000' });
    expect(two.transaction_id).not.toEqual(one.transaction_id);

    const before = await snapshot(userId, hold.usage_key);
    const tooMuch = await refund(hold.usage_key, { amount: '2.500001', reason: 'too much' });
    expectFailure(tooMuch, 409, 'refund_exceeds_charge');
    expect(await snapshot(userId, hold.usage_key)).toEqual(before);

    // The rest, without an amount: exactly what is left.
    const rest = await refunded(hold.usage_key, {});
    expect(rest).toMatchObject({ amount: '2.500000', credits_refunded: '5.000000', balance: '20.000000' });
    expect((await ledger(t.request, userId)).filter((e) => e.kind === 'refund').map((e) => e.amount)).toEqual([
      '2.500000',
      '1.500000',
      '1.000000',
    ]);
  });

  it('a repeated idempotency_key answers already_refunded with the same transaction_id and refunds nothing more', async () => {
    const userId = uid('idem');
    await createWallet(t.request, userId, '10');
    const charge = await directCharge(t.request, userId, '4');
    const first = await refunded(charge.usage_key, { amount: '1', idempotency_key: 'ticket-1' });

    const repeat = await refund(charge.usage_key, { amount: '1', reason: 'test refund', idempotency_key: 'ticket-1' });
    expect(repeat.status).toBe(200);
    expect(repeat.body.data).toMatchObject({ status: 'already_refunded', transaction_id: first.transaction_id, amount: '1.000000' });
    expect((await wallet(t.request, userId)).balance).toBe('7.000000');
    expect((await ledger(t.request, userId)).filter((e) => e.kind === 'refund')).toHaveLength(1);

    // 10 concurrent sends of a new key apply once.
    const race = await Promise.all(
      Array.from({ length: 10 }, () => refund(charge.usage_key, { amount: '0.5', reason: 'race', idempotency_key: 'ticket-2' })),
    );
    for (const r of race) expect(r.status).toBe(200);
    expect(race.filter((r) => r.body.data.status === 'refunded')).toHaveLength(1);
    expect(race.filter((r) => r.body.data.status === 'already_refunded')).toHaveLength(9);
    expect(new Set(race.map((r) => String(r.body.data.transaction_id))).size).toBe(1);
    expect((await wallet(t.request, userId)).balance).toBe('7.500000');
    expect((await ledger(t.request, userId)).filter((e) => e.kind === 'refund')).toHaveLength(2);
  });

  it('a held or cancelled usage is 409 not_settled; an unknown key is 404 usage_key_not_found; nothing is written', async () => {
    const userId = uid('unsettled');
    await createWallet(t.request, userId, '10');
    const held = await startHold(t.request, userId);
    const cancelled = await startHold(t.request, userId);
    expect(
      (await t.request('POST', '/api/credits-process/cancel', { key: SERVICE_KEY, body: { usage_key: cancelled.usage_key } })).status,
    ).toBe(200);
    const before = await snapshot(userId);

    expectFailure(await refund(held.usage_key, { reason: 'x' }), 409, 'not_settled');
    expectFailure(await refund(held.usage_key, { amount: '0.5', reason: 'x' }), 409, 'not_settled');
    expectFailure(await refund(cancelled.usage_key, { reason: 'x' }), 409, 'not_settled');
    expectFailure(await refund(randomUUID(), { reason: 'x' }), 404, 'usage_key_not_found');
    expectFailure(await refund('not-a-uuid', { reason: 'x' }), 404, 'usage_key_not_found');
    expect(await snapshot(userId)).toEqual(before);
    expect((await story(held.usage_key)).status).toBe('held');
  });

  it('returns credits to the grants last drawn first', async () => {
    const userId = uid('order');
    await createWallet(t.request, userId);
    const G1 = (await addGrant(t.request, userId, { amount: '2', priority: 10 })).grant.grant_id;
    const G2 = (await addGrant(t.request, userId, { amount: '3', priority: 20 })).grant.grant_id;
    const G3 = (await addGrant(t.request, userId, { amount: '5', priority: 30, kind: 'promotional' })).grant.grant_id;
    const charge = await directCharge(t.request, userId, '6'); // G1 2, G2 3, G3 1

    const first = await refunded(charge.usage_key, { amount: '1.5' });
    expect(first.returned).toEqual([
      { grant_id: G3, amount: '1.000000', expired: false },
      { grant_id: G2, amount: '0.500000', expired: false },
    ]);
    expect((await grantById(t.request, userId, G3)).remaining).toBe('5.000000');
    expect((await grantById(t.request, userId, G2)).remaining).toBe('0.500000');

    const rest = await refunded(charge.usage_key, {});
    expect(rest.returned).toEqual([
      { grant_id: G2, amount: '2.500000', expired: false },
      { grant_id: G1, amount: '2.000000', expired: false },
    ]);
    // Every grant is whole again, and active (a refilled depleted grant is drawable again).
    for (const [id, amount] of [
      [G1, '2.000000'],
      [G2, '3.000000'],
      [G3, '5.000000'],
    ])
      expect(await grantById(t.request, userId, id)).toMatchObject({ remaining: amount, status: 'active' });
    expect((await wallet(t.request, userId)).grants).toEqual({ paid: '5.000000', promotional: '5.000000' });
  });

  it('cancels the debt the charge created before returning credits to its grants', async () => {
    const userId = uid('debt');
    await createWallet(t.request, userId);
    const G = (await addGrant(t.request, userId, { amount: '2' })).grant.grant_id;
    const charge = await directCharge(t.request, userId, '5'); // G 2, debt 3
    expect(charge.balance).toBe('-3.000000');
    expect(await debtOf(t.db.url, userId)).toBe('3.000000');

    const partial = await refunded(charge.usage_key, { amount: '2' });
    expect(partial.balance).toBe('-1.000000');
    expect(grantsOnly(partial.returned)).toEqual([]);
    expect(await debtOf(t.db.url, userId)).toBe('1.000000');
    expect((await grantById(t.request, userId, G)).remaining).toBe('0.000000');

    const rest = await refunded(charge.usage_key, {});
    expect(rest).toMatchObject({ amount: '3.000000', balance: '2.000000', credits_refunded: '5.000000' });
    expect(grantsOnly(rest.returned)).toEqual([{ grant_id: G, amount: '2.000000', expired: false }]);
    expect(await debtOf(t.db.url, userId)).toBe('0.000000');
    expect(await grantById(t.request, userId, G)).toMatchObject({ remaining: '2.000000', status: 'active' });
  });

  it('a refund to a grant voided since comes back expired: the ledger shows the refund, then grant_expired', async () => {
    const userId = uid('voided');
    await createWallet(t.request, userId);
    const G1 = (await addGrant(t.request, userId, { amount: '5', priority: 10 })).grant.grant_id;
    const G2 = (await addGrant(t.request, userId, { amount: '10', priority: 20 })).grant.grant_id;
    const charge = await directCharge(t.request, userId, '3'); // G1 3
    expect((await t.request('POST', `${grantsPath(userId)}/${G1}/void`, { body: { reason: 'revoked' } })).status).toBe(200);
    expect((await wallet(t.request, userId)).balance).toBe('10.000000');

    const data = await refunded(charge.usage_key, {});
    expect(data.returned).toEqual([{ grant_id: G1, amount: '3.000000', expired: true }]);
    // The refund and the expiry cancel out: the voided grant's life was not extended.
    expect(data).toMatchObject({ amount: '3.000000', balance: '10.000000', credits: '10.000000' });
    const [newest, previous] = await ledger(t.request, userId);
    expect(previous).toMatchObject({ kind: 'refund', amount: '3.000000', usage_key: charge.usage_key, balance_after: '13.000000' });
    expect(newest).toMatchObject({ kind: 'grant_expired', amount: '-3.000000', balance_after: '10.000000' });
    expect(newest.metadata.grant_id).toBe(G1);
    expect((await grantById(t.request, userId, G1)).remaining).toBe('0.000000');
    expect(await grantById(t.request, userId, G2)).toMatchObject({ remaining: '10.000000', status: 'active' });
  });

  it('a refund to a grant expired since comes back expired: the ledger shows the refund, then grant_expired', async () => {
    const userId = uid('expired');
    await createWallet(t.request, userId);
    const G = (await addGrant(t.request, userId, { amount: '4', priority: 10, expires_at: fromNow(2_000) })).grant.grant_id;
    await addGrant(t.request, userId, { amount: '10', priority: 20 });
    const charge = await directCharge(t.request, userId, '3'); // G 3
    await waitFor(
      'the grant to expire',
      async () => (await ledger(t.request, userId)).some((e) => e.kind === 'grant_expired' && e.metadata?.grant_id === G),
      20_000,
      100,
    );
    expect((await wallet(t.request, userId)).balance).toBe('10.000000');

    const data = await refunded(charge.usage_key, { amount: '2' });
    expect(data.returned).toEqual([{ grant_id: G, amount: '2.000000', expired: true }]);
    expect(data.balance).toBe('10.000000');
    const [newest, previous] = await ledger(t.request, userId);
    expect(previous).toMatchObject({ kind: 'refund', amount: '2.000000', balance_after: '12.000000' });
    expect(newest).toMatchObject({ kind: 'grant_expired', amount: '-2.000000', balance_after: '10.000000' });
    expect(newest.metadata.grant_id).toBe(G);
    expect(await grantById(t.request, userId, G)).toMatchObject({ status: 'expired', remaining: '0.000000' });
  }, 40_000);

  it('20 concurrent partial refunds asking more than the charge apply exactly what fits', async () => {
    const userId = uid('race');
    await createWallet(t.request, userId, '20');
    const charge = await directCharge(t.request, userId, '10');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => refund(charge.usage_key, { amount: '0.7', reason: `race ${i}`, idempotency_key: `race-${i}` })),
    );
    const applied = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    // 14 × 0.7 = 9.8 fits in 10; a 15th would not.
    expect(applied).toHaveLength(14);
    for (const r of applied) expect(r.body.data).toMatchObject({ status: 'refunded', amount: '0.700000' });
    for (const r of refused) expectFailure(r, 409, 'refund_exceeds_charge');
    const sum = applied.reduce((s, r) => s + micros(r.body.data.amount), 0n);
    expect(formatMicros(sum)).toBe('9.800000');
    expect(applied.map((r) => r.body.data.credits_refunded).sort()).toEqual(
      Array.from({ length: 14 }, (_, i) => formatMicros(700_000n * BigInt(i + 1))).sort(),
    );
    expect((await wallet(t.request, userId)).balance).toBe('19.800000');
    expect((await ledger(t.request, userId)).filter((e) => e.kind === 'refund')).toHaveLength(14);

    // Exactly the 0.2 left still fits, and then nothing.
    expect((await refunded(charge.usage_key, { amount: '0.2' })).credits_refunded).toBe('10.000000');
    expectFailure(await refund(charge.usage_key, { amount: '0.000001', reason: 'none left' }), 409, 'refund_exceeds_charge');
  });

  it("the usage's story lists its refunds", async () => {
    const userId = uid('story');
    await createWallet(t.request, userId, '10');
    const hold = await startHold(t.request, userId);
    await settleHold(t.request, userId, hold.usage_key, '2');
    const a = await refunded(hold.usage_key, { amount: '0.5', reason: 'first' });
    const b = await refunded(hold.usage_key, { amount: '0.25', reason: 'second' });

    const s = await story(hold.usage_key);
    expect(s.status).toBe('settled');
    const refunds = s.ledger_entries.filter((e: any) => e.kind === 'refund');
    expect(refunds.map((e: any) => [String(e.id), e.amount])).toEqual([
      [String(a.transaction_id), '0.500000'],
      [String(b.transaction_id), '0.250000'],
    ]);
    expect(s.ledger_entries.map((e: any) => e.kind)).toEqual(['charge', 'refund', 'refund']);
  });

  describe('refuses a bad body with 400 validation_error and writes nothing', () => {
    let userId: string;
    let usageKey: string;
    beforeAll(async () => {
      userId = uid('bad');
      await createWallet(t.request, userId, '10');
      usageKey = (await directCharge(t.request, userId, '2')).usage_key;
    });

    it.each([
      ['amount 0', { amount: '0', reason: 'x' }, 'amount'],
      ['amount 0 as a number', { amount: 0, reason: 'x' }, 'amount'],
      ['a negative amount', { amount: '-1', reason: 'x' }, 'amount'],
      ['an amount with 7 decimals', { amount: '0.0000001', reason: 'x' }, 'amount'],
      ['an amount with 7 decimals as a number', { amount: 1.0000001, reason: 'x' }, 'amount'],
      ['a null amount', { amount: null, reason: 'x' }, 'amount'],
      ['an amount that is a boolean', { amount: true, reason: 'x' }, 'amount'],
      ['no reason', { amount: '1' }, 'reason'],
      ['an empty reason', { amount: '1', reason: '' }, 'reason'],
      ['a reason that is not a string', { amount: '1', reason: 42 }, 'reason'],
    ])('%s', async (_label, body, field) => {
      const before = await snapshot(userId, usageKey);
      const res = await refund(usageKey, { ...body, idempotency_key: 'bad-refund' });
      expect(res.status).toBe(400);
      expect(res.body.data).toEqual(
        expect.objectContaining({
          status: 'validation_error',
          message: expect.any(String),
          errors: expect.arrayContaining([expect.objectContaining({ field })]),
        }),
      );
      expect(await snapshot(userId, usageKey)).toEqual(before);
    });

    it('the refused idempotency_key was not consumed', async () => {
      const data = await refunded(usageKey, { amount: '1', idempotency_key: 'bad-refund' });
      expect(data.credits_refunded).toBe('1.000000');
    });
  });

  it('answers money as 6-decimal strings', async () => {
    const userId = uid('shape');
    await createWallet(t.request, userId, '1');
    const charge = await directCharge(t.request, userId, '0.123457');
    const data = await refunded(charge.usage_key, { amount: '0.000001' });
    for (const field of ['amount', 'credits_charged', 'credits_refunded', 'balance', 'held', 'credits']) expect(data[field]).toMatch(MONEY);
    for (const r of data.returned) expect(r.amount).toMatch(MONEY);
  });

  describe('books after the whole file', () => {
    it('reconciliation is clean, and the grant books agree for every wallet', async () => {
      await expectBooksClean(t.request, t.db.url);
    });
  });
});

describe('refund of a charge settled through RabbitMQ', () => {
  let t: TestApp;
  let vhost: TestVhost;

  beforeAll(async () => {
    vhost = await createTestVhost();
    t = await startTestApp({ RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: '100,200' });
    await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
    await createUnitPricing(t.request);
  });
  afterAll(async () => {
    await t?.close();
    await vhost?.delete();
  });

  it('refunds a queue-settled usage like an HTTP one', async () => {
    const userId = 'queued-user';
    const created = await createWallet(t.request, userId, '10');
    const hold = await startHold(t.request, userId);
    await publish(vhost.url, 'credits_process_end_multimodel_queue', [
      { user_id: userId, usage_key: hold.usage_key, feature_endpoint_id: FEATURE, usages: usagesFor('4') },
    ]);
    await waitFor('the queued settlement', async () => {
      const res = await t.request('GET', `/api/credits-process/usages/${hold.usage_key}`, { key: SERVICE_KEY });
      return res.body.data.status === 'settled';
    });
    expect((await wallet(t.request, userId)).balance).toBe('6.000000');

    const res = await t.request('POST', refundPath(hold.usage_key), { key: SERVICE_KEY, body: { amount: '1.5', reason: 'bad answer' } });
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({
      status: 'refunded',
      usage_key: hold.usage_key,
      amount: '1.500000',
      credits_charged: '4.000000',
      credits_refunded: '1.500000',
      balance: '7.500000',
      returned: [{ grant_id: created.grant_id, amount: '1.500000', expired: false }],
    });
    await expectBooksClean(t.request, t.db.url);
  });
});
