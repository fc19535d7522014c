import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { CLIENT_TYPES_FILE, clientTypesPath, openApiDocumentWithoutServices, renderClientTypes } from '../src/common/client-types';
import { answerChecker, AnswerCheck } from './support/openapi-check';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { ApiResponse, RequestOptions, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/*
 * One declaration per answer (STYLE.md §12): the response classes make the OpenAPI document, the
 * document makes client/openapi.ts. This suite proves each link: the document the generator reads
 * is the one the service serves, the checked-in client types are what the generator writes from it,
 * and real answers of every route (successes and the usual failures) are exactly what it documents.
 */

const MULTI = 'credits_process_end_multimodel_queue';

describe('the OpenAPI document', () => {
  let t: TestApp;
  let vhost: TestVhost;
  let served: Record<string, unknown>;
  let check: AnswerCheck;
  /** `METHOD /template status` of every answer checked. */
  const seen = new Set<string>();
  /** Every way a real answer differed from the document: all are listed at the end of the walk. */
  const problems: string[] = [];

  beforeAll(async () => {
    vhost = await createTestVhost();
    t = await startTestApp({ RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: '50' });
    await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
    served = (await t.request('GET', '/docs-json', { key: null })).body;
    check = answerChecker(served);
  });
  afterAll(async () => {
    await t?.close();
    await vhost?.delete();
  });

  it('is the same whether served by the running service or built without a database (the generator reads the latter)', async () => {
    expect(JSON.parse(JSON.stringify(await openApiDocumentWithoutServices()))).toEqual(served);
  });

  it(`matches the checked-in ${CLIENT_TYPES_FILE}`, async () => {
    const expected = await renderClientTypes(await openApiDocumentWithoutServices());
    const actual = await readFile(clientTypesPath(process.cwd()), 'utf8').catch(() => '');
    if (actual !== expected) {
      throw new Error(`${CLIENT_TYPES_FILE} is stale: the response classes changed. Run \`npm run generate:client\` and commit the file.`);
    }
  });

  /** Calls the service and notes how the answer differs from what the document says for its route and status. */
  async function call(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse> {
    const res = await t.request(method, path, options);
    seen.add(`${method} ${check.route(method, path)} ${res.status}`);
    problems.push(...check.problems(method, path, res.status, res.body).map((p) => `${p} (answer: ${JSON.stringify(res.body)})`));
    return res;
  }

  it('rejects an answer that differs from the document: a money number, a missing field, an unknown field, a wrong word', () => {
    const wallet = {
      user_id: 'u1',
      plan: 'pro',
      status: 'active',
      balance: '100.000000',
      held: '0.000000',
      credits: '100.000000',
      low_balance_thresholds: [],
      grants: { paid: '100.000000', promotional: '0.000000' },
      next_expiry: null,
      created_at: '2026-11-25T10:00:00.000Z',
      updated_at: '2026-11-25T10:00:00.000Z',
    };
    const problems = (data: unknown) => check.problems('GET', '/api/wallets/u1', 200, { success: true, data });
    expect(problems(wallet)).toEqual([]);
    expect(problems({ ...wallet, balance: 100 })).not.toEqual([]);
    expect(problems({ ...wallet, balance: '100.5' })).not.toEqual([]);
    expect(problems({ ...wallet, updated_at: undefined })).not.toEqual([]);
    expect(problems({ ...wallet, extra: 1 })).not.toEqual([]);
    expect(problems({ ...wallet, status: 'frozen' })).not.toEqual([]);
    expect(problems({ ...wallet, created_at: 'yesterday' })).not.toEqual([]);
    expect(check.problems('GET', '/api/wallets/u1', 418, {})).not.toEqual([]);
  });

  it('shows examples that are themselves answers the document allows', () => {
    const found: string[] = [];
    const paths = served.paths as Record<string, Record<string, { responses: Record<string, { content?: Record<string, any> }> }>>;
    for (const [template, methods] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(methods)) {
        for (const [status, response] of Object.entries(op.responses)) {
          const json = response.content?.['application/json'];
          if (!json) continue;
          const examples = [json.example, ...Object.values(json.examples ?? {}).map((e: any) => e.value)].filter((e) => e !== undefined);
          for (const example of examples) found.push(...check.problems(method.toUpperCase(), template, Number(status), example));
        }
      }
    }
    expect(found).toEqual([]);
  });

  it('describes every answer of every route exactly: fields, null, money strings, status words', async () => {
    const admin = {};
    const service = { key: SERVICE_KEY };

    // Catalogue.
    await call('POST', '/api/pricing/models', {
      ...admin,
      body: { ai_model: 'gpt-4o', input_price_per_million: '2.5', output_price_per_million: '10', cached_input_price_per_million: '1.25' },
    });
    await call('POST', '/api/pricing/models', {
      body: { ai_model: 'gpt-4o', input_price_per_million: '1', output_price_per_million: '1' },
    });
    await call('PATCH', '/api/pricing/models/gpt-4o', { body: { output_price_per_million: '12', profit_margin: '0.1' } });
    await call('GET', '/api/pricing/models/gpt-4o');
    await call('GET', '/api/pricing/models/none-such');
    await call('GET', '/api/pricing/models?limit=1');
    await call('GET', '/api/pricing/settings');
    await call('PUT', '/api/pricing/settings', { body: { credits_per_usd: '100' } });
    await call('POST', '/api/features', {
      body: { feature_endpoint_id: 'chat', name: 'Chat', min_holding_credits: '5', profit_margin: '0.2' },
    });
    await call('POST', '/api/features', {
      body: { feature_endpoint_id: 'tool', name: 'Tool', min_holding_credits: '1', fixed_cost: '0.01', hold_ttl_seconds: 60 },
    });
    await call('POST', '/api/features', { body: { feature_endpoint_id: 'chat', name: 'Chat', min_holding_credits: '5' } });
    await call('PATCH', '/api/features/tool', { body: { allowed_plans: ['pro'], fixed_cost: null } });
    await call('GET', '/api/features/chat');
    await call('GET', '/api/features/none-such');
    await call('GET', '/api/features?limit=1');
    await call('GET', '/api/features', service);

    // Wallets and their ledger.
    await call('POST', '/api/wallets', { body: { user_id: 'oa-1', plan: 'pro', initial_credits: '100' } });
    await call('POST', '/api/wallets', { body: { user_id: 'oa-poor' } });
    await call('POST', '/api/wallets', { body: { user_id: 'oa-1' } });
    await call('POST', '/api/wallets', { body: { user_id: 'oa-2', initial_credits: 'lots' } });
    await call('GET', '/api/wallets/oa-1', service);
    await call('GET', '/api/wallets/none-such', service);
    await call('GET', '/api/wallets?limit=1');
    await call('PATCH', '/api/wallets/oa-poor', { body: { plan: 'free' } });
    await call('POST', '/api/wallets/oa-1/top-up', { body: { amount: '10.5', idempotency_key: 'oa-invoice-1', description: 'invoice' } });
    await call('POST', '/api/wallets/oa-1/top-up', { body: { amount: '10.5', idempotency_key: 'oa-invoice-1', description: 'invoice' } });
    await call('POST', '/api/wallets/oa-1/adjust', { body: { amount: '-0.5', reason: 'correction' } });

    // A hold, settled; a repeat; a legacy direct charge; a cancel; the failures on the way.
    const usage = { ai_model: 'gpt-4o', input_tokens: 1200, cached_input_tokens: 200, output_tokens: 300 };
    await call('POST', '/api/pricing/quote', { ...service, body: { feature_endpoint_id: 'chat', usages: [usage] } });
    await call('POST', '/api/pricing/quote', {
      ...service,
      body: { feature_endpoint_id: 'chat', usages: [{ ...usage, ai_model: 'nope' }] },
    });
    const start = await call('POST', '/api/credits-process/start', { ...service, body: { user_id: 'oa-1', feature_endpoint_id: 'chat' } });
    const usageKey = start.body.data.usage_key as string;
    await call('POST', '/api/credits-process/start', { ...service, body: { user_id: 'oa-poor', feature_endpoint_id: 'chat' } });
    await call('POST', '/api/credits-process/start', { key: null, body: { user_id: 'oa-1', feature_endpoint_id: 'chat' } });
    await call('GET', `/api/credits-process/usages/${usageKey}`, service);
    const settlement = { user_id: 'oa-1', feature_endpoint_id: 'chat', usage_key: usageKey, usages: [usage] };
    await call('POST', '/api/credits-process/end-multimodel', { ...service, body: settlement });
    await call('POST', '/api/credits-process/end-multimodel', { ...service, body: settlement });
    await call('POST', '/api/credits-process/end-multimodel', { ...service, body: { ...settlement, user_id: 'oa-poor' } });
    await call('GET', `/api/credits-process/usages/${usageKey}`, service);
    await call('POST', '/api/credits-process/end', {
      ...service,
      body: {
        user_id: 'oa-1',
        feature_endpoint_id: 'tool',
        idempotency_key: 'oa-job-1',
        ai_model: 'gpt-4o',
        input_tokens: 10,
        output_tokens: 5,
      },
    });
    const held = await call('POST', '/api/credits-process/start', { ...service, body: { user_id: 'oa-1', feature_endpoint_id: 'tool' } });
    await call('POST', '/api/credits-process/extend', {
      ...service,
      body: { usage_key: held.body.data.usage_key, ttl_seconds: 600, additional_hold: '1' },
    });
    await call('POST', '/api/credits-process/extend', {
      ...service,
      body: { usage_key: held.body.data.usage_key, additional_hold: '100000' },
    });
    await call('POST', '/api/credits-process/extend', { ...service, body: { usage_key: usageKey } });
    await call('POST', '/api/credits-process/cancel', { ...service, body: { usage_key: held.body.data.usage_key } });
    await call('GET', `/api/credits-process/usages/${held.body.data.usage_key}`, service);
    await call('GET', '/api/credits-process/usages/00000000-0000-4000-8000-000000000000', service);
    await call('GET', '/api/wallets/oa-1/transactions?limit=200');

    // Grants and refunds (§8, §9).
    const grantBody = { amount: '5', kind: 'promotional', priority: 10, expires_at: new Date(Date.now() + 86_400_000).toISOString() };
    const grant = await call('POST', '/api/wallets/oa-1/grants', { body: { ...grantBody, idempotency_key: 'oa-grant-1' } });
    await call('POST', '/api/wallets/oa-1/grants', { body: { ...grantBody, idempotency_key: 'oa-grant-1' } });
    await call('POST', '/api/wallets/oa-1/grants', { body: { ...grantBody, amount: '6', idempotency_key: 'oa-grant-1' } });
    await call('POST', '/api/wallets/none-such/grants', { body: { amount: '1' } });
    await call('GET', '/api/wallets/oa-1/grants?limit=1');
    await call('GET', '/api/wallets/oa-1/grants?status=active');
    const grantId = grant.body.data.grant.grant_id as string;
    await call('POST', `/api/wallets/oa-1/grants/${grantId}/void`, { body: { reason: 'walk' } });
    await call('POST', `/api/wallets/oa-1/grants/${grantId}/void`, { body: { reason: 'walk' } });
    await call('POST', '/api/wallets/oa-1/grants/00000000-0000-4000-8000-000000000000/void', { body: { reason: 'walk' } });
    await call('POST', `/api/credits-process/usages/${usageKey}/refund`, {
      ...service,
      body: { amount: '0.000001', reason: 'walk', idempotency_key: 'r1' },
    });
    await call('POST', `/api/credits-process/usages/${usageKey}/refund`, {
      ...service,
      body: { amount: '0.000001', reason: 'walk', idempotency_key: 'r1' },
    });
    await call('POST', `/api/credits-process/usages/${usageKey}/refund`, { ...service, body: { amount: '1000', reason: 'walk' } });
    await call('POST', `/api/credits-process/usages/${held.body.data.usage_key}/refund`, { ...service, body: { reason: 'walk' } });
    await call('POST', '/api/credits-process/usages/00000000-0000-4000-8000-000000000000/refund', { ...service, body: { reason: 'walk' } });
    await call('GET', `/api/credits-process/usages/${usageKey}`, service);

    // Settlement failures: one replayed (after a failed try), one discarded.
    const failure = (model: string) => ({
      user_id: 'oa-1',
      feature_endpoint_id: 'chat',
      idempotency_key: `oa-q-${model}`,
      usages: [{ ...usage, ai_model: model }],
    });
    await publish(vhost.url, MULTI, [failure('later-model'), failure('never-model')]);
    const pending = await waitFor('both failures to be recorded', async () => {
      const items = (await t.request('GET', '/api/settlement-failures?status=pending')).body.data.items as {
        id: string;
        payload: string;
      }[];
      return items.length === 2 ? items : undefined;
    });
    const [later, never] = ['later-model', 'never-model'].map((m) => pending.find((f) => f.payload.includes(m))!);
    await call('GET', '/api/settlement-failures?limit=1');
    await call('POST', `/api/settlement-failures/${later.id}/replay`);
    await call('POST', '/api/pricing/models', {
      body: { ai_model: 'later-model', input_price_per_million: '1', output_price_per_million: '2' },
    });
    await call('POST', `/api/settlement-failures/${later.id}/replay`);
    await call('POST', `/api/settlement-failures/${later.id}/replay`);
    await call('POST', `/api/settlement-failures/${never.id}/discard`);
    await call('POST', '/api/settlement-failures/999999/discard');
    await call('GET', '/api/settlement-failures');

    // The console's read routes.
    await call('GET', '/api/wallets?user_id_prefix=oa-');
    await call('GET', '/api/wallets/oa-1/holds');
    await call('GET', '/api/wallets/none-such/holds');

    // Keys as records and the audit log.
    const key = await call('POST', '/api/keys', {
      body: { name: 'oa key', scope: 'service', allowed_features: ['chat'], spend_cap: { amount: '10', period: 'day' } },
    });
    const keyId = key.body.data.key_id as string;
    await call('POST', '/api/keys', { body: { name: 'oa key', scope: 'root' } });
    await call('GET', '/api/keys');
    await call('GET', `/api/keys/${keyId}`);
    await call('GET', '/api/keys/00000000-0000-4000-8000-000000000000');
    await call('PATCH', `/api/keys/${keyId}`, { body: { spend_cap: null } });
    await call('POST', `/api/keys/${keyId}/rotate`, { body: { grace_seconds: 60 } });
    await call('POST', `/api/keys/${keyId}/revoke`);
    await call('GET', '/api/audit-log?limit=5');

    // Events and webhooks (§10).
    await call('POST', '/api/wallets', { body: { user_id: 'oa-ev', initial_credits: '5' } });
    await call('PATCH', '/api/wallets/oa-ev', { body: { low_balance_thresholds: ['2', '1'] } });
    await call('POST', '/api/wallets/oa-ev/adjust', { body: { amount: '-4', reason: 'events walk' } });
    const hook = await call('POST', '/api/webhooks', { body: { url: 'http://127.0.0.1:9/hook', events: ['*'], description: 'walk' } });
    const hookId = hook.body.data.webhook_id as string;
    await call('POST', '/api/webhooks', { body: { url: 'ftp://x', events: ['*'] } });
    await call('GET', '/api/webhooks');
    await call('GET', `/api/webhooks/${hookId}`);
    await call('GET', '/api/webhooks/00000000-0000-4000-8000-000000000000');
    await call('PATCH', `/api/webhooks/${hookId}`, { body: { active: false } });
    await call('GET', `/api/webhooks/${hookId}/deliveries`);
    const listed = await call('GET', '/api/events?user_id=oa-ev');
    const eventId = listed.body.data.items[0].id as string;
    await call('GET', '/api/events?type=wallet.low_balance&limit=1');
    await call('GET', `/api/events/${eventId}`);
    await call('GET', '/api/events/00000000-0000-4000-8000-000000000000');
    await call('POST', `/api/events/${eventId}/redeliver`);
    await call('DELETE', `/api/webhooks/${hookId}`);
    await call('DELETE', `/api/webhooks/${hookId}`);

    await call('GET', '/api/reconciliation');
    await call('GET', '/health/live', { key: null });
    await call('GET', '/health/ready', { key: null });
    // Readiness with the broker unreachable: 503, its failure naming the dependency down.
    const brokerless = await startTestApp({ RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1' }, t.db);
    try {
      const down = await brokerless.request('GET', '/health/ready', { key: null });
      seen.add(`GET /health/ready ${down.status}`);
      expect(down.status).toBe(503);
      problems.push(...check.problems('GET', '/health/ready', down.status, down.body));
    } finally {
      await brokerless.close();
    }

    expect(problems).toEqual([]);
    // The walk must have met every documented route's success answer, so no route escapes the check.
    const succeeded = new Set([...seen].filter((s) => / 2\d\d$/.test(s)).map((s) => s.replace(/ \d{3}$/, '')));
    expect(check.operations().filter((op) => !succeeded.has(op))).toEqual([]);
  });
});
