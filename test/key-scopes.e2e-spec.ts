/**
 * Feature scopes of key records (API.md §11) on two real service processes sharing one database:
 * a key with allowed_features starts, settles, cancels and reads only usages of those features —
 * otherwise 403 feature_not_allowed_for_key and nothing written — under 30-way concurrency
 * spread over both instances. Plus what a service key cannot do to keys (its own included).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { createCatalog } from './support/catalog';
import { createTestDatabase, TestDatabase } from './support/database';
import { ADMIN_KEY, ApiResponse, SERVICE_KEY } from './support/http';
import { ServiceProcess, spawnService } from './support/service-process';

const USAGES = [{ ai_model: 'gpt-4o', input_tokens: 1000, output_tokens: 100 }];

describe('feature scopes of key records, on two instances', () => {
  let db: TestDatabase;
  let a: ServiceProcess;
  let b: ServiceProcess;
  let sql: pg.Client;
  let scoped: { key_id: string; key: string };
  const secrets: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await spawnService({ DATABASE_URL: db.url, LOG_LEVEL: 'trace' });
    b = await spawnService({ DATABASE_URL: db.url, LOG_LEVEL: 'trace' });
    await createCatalog(a.request);
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    const res = await a.request('POST', '/api/keys', { body: { name: 'chat only', scope: 'service', allowed_features: ['chat'] } });
    expect(res.status).toBe(201);
    scoped = res.body.data;
    secrets.push(scoped.key);
  }, 120_000);
  afterAll(async () => {
    await sql?.end();
    await Promise.all([a?.stop(), b?.stop()]);
    await db?.drop();
  }, 60_000);

  const wallet = async (userId: string, credits = '10000') =>
    expect((await a.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: credits } })).status).toBe(201);
  const post = (service: ServiceProcess, path: string, body: unknown, key = scoped.key) =>
    service.request('POST', `/api/credits-process/${path}`, { key, body });
  /** A hold placed with the unrestricted environment key. */
  const holdFor = async (userId: string, feature: string) => {
    const res = await post(a, 'start', { user_id: userId, feature_endpoint_id: feature }, SERVICE_KEY);
    expect(res.status).toBe(200);
    return res.body.data.usage_key as string;
  };
  /** Everything a scoped key's refusal must leave untouched. */
  const snapshot = async (userId: string) =>
    (
      await sql.query(
        `SELECT w.balance::text, w.held::text, w.version,
                (SELECT count(*)::int FROM holds h WHERE h.user_id = w.user_id) AS holds,
                (SELECT string_agg(h.usage_key || ':' || h.status, ',' ORDER BY h.usage_key) FROM holds h WHERE h.user_id = w.user_id) AS states,
                (SELECT count(*)::int FROM ledger_entries e WHERE e.user_id = w.user_id) AS entries
         FROM wallets w WHERE w.user_id = $1`,
        [userId],
      )
    ).rows[0];
  const refused = (res: ApiResponse, feature = 'tool') => {
    expect([res.status, res.body.data.status]).toEqual([403, 'feature_not_allowed_for_key']);
    expect(res.body.data.feature_endpoint_id).toBe(feature);
    expect(res.body.data.message).toEqual(expect.any(String));
  };

  it('start: its own feature is accessible, another is 403 with nothing written, on both instances', async () => {
    await wallet('sc-start');
    for (const service of [a, b]) {
      expect((await post(service, 'start', { user_id: 'sc-start', feature_endpoint_id: 'chat' })).status).toBe(200);
      const before = await snapshot('sc-start');
      refused(await post(service, 'start', { user_id: 'sc-start', feature_endpoint_id: 'tool' }));
      // Scope is checked before existence: an unknown feature is refused the same way (it is not this key's).
      refused(await post(service, 'start', { user_id: 'sc-start', feature_endpoint_id: 'no-such-feature' }), 'no-such-feature');
      expect(await snapshot('sc-start')).toEqual(before);
    }
  });

  it("settle (/end-multimodel, /end, direct charge): another feature is 403; naming its own feature on another feature's hold is a mismatch; nothing written", async () => {
    await wallet('sc-settle');
    const toolHold = await holdFor('sc-settle', 'tool');
    const before = await snapshot('sc-settle');
    for (const service of [a, b]) {
      refused(
        await post(service, 'end-multimodel', { user_id: 'sc-settle', feature_endpoint_id: 'tool', usage_key: toolHold, usages: USAGES }),
      );
      refused(await post(service, 'end', { user_id: 'sc-settle', feature_endpoint_id: 'tool', usage_key: toolHold, ...USAGES[0] }));
      refused(
        await post(service, 'end-multimodel', { user_id: 'sc-settle', feature_endpoint_id: 'tool', idempotency_key: 'd1', usages: USAGES }),
      );
      // The body claims an allowed feature, the hold is another's: the settle statement claims
      // only a hold of that user AND feature, so it is 409 and nothing is charged.
      const lie = await post(service, 'end-multimodel', {
        user_id: 'sc-settle',
        feature_endpoint_id: 'chat',
        usage_key: toolHold,
        usages: USAGES,
      });
      expect([lie.status, lie.body.data.status]).toEqual([409, 'usage_key_mismatch']);
    }
    expect(await snapshot('sc-settle')).toEqual(before);

    const chatHold = (await post(a, 'start', { user_id: 'sc-settle', feature_endpoint_id: 'chat' })).body.data.usage_key;
    const ok = await post(b, 'end-multimodel', { user_id: 'sc-settle', feature_endpoint_id: 'chat', usage_key: chatHold, usages: USAGES });
    expect([ok.status, ok.body.data.status]).toEqual([200, 'settled']);
  });

  it("cancel and the usage story read the hold's feature: another feature's hold is 403 and stays held", async () => {
    await wallet('sc-cancel');
    const toolHold = await holdFor('sc-cancel', 'tool');
    const before = await snapshot('sc-cancel');
    for (const service of [a, b]) {
      refused(await post(service, 'cancel', { usage_key: toolHold }));
      refused(await service.request('GET', `/api/credits-process/usages/${toolHold}`, { key: scoped.key }));
    }
    expect(await snapshot('sc-cancel')).toEqual(before);
    // Unknown keys are still 404 for a scoped key (nothing to read a feature from).
    const unknown = '00000000-0000-4000-8000-000000000000';
    expect((await post(a, 'cancel', { usage_key: unknown })).status).toBe(404);
    expect((await a.request('GET', `/api/credits-process/usages/${unknown}`, { key: scoped.key })).status).toBe(404);

    const chatHold = (await post(a, 'start', { user_id: 'sc-cancel', feature_endpoint_id: 'chat' })).body.data.usage_key;
    expect((await b.request('GET', `/api/credits-process/usages/${chatHold}`, { key: scoped.key })).body.data.status).toBe('held');
    const cancelled = await post(b, 'cancel', { usage_key: chatHold });
    expect([cancelled.status, cancelled.body.data.status]).toEqual([200, 'cancelled']);
    // Unrestricted keys are not checked at all: the environment key cancels the tool hold.
    expect((await post(a, 'cancel', { usage_key: toolHold }, SERVICE_KEY)).body.data.status).toBe('cancelled');
  });

  it('30 racing requests of a scoped key over both instances: every foreign one 403, its own succeed, and the books show only its feature moved', async () => {
    await wallet('sc-race', '100000');
    const toolHolds = await Promise.all(Array.from({ length: 6 }, () => holdFor('sc-race', 'tool')));
    const chatHolds = await Promise.all(Array.from({ length: 6 }, () => holdFor('sc-race', 'chat')));
    const before = (
      await sql.query(
        `SELECT (SELECT count(*)::int FROM holds WHERE user_id = 'sc-race' AND feature_endpoint_id = 'tool') AS tool_holds,
                (SELECT count(*)::int FROM ledger_entries WHERE user_id = 'sc-race') AS entries`,
      )
    ).rows[0];
    const calls: { foreign: boolean; run: () => Promise<ApiResponse> }[] = [];
    for (let i = 0; i < 30; i++) {
      const service = i % 2 === 0 ? a : b;
      const kind = i % 5;
      const foreign = i % 2 === 1 || kind === 4; // half the calls, and every fifth, name the forbidden feature
      const feature = foreign ? 'tool' : 'chat';
      const holds = foreign ? toolHolds : chatHolds;
      const hold = holds[i % holds.length];
      calls.push({
        foreign,
        run: () =>
          kind === 0
            ? post(service, 'start', { user_id: 'sc-race', feature_endpoint_id: feature })
            : kind === 1
              ? post(service, 'end-multimodel', { user_id: 'sc-race', feature_endpoint_id: feature, usage_key: hold, usages: USAGES })
              : kind === 2
                ? post(service, 'end-multimodel', {
                    user_id: 'sc-race',
                    feature_endpoint_id: feature,
                    idempotency_key: `race-${i}`,
                    usages: USAGES,
                  })
                : kind === 3
                  ? post(service, 'cancel', { usage_key: hold })
                  : post(service, 'end', { user_id: 'sc-race', feature_endpoint_id: feature, idempotency_key: `race-${i}`, ...USAGES[0] }),
      });
    }
    const answers = await Promise.all(calls.map((c) => c.run()));
    const foreign = answers.filter((_, i) => calls[i].foreign);
    const own = answers.filter((_, i) => !calls[i].foreign);
    expect(foreign.length).toBeGreaterThanOrEqual(15);
    for (const res of foreign) refused(res);
    // Its own calls: accessible/settled/cancelled, or (a settle and a cancel of the same chat hold
    // racing) already_settled / 409: never a 403, never a 5xx.
    for (const res of own) expect([200, 409]).toContain(res.status);

    const after = (
      await sql.query(
        `SELECT (SELECT count(*)::int FROM holds WHERE user_id = 'sc-race' AND feature_endpoint_id = 'tool') AS tool_holds,
                (SELECT count(*)::int FROM holds WHERE user_id = 'sc-race' AND feature_endpoint_id = 'tool' AND status <> 'held') AS tool_closed,
                (SELECT count(*)::int FROM ledger_entries e JOIN holds h USING (usage_key)
                  WHERE e.user_id = 'sc-race' AND h.feature_endpoint_id = 'tool') AS tool_entries`,
      )
    ).rows[0];
    // Not one tool hold placed, closed or charged by the scoped key.
    expect(after).toEqual({ tool_holds: before.tool_holds, tool_closed: 0, tool_entries: 0 });
    const reconciliation = await a.request('GET', '/api/reconciliation');
    expect(reconciliation.body.data.mismatches).toEqual([]);
  });

  it('GET /api/keys/:key_id answers what the key spent this period and when the period resets (UTC)', async () => {
    const day = (await a.request('GET', `/api/keys/${scoped.key_id}`)).body.data;
    const midnight = new Date();
    midnight.setUTCHours(24, 0, 0, 0);
    expect(day).toMatchObject({
      spend_period: 'day',
      spent_this_period: expect.stringMatching(/^\d+\.\d{6}$/),
      period_resets_at: midnight.toISOString(),
    });
    const capped = (
      await a.request('POST', '/api/keys', { body: { name: 'monthly', scope: 'service', spend_cap: { amount: '50', period: 'month' } } })
    ).body.data;
    secrets.push(capped.key);
    const month = (await a.request('GET', `/api/keys/${capped.key_id}`)).body.data;
    const next = new Date();
    const firstOfNext = new Date(Date.UTC(next.getUTCFullYear(), next.getUTCMonth() + 1, 1));
    expect(month).toMatchObject({
      spend_cap: { amount: '50.000000', period: 'month' },
      spend_period: 'month',
      spent_this_period: '0.000000',
      period_resets_at: firstOfNext.toISOString(),
    });
  });

  it('a service key record cannot read or change any key, its own included', async () => {
    const own = `/api/keys/${scoped.key_id}`;
    for (const [method, path, body] of [
      ['GET', '/api/keys', undefined],
      ['GET', own, undefined],
      ['PATCH', own, { allowed_features: [] }],
      ['PATCH', own, { spend_cap: null }],
      ['POST', `${own}/rotate`, {}],
      ['POST', `${own}/revoke`, undefined],
      ['POST', '/api/keys', { name: 'escalate', scope: 'admin' }],
      ['GET', '/api/audit-log', undefined],
    ] as const) {
      const res = await b.request(method, path, { key: scoped.key, body });
      expect([method, path, res.status, res.body.data.status]).toEqual([method, path, 403, 'forbidden']);
    }
    const record = await a.request('GET', own);
    expect(record.body.data).toMatchObject({ allowed_features: ['chat'], revoked_at: null });
    expect((await post(a, 'start', { user_id: 'sc-start', feature_endpoint_id: 'chat' })).status).toBe(200); // still its old secret
  });

  it('no secret (record keys or environment keys) in any log line, audit row, list answer or error answer', async () => {
    const logs = [...a.lines, ...b.lines].join('\n');
    const audit = (await sql.query(`SELECT changes::text AS c FROM audit_log`)).rows.map((r) => r.c as string).join('\n');
    const list = JSON.stringify((await a.request('GET', '/api/keys?limit=200')).body);
    const wrong = JSON.stringify((await a.request('GET', '/api/wallets', { key: `${scoped.key}0` })).body);
    expect(a.lines.length).toBeGreaterThan(50); // trace logging was on: there was something to leak into
    for (const secret of [...secrets, SERVICE_KEY, ADMIN_KEY]) {
      expect(logs).not.toContain(secret);
      expect(audit).not.toContain(secret);
      expect(list).not.toContain(secret);
      expect(wrong).not.toContain(secret);
    }
  });
});
