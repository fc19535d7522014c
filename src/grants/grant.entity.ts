import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';
import { Money, moneyColumn } from '../common/money';

export type GrantKind = 'paid' | 'promotional';
export type GrantStatus = 'active' | 'depleted' | 'expired' | 'voided';
export const GRANT_STATUSES: readonly GrantStatus[] = ['active', 'depleted', 'expired', 'voided'];

/**
 * A grant (lot) of credits of one wallet (API.md §8). Read here; written only by the ledger
 * (ledger_apply, migration 1764000000018), which keeps
 *   remaining = amount − debt_paid − Σ its draws − expired − voided + refunded.
 */
@Entity('grants')
export class Grant {
  @PrimaryColumn({ name: 'grant_id', type: 'uuid' })
  grantId!: string;

  @Column({ name: 'user_id', type: 'varchar', length: 128 })
  userId!: string;

  @Column({ type: 'varchar', length: 16 })
  kind!: GrantKind;

  /** How it came: grant (POST …/grants), initial, top_up, adjustment, refund, upgrade. */
  @Column({ type: 'varchar', length: 16 })
  origin!: string;

  @Column({ type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  amount!: Money;

  @Column({ type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  remaining!: Money;

  @Column({ type: 'smallint' })
  priority!: number;

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt!: Date | null;

  @Column({ type: 'varchar', length: 16 })
  status!: GrantStatus;

  @Column({ name: 'debt_paid', type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  debtPaid!: Money;

  @Column({ type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  expired!: Money;

  @Column({ type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  voided!: Money;

  @Column({ type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  refunded!: Money;

  @Column({ name: 'idempotency_key', type: 'varchar', length: 128, nullable: true })
  idempotencyKey!: string | null;

  @Column({ name: 'request_hash', type: 'varchar', length: 64, nullable: true })
  requestHash!: string | null;

  @Column({ type: 'varchar', length: 500, nullable: true })
  description!: string | null;

  @Column({ name: 'void_reason', type: 'varchar', length: 500, nullable: true })
  voidReason!: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'closed_at', type: 'timestamptz', nullable: true })
  closedAt!: Date | null;
}
