import type { HoldPriceSnapshot } from '../pricing/price-snapshot';
import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';
import { Money, moneyColumn } from '../common/money';
import type { HoldStatus } from '../ledger/hold-states';

/**
 * One authorization, keyed by its usage_key: a hold placed by /start, or a direct charge (created
 * settled, amount 0). Its states and transitions are named in src/ledger/hold-states.ts; only the
 * ledger (LedgerService) writes this table, each transition a conditional UPDATE on `status`.
 */
@Entity('holds')
export class Hold {
  @PrimaryColumn({ name: 'usage_key', type: 'uuid' })
  usageKey!: string;

  @Column({ name: 'user_id', type: 'varchar', length: 128 })
  userId!: string;

  @Column({ name: 'feature_endpoint_id', type: 'varchar', length: 128 })
  featureEndpointId!: string;

  @Column({ type: 'numeric', precision: 24, scale: 6, transformer: moneyColumn })
  amount!: Money;

  @Column({ type: 'varchar', length: 16 })
  status!: HoldStatus;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;

  @Column({ name: 'idempotency_key', type: 'varchar', length: 128, nullable: true })
  idempotencyKey!: string | null;

  /** A price_lock feature's prices when the hold was placed (API.md §13); null otherwise. */
  @Column({ name: 'price_snapshot', type: 'jsonb', nullable: true })
  priceSnapshot!: HoldPriceSnapshot | null;

  /** The API key record that started it (or made the direct charge); null for environment keys and the queue. */
  @Column({ name: 'key_id', type: 'uuid', nullable: true })
  keyId!: string | null;

  /** sha256 of a direct charge's request, to refuse a reused idempotency key with another body. */
  @Column({ name: 'request_hash', type: 'varchar', length: 64, nullable: true })
  requestHash!: string | null;

  @Column({ type: 'boolean' })
  late!: boolean;

  /** A direct charge (no hold was ever placed). */
  @Column({ type: 'boolean' })
  direct!: boolean;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'closed_at', type: 'timestamptz', nullable: true })
  closedAt!: Date | null;
}
