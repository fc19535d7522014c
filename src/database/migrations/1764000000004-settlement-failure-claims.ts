import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A settlement failure remembers the AMQP message_id its message came with (so a replay charges
 * under the same key as the message would have) and when a replay claimed it (so two replays, or
 * a replay and a discard, can never both act on it). Both are empty for existing rows: a failure
 * recorded before this migration has no message_id to keep and is not being replayed.
 */
export class SettlementFailureClaims1764000000004 implements MigrationInterface {
  name = 'SettlementFailureClaims1764000000004';

  async up(q: QueryRunner): Promise<void> {
    // 255: the longest AMQP short string, the type of the message_id property.
    await q.query(`ALTER TABLE settlement_failures ADD COLUMN message_id varchar(255), ADD COLUMN claimed_at timestamptz`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE settlement_failures DROP COLUMN claimed_at, DROP COLUMN message_id`);
  }
}
