import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsInt, IsString, Length, Matches, Max, Min, ValidateNested } from 'class-validator';
import { Optional } from '../../common/validation';
import { ID_MESSAGE, ID_PATTERN, ID_RULE } from '../../wallets/dto/wallet.dto';

export const MAX_TOKENS = 1_000_000_000;
export const MAX_USAGES = 100;

/** Shared documentation of a token count: a JSON integer, never a string. */
export const tokenCount = (description: string, example: number) =>
  ({ description: `${description} A JSON integer ("10" is refused).`, type: 'integer', minimum: 0, maximum: MAX_TOKENS, example }) as const;

export const aiModelProperty = {
  description: `A model with a price (else 422 unknown_model). ${ID_RULE}`,
  minLength: 1,
  maxLength: 128,
  example: 'gpt-4o',
} as const;

/** One model's token counts. Counts are JSON integers: "10" is refused, never coerced. */
export class UsageDto {
  @ApiProperty(aiModelProperty)
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  ai_model!: string;

  @ApiProperty(tokenCount('Input tokens, cached ones included.', 1200))
  @IsInt()
  @Min(0)
  @Max(MAX_TOKENS)
  input_tokens!: number;

  @ApiProperty(tokenCount('Output tokens.', 300))
  @IsInt()
  @Min(0)
  @Max(MAX_TOKENS)
  output_tokens!: number;

  /** The part of input_tokens served from cache (≤ input_tokens). */
  @ApiPropertyOptional({
    ...tokenCount('The part of input_tokens served from cache (≤ input_tokens); absent or null = 0.', 0),
    nullable: true,
  })
  // Nullable because partners already send null for "none" (it settled as 0 before null was
  // refused elsewhere): refusing it now would turn their settlements into settlement failures.
  @Optional({ nullable: true })
  @IsInt()
  @Min(0)
  @Max(MAX_TOKENS)
  cached_input_tokens?: number | null;
}

export class UsagesField {
  @ApiProperty({ description: 'What the work consumed, per model.', type: [UsageDto], minItems: 1, maxItems: MAX_USAGES })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_USAGES)
  @ValidateNested({ each: true })
  @Type(() => UsageDto)
  usages!: UsageDto[];
}

export class QuoteDto extends UsagesField {
  @ApiProperty({ description: 'The feature whose margin and fixed cost apply.', minLength: 1, maxLength: 128, example: 'ai_chat_v1' })
  @IsString()
  @Length(1, 128)
  feature_endpoint_id!: string;
}
