import { Column, CreateDateColumn, Entity, Index, PrimaryColumn, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';
import { scaledColumn } from '../common/decimal';

/** A model's prices in USD per million tokens and its margin, all in millionths (scaled bigints). */
abstract class ModelPriceColumns {
  @Column({ name: 'input_price_per_million', type: 'numeric', precision: 20, scale: 6, transformer: scaledColumn })
  inputPricePerMillion!: bigint;

  @Column({ name: 'output_price_per_million', type: 'numeric', precision: 20, scale: 6, transformer: scaledColumn })
  outputPricePerMillion!: bigint;

  @Column({ name: 'cached_input_price_per_million', type: 'numeric', precision: 20, scale: 6, nullable: true, transformer: scaledColumn })
  cachedInputPricePerMillion!: bigint | null;

  @Column({ name: 'profit_margin', type: 'numeric', precision: 12, scale: 6, nullable: true, transformer: scaledColumn })
  profitMargin!: bigint | null;
}

/** The current price of one model. */
@Entity('ai_models')
export class AiModel extends ModelPriceColumns {
  @PrimaryColumn({ name: 'ai_model', type: 'varchar', length: 128 })
  aiModel!: string;

  /** Bumped by every price change; the matching row of model_price_versions keeps the old figures. */
  @Column({ type: 'integer' })
  version!: number;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}

/** Every price a model has had (append-only), so any past charge can be explained. */
@Entity('model_price_versions')
@Index('model_price_versions_model_version', ['aiModel', 'version'], { unique: true })
export class ModelPriceVersion extends ModelPriceColumns {
  @PrimaryGeneratedColumn('identity', { type: 'bigint', generatedIdentity: 'ALWAYS' })
  id!: string;

  @Column({ name: 'ai_model', type: 'varchar', length: 128 })
  aiModel!: string;

  @Column({ type: 'integer' })
  version!: number;

  @CreateDateColumn({ name: 'valid_from', type: 'timestamptz' })
  validFrom!: Date;
}
