import { ArrayMaxSize, IsArray, IsBoolean, IsInt, IsString, Length, Matches, Max, Min } from 'class-validator';
import { Optional } from '../../common/validation';
import { ApiProperty, ApiPropertyOptional, OmitType, PartialType } from '@nestjs/swagger';
import { IsMoney } from '../../common/money.validator';
import { ApiMoneyField } from '../../common/openapi';
import { ID_MESSAGE, ID_PATTERN, ID_RULE } from '../../wallets/dto/wallet.dto';

/** Margins are fractions: "0.2" = 20 %. At most 100 (= 10,000 %). */
export const MAX_MARGIN = 100n * 1_000_000n;
export const MAX_TTL_SECONDS = 604_800;

export class CreateFeatureDto {
  @ApiProperty({
    description: `The feature's id, as partners send it to /start. ${ID_RULE}`,
    minLength: 1,
    maxLength: 128,
    example: 'ai_chat_v1',
  })
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  feature_endpoint_id!: string;

  @ApiProperty({ description: 'Name for people.', minLength: 1, maxLength: 200, example: 'AI chat' })
  @IsString()
  @Length(1, 200)
  name!: string;

  @ApiMoneyField({ description: 'The hold /start places; a wallet with fewer available credits is refused (402).', example: '5.000000' })
  @IsMoney()
  min_holding_credits!: string | number;

  /** Absent or null: the service default (HOLD_TTL_SECONDS). */
  @ApiPropertyOptional({
    description: 'Lifetime of a hold in seconds; absent or null = the service default (HOLD_TTL_SECONDS).',
    type: 'integer',
    minimum: 1,
    maximum: MAX_TTL_SECONDS,
    nullable: true,
    example: 900,
  })
  @Optional({ nullable: true })
  @IsInt()
  @Min(1)
  @Max(MAX_TTL_SECONDS)
  hold_ttl_seconds?: number | null;

  /** Overrides the model's and the default margin; null removes the override. */
  @ApiMoneyField({
    description: 'Profit margin as a fraction ("0.2" = 20 %, at most 100); overrides the model and default margins. Null removes it.',
    example: '0.200000',
    required: false,
    nullable: true,
  })
  @Optional({ nullable: true })
  @IsMoney({ max: MAX_MARGIN })
  profit_margin?: string | number | null;

  /** Credits added to every settlement of this feature. */
  @ApiMoneyField({
    description: 'Credits added to every settlement of this feature. Null removes it.',
    example: '0.010000',
    required: false,
    nullable: true,
  })
  @Optional({ nullable: true })
  @IsMoney()
  fixed_cost?: string | number | null;

  /** Plans that may use the feature; empty = every plan. */
  @ApiPropertyOptional({
    description: 'Plans that may use the feature; empty (the default) = every plan.',
    type: 'string',
    isArray: true,
    maxItems: 100,
    items: { type: 'string', minLength: 1, maxLength: 64 },
    example: ['pro', 'enterprise'],
  })
  @Optional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @Length(1, 64, { each: true })
  allowed_plans?: string[];

  @ApiPropertyOptional({
    description: 'An inactive feature is refused by /start (403 feature_inactive). Default true.',
    default: true,
    example: true,
  })
  @Optional()
  @IsBoolean()
  active?: boolean;

  @ApiPropertyOptional({
    description:
      'True: every settlement of a hold of this feature is priced with the model prices, margin and rate in force when the hold ' +
      'was placed (the hold keeps that snapshot). False (the default): prices at settlement, as in v1.',
    default: false,
    example: false,
  })
  @Optional()
  @IsBoolean()
  price_lock?: boolean;
}

/** Absent fields stay as they are; null clears the nullable ones and is refused for the others. */
export class UpdateFeatureDto extends PartialType(OmitType(CreateFeatureDto, ['feature_endpoint_id'] as const), {
  skipNullProperties: false,
}) {}
