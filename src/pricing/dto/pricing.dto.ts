import { OmitType, PartialType, ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayUnique, IsArray, IsString, Length, Matches } from 'class-validator';
import { Optional } from '../../common/validation';
import { IsMoney } from '../../common/money.validator';
import { ApiMoneyField } from '../../common/openapi';
import { MAX_MARGIN } from '../../features/dto/feature.dto';
import { ID_MESSAGE, ID_PATTERN, ID_RULE } from '../../wallets/dto/wallet.dto';

/** A million USD per million tokens: far above any real price, low enough to catch typos. */
export const MAX_PRICE = 1_000_000n * 1_000_000n;
export const MAX_CREDITS_PER_USD = 1_000_000_000n * 1_000_000n;

export class CreateModelPriceDto {
  @ApiProperty({ description: `The model name usages refer to. ${ID_RULE}`, minLength: 1, maxLength: 128, example: 'gpt-4o' })
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  ai_model!: string;

  @ApiMoneyField({ description: 'USD per million input tokens (at most 1,000,000).', example: '2.500000' })
  @IsMoney({ max: MAX_PRICE })
  input_price_per_million!: string | number;

  @ApiMoneyField({ description: 'USD per million output tokens (at most 1,000,000).', example: '10.000000' })
  @IsMoney({ max: MAX_PRICE })
  output_price_per_million!: string | number;

  /** Defaults to the input price; null removes it. */
  @ApiMoneyField({
    description: 'USD per million cached input tokens; absent or null = the input price.',
    example: '1.250000',
    required: false,
    nullable: true,
  })
  @Optional({ nullable: true })
  @IsMoney({ max: MAX_PRICE })
  cached_input_price_per_million?: string | number | null;

  /** Null removes the model's own margin (the default applies). */
  @ApiMoneyField({
    description: "The model's margin as a fraction (at most 100); null = the default margin applies.",
    example: '0.100000',
    required: false,
    nullable: true,
  })
  @Optional({ nullable: true })
  @IsMoney({ max: MAX_MARGIN })
  profit_margin?: string | number | null;
}

/** Absent fields stay as they are; null clears the nullable ones and is refused for the others. */
export class UpdateModelPriceDto extends PartialType(OmitType(CreateModelPriceDto, ['ai_model'] as const), { skipNullProperties: false }) {}

export class PricingSettingsDto {
  @ApiMoneyField({ description: 'Credits per USD of cost; not zero (default "100").', example: '100.000000', required: false })
  @Optional()
  @IsMoney({ max: MAX_CREDITS_PER_USD, nonZero: true })
  credits_per_usd?: string | number;

  @ApiMoneyField({
    description: 'Margin used when neither the feature nor the model sets one (default "0").',
    example: '0.000000',
    required: false,
  })
  @Optional()
  @IsMoney({ max: MAX_MARGIN })
  default_profit_margin?: string | number;

  @ApiPropertyOptional({
    description: 'Low-balance thresholds of every wallet that has none of its own (API.md §10): at most 5; default [].',
    type: [String],
    maxItems: 5,
    example: ['10', '1'],
  })
  @Optional()
  @IsArray()
  @ArrayMaxSize(5)
  @ArrayUnique()
  @IsMoney({ nonZero: true }, { each: true })
  default_low_balance_thresholds?: (string | number)[];
}
