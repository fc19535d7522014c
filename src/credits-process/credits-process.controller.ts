import { Body, Controller, Get, Headers, HttpCode, Param, Post } from '@nestjs/common';
import { ApiHeader, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { type Actor, CurrentActor } from '../audit/actor';
import { type Caller, CurrentCaller, ServiceScope } from '../common/api-key.guard';
import { validationError } from '../common/domain-error';
import { bindLogFields } from '../common/logging';
import { API_ROUTE_ERRORS, ApiErrors, ApiSuccess, BODY_ERRORS } from '../common/openapi';
import {
  assertSettlementRules,
  CancelDto,
  EndMultiModelDto,
  EndSingleModelDto,
  ExtendDto,
  RefundDto,
  StartProcessDto,
  toMultiModel,
} from './dto/credits-process.dto';
import {
  CANCEL_EXAMPLE,
  CancelResponseDoc,
  EXTEND_EXAMPLE,
  ExtendResponseDoc,
  REFUND_EXAMPLE,
  RefundResponseDoc,
  SETTLEMENT_EXAMPLE,
  SettlementResponseDoc,
  START_EXAMPLE,
  StartResponseDoc,
  USAGE_EXAMPLE,
  UsageResponseDoc,
} from './dto/credits-process-responses.dto';
import { CreditsProcessService, SettlementResult } from './credits-process.service';

/** Same limit as the body's idempotency_key: a longer key is refused, never cut (two keys would collide). */
const MAX_IDEMPOTENCY_KEY = 128;

// Named as the handler reads it (lower case), so it replaces the parameter Swagger infers from
// @Headers() instead of adding a second, "required" one.
const IDEMPOTENCY_HEADER = ApiHeader({
  name: 'idempotency-key',
  required: false,
  description: "Same as the body's idempotency_key (used when the body has none); at most 128 characters.",
  schema: { type: 'string', maxLength: MAX_IDEMPOTENCY_KEY, example: 'job-42' },
});

const SETTLEMENT_ERRORS = [
  ...API_ROUTE_ERRORS,
  ...BODY_ERRORS,
  'usage_key_not_found',
  'feature_not_found',
  'wallet_not_found',
  'usage_key_mismatch',
  'conflict',
  'unknown_model',
  'feature_not_allowed_for_key',
] as const;

const SETTLEMENT_SUCCESS = {
  description:
    'Settled: the hold released and the actual cost charged in one transaction. A repeat of the same usage_key (or ' +
    'idempotency_key) charges nothing and answers the first figures with `status: already_settled`.',
  type: SettlementResponseDoc,
  example: SETTLEMENT_EXAMPLE,
};

/**
 * HTTP adapter of the credits process: maps DTOs, calls the service, nothing else. The ids of
 * the authorization are bound to the request's log fields, so every line logged about it (the
 * service's, and the "request completed" line) carries user_id and usage_key.
 */
@ApiTags('credits-process')
@ServiceScope()
@Controller('api/credits-process')
export class CreditsProcessController {
  constructor(private readonly creditsProcess: CreditsProcessService) {}

  @Post('start')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Check access and place a hold',
    description:
      'Checks, in order: wallet exists, wallet active, feature exists and is active, plan may use it, available credits ≥ ' +
      "the feature's min_holding_credits. On success holds min_holding_credits for hold_ttl_seconds.",
  })
  @ApiSuccess({ description: 'Accessible: the hold is placed.', type: StartResponseDoc, example: START_EXAMPLE })
  @ApiErrors(
    ...API_ROUTE_ERRORS,
    ...BODY_ERRORS,
    'wallet_not_found',
    'wallet_suspended',
    'feature_not_found',
    'feature_inactive',
    'feature_not_permitted',
    'insufficient_credits',
    'feature_not_allowed_for_key',
  )
  async start(@Body() dto: StartProcessDto, @CurrentCaller() caller: Caller) {
    bindLogFields({ user_id: dto.user_id, feature_endpoint_id: dto.feature_endpoint_id });
    const result = await this.creditsProcess.start(dto.user_id, dto.feature_endpoint_id, caller, dto.estimate);
    bindLogFields({ usage_key: result.usage_key });
    return result;
  }

  @Post('end-multimodel')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Settle an authorization (several models)',
    description:
      'With usage_key: releases the hold and charges the actual cost (an expired hold is still settled, `late: true`). ' +
      'Without: a direct charge, made safe to repeat by idempotency_key. Never fails for lack of credits.',
  })
  @IDEMPOTENCY_HEADER
  @ApiSuccess(SETTLEMENT_SUCCESS)
  @ApiErrors(...SETTLEMENT_ERRORS)
  endMultiModel(@Body() dto: EndMultiModelDto, @CurrentCaller() caller: Caller, @Headers('idempotency-key') idempotencyKey?: string) {
    return this.settle(assertSettlementRules(withHeaderKey(dto, idempotencyKey)), caller);
  }

  @Post('end')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Settle an authorization (legacy single-model form)',
    description: 'One usage of /end-multimodel, flattened into the body. Same rules and answer.',
  })
  @IDEMPOTENCY_HEADER
  @ApiSuccess(SETTLEMENT_SUCCESS)
  @ApiErrors(...SETTLEMENT_ERRORS)
  end(@Body() dto: EndSingleModelDto, @CurrentCaller() caller: Caller, @Headers('idempotency-key') idempotencyKey?: string) {
    return this.settle(assertSettlementRules(withHeaderKey(toMultiModel(dto), idempotencyKey)), caller);
  }

  @Post('extend')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Extend a live hold',
    description:
      'A new expiry (now + ttl_seconds, default the feature’s), and with additional_hold a bigger hold, checked against ' +
      'available credits (and the key’s spend cap) like /start; nothing changes when refused. A hold past its expiry is never extended.',
  })
  @ApiSuccess({ description: 'Extended.', type: ExtendResponseDoc, example: EXTEND_EXAMPLE })
  @ApiErrors(
    ...API_ROUTE_ERRORS,
    ...BODY_ERRORS,
    'usage_key_not_found',
    'already_settled',
    'conflict',
    'hold_expired',
    'insufficient_credits',
    'spend_cap_exceeded',
    'feature_not_allowed_for_key',
  )
  extend(@Body() dto: ExtendDto, @CurrentCaller() caller: Caller) {
    bindLogFields({ usage_key: dto.usage_key.toLowerCase() });
    return this.creditsProcess.extend(dto, caller);
  }

  @Post('cancel')
  @HttpCode(200)
  @ApiOperation({ summary: 'Release a hold without a charge', description: 'Repeating it is harmless; a settled key is refused.' })
  @ApiSuccess({ description: 'Cancelled.', type: CancelResponseDoc, example: CANCEL_EXAMPLE })
  @ApiErrors(...API_ROUTE_ERRORS, ...BODY_ERRORS, 'usage_key_not_found', 'already_settled', 'feature_not_allowed_for_key')
  cancel(@Body() dto: CancelDto, @CurrentCaller() caller: Caller) {
    bindLogFields({ usage_key: dto.usage_key.toLowerCase() });
    return this.creditsProcess.cancel(dto.usage_key, caller);
  }

  @Get('usages/:usage_key')
  @ApiOperation({
    summary: "An authorization's whole story",
    description: 'Status, hold, expiry, settlement figures and the ledger entries it wrote.',
  })
  @ApiParam({ name: 'usage_key', description: 'From /start or a settlement answer.', example: START_EXAMPLE.usage_key })
  @ApiSuccess({ description: 'The authorization.', type: UsageResponseDoc, example: USAGE_EXAMPLE })
  @ApiErrors(...API_ROUTE_ERRORS, 'usage_key_not_found', 'feature_not_allowed_for_key')
  usage(@Param('usage_key') usageKey: string, @CurrentCaller() caller: Caller) {
    bindLogFields({ usage_key: usageKey.toLowerCase() });
    return this.creditsProcess.usage(usageKey, caller);
  }

  @Post('usages/:usage_key/refund')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Refund a usage',
    description:
      'Gives back all (no amount) or part of what the usage was charged, to the grants its charge drew from (last drawn ' +
      'first; debt it created is cancelled first; a grant since expired or voided takes its part and expires it again). ' +
      'A repeated idempotency_key gives nothing more and answers `already_refunded`.',
  })
  @ApiParam({ name: 'usage_key', description: 'The settled usage.', example: START_EXAMPLE.usage_key })
  @ApiSuccess({ description: 'Refunded (or already refunded).', type: RefundResponseDoc, example: REFUND_EXAMPLE })
  @ApiErrors(
    ...API_ROUTE_ERRORS,
    ...BODY_ERRORS,
    'usage_key_not_found',
    'not_settled',
    'refund_exceeds_charge',
    'conflict',
    'feature_not_allowed_for_key',
  )
  refund(@Param('usage_key') usageKey: string, @Body() dto: RefundDto, @CurrentCaller() caller: Caller, @CurrentActor() actor: Actor) {
    bindLogFields({ usage_key: usageKey.toLowerCase() });
    return this.creditsProcess.refund(usageKey, dto, caller, actor);
  }

  private async settle(dto: EndMultiModelDto, caller: Caller): Promise<SettlementResult> {
    // Lower-cased as the service stores and logs it (usage keys are UUIDs).
    const usageKey = dto.usage_key?.toLowerCase();
    bindLogFields({ user_id: dto.user_id, feature_endpoint_id: dto.feature_endpoint_id, ...(usageKey ? { usage_key: usageKey } : {}) });
    const result = await this.creditsProcess.settle(dto, 'http', caller);
    // A direct charge gets its usage_key only now.
    bindLogFields({ ...(usageKey ? {} : { usage_key: result.usage_key }), outcome: result.status });
    return result;
  }
}

function withHeaderKey(dto: EndMultiModelDto, header: string | undefined): EndMultiModelDto {
  if (dto.idempotency_key !== undefined || !header) return dto;
  if (header.length > MAX_IDEMPOTENCY_KEY) {
    throw validationError([{ field: 'Idempotency-Key', message: `must be at most ${MAX_IDEMPOTENCY_KEY} characters` }]);
  }
  return { ...dto, idempotency_key: header };
}
