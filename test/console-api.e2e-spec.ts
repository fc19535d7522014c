/**
 * The two read routes the operator console added (API.md §14: search wallets by user id, a wallet's
 * live holds), on the real app and a throwaway database.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createCatalog, startHold } from './support/catalog';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';

describe('console read routes', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
    await createCatalog(t.request);
    for (const user_id of ['acme-1', 'acme-2', 'acme-3', 'acmex', 'a%c_me', 'abc', 'other']) {
      expect((await t.request('POST', '/api/wallets', { body: { user_id, initial_credits: '100' } })).status).toBe(201);
    }
  });
  afterAll(() => t?.close());

  const ids = async (query: string) => {
    const res = await t.request('GET', `/api/wallets?${query}`);
    expect(res.status).toBe(200);
    return { ids: (res.body.data.items as { user_id: string }[]).map((w) => w.user_id), next: res.body.data.next_cursor as string | null };
  };

  it('searches wallets by user id prefix, in order, paged with the cursor', async () => {
    expect((await ids('user_id_prefix=acme')).ids).toEqual(['acme-1', 'acme-2', 'acme-3', 'acmex']);
    const first = await ids('user_id_prefix=acme-&limit=2');
    expect(first).toEqual({ ids: ['acme-1', 'acme-2'], next: 'acme-2' });
    expect((await ids(`user_id_prefix=acme-&limit=2&cursor=${first.next}`)).ids).toEqual(['acme-3']);
    expect((await ids('user_id_prefix=nobody')).ids).toEqual([]);
  });

  it("matches LIKE's wildcards in a prefix literally", async () => {
    expect((await ids(`user_id_prefix=${encodeURIComponent('a%')}`)).ids).toEqual(['a%c_me']);
    expect((await ids('user_id_prefix=a_')).ids).toEqual([]);
  });

  it('refuses an empty prefix with a 400', async () => {
    expect((await t.request('GET', '/api/wallets?user_id_prefix=')).status).toBe(400);
  });

  it("lists a wallet's live holds only, and answers 404 / 400 for an unknown wallet / a foreign cursor", async () => {
    const live = await startHold(t.request, 'abc', 'chat');
    const settledKey = await startHold(t.request, 'abc', 'chat');
    await t.request('POST', '/api/credits-process/cancel', { key: SERVICE_KEY, body: { usage_key: settledKey } });
    const res = await t.request('GET', '/api/wallets/abc/holds');
    expect(res.status).toBe(200);
    expect(res.body.data.items).toEqual([
      expect.objectContaining({ usage_key: live, feature_endpoint_id: 'chat', hold_amount: '5.000000', expired: false }),
    ]);
    const wallet = (await t.request('GET', '/api/wallets/abc')).body.data;
    expect(wallet.held).toBe('5.000000');
    expect((await t.request('GET', '/api/wallets/nobody/holds')).status).toBe(404);
    expect((await t.request('GET', '/api/wallets/abc/holds?cursor=not-a-key')).status).toBe(400);
    expect((await t.request('GET', '/api/wallets/abc/holds', { key: SERVICE_KEY })).status).toBe(403);
  });
});
