import { ApiProperty, ApiPropertyOptional, IntersectionType } from '@nestjs/swagger';
import { IsString, Length, Matches } from 'class-validator';
import { Optional, registerFastBodyParser } from '../../common/validation';
import { UsageDto, UsagesField } from '../../pricing/dto/usage.dto';
import { ID_MESSAGE, ID_PATTERN, ID_RULE } from '../../wallets/dto/wallet.dto';
import { compileFastParser } from '../../common/fast-parse';

const USAGE_KEY_EXAMPLE = '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10';

export class StartProcessDto {
  @ApiProperty({ description: `The user whose wallet pays. ${ID_RULE}`, minLength: 1, maxLength: 128, example: 'u1' })
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  user_id!: string;

  @ApiProperty({ description: `The feature about to run. ${ID_RULE}`, minLength: 1, maxLength: 128, example: 'ai_chat_v1' })
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  feature_endpoint_id!: string;
}

class SettlementTarget {
  @ApiProperty({
    description: "The user whose wallet pays (must be the hold's user when usage_key is given).",
    minLength: 1,
    maxLength: 128,
    example: 'u1',
  })
  @IsString()
  @Length(1, 128)
  user_id!: string;

  @ApiProperty({
    description: "The feature that ran (must be the hold's feature when usage_key is given).",
    minLength: 1,
    maxLength: 128,
    example: 'ai_chat_v1',
  })
  @IsString()
  @Length(1, 128)
  feature_endpoint_id!: string;

  /** From /start. Absent = a direct charge with no hold. */
  @ApiPropertyOptional({
    description: 'From /start: settles that hold. Absent = a direct charge with no hold.',
    minLength: 1,
    maxLength: 64,
    example: USAGE_KEY_EXAMPLE,
  })
  @Optional()
  @IsString()
  @Length(1, 64)
  usage_key?: string;

  /** Makes a direct charge safe to repeat (also read from the Idempotency-Key header). */
  @ApiPropertyOptional({
    description: 'Makes a direct charge (no usage_key) safe to repeat; the Idempotency-Key header is read when this is absent.',
    minLength: 1,
    maxLength: 128,
    example: 'job-42',
  })
  // null refused: it would hide the Idempotency-Key header and make a retry charge twice.
  @Optional()
  @IsString()
  @Length(1, 128)
  idempotency_key?: string;
}

/** Body of POST /end-multimodel and of `credits_process_end_multimodel_queue` messages. */
export class EndMultiModelDto extends IntersectionType(SettlementTarget, UsagesField) {}

/** Body of the legacy single-model POST /end and `credits_process_end_queue` messages: one usage, flat. */
export class EndSingleModelDto extends IntersectionType(SettlementTarget, UsageDto) {}

// The hot routes' bodies skip class-validator when the parser generated from the decorators above
// proves them valid (common/fast-parse.ts): a rule is written once, here. bench/validation.ts,
// through the global pipe, bodies per CPU-second (node 20, shared 2-core machine, December 2026):
// /end-multimodel with 1 usage 1.24 M generated vs 0.9–1.5 M for the hand checkers it replaced vs
// 42 k for class-validator alone (≈ 0.8 µs vs 24 µs a body); /start 2.9–3.9 M vs 3.7–5.4 M vs 148 k;
// 3 usages 0.82–0.88 M vs 1.16–1.19 M vs 23 k. The generated parser costs ≈ 0.1–0.4 µs more than
// the hand checkers did, a fraction of a percent of a request; class-validator costs 30–40× more.
registerFastBodyParser(StartProcessDto, compileFastParser(StartProcessDto));
registerFastBodyParser(EndMultiModelDto, compileFastParser(EndMultiModelDto));
registerFastBodyParser(EndSingleModelDto, compileFastParser(EndSingleModelDto));

export class CancelDto {
  @ApiProperty({ description: 'The hold to release (from /start).', minLength: 1, maxLength: 64, example: USAGE_KEY_EXAMPLE })
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
