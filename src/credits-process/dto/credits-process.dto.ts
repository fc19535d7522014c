import { IntersectionType } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches } from 'class-validator';
import { UsageDto, UsagesField } from '../../pricing/dto/usage.dto';
import { ID_MESSAGE, ID_PATTERN } from '../../wallets/dto/wallet.dto';

export class StartProcessDto {
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  user_id!: string;

  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  feature_endpoint_id!: string;
}

class SettlementTarget {
  @IsString()
  @Length(1, 128)
  user_id!: string;

  @IsString()
  @Length(1, 128)
  feature_endpoint_id!: string;

  /** From /start. Absent = a direct charge with no hold. */
  @IsOptional()
  @IsString()
  @Length(1, 64)
  usage_key?: string;

  /** Makes a direct charge safe to repeat (also read from the Idempotency-Key header). */
  @IsOptional()
  @IsString()
  @Length(1, 128)
  idempotency_key?: string;
}

/** Body of POST /end-multimodel and of `credits_process_end_multimodel_queue` messages. */
export class EndMultiModelDto extends IntersectionType(SettlementTarget, UsagesField) {}

/** Body of the legacy single-model POST /end and `credits_process_end_queue` messages: one usage, flat. */
export class EndSingleModelDto extends IntersectionType(SettlementTarget, UsageDto) {}

export class CancelDto {
  @IsString()
  @Length(1, 64)
  usage_key!: string;
}

/** The legacy form is one usage of the multi-model form. */
export function toMultiModel(dto: EndSingleModelDto): EndMultiModelDto {
  const { ai_model, input_tokens, output_tokens, cached_input_tokens, ...target } = dto;
  return Object.assign(new EndMultiModelDto(), {
    ...target,
    usages: [{ ai_model, input_tokens, output_tokens, ...(cached_input_tokens === undefined ? {} : { cached_input_tokens }) }],
  });
}
