import { Column, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';
import { scaledColumn } from '../common/decimal';

/** The single row of global pricing settings (id is always 1). */
@Entity('pricing_settings')
export class PricingSettingsRow {
  @PrimaryColumn({ type: 'smallint' })
  id!: number;

  @Column({ name: 'credits_per_usd', type: 'numeric', precision: 20, scale: 6, transformer: scaledColumn })
  creditsPerUsd!: bigint;

  @Column({ name: 'default_profit_margin', type: 'numeric', precision: 12, scale: 6, transformer: scaledColumn })
  defaultProfitMargin!: bigint;

  /** numeric(38,6)[]: read as the texts PostgreSQL prints ("10.000000"). */
  @Column({ name: 'default_low_balance_thresholds', type: 'numeric', array: true, precision: 38, scale: 6 })
  defaultLowBalanceThresholds!: string[];

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
