import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import Fastify, { type FastifyInstance } from 'fastify';
import { AppLogger, bindLogFields, createLogger, logRequests } from './logging';
import { requestIdFor } from './request-id';
import { securityHeaders } from './security-headers';

/** A logger writing into `lines` (raw JSON text, to check keys are not repeated). */
function capture(level: 'debug' | 'info' | 'warn' = 'debug'): {
  logger: AppLogger;
  lines: string[];
  json: () => Record<string, unknown>[];
} {
  const lines: string[] = [];
  const logger = createLogger({ logLevel: level, nodeEnv: 'test' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const keyCount = (line: string, key: string) => line.split(`"${key}":`).length - 1;

describe('AppLogger (as Nest calls it: the context last)', () => {
  it('writes a message with its context', () => {
    const { logger, json } = capture();
    logger.log('hello', 'Bootstrap');
    expect(json()).toEqual([expect.objectContaining({ level: 30, msg: 'hello', context: 'Bootstrap' })]);
  });

  it('spreads an object first argument into the line, the next argument being the message', () => {
    const { logger, json } = capture();
    logger.warn({ queue: 'q1', attempt: 2 }, 'retrying', 'RabbitSettlementServer');
    expect(json()).toEqual([
      expect.objectContaining({ level: 40, queue: 'q1', attempt: 2, msg: 'retrying', context: 'RabbitSettlementServer' }),
    ]);
  });

  it("keeps the stack Nest's exception handlers pass as a second string", () => {
    const { logger, json } = capture();
    logger.error('boom', 'Error: boom\n    at somewhere (file.js:1:1)', 'ExceptionsHandler');
    const [line] = json();
    expect(line).toMatchObject({ level: 50, msg: 'boom', context: 'ExceptionsHandler', err: { message: 'boom' } });
    expect((line.err as { stack: string }).stack).toContain('at somewhere');
  });

  it('writes nothing below its level', () => {
    const { logger, lines } = capture('warn');
    logger.log('info line', 'X');
    logger.debug({ a: 1 }, 'debug line', 'X');
    expect(lines).toEqual([]);
  });

  it('binds nothing outside a request, and never throws for it', () => {
    const { logger, json } = capture();
    expect(() => bindLogFields({ user_id: 'nobody' })).not.toThrow();
    logger.log('outside', 'X');
    expect(json()[0].user_id).toBeUndefined();
    expect(json()[0].request_id).toBeUndefined();
  });
});

/**
 * Serves `app` on a free port (Fastify's inject() loads an ESM-only package Jest cannot require)
 * and sends requests to it, each resolving once the server closed its response, when the
 * request's closing line is written (by logRequests' listener, registered before this one).
 */
async function serve(app: FastifyInstance) {
  let sent = 0;
  let closed = 0;
  const waiting: { after: number; resolve: () => void }[] = [];
  app.addHook('onRequest', (_request, reply, done) => {
    reply.raw.on('close', () => {
      closed++;
      for (const w of waiting.filter((w) => w.after <= closed)) w.resolve();
    });
    done();
  });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  return Object.assign(
    async (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) => {
      const after = ++sent;
      const logged = new Promise<void>((resolve) => waiting.push({ after, resolve }));
      const res = await fetch(base + path, {
        method,
        headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      await logged;
      return { status: res.status, json: () => JSON.parse(text) as unknown };
    },
    { base },
  );
}

function deferred() {
  let enter!: () => void;
  let close!: () => void;
  const entered = new Promise<void>((resolve) => (enter = resolve));
  const closed = new Promise<void>((resolve) => (close = resolve));
  return { enter, entered, close, closed };
}

describe('request logging (Fastify hooks)', () => {
  let app: FastifyInstance;
  let slow: ReturnType<typeof deferred>;
  let out: ReturnType<typeof capture>;
  let request: Awaited<ReturnType<typeof serve>>;

  beforeEach(async () => {
    out = capture();
    app = Fastify({ genReqId: requestIdFor });
    logRequests(app, out.logger);
    app.post('/settle', async (request) => {
      bindLogFields({ user_id: 'u-1', feature_endpoint_id: 'f-1' });
      // Across an await, as the service's own lines are written.
      await new Promise((resolve) => setImmediate(resolve));
      // A field the request has bound wins over the line's own value of it.
      out.logger.log({ user_id: 'line-value', usage_key: 'k-1', channel: 'http' }, 'settled', 'CreditsProcessService');
      bindLogFields({ usage_key: 'k-1' });
      return { ok: (request.body as { n: number }).n };
    });
    app.get('/health/live', async () => ({ status: 'ok' }));
    app.get('/metrics', async () => 'text');
    app.get('/fails', async (_request, reply) => reply.status(503).send({ down: true }));
    // Answers only once its response closed, i.e. after the client left.
    slow = deferred();
    app.get('/slow', async (_request, reply) => {
      bindLogFields({ user_id: 'u-slow' });
      // Registered after logRequests' listener: runs once the closing line is written.
      reply.raw.on('close', slow.close);
      slow.enter();
      await slow.closed;
      return { late: true };
    });
    request = await serve(app);
  });
  afterEach(async () => {
    await app.close();
  });

  it("puts request_id and the bound fields on the handler's lines, and ends with one 'request completed' line", async () => {
    const res = await request('POST', '/settle?x=1', { 'x-request-id': 'req-42', 'x-server-api-key': 'secret-key' }, { n: 7 });
    expect(res.json()).toEqual({ ok: 7 });
    const lines = out.json();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      msg: 'settled',
      context: 'CreditsProcessService',
      request_id: 'req-42',
      user_id: 'u-1',
      feature_endpoint_id: 'f-1',
      usage_key: 'k-1',
      channel: 'http',
    });
    expect(lines[1]).toMatchObject({
      level: 30,
      msg: 'request completed',
      request_id: 'req-42',
      user_id: 'u-1',
      feature_endpoint_id: 'f-1',
      usage_key: 'k-1',
      req: { method: 'POST', url: '/settle?x=1' },
      res: { status: 200 },
      responseTime: expect.any(Number),
    });
    // A field both bound and named by the line is written once.
    for (const line of out.lines)
      for (const key of ['request_id', 'user_id', 'usage_key']) expect({ line, n: keyCount(line, key) }).toEqual({ line, n: 1 });
    expect(out.lines.join('\n')).not.toContain('secret-key');
  });

  it('keeps concurrent requests apart', async () => {
    await Promise.all(['a', 'b', 'c'].map((id) => request('POST', '/settle', { 'x-request-id': `req-${id}` }, { n: 1 })));
    const completed = out.json().filter((l) => l.msg === 'request completed');
    expect(completed.map((l) => l.request_id).sort()).toEqual(['req-a', 'req-b', 'req-c']);
    const settled = out.json().filter((l) => l.msg === 'settled');
    expect(settled.map((l) => l.request_id).sort()).toEqual(['req-a', 'req-b', 'req-c']);
  });

  it("says 'request aborted' when the client leaves before the answer", async () => {
    const client = new AbortController();
    const sent = fetch(`${request.base}/slow`, { headers: { 'x-request-id': 'req-gone' }, signal: client.signal }).catch(() => undefined);
    await slow.entered;
    client.abort();
    await slow.closed;
    await sent;
    expect(out.json()).toEqual([
      expect.objectContaining({ msg: 'request aborted', request_id: 'req-gone', user_id: 'u-slow', res: { status: null } }),
    ]);
  });

  it('does not log health probes and scrapes', async () => {
    await request('GET', '/health/live');
    await request('GET', '/metrics?x=1');
    expect(out.lines).toEqual([]);
  });

  it("says 'request errored' for a 5xx", async () => {
    await request('GET', '/fails', { 'x-request-id': 'req-5xx' });
    expect(out.json()).toEqual([
      expect.objectContaining({
        msg: 'request errored',
        request_id: 'req-5xx',
        res: { status: 503 },
        err: expect.objectContaining({ message: 'failed with status code 503' }),
      }),
    ]);
  });

  it('writes no request line below info', async () => {
    const quiet = capture('warn');
    const other = Fastify();
    logRequests(other, quiet.logger);
    other.get('/x', async () => ({}));
    expect((await (await serve(other))('GET', '/x')).status).toBe(200);
    await other.close();
    expect(quiet.lines).toEqual([]);
  });
});

describe('securityHeaders', () => {
  it("holds helmet's headers (CSP off), lower-cased", () => {
    expect(securityHeaders()).toMatchObject({
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'SAMEORIGIN',
      'strict-transport-security': expect.stringMatching(/max-age=\d+/),
      'referrer-policy': 'no-referrer',
      'x-dns-prefetch-control': 'off',
    });
    expect(Object.keys(securityHeaders())).not.toContain('content-security-policy');
  });
});
