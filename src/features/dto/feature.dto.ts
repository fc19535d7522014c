import { ArrayMaxSize, IsArray, IsBoolean, IsInt, IsOptional, IsString, Length, Matches, Max, Min } from 'class-validator';
import { OmitType, PartialType } from '@nestjs/swagger';
import { IsMoney } from '../../common/money.validator';
import { IsOptionalNotNull } from '../../common/validation';
import { ID_MESSAGE, ID_PATTERN } from '../../wallets/dto/wallet.dto';

/** Margins are fractions: "0.2" = 20 %. At most 100 (= 10,000 %). */
export const MAX_MARGIN = 100n * 1_000_000n;
export const MAX_TTL_SECONDS = 604_800;

export class CreateFeatureDto {
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  feature_endpoint_id!: string;

  @IsString()
  @Length(1, 200)
  name!: string;

  @IsMoney()
  min_holding_credits!: string | number;

  /** Absent or null: the service default (HOLD_TTL_SECONDS). */
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(MAX_TTL_SECONDS)
  hold_ttl_seconds?: number | null;

  /** Overrides the model's and the default margin; null removes the override. */
  @IsOptional()
  @IsMoney({ max: MAX_MARGIN })
  profit_margin?: string | number | null;

  /** Credits added to every settlement of this feature. */
  @IsOptional()
  @IsMoney()
  fixed_cost?: string | number | null;

  /** Plans that may use the feature; empty = every plan. */
  @IsOptionalNotNull()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @Length(1, 64, { each: true })
  allowed_plans?: string[];

  @IsOptionalNotNull()
  @IsBoolean()
  active?: boolean;
}

/** Absent fields stay as they are; null clears the nullable ones and is refused for the others. */
export class UpdateFeatureDto extends PartialType(OmitType(CreateFeatureDto, ['feature_endpoint_id'] as const), { skipNullProperties: false }) {}
