/**
 * Process-level start-up behaviour (API.md §1): the BUILT server (`node dist/src/main.js`, so
 * `npm run build` must have run) spawned with a controlled environment, the way an operator or a
 * container runs it. Every wait is on a process event or a readiness poll, bounded by a deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { MIGRATIONS } from '../src/database/migrations';
import { createTestDatabase, TestDatabase } from './support/database';

const MAIN = resolve('dist/src/main.js');
const DEV_ADMIN_KEY = 'dev-admin-key';
const PROD_SERVICE_KEY = 'startup-service-key-1';
const PROD_ADMIN_KEY = 'startup-admin-key-1';

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Server {
  child: ChildProcess;
  baseUrl: string;
  stdout(): string;
  stderr(): string;
  /** Resolves once the process has exited and its output streams are closed. */
  closed: Promise<Exit>;
}

const running = new Set<ChildProcess>();
const tempDirs: string[] = [];

function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `credits-startup-${label}-`));
  tempDirs.push(dir);
  return dir;
}

/** A port nobody listens on right now (the OS picks it; PORT=0 could not be printed back). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', ok));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

/**
 * Spawns the built server with exactly `env` (plus PATH), in its own empty working directory so
 * that no developer `.env` file or `./data` directory leaks in.
 */
function startServer(env: Record<string, string>, cwd = tempDir('cwd')): Server {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` before the e2e tests`);
  const child = spawn(process.execPath, [MAIN], {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const closed = new Promise<Exit>((ok) =>
    child.once('close', (code, signal) => {
      running.delete(child);
      ok({ code, signal });
    }),
  );
  return { child, baseUrl: `http://127.0.0.1:${env.PORT ?? '3000'}`, stdout: () => out, stderr: () => err, closed };
}

/** The process's exit, or a failure (after killing it) when it is still running at the deadline. */
async function exitWithin(server: Server, ms: number): Promise<Exit> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((ok) => (timer = setTimeout(() => ok('timeout'), ms)));
  const result = await Promise.race([server.closed, deadline]);
  clearTimeout(timer);
  if (result === 'timeout') {
    server.child.kill('SIGKILL');
    await server.closed;
    throw new Error(`the server was still running after ${ms} ms; stderr:\n${server.stderr()}`);
  }
  return result;
}

/** Polls /health/ready until it answers 200; fails early if the process dies. */
async function waitUntilReady(server: Server, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  let exited: Exit | undefined;
  void server.closed.then((e) => (exited = e));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`the server exited (${JSON.stringify(exited)}) before it was ready; stderr:\n${server.stderr()}`);
    try {
      const res = await fetch(`${server.baseUrl}/health/ready`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) return;
    } catch {
      /* not listening yet */
    }
    await delay(150); // poll interval, not a synchronisation point
  }
  server.child.kill('SIGKILL');
  throw new Error(`/health/ready did not answer 200 within ${ms} ms; stderr:\n${server.stderr()}`);
}

/** SIGTERM must end the process cleanly and promptly: exit code 0, or the re-raised SIGTERM. */
async function stop(server: Server): Promise<void> {
  server.child.kill('SIGTERM');
  const exit = await exitWithin(server, 15_000);
  expect(exit.code === 0 || (exit.code === null && exit.signal === 'SIGTERM')).toBe(true);
  expect(server.stderr()).toBe('');
}

async function api(server: Server, method: string, path: string, key: string, body?: unknown) {
  const res = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: { 'x-server-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

/** A start-up that must fail: non-zero exit within `ms`, and exactly one line on stderr. */
async function failedStart(env: Record<string, string>, ms = 30_000) {
  const started = Date.now();
  const server = startServer(env);
  const exit = await exitWithin(server, ms);
  const stderr = server.stderr();
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  return { exit, stderr, lines, elapsedMs: Date.now() - started };
}

function expectOneLineFailure(r: Awaited<ReturnType<typeof failedStart>>, names: RegExp) {
  expect(r.exit.code).not.toBe(0);
  expect(r.exit.code).not.toBeNull();
  expect(r.lines).toHaveLength(1);
  expect(r.lines[0]).toMatch(names);
  expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
}

describe('start-up of the built server', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });

  afterAll(async () => {
    for (const child of running) child.kill('SIGKILL');
    await db?.drop();
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });

  describe('refuses to start in production without real API keys', () => {
    // The database is reachable, so only the key check can stop these processes.
    it.each([
      ['no keys at all', {}],
      ['only the service keys', { SERVER_API_KEYS: PROD_SERVICE_KEY }],
      ['the dev keys', { SERVER_API_KEYS: 'dev-server-key', ADMIN_API_KEYS: DEV_ADMIN_KEY }],
      ['a dev key among real ones', { SERVER_API_KEYS: PROD_SERVICE_KEY, ADMIN_API_KEYS: `${PROD_ADMIN_KEY},${DEV_ADMIN_KEY}` }],
    ])('%s: exits non-zero with one line naming the keys', async (_label, keys) => {
      const r = await failedStart({ NODE_ENV: 'production', DATABASE_URL: db.url, PORT: String(await freePort()), ...keys });
      expectOneLineFailure(r, /API_KEYS|dev key/i);
    });
  });

  it('exits non-zero within 30 s with one line naming the database when DATABASE_URL is unreachable', async () => {
    const r = await failedStart({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x', PORT: String(await freePort()) }, 30_000);
    expectOneLineFailure(r, /database/i);
    expect(r.elapsedMs).toBeLessThan(30_000);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['DATABASE_URL', 'mysql://root@127.0.0.1/x'],
    ['LOG_LEVEL', 'loud'],
    ['HOLD_TTL_SECONDS', '-5'],
  ])('exits non-zero with one line naming %s when it is "%s"', async (name, value) => {
    const r = await failedStart({ DATABASE_URL: db.url, PORT: String(await freePort()), [name]: value });
    expectOneLineFailure(r, new RegExp(name));
  });

  it('runs on embedded PostgreSQL without DATABASE_URL, with dev keys, and keeps data across a restart', async () => {
    const dataDir = join(tempDir('embedded'), 'data');
    const env = { EMBEDDED_DATA_DIR: dataDir, PORT: String(await freePort()) };

    const first = startServer(env);
    await waitUntilReady(first);
    expect(readdirSync(dataDir).length).toBeGreaterThan(0); // the data really lives in the directory
    const created = await api(first, 'POST', '/api/wallets', DEV_ADMIN_KEY, { user_id: 'persisted-user', initial_credits: '12.5' });
    expect(created.status).toBe(201);
    expect(created.body.data).toMatchObject({ user_id: 'persisted-user', balance: '12.500000' });
    await stop(first);

    const second = startServer(env);
    await waitUntilReady(second);
    const read = await api(second, 'GET', '/api/wallets/persisted-user', DEV_ADMIN_KEY);
    expect(read.status).toBe(200);
    expect(read.body.data).toMatchObject({ user_id: 'persisted-user', balance: '12.500000', plan: 'free', status: 'active' });
    const history = await api(second, 'GET', '/api/wallets/persisted-user/transactions', DEV_ADMIN_KEY);
    expect(history.body.data.items).toHaveLength(1);
    await stop(second);
  }, 240_000);

  it('with DATABASE_URL applies the migrations once over two starts (production, real keys) and serves', async () => {
    const env = {
      NODE_ENV: 'production',
      DATABASE_URL: db.url,
      SERVER_API_KEYS: PROD_SERVICE_KEY,
      ADMIN_API_KEYS: PROD_ADMIN_KEY,
      PORT: String(await freePort()),
    };

    const first = startServer(env);
    await waitUntilReady(first);
    expect((await api(first, 'POST', '/api/wallets', PROD_ADMIN_KEY, { user_id: 'migrated-user', initial_credits: '3' })).status).toBe(201);
    // Production never accepts the dev keys.
    expect((await api(first, 'GET', '/api/wallets/migrated-user', DEV_ADMIN_KEY)).status).toBe(401);
    await stop(first);

    const second = startServer(env);
    await waitUntilReady(second);
    const read = await api(second, 'GET', '/api/wallets/migrated-user', PROD_SERVICE_KEY);
    expect(read.status).toBe(200);
    expect(read.body.data.balance).toBe('3.000000');
    await stop(second);

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ name: string; timestamp: string }>('SELECT name, timestamp FROM migrations ORDER BY id');
      const names = rows.map((r) => r.name);
      expect(new Set(names).size).toBe(names.length); // no migration recorded twice
      expect(rows).toHaveLength(MIGRATIONS.length); // and every migration recorded
      const expected = MIGRATIONS.map((m) => new (m as new () => { name?: string })().name ?? m.name);
      expect([...names].sort()).toEqual([...expected].sort());
    } finally {
      await client.end();
    }
  }, 180_000);
});
