/**
 * The audit log (API.md §12): every admin write on the service appends exactly one row — actor,
 * action, target, request id, what changed — in the change's own transaction; a refused write
 * (404, 409, 400) appends none; the table refuses UPDATE and DELETE; GET /api/audit-log filters
 * by target, actor and action and pages with cursor and limit.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { startTestApp, TestApp } from './support/test-app';

interface Row {
  id: string;
  at: string;
  actor: { key_id: string; name: string };
  action: string;
  target: string;
  request_id: string | null;
  changes: Record<string, unknown>;
}

describe('the audit log of admin writes', () => {
  let t: TestApp;
  let sql: pg.Client;

  beforeAll(async () => {
    t = await startTestApp();
    sql = new pg.Client({ connectionString: t.db.url });
    await sql.connect();
  }, 60_000);
  afterAll(async () => {
    await sql?.end();
    await t?.close();
  });

  const count = async () => Number((await sql.query(`SELECT count(*) AS n FROM audit_log`)).rows[0].n);
  /** Makes one admin write with a known request id; returns its answer and the audit rows it appended. */
  const write = async (method: string, path: string, body?: unknown, key?: string) => {
    const requestId = `audit-${randomUUID()}`;
    const before = await count();
    const res = await t.request(method, path, { body, key, headers: { 'x-request-id': requestId } });
    const rows = (await t.request('GET', `/api/audit-log?limit=10`)).body.data.items.slice(0, (await count()) - before) as Row[];
    return { res, rows, requestId };
  };
  const one = async (method: string, path: string, body: unknown, action: string, target: string, key?: string) => {
    const { res, rows, requestId } = await write(method, path, body, key);
    expect(res.status).toBeLessThan(300);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action, target, request_id: requestId });
    return { res, row: rows[0] };
  };
  const none = async (method: string, path: string, body: unknown, status: number) => {
    const { res, rows } = await write(method, path, body);
    expect([path, res.status]).toEqual([path, status]);
    expect(rows).toEqual([]);
  };

  it('wallet.create, wallet.update, wallet.top_up, wallet.adjust: one row each, with what changed', async () => {
    const { row: created } = await one(
      'POST',
      '/api/wallets',
      { user_id: 'au-1', plan: 'pro', initial_credits: '100' },
      'wallet.create',
      'au-1',
    );
    expect(created.actor).toEqual({ key_id: 'env', name: expect.stringMatching(/^env key [0-9a-f]{12}$/) });
    expect(created.changes).toMatchObject({
      plan: 'pro',
      status: 'active',
      initial_credits: '100.000000',
      transaction_id: expect.any(String),
    });

    const { row: updated } = await one('PATCH', '/api/wallets/au-1', { status: 'suspended' }, 'wallet.update', 'au-1');
    expect(updated.changes).toEqual({ before: { plan: 'pro', status: 'active' }, after: { plan: 'pro', status: 'suspended' } });

    const { res: topUp, row: topped } = await one(
      'POST',
      '/api/wallets/au-1/top-up',
      { amount: '25.5', idempotency_key: 'tu-1', description: 'October' },
      'wallet.top_up',
      'au-1',
    );
    expect(topped.changes).toEqual({
      amount: '25.500000',
      transaction_id: topUp.body.data.transaction.id,
      idempotency_key: 'tu-1',
      description: 'October',
      balance_before: '100.000000',
      balance_after: '125.500000',
    });
    // A repeat of the same idempotency key adds nothing: no second row.
    const repeat = await write('POST', '/api/wallets/au-1/top-up', { amount: '25.5', idempotency_key: 'tu-1' });
    expect([repeat.res.body.data.status, repeat.rows]).toEqual(['already_applied', []]);

    const { row: adjusted } = await one(
      'POST',
      '/api/wallets/au-1/adjust',
      { amount: '-0.5', reason: 'goodwill' },
      'wallet.adjust',
      'au-1',
    );
    expect(adjusted.changes).toMatchObject({
      amount: '-0.500000',
      reason: 'goodwill',
      balance_before: '125.500000',
      balance_after: '125.000000',
    });
  });

  it('feature.create, feature.update, model.create, model.update, settings.update', async () => {
    const { row: f } = await one(
      'POST',
      '/api/features',
      { feature_endpoint_id: 'au-chat', name: 'Chat', min_holding_credits: '5' },
      'feature.create',
      'au-chat',
    );
    expect(f.changes).toMatchObject({ feature_endpoint_id: 'au-chat', min_holding_credits: '5.000000', active: true });
    const { row: fu } = await one(
      'PATCH',
      '/api/features/au-chat',
      { min_holding_credits: '7', active: false },
      'feature.update',
      'au-chat',
    );
    expect(fu.changes).toEqual({
      before: { min_holding_credits: '5.000000', active: true },
      after: { min_holding_credits: '7.000000', active: false },
    });
    // A patch that changes nothing: no row.
    expect((await write('PATCH', '/api/features/au-chat', { active: false })).rows).toEqual([]);

    const { row: m } = await one(
      'POST',
      '/api/pricing/models',
      { ai_model: 'au-model', input_price_per_million: '1', output_price_per_million: '2' },
      'model.create',
      'au-model',
    );
    expect(m.changes).toMatchObject({ ai_model: 'au-model', version: 1, input_price_per_million: '1.000000' });
    const { row: mu } = await one('PATCH', '/api/pricing/models/au-model', { output_price_per_million: '3' }, 'model.update', 'au-model');
    expect(mu.changes).toEqual({
      before: { version: 1, output_price_per_million: '2.000000' },
      after: { version: 2, output_price_per_million: '3.000000' },
    });
    expect((await write('PATCH', '/api/pricing/models/au-model', { output_price_per_million: '3' })).rows).toEqual([]);

    const { row: s } = await one('PUT', '/api/pricing/settings', { credits_per_usd: '120' }, 'settings.update', 'settings');
    expect(s.changes).toEqual({ before: { credits_per_usd: '100.000000' }, after: { credits_per_usd: '120.000000' } });
    expect((await write('PUT', '/api/pricing/settings', { credits_per_usd: '120' })).rows).toEqual([]);
  });

  it('settlement_failure.replay and settlement_failure.discard', async () => {
    await t.request('POST', '/api/wallets', { body: { user_id: 'au-2', initial_credits: '100' } });
    await t.request('POST', '/api/features', { body: { feature_endpoint_id: 'au-tool', name: 'Tool', min_holding_credits: '1' } });
    const payload = JSON.stringify({
      user_id: 'au-2',
      feature_endpoint_id: 'au-tool',
      idempotency_key: 'sf-1',
      usages: [{ ai_model: 'au-model', input_tokens: 1000, output_tokens: 10 }],
    });
    const ids = (
      await sql.query(
        `INSERT INTO settlement_failures (queue, payload, error_status, reason) VALUES
           ('credits_process_end_multimodel_queue', $1, 'unknown_model', 'was unknown'),
           ('credits_process_end_multimodel_queue', $1, 'unknown_model', 'was unknown')
         RETURNING id::text`,
        [payload],
      )
    ).rows.map((r) => r.id as string);
    const { row: replayed } = await one(
      'POST',
      `/api/settlement-failures/${ids[0]}/replay`,
      undefined,
      'settlement_failure.replay',
      ids[0],
    );
    expect(replayed.changes).toMatchObject({ before: { status: 'pending' }, after: { status: 'replayed' }, error_status: 'unknown_model' });
    const { row: discarded } = await one(
      'POST',
      `/api/settlement-failures/${ids[1]}/discard`,
      undefined,
      'settlement_failure.discard',
      ids[1],
    );
    expect(discarded.changes).toMatchObject({ before: { status: 'pending' }, after: { status: 'discarded' } });
    // Resolved already: 409, no row.
    await none('POST', `/api/settlement-failures/${ids[0]}/discard`, undefined, 409);
    await none('POST', `/api/settlement-failures/${ids[1]}/replay`, undefined, 409);
  });

  it('a refused write (404, 409, 400) appends no row', async () => {
    await none('POST', '/api/wallets', { user_id: 'au-1' }, 409);
    await none('POST', '/api/wallets', { user_id: '' }, 400);
    await none('PATCH', '/api/wallets/nobody', { plan: 'pro' }, 404);
    await none('POST', '/api/wallets/nobody/top-up', { amount: '1' }, 404);
    await none('POST', '/api/wallets/au-1/top-up', { amount: '2', idempotency_key: 'tu-1' }, 409);
    await none('POST', '/api/wallets/nobody/adjust', { amount: '1', reason: 'x' }, 404);
    await none('POST', '/api/features', { feature_endpoint_id: 'au-chat', name: 'again', min_holding_credits: '1' }, 409);
    await none('PATCH', '/api/features/nothing', { name: 'x' }, 404);
    await none('POST', '/api/pricing/models', { ai_model: 'au-model', input_price_per_million: '1', output_price_per_million: '1' }, 409);
    await none('PATCH', '/api/pricing/models/nothing', { input_price_per_million: '1' }, 404);
    await none('PUT', '/api/pricing/settings', { credits_per_usd: -1 }, 400);
    await none('POST', '/api/settlement-failures/999999/replay', undefined, 404);
    await none('POST', '/api/settlement-failures/999999/discard', undefined, 404);
    await none('PATCH', `/api/keys/${randomUUID()}`, { name: 'x' }, 404);
  });

  it('names an admin key record as the actor, and filters by target, actor and action with cursor and limit', async () => {
    const admin = (await t.request('POST', '/api/keys', { body: { name: 'ops', scope: 'admin' } })).body.data;
    for (let i = 0; i < 5; i++) {
      await one('POST', '/api/wallets/au-1/top-up', { amount: '1' }, 'wallet.top_up', 'au-1', admin.key);
    }
    const byActor = (await t.request('GET', `/api/audit-log?actor=${admin.key_id}`)).body.data.items as Row[];
    expect(byActor).toHaveLength(5);
    expect(byActor.every((r) => r.actor.key_id === admin.key_id && r.actor.name === 'ops')).toBe(true);
    expect(byActor.map((r) => BigInt(r.id))).toEqual([...byActor.map((r) => BigInt(r.id))].sort((x, y) => (x > y ? -1 : 1)));

    // Pages of 2 over target au-1 + action wallet.top_up: 6 rows (1 by env, 5 by ops), newest first, no repeats.
    const seen: Row[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `/api/audit-log?target=au-1&action=wallet.top_up&limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await t.request('GET', q)).body.data;
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toHaveLength(6);
    expect(new Set(seen.map((r) => r.id)).size).toBe(6);
    expect(seen.every((r) => r.target === 'au-1' && r.action === 'wallet.top_up')).toBe(true);
    expect(seen.filter((r) => r.actor.key_id === 'env')).toHaveLength(1);

    const env = (await t.request('GET', '/api/audit-log?actor=env&target=au-1')).body.data.items as Row[];
    expect(env.map((r) => r.action).sort()).toEqual(['wallet.adjust', 'wallet.create', 'wallet.top_up', 'wallet.update']);
    for (const bad of ['limit=0', 'limit=1000', 'cursor=abc', 'actor=nobody', 'action=wallet.delete', 'target=']) {
      expect([bad, (await t.request('GET', `/api/audit-log?${bad}`)).status]).toEqual([bad, 400]);
    }
  });

  it('refuses UPDATE and DELETE of its rows, even by the database owner', async () => {
    const before = await count();
    await expect(sql.query(`UPDATE audit_log SET changes = '{}'`)).rejects.toThrow(/append-only/);
    await expect(sql.query(`DELETE FROM audit_log WHERE action = 'wallet.top_up'`)).rejects.toThrow(/append-only/);
    expect(await count()).toBe(before);
  });
});
