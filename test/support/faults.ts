import { execFile } from 'node:child_process';
import { waitFor } from './wait';
import { promisify } from 'node:util';
import pg from 'pg';
import { ADMIN_DATABASE_URL } from './database';

const run = promisify(execFile);

/**
 * Faults injected into ONE throwaway database or vhost only: the PostgreSQL and RabbitMQ servers
 * are shared with other test runs and are never stopped.
 */

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const quoteIdent = (name: string) => {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unexpected database name ${name}`);
  return name;
};

/** Database outage: refuse new connections and cut every open one (the service's pool included). */
export async function databaseDown(name: string): Promise<void> {
  await admin(async (c) => {
    await c.query(`ALTER DATABASE ${quoteIdent(name)} ALLOW_CONNECTIONS false`);
    await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
  });
}

export async function databaseUp(name: string): Promise<void> {
  await admin((c) => c.query(`ALTER DATABASE ${quoteIdent(name)} ALLOW_CONNECTIONS true`));
}

/** Broker outage for one vhost: the server closes every client connection of it. */
export async function closeVhostConnections(vhost: string): Promise<void> {
  await run('rabbitmqctl', ['close_all_connections', '-p', vhost, 'test: broker connection closed on purpose']);
}

/** Messages of a queue including the delivered-but-unacked ones (amqp's checkQueue counts only the ready ones). */
export async function queueTotals(vhost: string): Promise<Record<string, { ready: number; unacked: number }>> {
  const { stdout } = await run('rabbitmqctl', [
    'list_queues',
    '-p',
    vhost,
    '--quiet',
    '--no-table-headers',
    'name',
    'messages_ready',
    'messages_unacknowledged',
  ]);
  const totals: Record<string, { ready: number; unacked: number }> = {};
  for (const line of stdout.split('\n')) {
    const [name, ready, unacked] = line.trim().split(/\s+/);
    if (name && ready !== undefined) totals[name] = { ready: Number(ready), unacked: Number(unacked) };
  }
  return totals;
}

/** A short-lived pg client on the test database (for reading the books directly). */
export async function withDb<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function scalar(url: string, sql: string, params: unknown[] = []): Promise<string> {
  return withDb(url, async (c) => {
    const { rows } = await c.query(sql, params);
    return String(Object.values(rows[0] as Record<string, unknown>)[0]);
  });
}

/** Both settlement queues empty with nothing unacked: every message was acked, i.e. committed or dead-lettered. */
export async function queuesDrained(vhost: string, queues: readonly string[]): Promise<boolean> {
  const totals = await queueTotals(vhost);
  return queues.every((q) => totals[q] !== undefined && totals[q].ready === 0 && totals[q].unacked === 0);
}

/**
 * Waits until `count()` reaches `expected` — or until the queues are drained, since nothing more
 * can arrive then (so a test whose messages were lost fails at once in its books check, with
 * figures, instead of timing out) — and then until the queues are drained (duplicates included).
 */
export async function waitForSettlements(
  vhost: string,
  queues: readonly string[],
  count: () => Promise<number>,
  expected: number,
  timeoutMs = 180_000,
): Promise<void> {
  let polls = 0;
  await waitFor(
    `${expected} settlements`,
    async () => (await count()) >= expected || (++polls % 8 === 0 && (await queuesDrained(vhost, queues))),
    timeoutMs,
    250,
  );
  await waitFor('the settlement queues to drain', () => queuesDrained(vhost, queues), 60_000, 500);
}
