/**
 * Credit grants, drawing order, debt, void and expiry (API.md §8) over HTTP against the real app
 * on a throwaway PostgreSQL database. Charges go through a price table where one input token is
 * one micro-credit (test/support/grants.ts), so every draw is an exact figure chosen here.
 *
 * Where §8 is silent, the assumption is written beside the assertion that makes it.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import {
  addGrant,
  chargeEntry,
  createUnitPricing,
  createWallet,
  debtOf,
  debtPaidOf,
  directCharge,
  expectBooksClean,
  expectDrawsOf,
  FEATURE,
  formatMicros,
  fromNow,
  grantBooksProblems,
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
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const grantShape = (fields: Record<string, unknown> = {}) =>
  expect.objectContaining({
    grant_id: expect.any(String),
    user_id: expect.any(String),
    kind: expect.stringMatching(/^(paid|promotional)$/),
    amount: expect.stringMatching(MONEY),
    remaining: expect.stringMatching(MONEY),
    priority: expect.any(Number),
    status: expect.stringMatching(/^(active|depleted|expired|voided)$/),
    created_at: expect.stringMatching(ISO),
    ...fields,
  });

const sameInstant = (a: string | null, b: string | null) =>
  a === null || b === null ? a === b : new Date(a).getTime() === new Date(b).getTime();

describe('credit grants (API.md §8)', () => {
  let t: TestApp;
  let seq = 0;
  const uid = (label: string) => `${label}-${++seq}-${randomUUID().slice(0, 8)}`;
  const post = (path: string, body: unknown, key?: string) => t.request('POST', path, { body, ...(key ? { key } : {}) });
  const start = (userId: string) =>
    t.request('POST', '/api/credits-process/start', { key: SERVICE_KEY, body: { user_id: userId, feature_endpoint_id: FEATURE } });
  /** The wallet and every grant: what a refused request must leave exactly as it was. */
  const snapshot = async (userId: string) => ({
    wallet: await wallet(t.request, userId),
    grants: await listGrants(t.request, userId),
    ledger: await ledger(t.request, userId),
  });

  beforeAll(async () => {
    t = await startTestApp();
    await createUnitPricing(t.request);
  });
  afterAll(async () => {
    await t?.close();
  });

  describe('POST /api/wallets/:user_id/grants', () => {
    it('applies a grant: 201 with the grant (defaults paid, priority 50, no expiry) and the wallet, written to the ledger', async () => {
      const userId = uid('grant');
      await createWallet(t.request, userId);
      const res = await post(grantsPath(userId), { amount: '12.5', description: 'welcome pack' });
      expect(res.status).toBe(201);
      expect(res.body.success).toBe(true);
      expect(res.body.data).toEqual(
        expect.objectContaining({
          status: 'applied',
          grant: grantShape({
            user_id: userId,
            kind: 'paid',
            amount: '12.500000',
            remaining: '12.500000',
            priority: 50,
            expires_at: null,
            status: 'active',
          }),
          wallet: expect.objectContaining({ user_id: userId, balance: '12.500000', held: '0.000000', credits: '12.500000' }),
        }),
      );
      expect(debtPaidOf(res.body.data)).toBe('0.000000');

      // Assumption: a grant's ledger entry has kind 'grant' (one of the kinds the grants migration adds).
      const entries = await ledger(t.request, userId);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ kind: 'grant', amount: '12.500000', balance_after: '12.500000' });

      // Every field given is kept; a JSON number is an exact amount too (§2).
      const expiresAt = fromNow(3 * DAY);
      const promo = await post(grantsPath(userId), { amount: 2.25, kind: 'promotional', priority: 0, expires_at: expiresAt });
      expect(promo.status).toBe(201);
      expect(promo.body.data.grant).toEqual(
        grantShape({ kind: 'promotional', amount: '2.250000', remaining: '2.250000', priority: 0, status: 'active' }),
      );
      expect(sameInstant(promo.body.data.grant.expires_at, expiresAt)).toBe(true);
      expect(promo.body.data.wallet.balance).toBe('14.750000');
      // The edges of priority and an explicit null expiry are accepted.
      const edge = await post(grantsPath(userId), { amount: '0.000001', priority: 100, expires_at: null });
      expect(edge.status).toBe(201);
      expect(edge.body.data.grant).toMatchObject({ amount: '0.000001', priority: 100, expires_at: null });
      expect((await wallet(t.request, userId)).balance).toBe('14.750001');
    });

    it('a repeated idempotency_key with the same body is 200 already_applied (same grant); with another body 409 conflict', async () => {
      const userId = uid('grant-idem');
      await createWallet(t.request, userId);
      const body = { amount: '5', kind: 'promotional', priority: 20, idempotency_key: 'campaign-7' };
      const first = await post(grantsPath(userId), body);
      expect(first.status).toBe(201);
      expect(first.body.data.status).toBe('applied');
      const grantId = first.body.data.grant.grant_id;

      const repeat = await post(grantsPath(userId), body);
      expect(repeat.status).toBe(200);
      expect(repeat.body.data.status).toBe('already_applied');
      expect(repeat.body.data.grant.grant_id).toBe(grantId);
      expect(repeat.body.data.wallet.balance).toBe('5.000000');

      const before = await snapshot(userId);
      for (const other of [
        { ...body, amount: '6' },
        { ...body, kind: 'paid' },
        { ...body, priority: 21 },
      ]) {
        const res = await post(grantsPath(userId), other);
        expect(res.status).toBe(409);
        expect(res.body.data).toEqual(expect.objectContaining({ status: 'conflict', message: expect.any(String) }));
      }
      expect(await snapshot(userId)).toEqual(before);

      // 10 concurrent repeats of a new key apply once.
      const race = await Promise.all(Array.from({ length: 10 }, () => post(grantsPath(userId), { amount: '1', idempotency_key: 'race' })));
      expect(race.filter((r) => r.status === 201 && r.body.data.status === 'applied')).toHaveLength(1);
      expect(race.filter((r) => r.status === 200 && r.body.data.status === 'already_applied')).toHaveLength(9);
      expect(new Set(race.map((r) => r.body.data.grant.grant_id)).size).toBe(1);
      expect((await wallet(t.request, userId)).balance).toBe('6.000000');
      expect(await listGrants(t.request, userId)).toHaveLength(2);
    });

    describe('refuses a bad body with 400 validation_error and writes nothing', () => {
      let userId: string;
      beforeAll(async () => {
        userId = uid('grant-bad');
        await createWallet(t.request, userId, '5');
      });

      it.each([
        ['amount 0', { amount: '0' }, 'amount'],
        ['amount 0 as a number', { amount: 0 }, 'amount'],
        ['a negative amount', { amount: '-1' }, 'amount'],
        ['a negative amount as a number', { amount: -1 }, 'amount'],
        ['an amount with 7 decimals', { amount: '1.0000001' }, 'amount'],
        ['an amount with 7 decimals as a number', { amount: 1.0000001 }, 'amount'],
        ['an amount in exponent form', { amount: '1e3' }, 'amount'],
        ['an amount that is a boolean', { amount: true }, 'amount'],
        ['an amount that is an object', { amount: { value: '1' } }, 'amount'],
        ['an amount that is an array', { amount: ['1'] }, 'amount'],
        ['a null amount', { amount: null }, 'amount'],
        ['no amount', {}, 'amount'],
        ['priority -1', { amount: '1', priority: -1 }, 'priority'],
        ['priority 101', { amount: '1', priority: 101 }, 'priority'],
        ['priority 1.5', { amount: '1', priority: 1.5 }, 'priority'],
        ['priority "x"', { amount: '1', priority: 'x' }, 'priority'],
        ['kind "gift"', { amount: '1', kind: 'gift' }, 'kind'],
        ['expires_at in the past', { amount: '1', expires_at: new Date(Date.now() - HOUR).toISOString() }, 'expires_at'],
        ['expires_at "tomorrow"', { amount: '1', expires_at: 'tomorrow' }, 'expires_at'],
      ])('%s', async (_label, body, field) => {
        const before = await snapshot(userId);
        const res = await post(grantsPath(userId), { ...body, idempotency_key: 'bad-body' });
        expect(res.status).toBe(400);
        expect(res.body.success).toBe(false);
        expect(res.body.data).toEqual(
          expect.objectContaining({
            status: 'validation_error',
            message: expect.any(String),
            errors: expect.arrayContaining([expect.objectContaining({ field })]),
          }),
        );
        expect(await snapshot(userId)).toEqual(before);
      });

      it('the refused idempotency_key was not consumed: a good body with it applies', async () => {
        const res = await post(grantsPath(userId), { amount: '1', idempotency_key: 'bad-body' });
        expect(res.status).toBe(201);
        expect(res.body.data.status).toBe('applied');
      });
    });

    it('answers 404 wallet_not_found for an unknown wallet and creates nothing', async () => {
      const ghost = uid('ghost');
      const res = await post(grantsPath(ghost), { amount: '1' });
      expect(res.status).toBe(404);
      expect(res.body.data).toEqual(expect.objectContaining({ status: 'wallet_not_found', message: expect.any(String) }));
      expect((await t.request('GET', `/api/wallets/${ghost}`)).status).toBe(404);
      expect((await t.request('GET', grantsPath(ghost))).status).toBe(404);
    });

    it('is an admin route: a service key gets 403 and nothing is written', async () => {
      const userId = uid('grant-scope');
      await createWallet(t.request, userId, '1');
      const before = await snapshot(userId);
      const res = await post(grantsPath(userId), { amount: '100' }, SERVICE_KEY);
      expect(res.status).toBe(403);
      expect(res.body.data.status).toBe('forbidden');
      expect(await snapshot(userId)).toEqual(before);
    });
  });

  describe('drawing order and debt', () => {
    it('charges draw by priority, soonest expiry (none last), oldest; over all grants the rest is debt, paid by the next top-up', async () => {
      const userId = uid('order');
      await createWallet(t.request, userId);
      // Created in a scrambled order; A is older than E (same priority, no expiry).
      const A = (await addGrant(t.request, userId, { amount: '3', priority: 10 })).grant.grant_id;
      const F = (await addGrant(t.request, userId, { amount: '5', priority: 90, kind: 'promotional', expires_at: fromNow(HOUR) })).grant
        .grant_id;
      const E = (await addGrant(t.request, userId, { amount: '4', priority: 10 })).grant.grant_id;
      const B = (await addGrant(t.request, userId, { amount: '2', priority: 10, expires_at: fromNow(2 * DAY) })).grant.grant_id;
      const D = (await addGrant(t.request, userId, { amount: '1', priority: 5 })).grant.grant_id;
      const C = (await addGrant(t.request, userId, { amount: '1', priority: 10, expires_at: fromNow(DAY) })).grant.grant_id;
      expect((await listGrants(t.request, userId)).map((g) => g.grant_id)).toEqual([D, C, B, A, E, F]);
      expect((await wallet(t.request, userId)).balance).toBe('16.000000');

      // A direct charge of 2.5: D 1, C 1, B 0.5.
      const first = await directCharge(t.request, userId, '2.5');
      expect(first.balance).toBe('13.500000');
      expect(expectDrawsOf(await chargeEntry(t.request, userId, first.usage_key))).toEqual([
        { grant_id: D, amount: '1.000000' },
        { grant_id: C, amount: '1.000000' },
        { grant_id: B, amount: '0.500000' },
      ]);

      // A start/end charge of 8: B 1.5, A 3, E 3.5.
      const hold = await startHold(t.request, userId);
      const second = await settleHold(t.request, userId, hold.usage_key, '8');
      expect(second.balance).toBe('5.500000');
      expect(expectDrawsOf(await chargeEntry(t.request, userId, hold.usage_key))).toEqual([
        { grant_id: B, amount: '1.500000' },
        { grant_id: A, amount: '3.000000' },
        { grant_id: E, amount: '3.500000' },
      ]);

      // 10 is more than the 5.5 left: E 0.5, F 5, and 4.5 of debt.
      const third = await directCharge(t.request, userId, '10');
      expect(third.balance).toBe('-4.500000');
      expect(expectDrawsOf(await chargeEntry(t.request, userId, third.usage_key))).toEqual([
        { grant_id: E, amount: '0.500000' },
        { grant_id: F, amount: '5.000000' },
        { debt: '4.500000' },
      ]);
      expect(await debtOf(t.db.url, userId)).toBe('4.500000');
      const inDebt = await wallet(t.request, userId);
      expect(inDebt).toMatchObject({ balance: '-4.500000', credits: '-4.500000', grants: { paid: '0.000000', promotional: '0.000000' } });
      const drained = await listGrants(t.request, userId);
      expect(drained.map((g) => [g.grant_id, g.status, g.remaining])).toEqual(
        expect.arrayContaining([D, C, B, A, E, F].map((id) => [id, 'depleted', '0.000000'])),
      );
      const refused = await start(userId);
      expect(refused.status).toBe(402);
      expect(refused.body.data.status).toBe('insufficient_credits');

      // The next top-up pays the debt first; its grant keeps the rest.
      const topUp = await post(`/api/wallets/${userId}/top-up`, { amount: '10' });
      expect(topUp.status).toBe(200);
      expect(topUp.body.data.status).toBe('applied');
      expect(debtPaidOf(topUp.body.data)).toBe('4.500000');
      const topUpGrant = await grantById(t.request, userId, topUp.body.data.grant_id);
      expect(topUpGrant).toEqual(
        grantShape({ kind: 'paid', amount: '10.000000', remaining: '5.500000', expires_at: null, status: 'active' }),
      );
      expect(topUp.body.data.wallet.balance).toBe('5.500000');
      expect(await debtOf(t.db.url, userId)).toBe('0.000000');
      expect((await listGrants(t.request, userId, 'active')).map((g) => g.grant_id)).toEqual([topUp.body.data.grant_id]);

      // And the next charge draws from it.
      const fourth = await directCharge(t.request, userId, '1');
      expect(expectDrawsOf(await chargeEntry(t.request, userId, fourth.usage_key))).toEqual([
        { grant_id: topUp.body.data.grant_id, amount: '1.000000' },
      ]);
      expect((await grantById(t.request, userId, topUp.body.data.grant_id)).remaining).toBe('4.500000');
    });

    it('a grant pays debt first: partly (the grant is then depleted) and wholly (debt_paid, remaining = amount − debt_paid)', async () => {
      const userId = uid('debt');
      await createWallet(t.request, userId);
      // No grant at all: the whole charge is debt.
      const charge = await directCharge(t.request, userId, '2');
      expect(expectDrawsOf(await chargeEntry(t.request, userId, charge.usage_key))).toEqual([{ debt: '2.000000' }]);
      expect(await debtOf(t.db.url, userId)).toBe('2.000000');

      const small = await addGrant(t.request, userId, { amount: '1.5' });
      expect(debtPaidOf(small)).toBe('1.500000');
      // Assumption: a grant used up entirely by debt is 'depleted' from the start.
      expect(small.grant).toMatchObject({ amount: '1.500000', remaining: '0.000000', status: 'depleted' });
      expect(small.wallet.balance).toBe('-0.500000');
      expect(await debtOf(t.db.url, userId)).toBe('0.500000');

      const big = await addGrant(t.request, userId, { amount: '5', kind: 'promotional' });
      expect(debtPaidOf(big)).toBe('0.500000');
      expect(big.grant).toMatchObject({ amount: '5.000000', remaining: '4.500000', status: 'active' });
      expect(big.wallet.balance).toBe('4.500000');
      expect(await debtOf(t.db.url, userId)).toBe('0.000000');

      // No debt left: the next grant pays nothing.
      expect(debtPaidOf(await addGrant(t.request, userId, { amount: '1' }))).toBe('0.000000');
    });

    it('a grant or top-up racing a charge that creates debt both apply, and the debt is paid exactly once', async () => {
      // Each round: an empty wallet, a charge into debt sent together with a top-up and a grant.
      // Whichever order they land in, nothing fails and the books stay exact.
      for (let round = 0; round < 15; round++) {
        const userId = uid('debt-race');
        await createWallet(t.request, userId);
        const [charge, topUp, grant] = await Promise.all([
          t.request('POST', '/api/credits-process/end-multimodel', {
            key: SERVICE_KEY,
            body: { user_id: userId, feature_endpoint_id: FEATURE, usages: usagesFor('0.5') },
          }),
          post(`/api/wallets/${userId}/top-up`, { amount: '1' }),
          post(grantsPath(userId), { amount: '0.25' }),
        ]);
        expect([charge.status, topUp.status, grant.status]).toEqual([200, 200, 201]);
        const paid = micros(debtPaidOf(topUp.body.data)) + micros(debtPaidOf(grant.body.data));
        const drawnFromDebt = expectDrawsOf(await chargeEntry(t.request, userId, charge.body.data.usage_key))
          .filter((d) => 'debt' in d)
          .reduce((s, d) => s + micros((d as { debt: string }).debt), 0n);
        // What the charge left as debt was paid by the credits that came after it, and no more.
        expect(formatMicros(paid)).toBe(formatMicros(drawnFromDebt));
        expect(await debtOf(t.db.url, userId)).toBe('0.000000');
        expect((await wallet(t.request, userId)).balance).toBe('0.750000');
        expect(await grantBooksProblems(t.db.url, [userId])).toEqual([]);
      }
    });

    it('initial_credits and top-up create a paid grant with no expiry and answer its grant_id (a repeated top-up the same one)', async () => {
      const userId = uid('initial');
      const created = await createWallet(t.request, userId, '7');
      expect(typeof created.grant_id).toBe('string');
      expect(await listGrants(t.request, userId)).toEqual([
        grantShape({
          grant_id: created.grant_id,
          kind: 'paid',
          amount: '7.000000',
          remaining: '7.000000',
          expires_at: null,
          status: 'active',
        }),
      ]);

      const topUp = await post(`/api/wallets/${userId}/top-up`, { amount: '3', idempotency_key: 'inv-1' });
      expect(topUp.status).toBe(200);
      expect(typeof topUp.body.data.grant_id).toBe('string');
      expect(debtPaidOf(topUp.body.data)).toBe('0.000000');
      expect(await grantById(t.request, userId, topUp.body.data.grant_id)).toEqual(
        grantShape({ kind: 'paid', amount: '3.000000', remaining: '3.000000', expires_at: null, status: 'active' }),
      );
      const repeat = await post(`/api/wallets/${userId}/top-up`, { amount: '3', idempotency_key: 'inv-1' });
      expect(repeat.body.data.status).toBe('already_applied');
      expect(repeat.body.data.grant_id).toBe(topUp.body.data.grant_id);
      expect(await listGrants(t.request, userId)).toHaveLength(2);
      expect((await wallet(t.request, userId)).grants).toEqual({ paid: '10.000000', promotional: '0.000000' });
    });

    it('a negative adjust draws in drawing order (into debt); a positive adjust creates a paid grant that pays the debt first', async () => {
      const userId = uid('adjust');
      await createWallet(t.request, userId);
      const G1 = (await addGrant(t.request, userId, { amount: '2', priority: 10 })).grant.grant_id;
      const G2 = (await addGrant(t.request, userId, { amount: '3', priority: 20, kind: 'promotional' })).grant.grant_id;

      const minus4 = await post(`/api/wallets/${userId}/adjust`, { amount: '-4', reason: 'chargeback' });
      expect(minus4.status).toBe(200);
      expect(minus4.body.data.wallet.balance).toBe('1.000000');
      expect(await grantById(t.request, userId, G1)).toMatchObject({ remaining: '0.000000', status: 'depleted' });
      expect(await grantById(t.request, userId, G2)).toMatchObject({ remaining: '1.000000', status: 'active' });

      const minus2 = await post(`/api/wallets/${userId}/adjust`, { amount: '-2', reason: 'chargeback 2' });
      expect(minus2.body.data.wallet.balance).toBe('-1.000000');
      expect(await grantById(t.request, userId, G2)).toMatchObject({ remaining: '0.000000', status: 'depleted' });
      expect(await debtOf(t.db.url, userId)).toBe('1.000000');

      const plus5 = await post(`/api/wallets/${userId}/adjust`, { amount: '5', reason: 'goodwill' });
      expect(plus5.status).toBe(200);
      expect(plus5.body.data.wallet.balance).toBe('4.000000');
      expect(await debtOf(t.db.url, userId)).toBe('0.000000');
      const fresh = (await listGrants(t.request, userId)).filter((g) => g.grant_id !== G1 && g.grant_id !== G2);
      expect(fresh).toEqual([grantShape({ kind: 'paid', amount: '5.000000', remaining: '4.000000', expires_at: null, status: 'active' })]);
    });
  });

  describe('GET /api/wallets/:user_id/grants', () => {
    it('lists active grants first in drawing order, then the closed ones; ?status= filters', async () => {
      const userId = uid('list');
      await createWallet(t.request, userId);
      const P = (await addGrant(t.request, userId, { amount: '1', priority: 30 })).grant.grant_id;
      const Q = (await addGrant(t.request, userId, { amount: '1', priority: 10 })).grant.grant_id;
      const R = (await addGrant(t.request, userId, { amount: '1', priority: 20 })).grant.grant_id;
      const S = (await addGrant(t.request, userId, { amount: '1', priority: 5 })).grant.grant_id;
      expect((await post(`${grantsPath(userId)}/${R}/void`, { reason: 'test' })).status).toBe(200);
      await directCharge(t.request, userId, '1'); // depletes S

      const all = await listGrants(t.request, userId);
      expect(all.map((g) => g.grant_id).slice(0, 2)).toEqual([Q, P]);
      expect(
        all
          .map((g) => g.grant_id)
          .slice(2)
          .sort(),
      ).toEqual([R, S].sort());
      for (const g of all) expect(g).toEqual(grantShape({ user_id: userId }));

      expect((await listGrants(t.request, userId, 'active')).map((g) => g.grant_id)).toEqual([Q, P]);
      expect((await listGrants(t.request, userId, 'voided')).map((g) => [g.grant_id, g.status])).toEqual([[R, 'voided']]);
      expect((await listGrants(t.request, userId, 'depleted')).map((g) => [g.grant_id, g.status])).toEqual([[S, 'depleted']]);
      expect(await listGrants(t.request, userId, 'expired')).toEqual([]);

      const bad = await t.request('GET', `${grantsPath(userId)}?status=gone`);
      expect(bad.status).toBe(400);
      expect(bad.body.data.status).toBe('validation_error');
    });

    it('pages with a cursor without losing or repeating a grant', async () => {
      const userId = uid('pages');
      await createWallet(t.request, userId);
      for (let i = 0; i < 5; i++) await addGrant(t.request, userId, { amount: '1', priority: 50 - i });
      const all = await listGrants(t.request, userId);
      expect(all).toHaveLength(5);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const res: any = await t.request('GET', `${grantsPath(userId)}?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        expect(res.status).toBe(200);
        expect(res.body.data.items.length).toBeLessThanOrEqual(2);
        seen.push(...res.body.data.items.map((g: any) => g.grant_id));
        cursor = res.body.data.next_cursor;
      } while (cursor !== null && seen.length <= 5);
      expect(seen).toEqual(all.map((g) => g.grant_id));
    });
  });

  describe('void', () => {
    it('removes what remains (ledger grant_voided), a second void is already_voided, an unknown grant is 404', async () => {
      const userId = uid('void');
      await createWallet(t.request, userId);
      const V = (await addGrant(t.request, userId, { amount: '5' })).grant.grant_id;
      const keep = (await addGrant(t.request, userId, { amount: '1', priority: 90 })).grant.grant_id;
      await directCharge(t.request, userId, '2'); // V: 3 left

      const res = await post(`${grantsPath(userId)}/${V}/void`, { reason: 'sent by mistake' });
      expect(res.status).toBe(200);
      expect(res.body.data.status).toBe('voided');
      const after = await wallet(t.request, userId);
      expect(after.balance).toBe('1.000000');
      expect(await grantById(t.request, userId, V)).toMatchObject({ status: 'voided', remaining: '0.000000', amount: '5.000000' });
      expect(await grantById(t.request, userId, keep)).toMatchObject({ status: 'active', remaining: '1.000000' });
      const entries = await ledger(t.request, userId);
      expect(entries[0]).toMatchObject({ kind: 'grant_voided', amount: '-3.000000', balance_after: '1.000000' });
      // Assumption: like grant_expired, the entry names its grant in metadata.grant_id.
      expect(entries[0].metadata.grant_id).toBe(V);

      const again = await post(`${grantsPath(userId)}/${V}/void`, { reason: 'twice' });
      expect(again.status).toBe(200);
      expect(again.body.data.status).toBe('already_voided');
      expect(await ledger(t.request, userId)).toHaveLength(entries.length);
      expect((await wallet(t.request, userId)).balance).toBe('1.000000');

      // Unknown grant, and a grant of another wallet: 404, nothing written.
      const other = uid('void-other');
      await createWallet(t.request, other, '2');
      const otherGrant = (await listGrants(t.request, other))[0].grant_id;
      for (const path of [`${grantsPath(userId)}/${randomUUID()}/void`, `${grantsPath(userId)}/${otherGrant}/void`]) {
        const missing = await post(path, { reason: 'x' });
        expect(missing.status).toBe(404);
        expect(missing.body.data.status).toMatch(/not_found$/);
      }
      expect((await wallet(t.request, other)).balance).toBe('2.000000');
      expect(await ledger(t.request, userId)).toHaveLength(entries.length);
    });
  });

  describe('expiry', () => {
    it('an expiring grant leaves the balance as grant_expired for what remained; a live hold stays, and settles into debt', async () => {
      const userId = uid('expiry');
      await createWallet(t.request, userId);
      const expiresAt = fromNow(2_000);
      const X = (await addGrant(t.request, userId, { amount: '10', expires_at: expiresAt })).grant.grant_id;
      await directCharge(t.request, userId, '3');
      const hold = await startHold(t.request, userId);

      const expired = await waitFor(
        'the grant_expired entry',
        async () => (await ledger(t.request, userId)).find((e) => e.kind === 'grant_expired'),
        20_000,
        100,
      );
      expect(expired).toMatchObject({ amount: '-7.000000', balance_after: '0.000000' });
      expect(expired.metadata.grant_id).toBe(X);
      expect(new Date(expired.created_at).getTime()).toBeGreaterThanOrEqual(new Date(expiresAt).getTime());
      expect(await grantById(t.request, userId, X)).toMatchObject({ status: 'expired', remaining: '0.000000' });

      // The hold was not cancelled: it still counts, so credits are below zero.
      const w = await wallet(t.request, userId);
      expect(w).toMatchObject({ balance: '0.000000', held: '1.000000', credits: '-1.000000' });
      const story = await t.request('GET', `/api/credits-process/usages/${hold.usage_key}`, { key: SERVICE_KEY });
      expect(story.body.data.status).toBe('held');
      const refused = await start(userId);
      expect(refused.status).toBe(402);
      expect(refused.body.data.status).toBe('insufficient_credits');

      await settleHold(t.request, userId, hold.usage_key, '0.5');
      expect(expectDrawsOf(await chargeEntry(t.request, userId, hold.usage_key))).toEqual([{ debt: '0.500000' }]);
      expect(await wallet(t.request, userId)).toMatchObject({ balance: '-0.500000', held: '0.000000' });
      expect(await debtOf(t.db.url, userId)).toBe('0.500000');
      // Expired once, however often the sweeper ran since.
      expect((await ledger(t.request, userId)).filter((e) => e.kind === 'grant_expired')).toHaveLength(1);
    }, 40_000);
  });

  describe('expiry before /start decides, with the sweeper far off (GRANT_SWEEP_INTERVAL_MS=3600000)', () => {
    let quiet: TestApp;
    beforeAll(async () => {
      quiet = await startTestApp({ GRANT_SWEEP_INTERVAL_MS: '3600000' });
      await createUnitPricing(quiet.request);
    });
    afterAll(async () => {
      await quiet?.close();
    });

    it('a /start on a wallet whose only grant just expired is refused 402 insufficient_credits, and the expiry is on the ledger', async () => {
      const userId = 'only-grant';
      await createWallet(quiet.request, userId);
      const expiresAt = fromNow(1_500);
      const only = (await addGrant(quiet.request, userId, { amount: '5', expires_at: expiresAt })).grant.grant_id;
      // While it lives, /start is accessible.
      const live = await startHold(quiet.request, userId);
      expect(
        (await quiet.request('POST', '/api/credits-process/cancel', { key: SERVICE_KEY, body: { usage_key: live.usage_key } })).status,
      ).toBe(200);

      await waitFor('the grant to pass its expiry', async () => Date.now() > new Date(expiresAt).getTime() + 20);
      const refused = await quiet.request('POST', '/api/credits-process/start', {
        key: SERVICE_KEY,
        body: { user_id: userId, feature_endpoint_id: FEATURE },
      });
      expect(refused.status).toBe(402);
      expect(refused.body.data).toEqual(
        expect.objectContaining({ status: 'insufficient_credits', message: expect.any(String), credits: '0.000000', required: '1.000000' }),
      );
      const expired = (await ledger(quiet.request, userId)).filter((e) => e.kind === 'grant_expired');
      expect(expired).toHaveLength(1);
      expect(expired[0]).toMatchObject({ amount: '-5.000000', balance_after: '0.000000' });
      expect(expired[0].metadata.grant_id).toBe(only);
      expect(await wallet(quiet.request, userId)).toMatchObject({ balance: '0.000000', held: '0.000000', next_expiry: null });
      await expectBooksClean(quiet.request, quiet.db.url);
    });
  });

  describe('the wallet view', () => {
    it('shows grants { paid, promotional } (remaining sums) and next_expiry { at, amount }, or null', async () => {
      const userId = uid('view');
      const created = await createWallet(t.request, userId, '10');
      expect(created.grants).toEqual({ paid: '10.000000', promotional: '0.000000' });
      expect(created.next_expiry).toBeNull();

      const soonest = fromNow(DAY);
      await addGrant(t.request, userId, { amount: '3', kind: 'promotional', expires_at: fromNow(2 * DAY) });
      await addGrant(t.request, userId, { amount: '2', kind: 'promotional', expires_at: soonest, priority: 90 });
      await addGrant(t.request, userId, { amount: '1', kind: 'paid', expires_at: fromNow(3 * DAY) });
      const w = await wallet(t.request, userId);
      expect(w.grants).toEqual({ paid: '11.000000', promotional: '5.000000' });
      expect(w.next_expiry).toEqual({ at: expect.stringMatching(ISO), amount: '2.000000' });
      expect(sameInstant(w.next_expiry.at, soonest)).toBe(true);
      expect(w.balance).toBe('16.000000');

      // Drawing order now: the new priority-0 grant (0.5), then priority 50 by soonest expiry: the
      // promotional 3 (2 days) before the paid 1 (3 days) and the initial 10 (none). A charge of
      // 1.25 takes 0.5 + 0.75, both promotional; the 0.5 grant is then depleted and no longer
      // counts in next_expiry (which stays the 2 expiring soonest).
      await addGrant(t.request, userId, { amount: '0.5', kind: 'promotional', expires_at: soonest, priority: 0 });
      const drawn = await directCharge(t.request, userId, '1.25');
      expect(expectDrawsOf(await chargeEntry(t.request, userId, drawn.usage_key)).map((d: any) => d.amount)).toEqual([
        '0.500000',
        '0.750000',
      ]);
      const after = await wallet(t.request, userId);
      expect(after.grants).toEqual({ paid: '11.000000', promotional: '4.250000' });
      expect(after.next_expiry).toEqual({ at: expect.stringMatching(ISO), amount: '2.000000' });
      expect(sameInstant(after.next_expiry.at, soonest)).toBe(true);
      // The service key sees the same figures.
      const asService = await t.request('GET', `/api/wallets/${userId}`, { key: SERVICE_KEY });
      expect(asService.body.data.grants).toEqual(after.grants);
    });
  });

  describe('books after the whole file', () => {
    it('reconciliation is clean, and balance = Σ ledger = Σ active remaining − debt for every wallet', async () => {
      await expectBooksClean(t.request, t.db.url);
    });
  });
});
