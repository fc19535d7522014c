import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { databaseOptions } from './database.options';

/**
 * For the TypeORM CLI only (`npm run migration:generate -- src/database/migrations/<name>`): it
 * compares the entities with the schema of DATABASE_URL (a real server; a throwaway one is best).
 */
const url = process.env.DATABASE_URL;
if (!url) throw new Error('migration:generate needs DATABASE_URL pointing at a PostgreSQL server');
export default new DataSource({ ...databaseOptions(url, { poolSize: 1, embedded: false }), migrationsRun: false });
