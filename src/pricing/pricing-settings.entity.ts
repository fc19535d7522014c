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

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
