import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { databaseOptions } from '../src/database/database.options';
import { DEMO_MODELS, seedDemo } from '../src/database/seed-demo';
import { createTestDatabase, TestDatabase } from './support/database';
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
    const first = await seedDemo(dataSource);
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
    expect(after).toEqual({ models: 4, versions: 4, features: 2, wallets: 1, entries: 1 });

    expect(await seedDemo(dataSource)).toEqual([]);
    expect(await counts(dataSource)).toEqual(after);
  });

  it('funds the demo wallet through one initial ledger entry, so balance = Σ ledger', async () => {
    const [wallet] = await dataSource.query(`SELECT plan, status, balance::text, held::text FROM wallets WHERE user_id = 'demo-user'`);
    expect(wallet).toEqual({ plan: 'pro', status: 'active', balance: '1000.000000', held: '0.000000' });
    const entries = await dataSource.query(
      `SELECT kind, amount::text, balance_after::text FROM ledger_entries WHERE user_id = 'demo-user'`,
    );
    expect(entries).toEqual([{ kind: 'initial', amount: '1000.000000', balance_after: '1000.000000' }]);
  });

  it('leaves an operator’s own price alone', async () => {
    await dataSource.query(`UPDATE ai_models SET input_price_per_million = 9, version = 2 WHERE ai_model = 'gpt-4o'`);
    expect(await seedDemo(dataSource)).toEqual([]);
    const [model] = await dataSource.query(
      `SELECT input_price_per_million::text AS price, version FROM ai_models WHERE ai_model = 'gpt-4o'`,
    );
    expect(model).toEqual({ price: '9.000000', version: 2 });
  });

  it('seeds once when two instances seed the same database at the same time', async () => {
    const other = await createTestDatabase();
    const ds = await openDataSource(other.url);
    try {
      const [a, b] = await Promise.all([seedDemo(ds), seedDemo(ds)]);
      expect(a.length + b.length).toBe(DEMO_MODELS.length + 3);
      expect(await counts(ds)).toEqual({ models: 4, versions: 4, features: 2, wallets: 1, entries: 1 });
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
    expect(history.body.data.items).toHaveLength(1);
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
      expect(createdLines(first.stdout)).toHaveLength(DEMO_MODELS.length + 3);
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
    // DATABASE_URL empty = the embedded default, as when it is unset.
    const embedded = { DATABASE_URL: '', EMBEDDED_DATA_DIR: dataDir };
    try {
      let app = await startTestApp(embedded);
      const refused = await runCli({ EMBEDDED_DATA_DIR: dataDir });
      expect(refused.code).toBe(1);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      expect(refused.stderr).toMatch(/^seed:demo failed: the embedded database in .* is in use by process \d+/);
      await app.close();

      const seeded = await runCli({ EMBEDDED_DATA_DIR: dataDir });
      expect(seeded.code).toBe(0);
      expect(createdLines(seeded.stdout)).toHaveLength(DEMO_MODELS.length + 3);

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
