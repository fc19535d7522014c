import { ApiProperty, ApiPropertyOptional, IntersectionType } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsBoolean, IsInt, IsString, Length, Matches, Max, Min, ValidateNested } from 'class-validator';
import { FieldError, validationError } from '../../common/domain-error';
import { IsMoney } from '../../common/money.validator';
import { ApiMoneyField } from '../../common/openapi';
import { Optional, registerFastBodyParser } from '../../common/validation';
import { MAX_TTL_SECONDS } from '../../features/dto/feature.dto';
import { UsageDto, UsagesField } from '../../pricing/dto/usage.dto';
import { ID_MESSAGE, ID_PATTERN, ID_RULE } from '../../wallets/dto/wallet.dto';
import { compileFastParser } from '../../common/fast-parse';

const USAGE_KEY_EXAMPLE = '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10';

/** What the work is expected to consume: /start holds max(min_holding_credits, its quote). */
export class EstimateDto extends UsagesField {}

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

  /** Absent = the hold is the feature's min_holding_credits (v1). */
  @ApiPropertyOptional({
    description:
      "What the work is expected to consume: the hold is then max(min_holding_credits, the quote of these usages at today's prices). " +
      'An ai_model without a price: 422 unknown_model.',
    type: () => EstimateDto,
    example: { usages: [{ ai_model: 'gpt-4o', input_tokens: 200000, output_tokens: 50000 }] },
  })
  @Optional()
  @ValidateNested()
  @Type(() => EstimateDto)
  estimate?: EstimateDto;
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

  /** false = an increment: charged now, the hold stays open. Absent = true (closes the usage, as in v1). */
  @ApiPropertyOptional({
    description:
      'false = an increment of a long-running usage: charged now, the hold stays open (amount and expiry unchanged); ' +
      'needs usage_key and idempotency_key, and each (usage_key, idempotency_key) charges once. Absent or true closes the usage.',
    default: true,
    example: true,
  })
  @Optional()
  @IsBoolean()
  final?: boolean;
}

/**
 * The rules between fields of a settlement, checked after either parser (the generated fast one or
 * class-validator) and after the Idempotency-Key header was read, so HTTP and both queues refuse the
 * same bodies: an increment (final: false) needs the hold it keeps open and the key that makes it
 * charge once.
 */
export function settlementRuleErrors(dto: Pick<SettlementTarget, 'final' | 'usage_key' | 'idempotency_key'>): FieldError[] {
  if (dto.final !== false) return [];
  const errors: FieldError[] = [];
  if (dto.usage_key === undefined)
    errors.push({ field: 'usage_key', message: 'is required when final is false (an increment settles part of a hold)' });
  if (dto.idempotency_key === undefined)
    errors.push({ field: 'idempotency_key', message: 'is required when final is false (it makes each increment charge once)' });
  return errors;
}

/** Throws `400 validation_error` when `settlementRuleErrors` finds anything. */
export function assertSettlementRules<T extends Pick<SettlementTarget, 'final' | 'usage_key' | 'idempotency_key'>>(dto: T): T {
  const errors = settlementRuleErrors(dto);
  if (errors.length > 0) throw validationError(errors);
  return dto;
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

/** Body of POST /extend: a new expiry for a live hold, and optionally more credits held. */
export class ExtendDto {
  @ApiProperty({ description: 'The live hold to extend (from /start).', minLength: 1, maxLength: 64, example: USAGE_KEY_EXAMPLE })
  @IsString()
  @Length(1, 64)
  usage_key!: string;

  @ApiPropertyOptional({
    description: "The hold then expires this many seconds from now; absent = the feature's hold_ttl_seconds.",
    type: 'integer',
    minimum: 1,
    maximum: MAX_TTL_SECONDS,
    example: 900,
  })
  @Optional()
  @IsInt()
  @Min(1)
  @Max(MAX_TTL_SECONDS)
  ttl_seconds?: number;

  @ApiMoneyField({
    description: 'Credits added to the hold, checked against available credits like /start (402 insufficient_credits, nothing changed).',
    example: '5.000000',
    required: false,
  })
  @Optional()
  @IsMoney()
  additional_hold?: string | number;
}

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

/** Refund idempotency keys are namespaced per usage in the ledger (`refund:<usage_key>:<key>`, ≤ 128). */
export const MAX_REFUND_IDEMPOTENCY_KEY = 80;

export class RefundDto {
  @ApiMoneyField({
    description: 'Credits to give back; positive, not zero, at most what is left to refund. Absent: all that is left.',
    example: '0.500000',
    required: false,
  })
  @Optional()
  @IsMoney({ nonZero: true })
  amount?: string | number;

  @ApiProperty({ description: 'Why: kept on the refund ledger entry.', minLength: 1, maxLength: 500, example: 'generation failed' })
  @IsString()
  @Length(1, 500)
  reason!: string;

  @ApiPropertyOptional({
    description: 'Makes the refund safe to repeat: a second refund of this usage with this key gives nothing more (`already_refunded`).',
    minLength: 1,
    maxLength: MAX_REFUND_IDEMPOTENCY_KEY,
    example: 'ticket-981',
  })
  @Optional()
  @IsString()
  @Length(1, MAX_REFUND_IDEMPOTENCY_KEY)
  idempotency_key?: string;
}
