import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type SettlementFailureStatus = 'pending' | 'replayed' | 'discarded';

/** A queued settlement that could not be applied, kept byte-for-byte for replay. */
@Entity('settlement_failures')
export class SettlementFailure {
  @PrimaryGeneratedColumn('identity', { type: 'bigint', generatedIdentity: 'ALWAYS' })
  id!: string;

  @Column({ type: 'varchar', length: 128 })
  queue!: string;

  /** The message body exactly as received (decoded as UTF-8). */
  @Column({ type: 'text' })
  payload!: string;

  /** base64 when the body was not valid UTF-8 text (PostgreSQL text cannot hold every byte). */
  @Column({ name: 'payload_encoding', type: 'varchar', length: 8 })
  payloadEncoding!: 'utf8' | 'base64';

  /** The contract's status word for the failure (unknown_model, validation_error, …). */
  @Column({ name: 'error_status', type: 'varchar', length: 64 })
  errorStatus!: string;

  @Column({ type: 'text' })
  reason!: string;

  @Column({ type: 'varchar', length: 16 })
  status!: SettlementFailureStatus;

  @Column({ type: 'integer' })
  attempts!: number;

  @Column({ type: 'jsonb', nullable: true })
  resolution!: { [key: string]: string | number | boolean | object | null } | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'resolved_at', type: 'timestamptz', nullable: true })
  resolvedAt!: Date | null;

  /** The message's AMQP message_id, when it had one: a replay charges under the same key. */
  @Column({ name: 'message_id', type: 'varchar', length: 255, nullable: true })
  messageId!: string | null;

  /**
   * Set when a replay takes the failure, cleared when that replay learns its outcome. While set,
   * a discard is refused (the replay may have charged) and another replay only after a timeout.
   */
  @Column({ name: 'claimed_at', type: 'timestamptz', nullable: true })
  claimedAt!: Date | null;
}
