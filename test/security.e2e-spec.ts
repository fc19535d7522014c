import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { createTestDatabase, TestDatabase } from './support/database';
import { ServiceProcess, spawnService } from './support/service-process';

/**
 * Security properties checked against the real process (`node dist/src/main.js`), its real
 * stdout/stderr and its real configuration checks.
 */
describe('security', () => {
  const token = () => randomBytes(16).toString('hex');
  const serviceKeys = [`svc-${token()}`, `svc-${token()}`];
  const adminKey = `adm-${token()}`;
  // Keys a caller might send by mistake or on purpose: unknown, a near miss of a real one, a prefix.
  const badKeys = [`bad-${token()}`, `${serviceKeys[0]}x`, serviceKeys[1].slice(0, 20), adminKey.toUpperCase()];
  let db: TestDatabase;
  let service: ServiceProcess;

  beforeAll(async () => {
    db = await createTestDatabase();
    service = await spawnService({
      DATABASE_URL: db.url,
      SERVER_API_KEYS: serviceKeys.join(','),
      ADMIN_API_KEYS: adminKey,
      LOG_LEVEL: 'trace',
    });
    const admin = (method: string, path: string, body?: unknown) => service.request(method, path, { key: adminKey, body });
    for (const [path, body] of [
      ['/api/pricing/models', { ai_model: 'sec-model', input_price_per_million: '1', output_price_per_million: '2' }],
      ['/api/features', { feature_endpoint_id: 'sec-feature', name: 'Sec', min_holding_credits: '1' }],
      ['/api/wallets', { user_id: 'sec-wallet', initial_credits: '100' }],
    ] as const) {
      expect((await admin('POST', path, body)).status).toBe(201);
    }
  }, 60_000);
  afterAll(async () => {
    await service?.stop();
    await db?.drop();
  }, 30_000);

  it('a service key reaches no admin route: 403 forbidden on every one, and nothing changes', async () => {
    const adminRoutes: [string, string, unknown?][] = [
      ['POST', '/api/wallets', { user_id: 'sec-intruder', initial_credits: '1000' }],
      ['GET', '/api/wallets'],
      ['PATCH', '/api/wallets/sec-wallet', { status: 'suspended' }],
      ['POST', '/api/wallets/sec-wallet/top-up', { amount: '1000' }],
      ['POST', '/api/wallets/sec-wallet/adjust', { amount: '1000', reason: 'intrusion' }],
      ['GET', '/api/wallets/sec-wallet/transactions'],
      ['POST', '/api/features', { feature_endpoint_id: 'sec-intruder', name: 'X', min_holding_credits: '0' }],
      ['GET', '/api/features'],
      ['GET', '/api/features/sec-feature'],
      ['PATCH', '/api/features/sec-feature', { min_holding_credits: '0' }],
      ['POST', '/api/pricing/models', { ai_model: 'sec-intruder', input_price_per_million: '0', output_price_per_million: '0' }],
      ['GET', '/api/pricing/models'],
      ['GET', '/api/pricing/models/sec-model'],
      ['PATCH', '/api/pricing/models/sec-model', { input_price_per_million: '0' }],
      ['GET', '/api/pricing/settings'],
      ['PUT', '/api/pricing/settings', { credits_per_usd: '1' }],
      ['GET', '/api/settlement-failures'],
      ['POST', '/api/settlement-failures/1/replay'],
      ['POST', '/api/settlement-failures/1/discard'],
      ['GET', '/api/reconciliation'],
    ];
    for (const key of serviceKeys) {
      for (const [method, path, body] of adminRoutes) {
        const res = await service.request(method, path, { key, body });
        expect({ route: `${method} ${path}`, status: res.status, body: res.body }).toEqual({
          route: `${method} ${path}`,
          status: 403,
          body: { success: false, data: { status: 'forbidden', message: expect.any(String) } },
        });
      }
    }
    // The same key does reach its own routes (the 403s above are about scope, not a broken key).
    const own = await service.request('GET', '/api/wallets/sec-wallet', { key: serviceKeys[0] });
    expect(own.status).toBe(200);
    expect(own.body.data).toMatchObject({ status: 'active', balance: '100.000000' });
    const admin = (path: string) => service.request('GET', path, { key: adminKey });
    expect((await admin('/api/wallets/sec-intruder')).status).toBe(404);
    expect((await admin('/api/features/sec-intruder')).status).toBe(404);
    expect((await admin('/api/pricing/models/sec-intruder')).status).toBe(404);
    expect((await admin('/api/features/sec-feature')).body.data.min_holding_credits).toBe('1.000000');
    expect((await admin('/api/pricing/models/sec-model')).body.data.input_price_per_million).toBe('1.000000');
    expect((await admin('/api/pricing/settings')).body.data.credits_per_usd).toBe('100.000000');
    expect((await admin('/api/wallets/sec-wallet/transactions')).body.data.items).toHaveLength(1);
    // Unknown and near-miss keys are 401 everywhere.
    for (const key of badKeys) {
      for (const [method, path] of [
        ['GET', '/api/wallets/sec-wallet'],
        ['GET', '/api/reconciliation'],
      ]) {
        expect((await service.request(method, path, { key })).status).toBe(401);
      }
    }
  }, 60_000);

  it('writes no API key, good or bad, into any log line, even at LOG_LEVEL=trace', async () => {
    const use = async (key: string) => {
      await service.request('POST', '/api/credits-process/start', {
        key,
        body: { user_id: 'sec-wallet', feature_endpoint_id: 'sec-feature' },
      });
      await service.request('POST', '/api/credits-process/end-multimodel', {
        key,
        body: {
          user_id: 'sec-wallet',
          feature_endpoint_id: 'sec-feature',
          idempotency_key: `log-${token()}`,
          usages: [{ ai_model: 'sec-model', input_tokens: 10, output_tokens: 5 }],
        },
      });
      await service.request('GET', '/api/wallets/sec-wallet', { key });
      await service.request('GET', '/api/reconciliation', { key });
      await service.request('POST', '/api/wallets', { key, raw: '{"user_id":', headers: { 'content-type': 'application/json' } });
      await service.request('GET', '/api/no-such-route', { key });
      // The key sent in the other places a confused client puts it.
      await service.request('GET', '/api/wallets', { key: null, headers: { authorization: `Bearer ${key}` } });
    };
    for (const key of [...serviceKeys, adminKey, ...badKeys]) await use(key);
    // Graceful stop: every buffered line is written before the process exits.
    expect([0, 'SIGTERM']).toContain(await service.stop());

    const output = service.lines.join('\n');
    // The logs did capture these requests, each line with its request id (so finding no key means something).
    const requestLines = service.lines.filter((l) => l.includes('"msg":"request completed"'));
    expect(requestLines.filter((l) => l.includes('"url":"/api/credits-process/start"')).length).toBeGreaterThanOrEqual(7);
    expect(requestLines.filter((l) => l.includes('"status":401')).length).toBeGreaterThanOrEqual(badKeys.length);
    for (const line of requestLines) expect(JSON.parse(line).request_id).toEqual(expect.any(String));
    for (const key of [...serviceKeys, adminKey, ...badKeys]) {
      expect({ key, found: output.includes(key) }).toEqual({ key, found: false });
    }
  }, 60_000);

  it('refuses the dev keys in production: the process exits non-zero with one line naming why', async () => {
    const cases: Record<string, string>[] = [
      {},
      { SERVER_API_KEYS: 'dev-server-key', ADMIN_API_KEYS: 'dev-admin-key' },
      { SERVER_API_KEYS: `prod-${token()}`, ADMIN_API_KEYS: 'dev-admin-key' },
      { SERVER_API_KEYS: `prod-${token()},dev-server-key`, ADMIN_API_KEYS: `prod-${token()}` },
      { SERVER_API_KEYS: `prod-${token()}` },
    ];
    for (const keys of cases) {
      const proc = await spawnService(
        { NODE_ENV: 'production', DATABASE_URL: db.url, LOG_LEVEL: 'info', SERVER_API_KEYS: '', ADMIN_API_KEYS: '', ...keys },
        { waitReady: false },
      );
      const code = await proc.exited;
      expect({ keys, code }).toEqual({ keys, code: 1 });
      const reason = proc.lines.filter((l) => l.trim() !== '');
      expect(reason).toHaveLength(1);
      expect(reason[0]).toMatch(/^credits-service failed to start: configuration: .*(dev keys|must be set)/);
    }
  }, 60_000);
});
