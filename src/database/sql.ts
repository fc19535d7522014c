import type { EntityManager } from 'typeorm';

/**
 * Runs raw SQL (in the manager's transaction, if any) and returns the rows, whatever the command
 * (TypeORM's plain `query()` returns `[rows, count]` for UPDATE/DELETE but `rows` otherwise).
 * Used where one conditional `UPDATE … RETURNING` replaces a read-then-write race.
 */
export async function queryRows<T>(manager: EntityManager, sql: string, params: unknown[] = []): Promise<T[]> {
  // Outside a transaction the statement runs on a pooled connection of its own (autocommit).
  const runner = manager.queryRunner ?? manager.connection.createQueryRunner();
  try {
    const result = await runner.query(sql, params, true);
    return result.records as T[];
  } finally {
    if (runner !== manager.queryRunner) await runner.release();
  }
}

/**
 * TypeORM's update() types recurse into jsonb values and reject ordinary objects with literal
 * types; a jsonb column takes the value as a whole, so this cast is the honest type.
 */
export const jsonb = (value: object): never => value as never;
