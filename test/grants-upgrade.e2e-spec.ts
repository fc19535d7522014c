/**
 * A v1 database upgraded in place to grants (migration Grants1764000000018, API.md §8): the schema
 * of every migration before it, v1 data written by SQL as the previous release wrote it (wallets
 * with positive, zero and negative balances, their ledger, a settled usage and a live hold), then
 * the service starts on it and applies the rest. Each positive balance must become one paid grant
 * of origin 'upgrade' with no expiry, each negative one wallets.debt; balances stay; the books
 * reconcile; and charges after the upgrade (the v1 hold settled, a new direct charge) draw from
 * the upgrade grant.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../src/database/migrations';
import { createTestDatabase, TestDatabase } from './support/database';
import { startTestApp, TestApp } from './support/test-app';
import {
  chargeEntry,
  debtOf,
  debtPaidOf,
  directCharge,
  expectBooksClean,
  expectDrawsOf,
  FEATURE,
  grantById,
  listGrants,
  MODEL,
  settleHold,
  sql,
  wallet,
} from './support/grants';

const THIS_MIGRATION = 1764000000018;
const timestampOf = (migration: new () => object) => Number(/(\d{13})$/.exec(migration.name)![1]);

async function migrate(url: string, migrations: (new () => object)[]): Promise<void> {
  const dataSource = new DataSource({ type: 'postgres', url, migrations, migrationsTransactionMode: 'each', logging: false });
  await dataSource.initialize();
  try {
    await dataSource.runMigrations({ transaction: 'each' });
  } finally {
    await dataSource.destroy();
  }
}

/** The v1 wallets: balance, held, and the ledger that explains them (oldest first). */
const V1 = {
  rich: { userId: 'v1-rich', balance: '12.345679', held: '1.000000' },
  zero: { userId: 'v1-zero', balance: '0.000000', held: '0.000000' },
  empty: { userId: 'v1-empty', balance: '0.000000', held: '0.000000' },
  debt: { userId: 'v1-debt', balance: '-2.500000', held: '0.000000' },
};

describe('upgrading a v1 database to grants in place (migration 1764000000018)', () => {
  let db: TestDatabase;
  let t: TestApp | undefined;
  const settledUsage = randomUUID();
  const liveHold = randomUUID();
  const debtUsage = randomUUID();

  beforeAll(async () => {
    db = await createTestDatabase();
    const previous = MIGRATIONS.filter((m) => timestampOf(m) < THIS_MIGRATION);
    expect(previous.map((m) => m.name)).not.toContain('Grants1764000000018');
    // Every migration before the grants one (later ones follow it on the app's start).
    expect(previous).toHaveLength(MIGRATIONS.findIndex((m) => m.name === 'Grants1764000000018'));
    await migrate(db.url, previous);
    expect(await sql(db.url, `SELECT 1 FROM information_schema.tables WHERE table_name = 'grants'`)).toEqual([]);

    // v1 rows, as the previous release wrote them.
    await sql(
      db.url,
      `INSERT INTO features (feature_endpoint_id, name, min_holding_credits, profit_margin) VALUES ($1, 'Grants unit', 1, 0)`,
      [FEATURE],
    );
    for (const w of Object.values(V1))
      await sql(db.url, `INSERT INTO wallets (user_id, plan, status, balance, held, version) VALUES ($1, 'free', 'active', $2, $3, 1)`, [
        w.userId,
        w.balance,
        w.held,
      ]);
    const entry = (userId: string, kind: string, amount: string, after: string, held: string, usageKey: string | null = null) =>
      sql(
        db.url,
        `INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key, description, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)`,
        [userId, kind, amount, after, held, usageKey, `v1 ${kind}`, JSON.stringify(kind === 'charge' ? { channel: 'http' } : {})],
      );
    const hold = (usageKey: string, userId: string, status: string) =>
      sql(
        db.url,
        `INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at, closed_at)
         VALUES ($1, $2, $3, 1, $4::varchar, now() + interval '1 hour', CASE WHEN $4::varchar = 'held' THEN NULL ELSE now() END)`,
        [usageKey, userId, FEATURE, status],
      );
    await entry('v1-rich', 'initial', '10', '10', '0');
    await entry('v1-rich', 'top_up', '5.5', '15.5', '0');
    await hold(settledUsage, 'v1-rich', 'settled');
    await entry('v1-rich', 'charge', '-3.154321', '12.345679', '0', settledUsage);
    await hold(liveHold, 'v1-rich', 'held');
    await entry('v1-zero', 'initial', '5', '5', '0');
    await entry('v1-zero', 'adjustment', '-5', '0', '0');
    await entry('v1-debt', 'initial', '1', '1', '0');
    await hold(debtUsage, 'v1-debt', 'settled');
    await entry('v1-debt', 'charge', '-3.5', '-2.5', '0', debtUsage);

    // The service starts on it and applies the rest (migrations run on start).
    t = await startTestApp({}, db);
    const steps: [string, string, unknown][] = [
      ['PUT', '/api/pricing/settings', { credits_per_usd: '100', default_profit_margin: '0' }],
      ['POST', '/api/pricing/models', { ai_model: MODEL, input_price_per_million: '0.01', output_price_per_million: '0' }],
    ];
    for (const [method, path, body] of steps) expect((await t.request(method, path, { body })).status).toBeLessThan(300);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('applied the grants migration on start', async () => {
    const names = (await sql<{ name: string }>(db.url, 'SELECT name FROM migrations ORDER BY id')).map((r) => r.name);
    expect(names).toContain('Grants1764000000018');
    expect(names).toHaveLength(MIGRATIONS.length);
  });

  it('turned each positive balance into one paid grant of origin upgrade with no expiry, and each negative one into debt', async () => {
    const rows = await sql<Record<string, string | null>>(
      db.url,
      `SELECT user_id, kind, origin, amount::text, remaining::text, expires_at, status FROM grants ORDER BY user_id`,
    );
    expect(rows).toEqual([
      {
        user_id: 'v1-rich',
        kind: 'paid',
        origin: 'upgrade',
        amount: '12.345679',
        remaining: '12.345679',
        expires_at: null,
        status: 'active',
      },
    ]);
    expect(await debtOf(db.url, 'v1-debt')).toBe('2.500000');
    for (const w of [V1.rich, V1.zero, V1.empty]) expect(await debtOf(db.url, w.userId)).toBe('0.000000');
  });

  it('shows the upgrade grant through the API', async () => {
    const [upgrade] = await listGrants(t!.request, 'v1-rich');
    expect(upgrade).toMatchObject({ kind: 'paid', amount: '12.345679', remaining: '12.345679', expires_at: null, status: 'active' });
    for (const w of [V1.zero, V1.empty, V1.debt]) expect(await listGrants(t!.request, w.userId)).toEqual([]);
  });

  it('left every balance and held as it was, and the books reconcile', async () => {
    for (const w of Object.values(V1)) {
      const view = await wallet(t!.request, w.userId);
      expect({ user_id: view.user_id, balance: view.balance, held: view.held }).toEqual({
        user_id: w.userId,
        balance: w.balance,
        held: w.held,
      });
    }
    expect((await wallet(t!.request, 'v1-rich')).grants).toEqual({ paid: '12.345679', promotional: '0.000000' });
    expect((await wallet(t!.request, 'v1-debt')).grants).toEqual({ paid: '0.000000', promotional: '0.000000' });
    await expectBooksClean(t!.request, db.url);
  });

  it('charges after the upgrade (the v1 hold settled, then a direct charge) draw from the upgrade grant', async () => {
    const [upgrade] = await listGrants(t!.request, 'v1-rich');
    const settled = await settleHold(t!.request, 'v1-rich', liveHold, '2');
    expect(settled).toMatchObject({ balance: '10.345679', held: '0.000000' });
    expect(expectDrawsOf(await chargeEntry(t!.request, 'v1-rich', liveHold))).toEqual([{ grant_id: upgrade.grant_id, amount: '2.000000' }]);
    const direct = await directCharge(t!.request, 'v1-rich', '0.345679');
    expect(expectDrawsOf(await chargeEntry(t!.request, 'v1-rich', direct.usage_key))).toEqual([
      { grant_id: upgrade.grant_id, amount: '0.345679' },
    ]);
    expect((await grantById(t!.request, 'v1-rich', upgrade.grant_id)).remaining).toBe('10.000000');
    await expectBooksClean(t!.request, db.url);
  });

  it('the v1 debt is paid by the next top-up', async () => {
    const res = await t!.request('POST', '/api/wallets/v1-debt/top-up', { body: { amount: '4' } });
    expect(res.status).toBe(200);
    expect(debtPaidOf(res.body.data)).toBe('2.500000');
    expect(await grantById(t!.request, 'v1-debt', res.body.data.grant_id)).toMatchObject({ amount: '4.000000', remaining: '1.500000' });
    expect(await debtOf(db.url, 'v1-debt')).toBe('0.000000');
    expect((await wallet(t!.request, 'v1-debt')).balance).toBe('1.500000');
    await expectBooksClean(t!.request, db.url);
  });
});
