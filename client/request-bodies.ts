import { randomUUID } from 'node:crypto';
import { CreditsError } from './credits.errors';
import type {
  EndBody,
  EndMultiModelBody,
  EndMultiModelRequest,
  EndRequest,
  FieldError,
  SettlementTargetBody,
  Usage,
  UsageBody,
} from './credits.types';

/** The contract's limits (API.md §2, §4): checked before sending, so a queued message can never be refused as invalid. */
export const MAX_TOKENS = 1_000_000_000;
export const MAX_USAGES = 100;
const ID_PATTERN = /^[^\s\p{C}][^\p{C}]*$/u;

/**
 * The body of POST /end-multimodel and of a credits_process_end_multimodel_queue message.
 * A direct charge (no usageKey) without an idempotencyKey gets a generated one here, before the
 * first attempt, so every retry and redelivery carries the same key and charges once.
 */
export function endMultiModelBody(request: EndMultiModelRequest, newKey: () => string = randomUUID): EndMultiModelBody {
  const errors: FieldError[] = [];
  const target = targetBody(request, errors, newKey);
  if (!Array.isArray(request.usages) || request.usages.length < 1 || request.usages.length > MAX_USAGES) {
    errors.push({ field: 'usages', message: `must hold 1 to ${MAX_USAGES} usages` });
  }
  const usages = Array.isArray(request.usages) ? request.usages.map((u, i) => usageBody(u, `usages.${i}.`, errors)) : [];
  throwIfAny(errors);
  return { ...target, usages };
}

/** The body of the legacy POST /end and of a credits_process_end_queue message. */
export function endBody(request: EndRequest, newKey: () => string = randomUUID): EndBody {
  const errors: FieldError[] = [];
  const target = targetBody(request, errors, newKey);
  const usage = usageBody(request, '', errors);
  throwIfAny(errors);
  return { ...target, ...usage };
}

/** The usages of POST /api/pricing/quote. */
export function usageBodies(usages: Usage[]): UsageBody[] {
  const errors: FieldError[] = [];
  if (!Array.isArray(usages) || usages.length < 1 || usages.length > MAX_USAGES) {
    errors.push({ field: 'usages', message: `must hold 1 to ${MAX_USAGES} usages` });
  }
  const bodies = Array.isArray(usages) ? usages.map((u, i) => usageBody(u, `usages.${i}.`, errors)) : [];
  throwIfAny(errors);
  return bodies;
}

function targetBody(request: EndMultiModelRequest | EndRequest, errors: FieldError[], newKey: () => string): SettlementTargetBody {
  checkString(request.userId, 'user_id', 128, errors);
  checkString(request.featureEndpointId, 'feature_endpoint_id', 128, errors);
  if (request.usageKey !== undefined) checkString(request.usageKey, 'usage_key', 64, errors);
  if (request.idempotencyKey !== undefined) checkString(request.idempotencyKey, 'idempotency_key', 128, errors);
  if (request.final !== undefined && typeof request.final !== 'boolean') errors.push({ field: 'final', message: 'must be a boolean' });
  if (request.final === false) {
    // The service's rule (API.md §13), checked here so a queued increment can never become a settlement failure.
    if (request.usageKey === undefined) errors.push({ field: 'usage_key', message: 'is required when final is false' });
    if (request.idempotencyKey === undefined) errors.push({ field: 'idempotency_key', message: 'is required when final is false' });
  }
  const body: SettlementTargetBody = { user_id: request.userId, feature_endpoint_id: request.featureEndpointId };
  if (request.usageKey !== undefined) body.usage_key = request.usageKey;
  const idempotencyKey = request.idempotencyKey ?? (request.usageKey === undefined ? newKey() : undefined);
  if (idempotencyKey !== undefined) body.idempotency_key = idempotencyKey;
  if (request.final !== undefined) body.final = request.final;
  return body;
}

function usageBody(usage: Usage, prefix: string, errors: FieldError[]): UsageBody {
  if (!usage || typeof usage !== 'object') {
    errors.push({ field: prefix ? prefix.slice(0, -1) : 'usage', message: 'must be an object' });
    return { ai_model: '', input_tokens: 0, output_tokens: 0 };
  }
  if (checkString(usage.aiModel, `${prefix}ai_model`, 128, errors) && !ID_PATTERN.test(usage.aiModel)) {
    errors.push({ field: `${prefix}ai_model`, message: 'must not start with a space nor contain control characters' });
  }
  checkTokens(usage.inputTokens, `${prefix}input_tokens`, errors);
  checkTokens(usage.outputTokens, `${prefix}output_tokens`, errors);
  const body: UsageBody = { ai_model: usage.aiModel, input_tokens: usage.inputTokens, output_tokens: usage.outputTokens };
  if (usage.cachedInputTokens !== undefined) {
    if (checkTokens(usage.cachedInputTokens, `${prefix}cached_input_tokens`, errors) && usage.cachedInputTokens > usage.inputTokens) {
      errors.push({ field: `${prefix}cached_input_tokens`, message: 'must not exceed input_tokens' });
    }
    body.cached_input_tokens = usage.cachedInputTokens;
  }
  return body;
}

function checkString(value: unknown, field: string, max: number, errors: FieldError[]): value is string {
  if (typeof value !== 'string' || value.length < 1 || value.length > max) {
    errors.push({ field, message: `must be a string of 1 to ${max} characters` });
    return false;
  }
  return true;
}

function checkTokens(value: unknown, field: string, errors: FieldError[]): value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_TOKENS) {
    errors.push({ field, message: `must be an integer from 0 to ${MAX_TOKENS}` });
    return false;
  }
  return true;
}

function throwIfAny(errors: FieldError[]): void {
  const first = errors[0];
  if (!first) return;
  throw new CreditsError({
    status: 'validation_error',
    message: `${first.field} ${first.message}`,
    details: { errors },
  });
}
