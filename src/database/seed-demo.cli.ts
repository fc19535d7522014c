import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ConfigError, loadConfig } from '../config/configuration';
import { databaseOptions } from './database.options';
import { EmbeddedPostgres, startEmbeddedPostgres } from './embedded-postgres';
import { describeSeeded, seedDemo } from './seed-demo';

/**
 * `npm run seed:demo`: opens the database exactly as the app does (DATABASE_URL, or embedded
 * PGlite in EMBEDDED_DATA_DIR / ./data), runs the migrations, seeds the demo data, closes.
 *
 * With the embedded database, run it while the server is stopped: PGlite is a single process's
 * database, and the directory's lock refuses a second opener (startEmbeddedPostgres). Or start the
 * server with SEED_DEMO=true, which seeds through the server's own connection (a new embedded
 * database is seeded by its first start anyway).
 */
async function main(): Promise<void> {
  if (existsSync('.env')) process.loadEnvFile('.env');
  const config = loadConfig(process.env);
  const logger = new Logger('SeedDemo');

  let embedded: EmbeddedPostgres | undefined;
  let url = config.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedPostgres(config.embeddedDataDir);
    url = embedded.url;
    logger.log(`DATABASE_URL is not set: using embedded PostgreSQL (PGlite) in ${config.embeddedDataDir}`);
  }
  const dataSource = new DataSource(databaseOptions(url, { poolSize: 1, embedded: embedded !== undefined }));
  try {
    await dataSource.initialize(); // runs pending migrations (migrationsRun)
    const created = await seedDemo(dataSource, { demoKey: config.nodeEnv !== 'production' });
    for (const item of created) logger.log(`created ${describeSeeded(item)}`);
    if (created.length === 0) logger.log('demo data already present: nothing created');
  } finally {
    if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.close();
  }
}

main().catch((error: unknown) => {
  const reason = error instanceof ConfigError ? `configuration: ${error.message}` : error instanceof Error ? error.message : String(error);
  const hint = /in use by process/.test(reason) ? ' (a running server seeds itself when started with SEED_DEMO=true)' : '';
  process.stderr.write(`seed:demo failed: ${reason}${hint}\n`);
  process.exit(1);
});
