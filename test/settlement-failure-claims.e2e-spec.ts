/**
 * Migration 1764000000004 (settlement_failures.message_id, claimed_at) applied in place to a
 * database at the schema before it, holding failures recorded by the previous release: they keep
 * every field, can be replayed and discarded, and the migration can be undone.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../src/database/migrations';
import { createTestDatabase, TestDatabase } from './support/database';
import { startTestApp, TestApp } from './support/test-app';

const THIS_MIGRATION = 1764000000004;
const timestampOf = (migration: new () => object) => Number(/(\d{13})$/.exec(migration.name)![1]);

async function migrate(url: string, migrations: (new () => object)[], undo = false): Promise<void> {
  const dataSource = new DataSource({ type: 'postgres', url, migrations, migrationsTransactionMode: 'each', logging: false });
  await dataSource.initialize();
  try {
    if (undo) await dataSource.undoLastMigration({ transaction: 'each' });
    else await dataSource.runMigrations({ transaction: 'each' });
  } finally {
    await dataSource.destroy();
  }
}

async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end();
  }
}

const columns = async (url: string) =>
  (
    await sql<{ column_name: string }>(
      url,
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'settlement_failures' ORDER BY column_name`,
    )
  ).map((r) => r.column_name);

describe('upgrading settlement_failures in place (migration 1764000000004)', () => {
  let db: TestDatabase;
  let t: TestApp | undefined;
  const direct = {
    user_id: 'old-user',
    feature_endpoint_id: 'chat',
    usages: [{ ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 }],
  };
  const ids: Record<'pending' | 'other' | 'replayed', string> = { pending: '', other: '', replayed: '' };

  beforeAll(async () => {
    db = await createTestDatabase();
    const previous = MIGRATIONS.filter((m) => timestampOf(m) < THIS_MIGRATION);
    expect(previous.map((m) => m.name)).not.toContain('SettlementFailureClaims1764000000004');
    await migrate(db.url, previous);
    expect(await columns(db.url)).not.toContain('claimed_at');
    // Rows as the previous release wrote them: a keyless direct charge whose wallet did not exist
    // yet, another pending one, and one already replayed.
    const insert = (status: string, resolution: string | null) =>
      sql<{ id: string }>(
        db.url,
        `INSERT INTO settlement_failures (queue, payload, error_status, reason, status, attempts, resolution, resolved_at)
         VALUES ('credits_process_end_multimodel_queue', $1, 'wallet_not_found', 'No wallet exists for user "old-user".', $2::varchar, 1, $3::jsonb,
                 CASE WHEN $2::varchar = 'pending' THEN NULL ELSE now() END)
         RETURNING id::text`,
        [JSON.stringify(direct), status, resolution],
      ).then(([row]) => row.id);
    ids.pending = await insert('pending', null);
    ids.other = await insert('pending', null);
    ids.replayed = await insert('replayed', JSON.stringify({ status: 'settled' }));
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('adds the columns, empty for existing rows, and keeps every other field', async () => {
    t = await startTestApp({}, db);
    expect(await columns(db.url)).toEqual(expect.arrayContaining(['claimed_at', 'message_id']));
    const rows = await sql<{ id: string; status: string; attempts: number; message_id: null; claimed_at: null; payload: string }>(
      db.url,
      `SELECT id::text, status, attempts, message_id, claimed_at, payload FROM settlement_failures ORDER BY id`,
    );
    expect(rows).toEqual([
      { id: ids.pending, status: 'pending', attempts: 1, message_id: null, claimed_at: null, payload: JSON.stringify(direct) },
      { id: ids.other, status: 'pending', attempts: 1, message_id: null, claimed_at: null, payload: JSON.stringify(direct) },
      { id: ids.replayed, status: 'replayed', attempts: 1, message_id: null, claimed_at: null, payload: JSON.stringify(direct) },
    ]);
  });

  it('replays an old failure once, however many replays race, and discards another', async () => {
    const app = t!;
    await app.request('POST', '/api/features', {
      body: { feature_endpoint_id: 'chat', name: 'Chat', min_holding_credits: '5', profit_margin: '0.2' },
    });
    await app.request('POST', '/api/pricing/models', {
      body: { ai_model: 'gpt-4o', input_price_per_million: '2.5', output_price_per_million: '10' },
    });
    await app.request('POST', '/api/wallets', { body: { user_id: 'old-user', initial_credits: '100' } });
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => app.request('POST', `/api/settlement-failures/${ids.pending}/replay`)),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409, 409, 409, 409, 409, 409]);
    expect((await app.request('POST', `/api/settlement-failures/${ids.replayed}/replay`)).status).toBe(409);
    const discard = await app.request('POST', `/api/settlement-failures/${ids.other}/discard`);
    expect(discard.body.data.failure.status).toBe('discarded');
    const wallet = (await app.request('GET', '/api/wallets/old-user')).body.data;
    expect(wallet.balance).toBe('99.280000');
    const [{ n }] = await sql<{ n: number }>(
      db.url,
      `SELECT count(*)::int AS n FROM ledger_entries WHERE user_id = 'old-user' AND kind = 'charge'`,
    );
    expect(n).toBe(1);
  });

  it('can be undone', async () => {
    await t!.close();
    t = undefined;
    // Undone last to first (any later migration first) until this one is.
    const applied = async () =>
      (await sql<{ timestamp: string }>(db.url, `SELECT timestamp::text FROM migrations`)).map((r) => Number(r.timestamp));
    while ((await applied()).includes(THIS_MIGRATION)) await migrate(db.url, MIGRATIONS, true);
    const after = await columns(db.url);
    expect(after).not.toContain('claimed_at');
    expect(after).not.toContain('message_id');
    const [{ n }] = await sql<{ n: number }>(db.url, `SELECT count(*)::int AS n FROM settlement_failures`);
    expect(n).toBe(3);
  });
});
