import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ERROR_HTTP_STATUS, ErrorCode } from '../src/common/domain-error';
import { createTestDatabase, TestDatabase } from './support/database';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { ADMIN_KEY, ApiResponse, httpClient, RequestOptions, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/**
 * Issue 8's "done when" for operations: structured logs (request_id everywhere, keys never),
 * Prometheus metrics that move, a complete OpenAPI document, the 429 / 413 / 415 paths and the
 * helmet headers — each against the real app (and, for the logs, the built server's real stdout).
 */

const run = randomBytes(4).toString('hex');

// --- Prometheus text --------------------------------------------------------------------------

type Samples = Map<string, number>;

const sampleKey = (name: string, labels: Record<string, string>) =>
  `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`)
    .join(',')}}`;

function parseMetrics(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.set(sampleKey(m[1], labels), Number(m[3]));
  }
  return samples;
}

/** A sample's value; a counter never incremented has no sample and counts as 0. */
const sample = (s: Samples, name: string, labels: Record<string, string> = {}) => s.get(sampleKey(name, labels)) ?? 0;

// --- a built server whose stdout the test reads ----------------------------------------------

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

interface SpawnedServer {
  baseUrl: string;
  /** Every stdout line so far, as written. */
  lines(): string[];
  stderr(): string;
  stop(): Promise<void>;
}

async function spawnServer(env: Record<string, string>): Promise<SpawnedServer> {
  const main = join(process.cwd(), 'dist', 'src', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` before this test`);
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [main], {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH ?? '', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let exited = false;
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  child.once('exit', () => (exited = true));
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitFor('the built server to answer /health/live', async () => {
    if (exited) throw new Error(`the server exited: ${err}`);
    return (await fetch(`${baseUrl}/health/live`)).status === 200;
  });
  return {
    baseUrl,
    lines: () => out.split('\n').filter((l) => l.trim() !== ''),
    stderr: () => err,
    async stop() {
      if (!exited) child.kill('SIGTERM');
      await waitFor('the server to exit', async () => exited, 20_000);
    },
  };
}

// --- API.md §4–§6: every route of the contract -----------------------------------------------

const CONTRACT_ROUTES: [method: string, path: string][] = [
  ['post', '/api/credits-process/start'],
  ['post', '/api/credits-process/end-multimodel'],
  ['post', '/api/credits-process/end'],
  ['post', '/api/credits-process/cancel'],
  ['get', '/api/credits-process/usages/{usage_key}'],
  ['post', '/api/wallets'],
  ['get', '/api/wallets'],
  ['get', '/api/wallets/{user_id}'],
  ['patch', '/api/wallets/{user_id}'],
  ['post', '/api/wallets/{user_id}/top-up'],
  ['post', '/api/wallets/{user_id}/adjust'],
  ['get', '/api/wallets/{user_id}/transactions'],
  ['post', '/api/features'],
  ['get', '/api/features'],
  ['get', '/api/features/{feature_endpoint_id}'],
  ['patch', '/api/features/{feature_endpoint_id}'],
  ['post', '/api/pricing/models'],
  ['get', '/api/pricing/models'],
  ['get', '/api/pricing/models/{ai_model}'],
  ['patch', '/api/pricing/models/{ai_model}'],
  ['get', '/api/pricing/settings'],
  ['put', '/api/pricing/settings'],
  ['post', '/api/pricing/quote'],
  ['get', '/api/settlement-failures'],
  ['post', '/api/settlement-failures/{id}/replay'],
  ['post', '/api/settlement-failures/{id}/discard'],
  ['get', '/api/reconciliation'],
];
/** API.md §3: no key needed. */
const PUBLIC_ROUTES: [string, string][] = [
  ['get', '/health/live'],
  ['get', '/health/ready'],
  ['get', '/metrics'],
];

// gpt-4o at 2.5 / 10 USD per million: 1200 in + 300 out = 0.006 USD × (1 + 0.2) × 100 = 0.72 credits.
const USAGE = { ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 };

async function seedPricing(t: { request: TestApp['request'] }, featureId: string, aiModel = 'gpt-4o'): Promise<void> {
  const feature = await t.request('POST', '/api/features', {
    body: { feature_endpoint_id: featureId, name: 'Observed feature', min_holding_credits: '5', profit_margin: '0.2' },
  });
  expect(feature.status).toBe(201);
  const model = await t.request('POST', '/api/pricing/models', {
    body: { ai_model: aiModel, input_price_per_million: '2.5', output_price_per_million: '10' },
  });
  expect([201, 409]).toContain(model.status);
}

describe('observability', () => {
  describe('logs of the built server', () => {
    const serviceKey = `obs-service-key-${run}`;
    const adminKey = `obs-admin-key-${run}`;
    const wrongKey = `obs-wrong-key-${run}`;
    const bearer = `obs-bearer-secret-${run}`;
    const cookie = `obs-cookie-secret-${run}`;
    const secrets = [serviceKey, adminKey, wrongKey, bearer, cookie];

    let db: TestDatabase;
    let server: SpawnedServer;
    let request: ReturnType<typeof httpClient>;
    /** Requests sent, by request id: the unique url each was sent to. */
    const sent = new Map<string, { method: string; url: string; status: number }>();

    /** Sends a request with its own x-request-id and a url no other request uses (`probe=`). */
    let probes = 0;
    async function probe(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse & { requestId: string }> {
      // Numbered when sent (not from `sent`, filled when answered): concurrent probes differ.
      const requestId = `obs-${run}-${String(++probes).padStart(3, '0')}`;
      const url = `${path}${path.includes('?') ? '&' : '?'}probe=${requestId}`;
      const res = await request(method, url, { ...options, headers: { ...options.headers, 'x-request-id': requestId } });
      expect(res.headers.get('x-request-id')).toBe(requestId);
      sent.set(requestId, { method, url, status: res.status });
      return { ...res, requestId };
    }

    const parsed = () =>
      server.lines().map((line) => {
        try {
          return { line, json: JSON.parse(line) as Record<string, unknown> };
        } catch {
          throw new Error(`a stdout line is not JSON: ${line}`);
        }
      });
    const linesOf = (requestId: string) => parsed().filter(({ json }) => json.request_id === requestId);

    const userId = `obs-user-${run}`;
    const otherUserId = `obs-other-${run}`;
    const featureId = `obs-feature-${run}`;
    let usageKey: string;
    let settle: ApiResponse & { requestId: string };
    let repeat: ApiResponse & { requestId: string };
    let direct: ApiResponse & { requestId: string };
    let mismatch: ApiResponse & { requestId: string };

    beforeAll(async () => {
      db = await createTestDatabase();
      server = await spawnServer({
        NODE_ENV: 'production',
        DATABASE_URL: db.url,
        LOG_LEVEL: 'debug',
        SERVER_API_KEYS: serviceKey,
        ADMIN_API_KEYS: adminKey,
      });
      request = httpClient(server.baseUrl);

      const admin = { key: adminKey };
      const service = { key: serviceKey, headers: { authorization: `Bearer ${bearer}`, cookie: `session=${cookie}` } };
      expect((await probe('POST', '/api/wallets', { ...admin, body: { user_id: userId, initial_credits: '100' } })).status).toBe(201);
      expect((await probe('POST', '/api/wallets', { ...admin, body: { user_id: otherUserId, initial_credits: '100' } })).status).toBe(201);
      await seedPricing({ request: (m, p, o) => probe(m, p, { ...admin, ...o }) }, featureId);
      expect((await probe('GET', `/api/wallets/${userId}`, { key: wrongKey })).status).toBe(401);
      expect((await probe('GET', '/api/wallets', service)).status).toBe(403);

      const start = await probe('POST', '/api/credits-process/start', {
        ...service,
        body: { user_id: userId, feature_endpoint_id: featureId },
      });
      expect(start.status).toBe(200);
      usageKey = start.body.data.usage_key;
      const settlement = { user_id: userId, feature_endpoint_id: featureId, usage_key: usageKey, usages: [USAGE] };
      settle = await probe('POST', '/api/credits-process/end-multimodel', { ...service, body: settlement });
      expect(settle.body.data.status).toBe('settled');
      repeat = await probe('POST', '/api/credits-process/end-multimodel', { ...service, body: settlement });
      expect(repeat.body.data.status).toBe('already_settled');
      direct = await probe('POST', '/api/credits-process/end', {
        ...service,
        headers: { ...service.headers, 'idempotency-key': `obs-job-${run}` },
        body: { user_id: userId, feature_endpoint_id: featureId, ...USAGE },
      });
      expect(direct.body.data.status).toBe('settled');
      mismatch = await probe('POST', '/api/credits-process/end-multimodel', { ...service, body: { ...settlement, user_id: otherUserId } });
      expect(mismatch.status).toBe(409);
      expect((await probe('GET', '/api/does-not-exist', admin)).status).toBe(404);

      // Lines are written as requests finish: wait for the last request's own line.
      const last = [...sent.keys()].at(-1)!;
      await waitFor('the last request to be logged', async () => linesOf(last).some(({ json }) => json.msg === 'request completed'));
    });

    afterAll(async () => {
      await server?.stop();
      await db?.drop();
    });

    it('writes one "request completed" line per request, carrying its request_id, method, url and status', () => {
      for (const [requestId, { method, url, status }] of sent) {
        const completed = linesOf(requestId).filter(({ json }) => json.msg === 'request completed');
        expect(completed).toHaveLength(1);
        expect(completed[0].json).toMatchObject({ req: { method, url }, res: { status } });
      }
    });

    it('gives every line that mentions a request its request_id', () => {
      for (const requestId of sent.keys()) {
        const mentioning = parsed().filter(({ line }) => line.includes(`probe=${requestId}`));
        expect(mentioning.length).toBeGreaterThan(0);
        for (const { json } of mentioning) expect(json.request_id).toBe(requestId);
      }
    });

    it('never writes an API key, a bearer token or a cookie, good or bad', () => {
      const all = server.lines().join('\n') + server.stderr();
      for (const secret of secrets) expect(all).not.toContain(secret);
    });

    it("puts user_id and usage_key on every line of an HTTP settlement, the service's 'settled' line included", () => {
      const expectations: [ApiResponse & { requestId: string }, string, string][] = [
        [settle, userId, usageKey],
        [repeat, userId, usageKey],
        [direct, userId, direct.body.data.usage_key],
        [mismatch, otherUserId, usageKey],
      ];
      for (const [res, user, key] of expectations) {
        const lines = linesOf(res.requestId);
        expect(lines.length).toBeGreaterThan(0);
        for (const { json } of lines) expect(json).toMatchObject({ user_id: user, usage_key: key, feature_endpoint_id: featureId });
      }
      const settled = linesOf(settle.requestId).filter(({ json }) => json.msg === 'settled');
      expect(settled).toHaveLength(1);
      expect(settled[0].json).toMatchObject({ context: 'CreditsProcessService', channel: 'http', credits_charged: '0.720000' });
      const completed = linesOf(settle.requestId).find(({ json }) => json.msg === 'request completed')!;
      expect(completed.json.outcome).toBe('settled');
      expect(linesOf(repeat.requestId).find(({ json }) => json.msg === 'request completed')!.json.outcome).toBe('already_settled');
    });

    it('never repeats a key within a line (log stores refuse duplicate JSON keys)', () => {
      for (const { line } of parsed()) {
        for (const field of ['request_id', 'user_id', 'usage_key', 'feature_endpoint_id', 'msg', 'context']) {
          if (line.split(`"${field}":`).length - 1 > 1) throw new Error(`"${field}" repeated in: ${line}`);
        }
      }
    });

    it("keeps each settlement's lines on its own request when concurrent settlements share one statement", async () => {
      const service = { key: serviceKey };
      const payer = `obs-batch-${run}`;
      expect((await probe('POST', '/api/wallets', { key: adminKey, body: { user_id: payer, initial_credits: '100000' } })).status).toBe(
        201,
      );
      const starts = await Promise.all(
        Array.from({ length: 20 }, () =>
          probe('POST', '/api/credits-process/start', { ...service, body: { user_id: payer, feature_endpoint_id: featureId } }),
        ),
      );
      for (const s of starts) expect(s.status).toBe(200);
      const scrape = async () => parseMetrics((await request('GET', '/metrics', { key: null })).body as string);
      const before = await scrape();
      const settles = await Promise.all(
        starts.map((s) =>
          probe('POST', '/api/credits-process/end-multimodel', {
            ...service,
            body: { user_id: payer, feature_endpoint_id: featureId, usage_key: s.body.data.usage_key, usages: [USAGE] },
          }),
        ),
      );
      for (const s of settles) expect(s.body.data.status).toBe('settled');
      const after = await scrape();
      // The 20 settlements went out in fewer statements than 20: some lines were written by a batch.
      const statements =
        sample(after, 'credits_batch_size_count', { kind: 'settle' }) - sample(before, 'credits_batch_size_count', { kind: 'settle' });
      expect(
        sample(after, 'credits_batch_size_sum', { kind: 'settle' }) - sample(before, 'credits_batch_size_sum', { kind: 'settle' }),
      ).toBe(20);
      expect(statements).toBeLessThan(20);

      await waitFor('the settlements to be logged', async () =>
        settles.every((s) => linesOf(s.requestId).some(({ json }) => json.msg === 'request completed')),
      );
      settles.forEach((s, i) => {
        const settled = linesOf(s.requestId).filter(({ json }) => json.msg === 'settled');
        expect(settled).toHaveLength(1);
        expect(settled[0].json).toMatchObject({ user_id: payer, usage_key: starts[i].body.data.usage_key });
      });
    });

    it('does not log health probes and scrapes', async () => {
      const requestId = `obs-${run}-health`;
      for (const path of ['/health/live', '/health/ready', '/metrics']) {
        expect((await request('GET', path, { key: null, headers: { 'x-request-id': requestId } })).status).toBe(200);
      }
      // A request after them, to know the server got that far in its stdout.
      const marker = await probe('GET', '/api/reconciliation', { key: adminKey });
      await waitFor('the marker request to be logged', async () => linesOf(marker.requestId).length > 0);
      expect(linesOf(requestId)).toEqual([]);
    });
  });

  describe('metrics, OpenAPI document and headers (with a broker)', () => {
    let t: TestApp;
    let vhost: TestVhost;
    const featureId = `metrics-feature-${run}`;

    beforeAll(async () => {
      vhost = await createTestVhost();
      t = await startTestApp({ RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: '100,200' });
      await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
      await seedPricing(t, featureId);
    });
    afterAll(async () => {
      await t?.close();
      await vhost?.delete();
    });

    const scrape = async () => {
      const res = await t.request('GET', '/metrics', { key: null });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      return { text: res.body as string, samples: parseMetrics(res.body as string) };
    };
    const wallet = async (credits: string) => {
      const userId = `metrics-user-${run}-${randomUUID().slice(0, 8)}`;
      expect((await t.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: credits } })).status).toBe(201);
      return userId;
    };
    const start = (userId: string) =>
      t.request('POST', '/api/credits-process/start', { key: SERVICE_KEY, body: { user_id: userId, feature_endpoint_id: featureId } });

    it('serves /metrics without a key, with the contract names, types and the default process metrics', async () => {
      const { text, samples } = await scrape();
      for (const [name, type] of [
        ['http_request_duration_seconds', 'histogram'],
        ['credits_starts_total', 'counter'],
        ['credits_settlements_total', 'counter'],
        ['credits_charged_total', 'counter'],
        ['credits_active_holds', 'gauge'],
        ['credits_settlement_failures_total', 'counter'],
        ['credits_queue_messages', 'gauge'],
      ]) {
        expect(text).toContain(`# TYPE ${name} ${type}`);
      }
      for (const name of [
        'process_cpu_user_seconds_total',
        'process_resident_memory_bytes',
        'nodejs_heap_size_used_bytes',
        'nodejs_eventloop_lag_seconds',
      ]) {
        expect(samples.has(sampleKey(name, {}))).toBe(true);
      }
      // With a broker, the depth of each settlement queue (consumer lag).
      for (const queue of ['credits_process_end_multimodel_queue', 'credits_process_end_queue']) {
        expect(samples.has(sampleKey('credits_queue_messages', { queue }))).toBe(true);
      }
    });

    it('counts starts by outcome, HTTP settlements by outcome, credits charged and active holds exactly', async () => {
      const rich = await wallet('100');
      const poor = await wallet('1');
      const before = (await scrape()).samples;
      expect(sample(before, 'credits_active_holds')).toBe(0);

      const accessible = await start(rich);
      expect(accessible.status).toBe(200);
      const denied = await start(poor);
      expect(denied.status).toBe(402);
      expect(denied.body.data.status).toBe('insufficient_credits');

      const afterStarts = (await scrape()).samples;
      expect(
        sample(afterStarts, 'credits_starts_total', { outcome: 'accessible' }) -
          sample(before, 'credits_starts_total', { outcome: 'accessible' }),
      ).toBe(1);
      expect(
        sample(afterStarts, 'credits_starts_total', { outcome: 'insufficient_credits' }) -
          sample(before, 'credits_starts_total', { outcome: 'insufficient_credits' }),
      ).toBe(1);
      expect(sample(afterStarts, 'credits_active_holds')).toBe(1);

      const body = { user_id: rich, feature_endpoint_id: featureId, usage_key: accessible.body.data.usage_key, usages: [USAGE] };
      const settled = await t.request('POST', '/api/credits-process/end-multimodel', { key: SERVICE_KEY, body });
      expect(settled.body.data).toMatchObject({ status: 'settled', credits_charged: '0.720000' });
      const repeated = await t.request('POST', '/api/credits-process/end-multimodel', { key: SERVICE_KEY, body });
      expect(repeated.body.data.status).toBe('already_settled');
      const unknownKey = await t.request('POST', '/api/credits-process/end-multimodel', {
        key: SERVICE_KEY,
        body: { ...body, usage_key: randomUUID() },
      });
      expect(unknownKey.status).toBe(404);

      const after = (await scrape()).samples;
      const delta = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels);
      expect(delta('credits_settlements_total', { channel: 'http', outcome: 'settled' })).toBe(1);
      expect(delta('credits_settlements_total', { channel: 'http', outcome: 'already_settled' })).toBe(1);
      expect(delta('credits_settlements_total', { channel: 'http', outcome: 'failed' })).toBe(1);
      expect(delta('credits_charged_total')).toBeCloseTo(0.72, 9);
      expect(sample(after, 'credits_active_holds')).toBe(0);
    });

    it('labels request durations with method, route template and status', async () => {
      const userId = await wallet('10');
      expect((await start(await wallet('1'))).status).toBe(402);
      expect((await t.request('GET', `/api/wallets/${userId}`, { key: SERVICE_KEY })).status).toBe(200);
      expect((await t.request('GET', '/api/wallets/nobody-here', { key: SERVICE_KEY })).status).toBe(404);
      const { samples } = await scrape();
      const count = (status: string) =>
        sample(samples, 'http_request_duration_seconds_count', { method: 'GET', route: '/api/wallets/:user_id', status });
      expect(count('200')).toBeGreaterThanOrEqual(1);
      expect(count('404')).toBeGreaterThanOrEqual(1);
      expect(
        sample(samples, 'http_request_duration_seconds_bucket', {
          le: '+Inf',
          method: 'GET',
          route: '/api/wallets/:user_id',
          status: '404',
        }),
      ).toBe(count('404'));
      expect(
        sample(samples, 'http_request_duration_seconds_count', { method: 'POST', route: '/api/credits-process/start', status: '402' }),
      ).toBeGreaterThanOrEqual(1);
      expect(
        sample(samples, 'http_request_duration_seconds_sum', { method: 'POST', route: '/api/credits-process/start', status: '402' }),
      ).toBeGreaterThan(0);
    });

    it('counts queued settlements by outcome and settlement failures by status word', async () => {
      const userId = await wallet('100');
      const before = (await scrape()).samples;
      const held = await start(userId);
      expect(held.status).toBe(200);
      expect(sample((await scrape()).samples, 'credits_active_holds')).toBe(1);

      await publish(vhost.url, 'credits_process_end_multimodel_queue', [
        { user_id: userId, feature_endpoint_id: featureId, usage_key: held.body.data.usage_key, usages: [USAGE] },
        { user_id: userId, feature_endpoint_id: featureId, usages: [{ ...USAGE, ai_model: `no-price-${run}` }] },
      ]);
      const after = await waitFor('both messages to be counted', async () => {
        const s = (await scrape()).samples;
        const settledQueue =
          sample(s, 'credits_settlements_total', { channel: 'queue', outcome: 'settled' }) -
          sample(before, 'credits_settlements_total', { channel: 'queue', outcome: 'settled' });
        const failures =
          sample(s, 'credits_settlement_failures_total', { status: 'unknown_model' }) -
          sample(before, 'credits_settlement_failures_total', { status: 'unknown_model' });
        return settledQueue === 1 && failures === 1 && s;
      });
      expect(
        sample(after, 'credits_settlements_total', { channel: 'queue', outcome: 'failed' }) -
          sample(before, 'credits_settlements_total', { channel: 'queue', outcome: 'failed' }),
      ).toBe(1);
      expect(sample(after, 'credits_charged_total') - sample(before, 'credits_charged_total')).toBeCloseTo(0.72, 9);
      expect(sample(after, 'credits_active_holds')).toBe(0);
    });

    describe('/docs-json', () => {
      let doc: any;
      beforeAll(async () => {
        const res = await t.request('GET', '/docs-json', { key: null });
        expect(res.status).toBe(200);
        doc = res.body;
      });

      it('is an OpenAPI 3 document with the API-key security scheme, required globally', () => {
        expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
        expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
        expect(Object.keys(doc.paths).length).toBeGreaterThan(0);
        expect(doc.components.securitySchemes['api-key']).toEqual(
          expect.objectContaining({ type: 'apiKey', in: 'header', name: 'x-server-api-key' }),
        );
        expect(doc.security).toEqual([{ 'api-key': [] }]);
      });

      it('resolves every $ref it uses', () => {
        const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
        expect(refs.length).toBeGreaterThan(0);
        for (const ref of new Set(refs)) {
          const target = /"\$ref":"#\/components\/schemas\/([^"]+)"/.exec(ref);
          expect({ ref, resolved: Boolean(target && doc.components.schemas[target[1]]) }).toEqual({ ref, resolved: true });
        }
      });

      it('lists every route of the contract (API.md §4–§6) with its method, and the public ones without security', () => {
        const listed = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops as object).map((method) => `${method} ${path}`));
        expect(listed).toEqual(expect.arrayContaining([...CONTRACT_ROUTES, ...PUBLIC_ROUTES].map(([m, p]) => `${m} ${p}`)));
        for (const [method, path] of PUBLIC_ROUTES)
          expect({ route: `${method} ${path}`, security: doc.paths[path][method].security }).toEqual({
            route: `${method} ${path}`,
            security: [],
          });
        for (const [method, path] of CONTRACT_ROUTES) expect(doc.paths[path][method].security).toBeUndefined();
      });

      it('documents each /api operation: summary, tag, a success example in the envelope, and its errors in the failure envelope', () => {
        const apiOperations = Object.entries(doc.paths)
          .filter(([path]) => path.startsWith('/api/'))
          .flatMap(([path, ops]) => Object.entries(ops as Record<string, any>).map(([method, op]) => ({ route: `${method} ${path}`, op })));
        expect(apiOperations.length).toBeGreaterThanOrEqual(CONTRACT_ROUTES.length);
        for (const { route, op } of apiOperations) {
          const where = (what: string) => `${route}: ${what}`;
          expect({ where: where('summary and tag'), ok: Boolean(op.summary) && op.tags?.length === 1 }).toEqual({
            where: where('summary and tag'),
            ok: true,
          });
          const codes = Object.keys(op.responses);
          const success = codes.filter((c) => /^2\d\d$/.test(c));
          // One success, or two where the contract has two (a grant: 201 applied, 200 already_applied).
          expect({ where: where('a success'), success: success.length >= 1 && success.length <= 2 }).toEqual({
            where: where('a success'),
            success: true,
          });
          for (const code of success) {
            const ok = op.responses[code].content['application/json'];
            expect({ where: where(`success example ${code}`), example: ok.example }).toEqual({
              where: where(`success example ${code}`),
              example: { success: true, data: expect.anything() },
            });
            expect(ok.schema.properties.data).toBeDefined();
          }

          const failures = codes.filter((c) => /^[45]\d\d$/.test(c));
          expect({ where: where('4xx documented'), any4xx: failures.some((c) => c.startsWith('4')) }).toEqual({
            where: where('4xx documented'),
            any4xx: true,
          });
          expect({ where: where('401 documented'), has401: codes.includes('401') }).toEqual({
            where: where('401 documented'),
            has401: true,
          });
          for (const code of failures) {
            const content = op.responses[code].content['application/json'];
            expect(content.schema.allOf[0].$ref).toBe('#/components/schemas/FailureEnvelopeDoc');
            const words = Object.keys(content.examples);
            expect(words.length).toBeGreaterThan(0);
            for (const word of words) {
              const value = content.examples[word].value;
              expect({ where: where(`${code} ${word}`), value }).toEqual({
                where: where(`${code} ${word}`),
                value: { success: false, data: expect.objectContaining({ status: word, message: expect.any(String) }) },
              });
              expect({ where: where(word), http: ERROR_HTTP_STATUS[word as ErrorCode] }).toEqual({
                where: where(word),
                http: Number(code),
              });
            }
          }
        }
      });

      it('documents the error words API.md names for the credits process', () => {
        const words = (method: string, path: string, code: string) =>
          Object.keys(doc.paths[path][method].responses[code]?.content['application/json'].examples ?? {});
        const start = '/api/credits-process/start';
        expect(words('post', start, '402')).toEqual(['insufficient_credits']);
        expect(words('post', start, '403')).toEqual(
          expect.arrayContaining(['wallet_suspended', 'feature_inactive', 'feature_not_permitted']),
        );
        expect(words('post', start, '404')).toEqual(expect.arrayContaining(['wallet_not_found', 'feature_not_found']));
        const settle = '/api/credits-process/end-multimodel';
        expect(words('post', settle, '404')).toEqual(expect.arrayContaining(['usage_key_not_found']));
        expect(words('post', settle, '409')).toEqual(expect.arrayContaining(['usage_key_mismatch']));
        expect(words('post', settle, '422')).toEqual(['unknown_model']);
        expect(words('post', settle, '429')).toEqual(['rate_limited']);
        expect(words('post', settle, '503')).toEqual(['unavailable']);
        expect(words('post', '/api/credits-process/cancel', '409')).toEqual(['already_settled']);
        expect(words('post', '/api/wallets', '409')).toEqual(['already_exists']);
        expect(words('get', '/api/wallets', '403')).toEqual(['forbidden']);
        expect(doc.paths[settle].post.responses['429'].headers['retry-after']).toBeDefined();
        const headers = (doc.paths[settle].post.parameters as { in: string; name: string; required?: boolean }[]).filter(
          (p) => p.in === 'header',
        );
        expect(headers).toEqual([expect.objectContaining({ name: 'idempotency-key', required: false })]);
      });

      it('gives every request field a type or schema, and an example; money as a decimal string, token counts as integers', () => {
        const bodies = Object.values(doc.paths).flatMap((ops) =>
          Object.values(ops as Record<string, any>)
            .map((op) => op.requestBody?.content['application/json'].schema.$ref as string | undefined)
            .filter((ref): ref is string => ref !== undefined),
        );
        const seen = new Set<string>();
        const check = (schemaName: string) => {
          if (seen.has(schemaName)) return;
          seen.add(schemaName);
          const schema = doc.components.schemas[schemaName];
          for (const [field, property] of Object.entries(schema.properties as Record<string, any>)) {
            const where = `${schemaName}.${field}`;
            // A nested DTO with its own description is `allOf: [{ $ref }]` (e.g. /start's estimate).
            const nested = property.items?.$ref ?? property.$ref ?? property.allOf?.[0]?.$ref;
            if (nested) {
              check(nested.split('/').at(-1));
              continue;
            }
            expect({ where, example: property.example !== undefined }).toEqual({ where, example: true });
            expect({ where, typed: Boolean(property.type || property.oneOf) }).toEqual({ where, typed: true });
            if (property.oneOf)
              expect({ where, example: property.example }).toEqual({ where, example: expect.stringMatching(/^-?\d+\.\d{6}$/) });
          }
        };
        for (const ref of new Set(bodies)) check(ref.split('/').at(-1)!);
        expect(seen.size).toBeGreaterThanOrEqual(10);
        expect(doc.components.schemas.UsageDto.properties.input_tokens).toMatchObject({
          type: 'integer',
          minimum: 0,
          maximum: 1_000_000_000,
        });
        expect(doc.components.schemas.StartResponseDoc.properties.credits.example).toBe('95.000000');
      });
    });

    it('sends the helmet headers on every answer, errors included', async () => {
      for (const res of [await t.request('GET', '/health/live', { key: null }), await t.request('GET', '/api/wallets', { key: null })]) {
        expect(res.headers.get('x-content-type-options')).toBe('nosniff');
        expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
        expect(res.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
        expect(res.headers.get('referrer-policy')).toBe('no-referrer');
        expect(res.headers.get('x-dns-prefetch-control')).toBe('off');
        expect(res.headers.get('x-powered-by')).toBeNull();
      }
    });
  });

  describe('rate limit, body limit and content type (no broker)', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp({ RATE_LIMIT_PER_SECOND: '5', BODY_LIMIT_BYTES: '2048' });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('reports no queue depth without a broker', async () => {
      const res = await t.request('GET', '/metrics', { key: null });
      expect(res.status).toBe(200);
      expect(res.body).toContain('credits_active_holds 0');
      expect([...parseMetrics(res.body).keys()].filter((k) => k.startsWith('credits_queue_messages{'))).toEqual([]);
    });

    it('answers 429 rate_limited with retry-after past RATE_LIMIT_PER_SECOND for a service key', async () => {
      const burst = await Promise.all(Array.from({ length: 30 }, () => t.request('GET', '/api/wallets/nobody', { key: SERVICE_KEY })));
      const limited = burst.filter((r) => r.status === 429);
      const passed = burst.filter((r) => r.status !== 429);
      // Fixed one-second windows: a burst on a loaded machine may straddle two or three of them,
      // each letting 5 through.
      expect(passed.length).toBeGreaterThanOrEqual(5);
      expect(passed.length).toBeLessThanOrEqual(15);
      expect(limited.length).toBe(30 - passed.length);
      for (const r of passed) expect(r.body.data.status).toBe('wallet_not_found');
      for (const r of limited) {
        expect(r.body).toEqual({ success: false, data: { status: 'rate_limited', message: expect.any(String) } });
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      }
    });

    it('never limits an admin key', async () => {
      const burst = await Promise.all(Array.from({ length: 20 }, () => t.request('GET', '/api/wallets/nobody', { key: ADMIN_KEY })));
      expect(burst.map((r) => r.status)).toEqual(Array(20).fill(404));
    });

    it('answers 413 payload_too_large for a body over BODY_LIMIT_BYTES, and writes nothing', async () => {
      const userId = `big-${run}`;
      const res = await t.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: '10', padding: 'x'.repeat(3000) } });
      expect(res.status).toBe(413);
      expect(res.body).toEqual({ success: false, data: { status: 'payload_too_large', message: expect.any(String) } });
      expect((await t.request('GET', `/api/wallets/${userId}`)).status).toBe(404);
    });

    it.each(['text/plain', 'application/x-www-form-urlencoded', 'application/xml'])(
      'refuses a %s body in the envelope (415 or 400), never 500, and writes nothing',
      async (contentType) => {
        const userId = `ct-${run}-${contentType.replace(/\W/g, '-')}`;
        const res = await t.request('POST', '/api/wallets', {
          raw: JSON.stringify({ user_id: userId }),
          headers: { 'content-type': contentType },
        });
        expect([400, 415]).toContain(res.status);
        expect(res.body).toEqual({
          success: false,
          data: expect.objectContaining({
            status: expect.stringMatching(/^(unsupported_media_type|validation_error)$/),
            message: expect.any(String),
          }),
        });
        expect((await t.request('GET', `/api/wallets/${userId}`)).status).toBe(404);
      },
    );
  });

  describe('brute force on keys', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp({ AUTH_FAILURES_PER_MINUTE: '5' });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('after AUTH_FAILURES_PER_MINUTE bad keys from a client, refuses even a good key with 429 for the rest of the minute', async () => {
      expect((await t.request('GET', '/api/wallets/nobody', { key: SERVICE_KEY })).status).toBe(404);
      for (let i = 0; i < 5; i++) {
        const res = await t.request('GET', '/api/wallets/nobody', { key: `bad-key-${i}-${run}` });
        expect(res.status).toBe(401);
      }
      for (const key of ['another-bad-key', SERVICE_KEY, ADMIN_KEY, null]) {
        const res = await t.request('GET', '/api/wallets/nobody', { key });
        expect(res.status).toBe(429);
        expect(res.body).toEqual({ success: false, data: { status: 'rate_limited', message: expect.any(String) } });
      }
      // Public routes stay open.
      expect((await t.request('GET', '/health/live', { key: null })).status).toBe(200);
    });
  });
});
