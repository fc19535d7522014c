import { OmitType, PartialType } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches, ValidateIf } from 'class-validator';
import { IsMoney } from '../../common/money.validator';
import { MAX_MARGIN } from '../../features/dto/feature.dto';
import { ID_MESSAGE, ID_PATTERN } from '../../wallets/dto/wallet.dto';

/** A million USD per million tokens: far above any real price, low enough to catch typos. */
export const MAX_PRICE = 1_000_000n * 1_000_000n;
export const MAX_CREDITS_PER_USD = 1_000_000_000n * 1_000_000n;

export class CreateModelPriceDto {
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  ai_model!: string;

  @IsMoney({ max: MAX_PRICE })
  input_price_per_million!: string | number;

  @IsMoney({ max: MAX_PRICE })
  output_price_per_million!: string | number;

  /** Defaults to the input price; null removes it. */
  @IsOptional()
  @IsMoney({ max: MAX_PRICE })
  cached_input_price_per_million?: string | number | null;

  /** Null removes the model's own margin (the default applies). */
  @IsOptional()
  @IsMoney({ max: MAX_MARGIN })
  profit_margin?: string | number | null;
}

/** Absent fields stay as they are; null clears the nullable ones and is refused for the others. */
export class UpdateModelPriceDto extends PartialType(OmitType(CreateModelPriceDto, ['ai_model'] as const), { skipNullProperties: false }) {}

export class PricingSettingsDto {
  @ValidateIf((_, value) => value !== undefined)
  @IsMoney({ max: MAX_CREDITS_PER_USD, nonZero: true })
  credits_per_usd?: string | number;

  @ValidateIf((_, value) => value !== undefined)
  @IsMoney({ max: MAX_MARGIN })
  default_profit_margin?: string | number;
}
