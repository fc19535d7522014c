import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import { Money, moneyColumn } from '../common/money';

export const LEDGER_ENTRY_KINDS = [
  'initial',
  'top_up',
  'adjustment',
  'charge',
  'grant',
  'grant_expired',
  'grant_voided',
  'refund',
] as const;
export type LedgerEntryKind = (typeof LEDGER_ENTRY_KINDS)[number];

/**
 * One change of one wallet's balance, written by the ledger (src/ledger/money-movement.ts) in the
 * statement that changes the balance. Append-only: a database trigger refuses UPDATE and DELETE.
 * `id` is a bigint identity (a string in JS), which also orders the history and pages it.
 */
@Entity('ledger_entries')
@Index('ledger_entries_user_history', ['userId', 'id'])
export class LedgerEntry {
  @PrimaryGeneratedColumn('identity', { type: 'bigint', generatedIdentity: 'ALWAYS' })
  id!: string;

  @Column({ name: 'user_id', type: 'varchar', length: 128 })
  userId!: string;

  @Column({ type: 'varchar', length: 16 })
  kind!: LedgerEntryKind;

  /** Signed: positive credits the wallet, negative debits it. */
  @Column({ type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  amount!: Money;

  @Column({ name: 'balance_after', type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  balanceAfter!: Money;

  /** The wallet's `held` right after this entry (a settlement releases its hold in the same step). */
  @Column({ name: 'held_after', type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  heldAfter!: Money;

  @Column({ name: 'usage_key', type: 'uuid', nullable: true })
  usageKey!: string | null;

  @Column({ name: 'idempotency_key', type: 'varchar', length: 128, nullable: true })
  idempotencyKey!: string | null;

  @Column({ type: 'varchar', length: 500, nullable: true })
  description!: string | null;

  /** Why the amount is what it is: prices, margin, rate and usages for a charge; the reason for an adjustment. */
  @Column({ type: 'jsonb', default: () => "'{}'" })
  metadata!: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- jsonb read by views that know its shape

  /** The API key record that made it (API.md §11); null for environment keys, the queue, operators' writes. */
  @Column({ name: 'key_id', type: 'uuid', nullable: true })
  keyId!: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
