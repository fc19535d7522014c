import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';
import { Money, moneyColumn } from '../common/money';
import type { KeyScope } from '../common/api-key.guard';

export type SpendCapPeriod = 'day' | 'month';

/** A key issued through the API (API.md §11). Its secret is never stored, only its sha-256. */
@Entity('api_keys')
export class ApiKey {
  @PrimaryColumn({ name: 'key_id', type: 'uuid' })
  keyId!: string;

  @Column({ type: 'varchar', length: 128 })
  name!: string;

  @Column({ type: 'varchar', length: 16 })
  scope!: KeyScope;

  /** The secret's first characters, to recognise it in a list (not enough to use it). */
  @Column({ type: 'varchar', length: 16 })
  prefix!: string;

  @Column({ name: 'secret_hash', type: 'char', length: 64 })
  secretHash!: string;

  @Column({ name: 'previous_secret_hash', type: 'char', length: 64, nullable: true })
  previousSecretHash!: string | null;

  @Column({ name: 'previous_valid_until', type: 'timestamptz', nullable: true })
  previousValidUntil!: Date | null;

  @Column({ name: 'allowed_features', type: 'varchar', length: 128, array: true })
  allowedFeatures!: string[];

  @Column({ name: 'spend_cap_amount', type: 'numeric', precision: 38, scale: 6, nullable: true, transformer: moneyColumn })
  spendCapAmount!: Money | null;

  @Column({ name: 'spend_cap_period', type: 'varchar', length: 8, nullable: true })
  spendCapPeriod!: SpendCapPeriod | null;

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt!: Date | null;

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt!: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
