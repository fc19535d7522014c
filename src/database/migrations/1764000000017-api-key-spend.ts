import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What each key record's settlements charged, per UTC day (API.md §11 spend caps; plan:
 * notes/spend-cap-plan.md in the team's notes). One row per key and day, so "spent this period"
 * is at most 31 rows for a month, whatever the key's volume — instead of a sum over its ledger
 * entries. The settle statement (src/ledger/) adds each charge to the row of the key that owns
 * the usage; PLACE_HOLDS reads it under the key's row lock. A month is the sum of its days, so a
 * cap changed from `day` to `month` (or back) keeps counting what was already spent.
 */
export class ApiKeySpend1764000000017 implements MigrationInterface {
  name = 'ApiKeySpend1764000000017';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE api_key_spend (
        key_id   uuid          NOT NULL REFERENCES api_keys (key_id),
        day      date          NOT NULL,
        charged  numeric(38,6) NOT NULL DEFAULT 0,
        PRIMARY KEY (key_id, day)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE api_key_spend`);
  }
}
