import type { DataSourceOptions } from 'typeorm';
import { ENTITIES } from './entities';
import { MIGRATIONS } from './migrations';

/**
 * The one description of how the service talks to PostgreSQL, shared by the app, the migration
 * runner and the seed script. Entities and migrations are listed explicitly (no globs), so the
 * same list works compiled, under ts-jest and in the TypeORM CLI.
 */
export function databaseOptions(url: string, opts: { poolSize: number; embedded: boolean }): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsRun: true,
    migrationsTransactionMode: 'each',
    synchronize: false,
    // Not 'error': TypeORM prints every failed query with console.log, outside pino (no level, no
    // request_id, parameters included), and unique violations are expected here (idempotent
    // replays, duplicate creates). Real failures reach the exception filter and are logged there.
    logging: ['warn', 'migration'],
    // PGlite has a single backend: one connection serializes whole transactions safely.
    poolSize: opts.embedded ? 1 : opts.poolSize,
    extra: {
      connectionTimeoutMillis: 5_000,
      // Keeps a stuck statement from holding a wallet row lock forever.
      statement_timeout: 15_000,
      application_name: 'credits-service',
    },
  };
}
