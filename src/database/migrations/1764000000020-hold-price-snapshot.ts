import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * API.md §13 price lock: the hold of a `price_lock` feature keeps the prices, margins and rate in
 * force when it was placed (src/pricing/price-snapshot.ts, HoldPriceSnapshot); every charge of the
 * hold is priced from it. Null for every other hold (and every hold before this migration: they
 * settle at the prices of the moment, as they always did).
 */
export class HoldPriceSnapshot1764000000020 implements MigrationInterface {
  name = 'HoldPriceSnapshot1764000000020';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE holds ADD COLUMN price_snapshot jsonb`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE holds DROP COLUMN price_snapshot`);
  }
}
