/**
 * Wallets and the ledger (issue 4, API.md §2 money and §6 wallet routes) against the real app on a
 * throwaway PostgreSQL database.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { ApiResponse, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';

const MONEY = /^-?\d+\.\d{6}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const walletShape = (fields: Record<string, unknown> = {}) =>
  expect.objectContaining({
    user_id: expect.any(String),
    plan: expect.any(String),
    status: expect.stringMatching(/^(active|suspended)$/),
    balance: expect.stringMatching(MONEY),
    held: expect.stringMatching(MONEY),
    credits: expect.stringMatching(MONEY),
    created_at: expect.stringMatching(ISO),
    updated_at: expect.stringMatching(ISO),
    ...fields,
  });

const transactionShape = (fields: Record<string, unknown> = {}) =>
  expect.objectContaining({
    id: expect.any(String),
    user_id: expect.any(String),
    kind: expect.any(String),
    amount: expect.stringMatching(MONEY),
    balance_after: expect.stringMatching(MONEY),
    usage_key: null,
    idempotency_key: null,
    description: null,
    metadata: expect.any(Object),
    created_at: expect.stringMatching(ISO),
    ...fields,
  });

describe('wallets and the ledger', () => {
  let t: TestApp;
  let seq = 0;
  /** A user id no other test uses. */
  const uid = (label: string) => `${label}-${++seq}-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  async function createWallet(body: Record<string, unknown>) {
    const res = await t.request('POST', '/api/wallets', { body });
    expect(res.status).toBe(201);
    return res.body.data;
  }
  const getWallet = (userId: string, key?: string) => t.request('GET', `/api/wallets/${encodeURIComponent(userId)}`, key ? { key } : {});
  const topUp = (userId: string, body: unknown, key?: string) =>
    t.request('POST', `/api/wallets/${encodeURIComponent(userId)}/top-up`, { body, ...(key ? { key } : {}) });
  const adjust = (userId: string, body: unknown) => t.request('POST', `/api/wallets/${encodeURIComponent(userId)}/adjust`, { body });
  const history = (userId: string, query = '') => t.request('GET', `/api/wallets/${encodeURIComponent(userId)}/transactions${query}`);
  async function balanceOf(userId: string): Promise<string> {
    const res = await getWallet(userId);
    expect(res.status).toBe(200);
    return res.body.data.balance;
  }
  async function allEntries(userId: string): Promise<any[]> {
    const res = await history(userId, '?limit=200');
    expect(res.status).toBe(200);
    expect(res.body.data.next_cursor).toBeNull();
    return res.body.data.items;
  }

  describe('create and read', () => {
    it('creates a wallet with the default plan "free", active, zero balance and no ledger entry', async () => {
      const userId = uid('new');
      const res = await t.request('POST', '/api/wallets', { body: { user_id: userId } });
      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        success: true,
        data: walletShape({
          user_id: userId,
          plan: 'free',
          status: 'active',
          balance: '0.000000',
          held: '0.000000',
          credits: '0.000000',
          grants: { paid: '0.000000', promotional: '0.000000' },
          next_expiry: null,
          // No initial credits: no grant (API.md §8).
          grant_id: null,
        }),
      });
      const read = await getWallet(userId);
      expect(read.status).toBe(200);
      const { grant_id: _created, ...created } = res.body.data;
      expect(read.body.data).toEqual(created);
      expect(await allEntries(userId)).toEqual([]);
    });

    it('writes initial_credits as a ledger entry and keeps the given plan', async () => {
      const userId = uid('initial');
      const wallet = await createWallet({ user_id: userId, plan: 'pro', initial_credits: '25.5' });
      expect(wallet).toEqual(walletShape({ user_id: userId, plan: 'pro', balance: '25.500000', credits: '25.500000' }));
      const entries = await allEntries(userId);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toEqual(
        transactionShape({ user_id: userId, amount: '25.500000', balance_after: '25.500000', description: expect.anything() }),
      );
    });

    it('answers 409 already_exists for a second wallet of the same user and changes nothing', async () => {
      const userId = uid('dup');
      await createWallet({ user_id: userId, initial_credits: '5' });
      const again = await t.request('POST', '/api/wallets', { body: { user_id: userId, plan: 'pro', initial_credits: '100' } });
      expect(again.status).toBe(409);
      expect(again.body).toEqual({
        success: false,
        data: expect.objectContaining({ status: 'already_exists', message: expect.any(String) }),
      });
      const read = await getWallet(userId);
      expect(read.body.data).toMatchObject({ plan: 'free', balance: '5.000000' });
      expect(await allEntries(userId)).toHaveLength(1);
    });

    it('creates exactly one wallet when the same create runs concurrently', async () => {
      const userId = uid('race-create');
      const results = await Promise.all(
        Array.from({ length: 8 }, () => t.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: '1' } })),
      );
      expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409, 409, 409, 409]);
      expect(await balanceOf(userId)).toBe('1.000000');
      expect(await allEntries(userId)).toHaveLength(1);
    });

    it('answers 404 wallet_not_found for every route on an unknown wallet', async () => {
      const ghost = uid('ghost');
      const attempts = [
        getWallet(ghost),
        t.request('PATCH', `/api/wallets/${ghost}`, { body: { plan: 'pro' } }),
        topUp(ghost, { amount: '1' }),
        adjust(ghost, { amount: '1', reason: 'test' }),
        history(ghost),
      ];
      for (const res of await Promise.all(attempts)) {
        expect(res.status).toBe(404);
        expect(res.body).toEqual({
          success: false,
          data: expect.objectContaining({ status: 'wallet_not_found', message: expect.any(String) }),
        });
      }
      // Nothing was created on the way.
      expect((await getWallet(ghost)).status).toBe(404);
    });

    it('serves every route for a user_id of the full 128 characters, ASCII or not', async () => {
      for (const userId of ['u'.repeat(128), 'ü€'.repeat(64)]) {
        await createWallet({ user_id: userId, initial_credits: '1' });
        const read = await getWallet(userId);
        expect(read.status).toBe(200);
        expect(read.body.data.user_id).toBe(userId);
        expect((await topUp(userId, { amount: '1' })).status).toBe(200);
        expect((await adjust(userId, { amount: '-0.5', reason: 'long id' })).status).toBe(200);
        expect((await t.request('PATCH', `/api/wallets/${encodeURIComponent(userId)}`, { body: { plan: 'pro' } })).status).toBe(200);
        const entries = await allEntries(userId);
        expect(entries.map((e) => e.balance_after)).toEqual(['1.500000', '2.000000', '1.000000']);
      }
    });

    it('refuses a bad create body with 400 validation_error and creates nothing', async () => {
      const bodies = [
        { user_id: '' },
        { user_id: 'x'.repeat(129) },
        { user_id: uid('neg'), initial_credits: '-1' },
        { user_id: uid('seven'), initial_credits: '1.1234567' },
        { user_id: uid('exp'), initial_credits: '1e3' },
        { user_id: uid('plan'), plan: '' },
      ];
      for (const body of bodies) {
        const res = await t.request('POST', '/api/wallets', { body });
        expect(res.status).toBe(400);
        expect(res.body.data.status).toBe('validation_error');
        expect(res.body.data.errors.length).toBeGreaterThan(0);
        if (body.user_id) expect((await getWallet(body.user_id)).status).toBe(404);
      }
    });
  });

  describe('top-up', () => {
    it('adds decimals exactly: 0.1 + 0.2 = 0.300000, as strings and as JSON numbers', async () => {
      const asStrings = uid('dec-str');
      await createWallet({ user_id: asStrings });
      const first = await topUp(asStrings, { amount: '0.1' });
      expect(first.status).toBe(200);
      expect(first.body.data).toEqual({
        status: 'applied',
        transaction: transactionShape({ user_id: asStrings, kind: 'top_up', amount: '0.100000', balance_after: '0.100000' }),
        wallet: walletShape({
          user_id: asStrings,
          balance: '0.100000',
          credits: '0.100000',
          grants: { paid: '0.100000', promotional: '0.000000' },
        }),
        // The top-up became a paid grant with no expiry (API.md §8); there was no debt to pay.
        grant_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        debt_paid: '0.000000',
      });
      const second = await topUp(asStrings, { amount: '0.2' });
      expect(second.body.data.transaction.balance_after).toBe('0.300000');
      expect(second.body.data.wallet.balance).toBe('0.300000');
      expect(await balanceOf(asStrings)).toBe('0.300000');

      const asNumbers = uid('dec-num');
      await createWallet({ user_id: asNumbers });
      expect((await topUp(asNumbers, { amount: 0.1 })).status).toBe(200);
      const n2 = await topUp(asNumbers, { amount: 0.2 });
      expect(n2.body.data.wallet.balance).toBe('0.300000');
      expect(await balanceOf(asNumbers)).toBe('0.300000');

      // Six fraction digits and large whole parts survive untouched.
      expect((await topUp(asNumbers, { amount: '123456789.000001' })).body.data.wallet.balance).toBe('123456789.300001');
      expect((await topUp(asNumbers, { amount: 0.000001 })).body.data.wallet.balance).toBe('123456789.300002');
    });

    it('keeps the description on the ledger entry', async () => {
      const userId = uid('desc');
      await createWallet({ user_id: userId });
      const res = await topUp(userId, { amount: '3', description: 'November invoice 42' });
      expect(res.body.data.transaction.description).toBe('November invoice 42');
      expect((await allEntries(userId))[0].description).toBe('November invoice 42');
    });

    it('adds a repeated idempotency_key once and answers the repeat with the first transaction', async () => {
      const userId = uid('idem');
      await createWallet({ user_id: userId, initial_credits: '1' });
      const first = await topUp(userId, { amount: '10', idempotency_key: 'order-1' });
      expect(first.status).toBe(200);
      expect(first.body.data.status).toBe('applied');
      expect(first.body.data.transaction).toEqual(
        transactionShape({ idempotency_key: 'order-1', amount: '10.000000', balance_after: '11.000000' }),
      );

      const repeat = await topUp(userId, { amount: '10.000000', idempotency_key: 'order-1' });
      expect(repeat.status).toBe(200);
      expect(repeat.body.data.status).toBe('already_applied');
      expect(repeat.body.data.transaction).toEqual(first.body.data.transaction);
      expect(repeat.body.data.wallet.balance).toBe('11.000000');
      expect(await balanceOf(userId)).toBe('11.000000');
      expect(await allEntries(userId)).toHaveLength(2);

      // A new key adds again.
      expect((await topUp(userId, { amount: '10', idempotency_key: 'order-2' })).body.data.status).toBe('applied');
      expect(await balanceOf(userId)).toBe('21.000000');
    });

    it('adds once when 20 identical requests with one idempotency_key run concurrently', async () => {
      const userId = uid('idem-race');
      await createWallet({ user_id: userId });
      const results = await Promise.all(Array.from({ length: 20 }, () => topUp(userId, { amount: '7.25', idempotency_key: 'race-key' })));
      for (const r of results) expect(r.status).toBe(200);
      const statuses = results.map((r) => r.body.data.status);
      expect(statuses.filter((s) => s === 'applied')).toHaveLength(1);
      expect(statuses.filter((s) => s === 'already_applied')).toHaveLength(19);
      expect(new Set(results.map((r) => r.body.data.transaction.id)).size).toBe(1);
      expect(await balanceOf(userId)).toBe('7.250000');
      const entries = await allEntries(userId);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ idempotency_key: 'race-key', amount: '7.250000', balance_after: '7.250000' });
    });

    it('answers 409 conflict for the same idempotency_key with a different amount, and adds nothing', async () => {
      const userId = uid('idem-conflict');
      await createWallet({ user_id: userId });
      expect((await topUp(userId, { amount: '5', idempotency_key: 'k-1' })).status).toBe(200);
      const other = await topUp(userId, { amount: '6', idempotency_key: 'k-1' });
      expect(other.status).toBe(409);
      expect(other.body).toEqual({ success: false, data: expect.objectContaining({ status: 'conflict', message: expect.any(String) }) });
      expect(await balanceOf(userId)).toBe('5.000000');
      expect(await allEntries(userId)).toHaveLength(1);
    });

    it.each([
      ['7 fraction digits', '1.1234567'],
      ['7 fraction digits as a number', 1.1234567],
      ['an exponent', '1e3'],
      ['an exponent with a sign', '1E+3'],
      ['NaN', 'NaN'],
      ['Infinity', 'Infinity'],
      ['hex', '0x10'],
      ['a comma', '1,5'],
      ['two dots', '1.2.3'],
      ['an empty string', ''],
      ['letters', 'ten'],
      ['a negative string', '-5'],
      ['a negative number', -5],
      ['zero', '0'],
      ['zero as a number', 0],
      ['just over the maximum', '1000000000000.000001'],
      ['a huge string', '9'.repeat(40)],
      ['a huge number', 1e21],
      ['null', null],
      ['a boolean', true],
      ['an object', { value: '1' }],
      ['an array', ['1']],
    ])('refuses an amount with %s: 400 validation_error with errors[], nothing written', async (_label, amount) => {
      const userId = uid('bad-amount');
      await createWallet({ user_id: userId, initial_credits: '1' });
      const res = await topUp(userId, { amount, idempotency_key: 'bad' });
      expect(res.status).toBe(400);
      expect(res.body.success).toBe(false);
      expect(res.body.data).toEqual(
        expect.objectContaining({
          status: 'validation_error',
          message: expect.any(String),
          errors: expect.arrayContaining([{ field: 'amount', message: expect.any(String) }]),
        }),
      );
      expect(await balanceOf(userId)).toBe('1.000000');
      expect(await allEntries(userId)).toHaveLength(1);
      // The refused key was not consumed: the same key with a valid amount applies.
      expect((await topUp(userId, { amount: '2', idempotency_key: 'bad' })).body.data.status).toBe('applied');
    });

    it('refuses a missing amount and an over-long idempotency_key', async () => {
      const userId = uid('bad-body');
      await createWallet({ user_id: userId });
      for (const body of [{}, { amount: '1', idempotency_key: 'k'.repeat(129) }, { amount: '1', description: 'd'.repeat(501) }]) {
        const res = await topUp(userId, body);
        expect(res.status).toBe(400);
        expect(res.body.data.status).toBe('validation_error');
        expect(res.body.data.errors.length).toBeGreaterThan(0);
      }
      expect(await balanceOf(userId)).toBe('0.000000');
    });
  });

  describe('adjust', () => {
    it('lets an operator take the balance below zero, visibly', async () => {
      const userId = uid('adjust');
      await createWallet({ user_id: userId, initial_credits: '1' });
      const res = await adjust(userId, { amount: '-5.5', reason: 'refund reversal' });
      expect(res.status).toBe(200);
      expect(res.body.data).toEqual({
        status: 'applied',
        transaction: transactionShape({
          user_id: userId,
          kind: 'adjustment',
          amount: '-5.500000',
          balance_after: '-4.500000',
          description: 'refund reversal',
          // A negative adjustment draws like a charge: the 1 credit of the initial grant, the rest is debt.
          metadata: expect.objectContaining({
            draws: [{ grant_id: expect.any(String), amount: '1.000000' }, { debt: '4.500000' }],
          }),
        }),
        wallet: walletShape({ user_id: userId, balance: '-4.500000', credits: '-4.500000' }),
        grant_id: null,
        debt_paid: '0.000000',
      });
      expect((await getWallet(userId)).body.data).toMatchObject({ balance: '-4.500000', credits: '-4.500000' });

      const back = await adjust(userId, { amount: 4.5, reason: 'goodwill' });
      expect(back.body.data.wallet.balance).toBe('0.000000');
      // A positive one is a paid grant, and it paid the debt first: nothing of it remains.
      expect(back.body.data.debt_paid).toBe('4.500000');
      expect(back.body.data.wallet.grants).toEqual({ paid: '0.000000', promotional: '0.000000' });
    });

    it.each([
      ['7 fraction digits', { amount: '-1.0000001', reason: 'x' }],
      ['an exponent', { amount: '-1e2', reason: 'x' }],
      ['NaN', { amount: 'NaN', reason: 'x' }],
      ['zero', { amount: '0', reason: 'x' }],
      ['a huge amount', { amount: '-1000000000000000', reason: 'x' }],
      ['no reason', { amount: '1' }],
      ['an empty reason', { amount: '1', reason: '' }],
    ])('refuses %s with 400 validation_error and writes nothing', async (_label, body) => {
      const userId = uid('bad-adjust');
      await createWallet({ user_id: userId, initial_credits: '2' });
      const res = await adjust(userId, body);
      expect(res.status).toBe(400);
      expect(res.body.data.status).toBe('validation_error');
      expect(res.body.data.errors.length).toBeGreaterThan(0);
      expect(await balanceOf(userId)).toBe('2.000000');
      expect(await allEntries(userId)).toHaveLength(1);
    });
  });

  describe('history', () => {
    it('lists the ledger newest first, each entry with balance_after', async () => {
      const userId = uid('history');
      await createWallet({ user_id: userId, initial_credits: '10' });
      await topUp(userId, { amount: '5' });
      await adjust(userId, { amount: '-3', reason: 'correction' });
      await topUp(userId, { amount: '2.5', idempotency_key: 'h-1' });

      const res = await history(userId);
      expect(res.status).toBe(200);
      expect(res.body.data.next_cursor).toBeNull();
      const items = res.body.data.items;
      expect(items.map((e: any) => [e.kind, e.amount, e.balance_after])).toEqual([
        ['top_up', '2.500000', '14.500000'],
        ['adjustment', '-3.000000', '12.000000'],
        ['top_up', '5.000000', '15.000000'],
        [expect.any(String), '10.000000', '10.000000'],
      ]);
      const ids = items.map((e: any) => BigInt(e.id));
      for (let i = 1; i < ids.length; i++) expect(ids[i] < ids[i - 1]).toBe(true);
      for (const e of items) expect(e.user_id).toBe(userId);
    });

    it('pages through all entries with limit=2, without duplicates, ending with next_cursor null', async () => {
      const userId = uid('pages');
      await createWallet({ user_id: userId, initial_credits: '1' });
      for (const amount of ['1', '2', '3', '4']) await topUp(userId, { amount });
      const everything = await allEntries(userId);
      expect(everything).toHaveLength(5);

      const seen: any[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res: ApiResponse = await history(userId, `?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        expect(res.status).toBe(200);
        expect(res.body.data.items.length).toBeLessThanOrEqual(2);
        seen.push(...res.body.data.items);
        cursor = res.body.data.next_cursor;
        pages++;
        expect(pages).toBeLessThanOrEqual(5);
      } while (cursor !== null);
      expect(pages).toBe(3);
      expect(seen.map((e) => e.id)).toEqual(everything.map((e) => e.id));
      expect(new Set(seen.map((e) => e.id)).size).toBe(5);
    });

    it('filters by usage_key', async () => {
      const userId = uid('usage');
      await createWallet({ user_id: userId, initial_credits: '3' });
      // A charge (the only kind of entry with a usage key) made by a direct settlement.
      await t.request('POST', '/api/features', { body: { feature_endpoint_id: `f-${userId}`, name: 'F', min_holding_credits: '1' } });
      await t.request('POST', '/api/pricing/models', {
        body: { ai_model: `m-${userId}`, input_price_per_million: '1', output_price_per_million: '1' },
      });
      const charge = await t.request('POST', '/api/credits-process/end-multimodel', {
        body: {
          user_id: userId,
          feature_endpoint_id: `f-${userId}`,
          usages: [{ ai_model: `m-${userId}`, input_tokens: 10, output_tokens: 10 }],
        },
      });
      expect(charge.status).toBe(200);
      const usageKey: string = charge.body.data.usage_key;
      await topUp(userId, { amount: '1' });
      expect(await allEntries(userId)).toHaveLength(3);

      const filtered = await history(userId, `?usage_key=${usageKey}`);
      expect(filtered.status).toBe(200);
      expect(filtered.body.data.items).toHaveLength(1);
      expect(filtered.body.data.items[0]).toMatchObject({ usage_key: usageKey, kind: 'charge', user_id: userId });
      expect(filtered.body.data.next_cursor).toBeNull();

      const other = await history(userId, `?usage_key=${randomUUID()}`);
      expect(other.status).toBe(200);
      expect(other.body.data.items).toEqual([]);
    });

    it('refuses a bad limit or cursor with 400 validation_error', async () => {
      const userId = uid('bad-query');
      await createWallet({ user_id: userId });
      for (const query of ['?limit=0', '?limit=abc', '?limit=1000', '?cursor=not-a-cursor']) {
        const res = await history(userId, query);
        expect(res.status).toBe(400);
        expect(res.body.data.status).toBe('validation_error');
      }
    });
  });

  describe('list', () => {
    it('pages through every wallet with limit=2, without duplicates', async () => {
      const mine = Array.from({ length: 5 }, () => uid('list'));
      for (const userId of mine) await createWallet({ user_id: userId });

      const client = new pg.Client({ connectionString: t.db.url });
      await client.connect();
      const total = Number((await client.query('SELECT count(*) AS n FROM wallets')).rows[0].n);
      await client.end();

      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const res: ApiResponse = await t.request('GET', `/api/wallets?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        expect(res.status).toBe(200);
        expect(res.body.data.items.length).toBeLessThanOrEqual(2);
        for (const w of res.body.data.items) expect(w).toEqual(walletShape());
        seen.push(...res.body.data.items.map((w: any) => w.user_id));
        cursor = res.body.data.next_cursor;
        expect(seen.length).toBeLessThanOrEqual(total);
      } while (cursor !== null);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toHaveLength(total);
      expect(seen).toEqual(expect.arrayContaining(mine));
    });
  });

  describe('patch', () => {
    it('changes plan and status; a suspended wallet shows as suspended', async () => {
      const userId = uid('patch');
      const created = await createWallet({ user_id: userId, initial_credits: '4' });

      const plan = await t.request('PATCH', `/api/wallets/${userId}`, { body: { plan: 'pro' } });
      expect(plan.status).toBe(200);
      expect(plan.body.data).toEqual(walletShape({ user_id: userId, plan: 'pro', status: 'active', balance: '4.000000' }));

      const suspended = await t.request('PATCH', `/api/wallets/${userId}`, { body: { status: 'suspended' } });
      expect(suspended.status).toBe(200);
      expect(suspended.body.data).toMatchObject({ plan: 'pro', status: 'suspended', balance: '4.000000' });
      expect((await getWallet(userId, SERVICE_KEY)).body.data.status).toBe('suspended');
      expect(new Date(suspended.body.data.updated_at).getTime()).toBeGreaterThanOrEqual(new Date(created.updated_at).getTime());
      expect(suspended.body.data.created_at).toBe(created.created_at);

      const active = await t.request('PATCH', `/api/wallets/${userId}`, { body: { status: 'active' } });
      expect(active.body.data.status).toBe('active');
      // Patching never touches money.
      expect(await allEntries(userId)).toHaveLength(1);
    });

    it('refuses an unknown status with 400 validation_error and changes nothing', async () => {
      const userId = uid('patch-bad');
      await createWallet({ user_id: userId });
      for (const body of [{ status: 'frozen' }, { status: 'SUSPENDED' }, { plan: '' }, { plan: 42 }]) {
        const res = await t.request('PATCH', `/api/wallets/${userId}`, { body });
        expect(res.status).toBe(400);
        expect(res.body.data.status).toBe('validation_error');
        expect(res.body.data.errors.length).toBeGreaterThan(0);
      }
      expect((await getWallet(userId)).body.data).toMatchObject({ plan: 'free', status: 'active' });
    });
  });

  describe('scopes', () => {
    it('lets a service key read a wallet, and nothing else of the wallet routes', async () => {
      const userId = uid('scope');
      await createWallet({ user_id: userId, initial_credits: '9' });

      const read = await getWallet(userId, SERVICE_KEY);
      expect(read.status).toBe(200);
      expect(read.body.data).toEqual(walletShape({ user_id: userId, balance: '9.000000' }));

      const forbidden = [
        t.request('POST', `/api/wallets/${userId}/top-up`, { key: SERVICE_KEY, body: { amount: '100' } }),
        t.request('POST', `/api/wallets/${userId}/adjust`, { key: SERVICE_KEY, body: { amount: '100', reason: 'x' } }),
        t.request('PATCH', `/api/wallets/${userId}`, { key: SERVICE_KEY, body: { status: 'suspended' } }),
        t.request('POST', '/api/wallets', { key: SERVICE_KEY, body: { user_id: uid('scope-new') } }),
        t.request('GET', '/api/wallets', { key: SERVICE_KEY }),
        t.request('GET', `/api/wallets/${userId}/transactions`, { key: SERVICE_KEY }),
      ];
      for (const res of await Promise.all(forbidden)) {
        expect(res.status).toBe(403);
        expect(res.body.data.status).toBe('forbidden');
      }
      expect((await getWallet(userId)).body.data).toMatchObject({ balance: '9.000000', status: 'active' });
      expect(await allEntries(userId)).toHaveLength(1);
    });
  });

  describe('reconciliation', () => {
    it('names a wallet whose balance or held no longer matches its books, and only that one', async () => {
      const good = uid('recon-good');
      const bad = uid('recon-bad');
      await createWallet({ user_id: good, initial_credits: '5' });
      await createWallet({ user_id: bad, initial_credits: '5' });
      const client = new pg.Client({ connectionString: t.db.url });
      await client.connect();
      const reconcile = async () => {
        const res = await t.request('GET', '/api/reconciliation');
        expect(res.status).toBe(200);
        return res.body.data as { wallets_checked: number; mismatches: { user_id: string }[] };
      };
      try {
        // Tampered behind the ledger's back, as a bad manual fix would.
        await client.query(`UPDATE wallets SET balance = balance + 0.000001, held = held + 1 WHERE user_id = $1`, [bad]);
        const found = await reconcile();
        expect(found.wallets_checked).toBe(Number((await client.query('SELECT count(*) AS n FROM wallets')).rows[0].n));
        expect(found.mismatches.filter((m) => m.user_id === good || m.user_id === bad)).toEqual([
          {
            user_id: bad,
            balance: '5.000001',
            ledger_sum: '5.000000',
            last_balance_after: '5.000000',
            held: '1.000000',
            live_holds: '0.000000',
            // The grants still hold what the ledger says: only the tampered balance disagrees with them.
            grants_less_debt: '5.000000',
            grant_mismatches: [],
          },
        ]);
      } finally {
        await client.query(`UPDATE wallets SET balance = balance - 0.000001, held = held - 1 WHERE user_id = $1`, [bad]);
        await client.end();
      }
      expect((await reconcile()).mismatches.map((m) => m.user_id)).not.toContain(bad);
    });
  });
});
