import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';
import { scaledColumn } from '../common/decimal';
import { Money, moneyColumn } from '../common/money';

/** A paid feature partners call `/start` for: what it holds, how long, who may use it. */
@Entity('features')
export class Feature {
  @PrimaryColumn({ name: 'feature_endpoint_id', type: 'varchar', length: 128 })
  featureEndpointId!: string;

  @Column({ type: 'varchar', length: 200 })
  name!: string;

  @Column({ name: 'min_holding_credits', type: 'numeric', precision: 24, scale: 6, transformer: moneyColumn })
  minHoldingCredits!: Money;

  /** Null = the service default (HOLD_TTL_SECONDS). */
  @Column({ name: 'hold_ttl_seconds', type: 'integer', nullable: true })
  holdTtlSeconds!: number | null;

  /** Overrides the model's and the default margin when set (millionths). */
  @Column({ name: 'profit_margin', type: 'numeric', precision: 12, scale: 6, nullable: true, transformer: scaledColumn })
  profitMargin!: bigint | null;

  @Column({ name: 'fixed_cost', type: 'numeric', precision: 24, scale: 6, nullable: true, transformer: moneyColumn })
  fixedCost!: Money | null;

  /** Empty = every plan. */
  @Column({ name: 'allowed_plans', type: 'varchar', length: 64, array: true })
  allowedPlans!: string[];

  @Column({ type: 'boolean' })
  active!: boolean;

  /** §13: settle every usage of a hold at the prices in force when the hold was placed. */
  @Column({ name: 'price_lock', type: 'boolean', default: false })
  priceLock!: boolean;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
