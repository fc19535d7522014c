import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn, VersionColumn } from 'typeorm';
import { Money, moneyColumn } from '../common/money';

export type WalletStatus = 'active' | 'suspended';

/**
 * A user's credits. `balance` changes only together with a ledger entry, and `held` only with a
 * hold's transition, both by the ledger (src/ledger/); `held` is the sum of the wallet's live
 * holds. Available credits = balance − held.
 */
@Entity('wallets')
export class Wallet {
  @PrimaryColumn({ name: 'user_id', type: 'varchar', length: 128 })
  userId!: string;

  @Column({ type: 'varchar', length: 64 })
  plan!: string;

  @Column({ type: 'varchar', length: 16 })
  status!: WalletStatus;

  @Column({ type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  balance!: Money;

  @Column({ type: 'numeric', precision: 38, scale: 6, transformer: moneyColumn })
  held!: Money;

  @VersionColumn()
  version!: number;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
