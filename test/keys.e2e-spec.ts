/**
 * API keys as records (API.md §11) and the audit log (§12), on two real service processes sharing
 * one throwaway database, with every log line kept (LOG_LEVEL=trace) to prove no secret is written.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { createCatalog } from './support/catalog';
import { createTestDatabase, TestDatabase } from './support/database';
import { ServiceProcess, spawnService } from './support/service-process';
import { waitFor } from './support/wait';

describe('API keys as records, and the audit log', () => {
  let db: TestDatabase;
  let a: ServiceProcess;
  let b: ServiceProcess;
  let sql: pg.Client;
  const secrets: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await spawnService({ DATABASE_URL: db.url, LOG_LEVEL: 'trace' });
    b = await spawnService({ DATABASE_URL: db.url, LOG_LEVEL: 'trace' });
    await createCatalog(a.request);
    await a.request('POST', '/api/wallets', { body: { user_id: 'k-user', initial_credits: '1000' } });
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
  }, 120_000);
  afterAll(async () => {
    await sql?.end();
    await Promise.all([a?.stop(), b?.stop()]);
    await db?.drop();
  }, 60_000);

  const issue = async (body: Record<string, unknown>) => {
    const res = await a.request('POST', '/api/keys', { body });
    expect(res.status).toBe(201);
    secrets.push(res.body.data.key);
    return res.body.data as { key_id: string; key: string; prefix: string };
  };
  const start = (service: ServiceProcess, key: string, feature = 'chat') =>
    service.request('POST', '/api/credits-process/start', { key, body: { user_id: 'k-user', feature_endpoint_id: feature } });

  it('issues a key whose secret is shown once: stored as a hash, listed and read by prefix only', async () => {
    const key = await issue({ name: 'chat service', scope: 'service', allowed_features: ['chat'] });
    expect(key.key).toMatch(/^ck_s_[A-Za-z0-9_-]{43}$/);
    expect(key.key.startsWith(key.prefix)).toBe(true);
    const stored = (await sql.query(`SELECT secret_hash FROM api_keys WHERE key_id = $1`, [key.key_id])).rows[0];
    expect(stored.secret_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(key.key);
    const list = await a.request('GET', '/api/keys');
    const one = await a.request('GET', `/api/keys/${key.key_id}`);
    expect(list.body.data.items.map((k: { key_id: string }) => k.key_id)).toContain(key.key_id);
    for (const body of [list.body, one.body]) {
      expect(JSON.stringify(body)).not.toContain(key.key);
      expect(JSON.stringify(body)).not.toMatch(/secret|"key":/);
    }
    expect(one.body.data).toMatchObject({ name: 'chat service', scope: 'service', allowed_features: ['chat'], spend_cap: null });
  });

  it('a service key works on service routes of both instances and is refused admin routes, /api/keys included', async () => {
    const key = await issue({ name: 'svc', scope: 'service' });
    expect((await start(a, key.key)).status).toBe(200);
    expect((await start(b, key.key)).status).toBe(200);
    expect((await a.request('GET', '/api/wallets', { key: key.key })).status).toBe(403);
    const raise = await a.request('PATCH', `/api/keys/${key.key_id}`, { key: key.key, body: { allowed_features: [] } });
    expect(raise.status).toBe(403);
    expect((await a.request('POST', '/api/keys', { key: key.key, body: { name: 'x', scope: 'admin' } })).status).toBe(403);
  });

  it('an admin key record can call admin routes and is named in the audit rows it causes', async () => {
    const admin = await issue({ name: 'ops laptop', scope: 'admin' });
    const made = await a.request('POST', '/api/keys', { key: admin.key, body: { name: 'made by ops', scope: 'service' } });
    expect(made.status).toBe(201);
    secrets.push(made.body.data.key);
    const rows = (await a.request('GET', `/api/audit-log?target=${made.body.data.key_id}`)).body.data.items;
    expect(rows).toEqual([
      expect.objectContaining({ action: 'key.create', actor: { key_id: admin.key_id, name: 'ops laptop' }, target: made.body.data.key_id }),
    ]);
    expect(rows[0].request_id).toEqual(expect.any(String));
  });

  it('revocation answers 401 at once on the instance that revoked, and within the 1 s cache on the other', async () => {
    const key = await issue({ name: 'to revoke', scope: 'service' });
    expect((await start(a, key.key)).status).toBe(200);
    expect((await start(b, key.key)).status).toBe(200); // now cached on b
    const revoked = await a.request('POST', `/api/keys/${key.key_id}/revoke`);
    const at = Date.now();
    expect(revoked.status).toBe(200);
    expect(revoked.body.data.revoked_at).toEqual(expect.any(String));
    expect((await start(a, key.key)).status).toBe(401);
    await waitFor('instance b to refuse the revoked key', async () => (await start(b, key.key)).status === 401, 5_000, 50);
    // KEY_CACHE_TTL_MS (1 s) plus one request of slack on a loaded machine.
    expect(Date.now() - at).toBeLessThan(2_000);
    // Revoking again changes nothing and writes no second audit row.
    expect((await a.request('POST', `/api/keys/${key.key_id}/revoke`)).status).toBe(200);
    const rows = (await a.request('GET', `/api/audit-log?target=${key.key_id}&action=key.revoke`)).body.data.items;
    expect(rows).toHaveLength(1);
  });

  it('rotation: the new secret works, the old one only for its grace period; without grace not at all', async () => {
    const key = await issue({ name: 'to rotate', scope: 'service' });
    const rotated = await a.request('POST', `/api/keys/${key.key_id}/rotate`, { body: { grace_seconds: 3 } });
    expect(rotated.status).toBe(200);
    const fresh = rotated.body.data.key as string;
    secrets.push(fresh);
    expect(fresh).not.toBe(key.key);
    expect(rotated.body.data.key_id).toBe(key.key_id);
    // The grace ends when the service says (stored at rotation), not a test's guess after the
    // requests that followed it: on a loaded machine those took long enough to fail the bound.
    const { rows } = await sql.query<{ until: Date }>(`SELECT previous_valid_until AS until FROM api_keys WHERE key_id = $1`, [key.key_id]);
    const graceEnds = rows[0].until.getTime();
    expect((await start(a, fresh)).status).toBe(200);
    expect(Date.now()).toBeLessThan(graceEnds); // still within the grace: 3 s leaves ample room
    expect((await start(a, key.key)).status).toBe(200);
    await waitFor('the old secret to stop working after its grace', async () => (await start(a, key.key)).status === 401, 10_000, 100);
    expect(Date.now()).toBeGreaterThanOrEqual(graceEnds);
    expect((await start(a, fresh)).status).toBe(200);

    const again = await a.request('POST', `/api/keys/${key.key_id}/rotate`, { body: {} });
    secrets.push(again.body.data.key);
    expect((await start(a, fresh)).status).toBe(401);
    expect((await start(a, again.body.data.key)).status).toBe(200);
  });

  it('an expired key answers 401; an expiry in the past is refused', async () => {
    expect(
      (await a.request('POST', '/api/keys', { body: { name: 'old', scope: 'service', expires_at: '2020-01-01T00:00:00Z' } })).status,
    ).toBe(400);
    const key = await issue({ name: 'short', scope: 'service', expires_at: new Date(Date.now() + 1500).toISOString() });
    expect((await start(a, key.key)).status).toBe(200);
    await waitFor('the key to expire', async () => (await start(a, key.key)).status === 401, 10_000, 100);
  });

  it('refuses bad bodies with a 400 and writes nothing', async () => {
    const before = (await sql.query(`SELECT count(*)::int AS n FROM api_keys`)).rows[0].n;
    for (const body of [
      {},
      { name: 'x' },
      { name: 'x', scope: 'root' },
      { name: '', scope: 'service' },
      { name: 'x', scope: 'service', allowed_features: 'chat' },
      { name: 'x', scope: 'service', spend_cap: { amount: '-1', period: 'day' } },
      { name: 'x', scope: 'service', spend_cap: { amount: '1.0000001', period: 'day' } },
      { name: 'x', scope: 'service', spend_cap: { amount: '1', period: 'week' } },
      { name: 'x', scope: 'service', expires_at: 'tomorrow' },
    ]) {
      expect([body, (await a.request('POST', '/api/keys', { body })).status]).toEqual([body, 400]);
    }
    expect((await sql.query(`SELECT count(*)::int AS n FROM api_keys`)).rows[0].n).toBe(before);
    expect((await a.request('GET', '/api/keys/not-a-uuid')).status).toBe(404);
    expect((await a.request('GET', '/api/keys/5d1c8a4e-3b2f-4c6d-9e7f-0a1b2c3d4e5f')).status).toBe(404);
  });

  it('the audit log refuses UPDATE, DELETE and TRUNCATE, and filters by actor and action', async () => {
    await expect(sql.query(`UPDATE audit_log SET target = 'x'`)).rejects.toThrow(/append-only/);
    await expect(sql.query(`DELETE FROM audit_log`)).rejects.toThrow(/append-only/);
    await expect(sql.query(`TRUNCATE audit_log`)).rejects.toThrow(/append-only/);
    const env = (await a.request('GET', '/api/audit-log?actor=env&action=key.create&limit=200')).body.data.items;
    expect(env.length).toBeGreaterThan(0);
    expect(env.every((r: { actor: { key_id: string }; action: string }) => r.actor.key_id === 'env' && r.action === 'key.create')).toBe(
      true,
    );
    expect((await a.request('GET', '/api/audit-log?actor=someone')).status).toBe(400);
    expect((await a.request('GET', '/api/audit-log?action=wallet.delete')).status).toBe(400);
  });

  it('never writes a secret into a log line, an audit row or an error message', async () => {
    const audit = (await sql.query(`SELECT changes::text AS c FROM audit_log`)).rows.map((r) => r.c as string).join('\n');
    const logs = [...a.lines, ...b.lines].join('\n');
    expect(secrets.length).toBeGreaterThan(5);
    for (const secret of secrets) {
      expect(audit).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
    const wrong = await a.request('GET', '/api/wallets', { key: `${secrets[0]}x` });
    expect(wrong.status).toBe(401);
    expect(JSON.stringify(wrong.body)).not.toContain(secrets[0]);
  });
});
