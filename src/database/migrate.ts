import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { DataSource } from 'typeorm';
import { ConfigError, loadConfig } from '../config/configuration';
import { databaseOptions } from './database.options';
import { startEmbeddedPostgres } from './embedded-postgres';

/**
 * `npm run migration:run`: applies pending migrations to DATABASE_URL (or the embedded database
 * in EMBEDDED_DATA_DIR) and exits. The service also runs them on start; this is for deploy steps.
 */
async function main(): Promise<void> {
  if (existsSync('.env')) process.loadEnvFile('.env');
  const config = loadConfig(process.env);
  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres(config.embeddedDataDir);
  const dataSource = new DataSource({
    ...databaseOptions(config.databaseUrl ?? embedded!.url, { poolSize: 1, embedded: !!embedded }),
    migrationsRun: false,
  });
  try {
    await dataSource.initialize();
    const applied = await dataSource.runMigrations({ transaction: 'each' });
    process.stdout.write(applied.length ? `applied ${applied.map((m) => m.name).join(', ')}\n` : 'no pending migrations\n');
  } finally {
    if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `migration failed: ${error instanceof ConfigError ? `configuration: ${error.message}` : (error as Error).message}\n`,
  );
  process.exit(1);
});
