import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * API.md §13: a feature with `price_lock` settles every usage of a hold at the prices, margin and
 * rate in force when the hold was placed. Off for every existing feature: they keep settling at the
 * prices of the moment, as in v1.
 */
export class PriceLock1764000000010 implements MigrationInterface {
  name = 'PriceLock1764000000010';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE features ADD COLUMN price_lock boolean NOT NULL DEFAULT false`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE features DROP COLUMN price_lock`);
  }
}
