import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { databaseOptions } from '../src/database/database.options';
import { DEMO_KEY, DEMO_MODELS, describeSeeded, seedDemo } from '../src/database/seed-demo';
import { createTestDatabase, TestDatabase } from './support/database';
import { ServiceProcess, spawnService } from './support/service-process';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';

/**
 * The compiled CLI behind `npm run seed:demo` (`npm run build` must have run, as for every e2e).
 * Apps are started through startTestApp only, so they get the test pipeline's options.
 */
const CLI = join(process.cwd(), 'dist/src/database/seed-demo.cli.js');

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the seed CLI to completion with `env` on top of a clean environment. */
function runCli(env: Record<string, string>): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI], {
      cwd: process.cwd(),
      env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    // eslint-disable-next-line no-control-regex -- strips the terminal's colour codes
    const plain = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, '');
    child.on('close', (code) => resolve({ code, stdout: plain(stdout), stderr: plain(stderr) }));
  });
}

const createdLines = (out: string) => out.split('\n').filter((l) => / created /.test(l));

async function openDataSource(url: string, poolSize = 4): Promise<DataSource> {
  const dataSource = new DataSource(databaseOptions(url, { poolSize, embedded: false }));
  await dataSource.initialize(); // applies the migrations, as the app does
  return dataSource;
}

async function counts(dataSource: DataSource) {
  const [row] = await dataSource.query(`
    SELECT (SELECT count(*) FROM ai_models)::int AS models,
           (SELECT count(*) FROM model_price_versions)::int AS versions,
           (SELECT count(*) FROM features)::int AS features,
           (SELECT count(*) FROM wallets)::int AS wallets,
           (SELECT count(*) FROM ledger_entries)::int AS entries`);
  return row as { models: number; versions: number; features: number; wallets: number; entries: number };
}

beforeAll(() => {
  // TypeORM's migration lines go through Nest's static logger; keep the test output readable.
  Logger.overrideLogger(['error']);
});

describe('seedDemo', () => {
  let db: TestDatabase;
  let dataSource: DataSource;
  beforeAll(async () => {
    db = await createTestDatabase();
    dataSource = await openDataSource(db.url);
  }, 60_000);
  afterAll(async () => {
    await dataSource.destroy();
    await db.drop();
  });

  it('creates the models, features and wallet once; a second run creates nothing', async () => {
    const first = (await seedDemo(dataSource)).map(describeSeeded);
    expect(first).toHaveLength(DEMO_MODELS.length + 3);
    expect(first).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^model gpt-4o: 2\.500000 in \/ 10\.000000 out \/ 1\.250000 cached/),
        expect.stringMatching(/^feature ai_chat_v1:/),
        expect.stringMatching(/^feature image_gen_v1:/),
        expect.stringMatching(/^wallet demo-user:/),
      ]),
    );
    const after = await counts(dataSource);
    expect(after).toEqual({ models: 4, versions: 4, features: 2, wallets: 1, entries: 2 });

    expect(await seedDemo(dataSource)).toEqual([]);
    expect(await counts(dataSource)).toEqual(after);
  });

  it('funds the demo wallet with paid initial credits and a promotional grant that expires, so balance = Σ ledger = Σ grants', async () => {
    const [wallet] = await dataSource.query(`SELECT plan, status, balance::text, held::text FROM wallets WHERE user_id = 'demo-user'`);
    expect(wallet).toEqual({ plan: 'pro', status: 'active', balance: '1000.000000', held: '0.000000' });
    const entries = await dataSource.query(
      `SELECT kind, amount::text, balance_after::text FROM ledger_entries WHERE user_id = 'demo-user' ORDER BY id`,
    );
    expect(entries).toEqual([
      { kind: 'initial', amount: '950.000000', balance_after: '950.000000' },
      { kind: 'grant', amount: '50.000000', balance_after: '1000.000000' },
    ]);
    const grants = await dataSource.query(
      `SELECT kind, amount::text, remaining::text, priority, expires_at > now() + interval '29 days' AS expires_in_30_days
       FROM grants WHERE user_id = 'demo-user' ORDER BY priority`,
    );
    expect(grants).toEqual([
      { kind: 'promotional', amount: '50.000000', remaining: '50.000000', priority: 10, expires_in_30_days: true },
      { kind: 'paid', amount: '950.000000', remaining: '950.000000', priority: 50, expires_in_30_days: null },
    ]);
  });

  it('leaves an operator’s own price alone', async () => {
    await dataSource.query(`UPDATE ai_models SET input_price_per_million = 9, version = 2 WHERE ai_model = 'gpt-4o'`);
    expect(await seedDemo(dataSource)).toEqual([]);
    const [model] = await dataSource.query(
      `SELECT input_price_per_million::text AS price, version FROM ai_models WHERE ai_model = 'gpt-4o'`,
    );
    expect(model).toEqual({ price: '9.000000', version: 2 });
  });

  it('issues the scoped demo key only when asked (never in production), once, with its audit row and no secret stored', async () => {
    const [line] = (await seedDemo(dataSource, { demoKey: true })).map(describeSeeded);
    expect(line).toMatch(
      /^key 0de30000-0000-4000-8000-000000000001: service key ck_s_demo_ch…, features ai_chat_v1, cap 200 credits per day/,
    );
    expect(line).not.toContain(DEMO_KEY.secret);
    expect(await seedDemo(dataSource, { demoKey: true })).toEqual([]);
    const [key] = await dataSource.query(
      `SELECT scope, allowed_features, spend_cap_amount::text AS cap, spend_cap_period AS period, secret_hash FROM api_keys`,
    );
    expect(key).toMatchObject({ scope: 'service', allowed_features: ['ai_chat_v1'], cap: '200.000000', period: 'day' });
    expect(key.secret_hash).toMatch(/^[0-9a-f]{64}$/);
    const audit = await dataSource.query(`SELECT actor_name, action, target, changes::text AS c FROM audit_log`);
    expect(audit).toEqual([expect.objectContaining({ actor_name: 'system', action: 'key.create', target: DEMO_KEY.keyId })]);
    expect(audit[0].c).not.toContain(DEMO_KEY.secret);
  });

  it('seeds once when two instances seed the same database at the same time', async () => {
    const other = await createTestDatabase();
    const ds = await openDataSource(other.url);
    try {
      const [a, b] = await Promise.all([seedDemo(ds), seedDemo(ds)]);
      expect(a.length + b.length).toBe(DEMO_MODELS.length + 3);
      expect(await counts(ds)).toEqual({ models: 4, versions: 4, features: 2, wallets: 1, entries: 2 });
    } finally {
      await ds.destroy();
      await other.drop();
    }
  }, 60_000);
});

describe('SEED_DEMO=true and the demo flow on the seeded data', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ SEED_DEMO: 'true' });
  }, 60_000);
  afterAll(async () => {
    await t.close();
  });

  it('seeds on start', async () => {
    const models = await t.request('GET', '/api/pricing/models');
    expect(models.body.data.items.map((m: { ai_model: string }) => m.ai_model).sort()).toEqual(DEMO_MODELS.map((m) => m.aiModel).sort());
    expect((await t.request('GET', '/api/features/image_gen_v1')).body.data).toMatchObject({
      min_holding_credits: '20.000000',
      fixed_cost: '2.000000',
      allowed_plans: ['pro'],
      profit_margin: null,
    });
    expect((await t.request('GET', '/api/wallets/demo-user', { key: SERVICE_KEY })).body.data).toMatchObject({
      plan: 'pro',
      balance: '1000.000000',
      credits: '1000.000000',
    });
  });

  it('seeds nothing more when the app starts again with SEED_DEMO=true', async () => {
    const again = await startTestApp({ SEED_DEMO: 'true' }, t.db);
    await again.close();
    const history = await t.request('GET', '/api/wallets/demo-user/transactions');
    expect(history.body.data.items).toHaveLength(2);
    expect((await t.request('GET', '/api/pricing/models/gpt-4o')).body.data.history).toHaveLength(1);
  }, 60_000);

  it('runs start → end-multimodel on ai_chat_v1 with the seeded prices', async () => {
    const start = await t.request('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: { user_id: 'demo-user', feature_endpoint_id: 'ai_chat_v1' },
    });
    expect(start.status).toBe(200);
    expect(start.body.data).toMatchObject({
      status: 'accessible',
      hold_amount: '5.000000',
      held: '5.000000',
      credits: '995.000000',
      balance: '1000.000000',
    });

    const end = await t.request('POST', '/api/credits-process/end-multimodel', {
      key: SERVICE_KEY,
      body: {
        user_id: 'demo-user',
        feature_endpoint_id: 'ai_chat_v1',
        usage_key: start.body.data.usage_key,
        usages: [
          { ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 },
          { ai_model: 'claude-sonnet-4', input_tokens: 2000, output_tokens: 500, cached_input_tokens: 1000 },
        ],
      },
    });
    // gpt-4o:          (1200·2.5 + 300·10)/1e6 = 0.006 USD · 1.2 (feature margin) · 100 = 0.72
    // claude-sonnet-4: (1000·3 + 1000·0.3 + 500·15)/1e6 = 0.0108 USD · 1.2 · 100 = 1.296
    // total 2.016; the 5-credit hold is released
    expect(end.status).toBe(200);
    expect(end.body.data).toMatchObject({
      status: 'settled',
      credits_charged: '2.016000',
      balance: '997.984000',
      held: '0.000000',
      credits: '997.984000',
      late: false,
      usages: [
        { ai_model: 'gpt-4o', cost_usd: '0.006000', credits: '0.720000' },
        { ai_model: 'claude-sonnet-4', cost_usd: '0.010800', credits: '1.296000' },
      ],
    });
  });

  it('runs start → end on image_gen_v1 (pro plan, fixed cost) and quotes the same figure first', async () => {
    const usages = [{ ai_model: 'gemini-2.5-flash', input_tokens: 10_000, output_tokens: 2000 }];
    // (10000·0.3 + 2000·2.5)/1e6 = 0.008 USD · (1 + 0 default margin) · 100 = 0.8, + 2 fixed = 2.8
    const quote = await t.request('POST', '/api/pricing/quote', {
      key: SERVICE_KEY,
      body: { feature_endpoint_id: 'image_gen_v1', usages },
    });
    expect(quote.body.data.credits_charged).toBe('2.800000');

    const start = await t.request('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: { user_id: 'demo-user', feature_endpoint_id: 'image_gen_v1' },
    });
    expect(start.body.data).toMatchObject({ status: 'accessible', hold_amount: '20.000000' });
    const end = await t.request('POST', '/api/credits-process/end-multimodel', {
      key: SERVICE_KEY,
      body: { user_id: 'demo-user', feature_endpoint_id: 'image_gen_v1', usage_key: start.body.data.usage_key, usages },
    });
    expect(end.body.data).toMatchObject({ status: 'settled', credits_charged: '2.800000', balance: '995.184000', held: '0.000000' });
  });
});

describe('npm run seed:demo (the compiled CLI)', () => {
  it('seeds a DATABASE_URL database once, printing one line per thing created', async () => {
    const db = await createTestDatabase();
    try {
      const first = await runCli({ DATABASE_URL: db.url });
      expect(first).toMatchObject({ code: 0, stderr: '' });
      expect(createdLines(first.stdout)).toHaveLength(DEMO_MODELS.length + 4); // + the demo key
      const second = await runCli({ DATABASE_URL: db.url });
      expect(second.code).toBe(0);
      expect(createdLines(second.stdout)).toEqual([]);
      expect(second.stdout).toContain('nothing created');
    } finally {
      await db.drop();
    }
  }, 120_000);

  it('refuses an embedded directory a running server holds, then seeds it once the server stopped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'credits-seed-'));
    const dataDir = join(dir, 'data');
    // DATABASE_URL empty = the embedded default, as when it is unset; SEED_DEMO=false so that the
    // server's first start leaves the seeding to the CLI under test.
    const embedded = { DATABASE_URL: '', EMBEDDED_DATA_DIR: dataDir, SEED_DEMO: 'false' };
    try {
      let app = await startTestApp(embedded);
      const refused = await runCli({ EMBEDDED_DATA_DIR: dataDir });
      expect(refused.code).toBe(1);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      expect(refused.stderr).toMatch(/^seed:demo failed: the embedded database in .* is in use by process \d+/);
      await app.close();

      const seeded = await runCli({ EMBEDDED_DATA_DIR: dataDir });
      expect(seeded.code).toBe(0);
      expect(createdLines(seeded.stdout)).toHaveLength(DEMO_MODELS.length + 4);

      app = await startTestApp(embedded);
      try {
        const wallet = await app.request('GET', '/api/wallets/demo-user', { key: SERVICE_KEY });
        expect(wallet.body.data).toMatchObject({ plan: 'pro', balance: '1000.000000' });
      } finally {
        await app.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});

describe('the first start on a new embedded database (no DATABASE_URL, SEED_DEMO unset)', () => {
  const dirs: string[] = [];
  const running: ServiceProcess[] = [];
  afterAll(async () => {
    await Promise.all(running.map((s) => s.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  function newDataDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'credits-first-start-'));
    dirs.push(dir);
    return join(dir, 'data');
  }

  /** The built server on embedded PGlite in `dataDir`, logging at info so the seed's line shows. */
  async function start(dataDir: string, env: Record<string, string> = {}): Promise<ServiceProcess> {
    // PGlite's first start (WebAssembly, then every migration) is slow on a busy machine.
    const service = await spawnService(
      { DATABASE_URL: '', EMBEDDED_DATA_DIR: dataDir, LOG_LEVEL: 'info', ...env },
      { readyTimeoutMs: 180_000 },
    );
    running.push(service);
    return service;
  }

  async function stop(service: ServiceProcess): Promise<void> {
    await service.stop();
    running.splice(running.indexOf(service), 1);
  }

  const seedLines = (service: ServiceProcess) => service.lines.filter((l) => /demo data/.test(l));

  async function catalogue(service: ServiceProcess) {
    const [models, features, wallet] = await Promise.all([
      service.request('GET', '/api/pricing/models'),
      service.request('GET', '/api/features'),
      service.request('GET', '/api/wallets/demo-user'),
    ]);
    return {
      models: models.body.data.items.map((m: { ai_model: string }) => m.ai_model).sort(),
      features: features.body.data.items.map((f: { feature_endpoint_id: string }) => f.feature_endpoint_id).sort(),
      wallet: wallet.status === 200 ? wallet.body.data.balance : wallet.status,
    };
  }

  it('loads the demo data and says so in one line; the second start loads nothing again', async () => {
    const dataDir = newDataDir();
    const first = await start(dataDir);
    expect(await catalogue(first)).toEqual({
      models: DEMO_MODELS.map((m) => m.aiModel).sort(),
      features: ['ai_chat_v1', 'image_gen_v1'],
      wallet: '1000.000000',
    });
    const lines = seedLines(first);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/new embedded database \(SEED_DEMO=false turns this off\): loaded the demo data \(models gpt-4o, /);
    expect(lines[0]).toContain('wallet demo-user');
    // The partner flow of the README's "Try it" works with no second step.
    const started = await first.request('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: { user_id: 'demo-user', feature_endpoint_id: 'ai_chat_v1' },
    });
    expect(started.body.data).toMatchObject({ status: 'accessible', hold_amount: '5.000000', credits: '995.000000' });
    // The demo's scoped key (docs/demo.md): ai_chat_v1 only.
    expect(lines[0]).toContain(`key ${DEMO_KEY.keyId}`);
    const scoped = (feature: string) =>
      first.request('POST', '/api/credits-process/start', {
        key: DEMO_KEY.secret,
        body: { user_id: 'demo-user', feature_endpoint_id: feature },
      });
    expect((await scoped('ai_chat_v1')).status).toBe(200);
    expect((await scoped('image_gen_v1')).body.data.status).toBe('feature_not_allowed_for_key');
    expect(first.lines.join('\n')).not.toContain(DEMO_KEY.secret);
    await stop(first);

    const second = await start(dataDir);
    expect(seedLines(second)).toEqual([]);
    expect(await catalogue(second)).toMatchObject({ features: ['ai_chat_v1', 'image_gen_v1'], wallet: '1000.000000' });
    const history = await second.request('GET', '/api/wallets/demo-user/transactions');
    // Newest first: the promotional grant after the initial credits, once each.
    expect(history.body.data.items.map((e: { kind: string }) => e.kind)).toEqual(['grant', 'initial']);
    expect((await second.request('GET', '/api/pricing/models/gpt-4o')).body.data.history).toHaveLength(1);
    await stop(second);
  }, 420_000);

  it.each([
    ['SEED_DEMO=false', { SEED_DEMO: 'false' }],
    ['NODE_ENV=production', { NODE_ENV: 'production' }],
  ])(
    '%s: the new database stays empty and nothing is said',
    async (_label, env) => {
      const service = await start(newDataDir(), env);
      expect(await catalogue(service)).toEqual({ models: [], features: [], wallet: 404 });
      expect(seedLines(service)).toEqual([]);
      await stop(service);
    },
    240_000,
  );

  it('SEED_DEMO=true still seeds a database that is not new (here: a real PostgreSQL), in one line', async () => {
    const db = await createTestDatabase();
    try {
      const service = await spawnService({ DATABASE_URL: db.url, LOG_LEVEL: 'info', SEED_DEMO: 'true' });
      running.push(service);
      expect(await catalogue(service)).toMatchObject({ features: ['ai_chat_v1', 'image_gen_v1'], wallet: '1000.000000' });
      expect(seedLines(service)).toEqual([expect.stringMatching(/SEED_DEMO=true: loaded the demo data/)]);
      await stop(service);
    } finally {
      await db.drop();
    }
  }, 120_000);

  it('SEED_DEMO=true with NODE_ENV=production seeds the data but never the demo key (its secret is public)', async () => {
    const db = await createTestDatabase();
    try {
      const service = await spawnService({ DATABASE_URL: db.url, LOG_LEVEL: 'info', SEED_DEMO: 'true', NODE_ENV: 'production' });
      running.push(service);
      expect(await catalogue(service)).toMatchObject({ features: ['ai_chat_v1', 'image_gen_v1'], wallet: '1000.000000' });
      expect((await service.request('GET', '/api/keys')).body.data.items).toEqual([]);
      const refused = await service.request('GET', '/api/wallets/demo-user', { key: DEMO_KEY.secret });
      expect(refused.status).toBe(401);
      await stop(service);
    } finally {
      await db.drop();
    }
  }, 120_000);

  it('a real PostgreSQL (DATABASE_URL) is never seeded unasked, even when it is new', async () => {
    const db = await createTestDatabase();
    try {
      const service = await spawnService({ DATABASE_URL: db.url, LOG_LEVEL: 'info' });
      running.push(service);
      expect(await catalogue(service)).toEqual({ models: [], features: [], wallet: 404 });
      expect(seedLines(service)).toEqual([]);
      await stop(service);
    } finally {
      await db.drop();
    }
  }, 120_000);
});
