import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { isDeadlock } from '../common/database-errors';
import type { EntityManager } from 'typeorm';

/**
 * Runs raw SQL (in the manager's transaction, if any) and returns the rows, whatever the command
 * (TypeORM's plain `query()` returns `[rows, count]` for UPDATE/DELETE but `rows` otherwise).
 * Used where one conditional `UPDATE … RETURNING` replaces a read-then-write race.
 */
export async function queryRows<T>(
  manager: EntityManager,
  sql: string,
  params: unknown[] = [],
  opts: { prepared?: boolean } = {},
): Promise<T[]> {
  if (manager.queryRunner) return runRows<T>(manager, sql, params, opts);
  // Outside a transaction the statement commits on its own, so when PostgreSQL picks it as a
  // deadlock victim it was rolled back whole and running it again is safe. (Inside a transaction
  // the caller's whole transaction is void: its owner decides.)
  for (let attempt = 1; ; attempt++) {
    try {
      return await runRows<T>(manager, sql, params, opts);
    } catch (error) {
      if (attempt >= DEADLOCK_RETRIES || !isDeadlock(error)) throw error;
      await delay(attempt * 5 + Math.floor(Math.random() * 10));
    }
  }
}

const DEADLOCK_RETRIES = 4;

async function runRows<T>(manager: EntityManager, sql: string, params: unknown[], opts: { prepared?: boolean }): Promise<T[]> {
  // Outside a transaction the statement runs on a pooled connection of its own (autocommit).
  const runner = manager.queryRunner ?? manager.connection.createQueryRunner();
  try {
    if (opts.prepared) {
      // A named statement is parsed and planned once per connection, then only bound and run:
      // on the hot path's multi-CTE statements that is most of PostgreSQL's work per call.
      const client = (await (runner as unknown as { connect(): Promise<PgClient> }).connect()) as PgClient;
      const result = await client.query({ name: statementName(sql), text: sql, values: params });
      return result.rows as T[];
    }
    const result = await runner.query(sql, params, true);
    return result.records as T[];
  } finally {
    if (runner !== manager.queryRunner) await runner.release();
  }
}

interface PgClient {
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }>;
}

const names = new Map<string, string>();

/** A stable name per distinct SQL text (pg caches prepared statements per connection by name). */
function statementName(sql: string): string {
  let name = names.get(sql);
  if (!name) {
    name = `credits_${createHash('sha1').update(sql).digest('hex').slice(0, 16)}`;
    names.set(sql, name);
  }
  return name;
}

/**
 * TypeORM's update() types recurse into jsonb values and reject ordinary objects with literal
 * types; a jsonb column takes the value as a whole, so this cast is the honest type.
 */
export const jsonb = (value: object): never => value as never;
