import { Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsInt, IsOptional, IsString, Length, Matches, Max, Min, ValidateNested } from 'class-validator';
import { ID_MESSAGE, ID_PATTERN } from '../../wallets/dto/wallet.dto';

export const MAX_TOKENS = 1_000_000_000;
export const MAX_USAGES = 100;

/** One model's token counts. Counts are JSON integers: "10" is refused, never coerced. */
export class UsageDto {
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  ai_model!: string;

  @IsInt()
  @Min(0)
  @Max(MAX_TOKENS)
  input_tokens!: number;

  @IsInt()
  @Min(0)
  @Max(MAX_TOKENS)
  output_tokens!: number;

  /** The part of input_tokens served from cache (≤ input_tokens). */
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(MAX_TOKENS)
  cached_input_tokens?: number;
}

export class UsagesField {
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_USAGES)
  @ValidateNested({ each: true })
  @Type(() => UsageDto)
  usages!: UsageDto[];
}

export class QuoteDto extends UsagesField {
  @IsString()
  @Length(1, 128)
  feature_endpoint_id!: string;
}
