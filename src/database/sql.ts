import type { EntityManager } from 'typeorm';

/**
 * Runs raw SQL inside the manager's transaction and returns the rows, whatever the command
 * (TypeORM's plain `query()` returns `[rows, count]` for UPDATE/DELETE but `rows` otherwise).
 * Used where one conditional `UPDATE … RETURNING` replaces a read-then-write race.
 */
export async function queryRows<T>(manager: EntityManager, sql: string, params: unknown[] = []): Promise<T[]> {
  const runner = manager.queryRunner;
  if (!runner) throw new Error('queryRows must run inside a transaction');
  const result = await runner.query(sql, params, true);
  return result.records as T[];
}

/**
 * TypeORM's update() types recurse into jsonb values and reject ordinary objects with literal
 * types; a jsonb column takes the value as a whole, so this cast is the honest type.
 */
export const jsonb = (value: object): never => value as never;
