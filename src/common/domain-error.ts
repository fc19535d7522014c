/**
 * What each transport does with a failure, declared once per code: the HTTP status it answers
 * with, and what a queue consumer does with a message that fails with it.
 *  - `record`: retrying cannot help (a bad body, an unknown model or key…): the message is kept
 *    whole as a settlement failure for an operator to replay or discard, and acked.
 *  - `retry`: the failure is transient (the database is down, a refusal to be repeated later):
 *    the transport retries with growing delays, then dead-letters the message.
 */
export type QueuePolicy = 'record' | 'retry';

export interface ErrorPolicy {
  http: number;
  queue: QueuePolicy;
}

/**
 * Every code a service may throw as a DomainError (the contract's `data.status` words), with both
 * policies. A new code is a new row, and a row without `http` or `queue` does not compile.
 */
export const DOMAIN_ERRORS = {
  validation_error: { http: 400, queue: 'record' },
  unauthorized: { http: 401, queue: 'record' },
  insufficient_credits: { http: 402, queue: 'record' },
  spend_cap_exceeded: { http: 402, queue: 'record' },
  forbidden: { http: 403, queue: 'record' },
  wallet_suspended: { http: 403, queue: 'record' },
  feature_inactive: { http: 403, queue: 'record' },
  feature_not_permitted: { http: 403, queue: 'record' },
  feature_not_allowed_for_key: { http: 403, queue: 'record' },
  wallet_not_found: { http: 404, queue: 'record' },
  feature_not_found: { http: 404, queue: 'record' },
  usage_key_not_found: { http: 404, queue: 'record' },
  model_not_found: { http: 404, queue: 'record' },
  settlement_failure_not_found: { http: 404, queue: 'record' },
  key_not_found: { http: 404, queue: 'record' },
  webhook_not_found: { http: 404, queue: 'record' },
  event_not_found: { http: 404, queue: 'record' },
  grant_not_found: { http: 404, queue: 'record' },
  conflict: { http: 409, queue: 'record' },
  usage_key_mismatch: { http: 409, queue: 'record' },
  already_settled: { http: 409, queue: 'record' },
  already_exists: { http: 409, queue: 'record' },
  // §13: an extend of a hold past its expiry (a settlement of it is still taken, late).
  hold_expired: { http: 409, queue: 'record' },
  // §9: a refund of more than is left to refund, or of a usage with no charge.
  refund_exceeds_charge: { http: 409, queue: 'record' },
  not_settled: { http: 409, queue: 'record' },
  unknown_model: { http: 422, queue: 'record' },
  // A refusal to be repeated later: on the queue, waiting is exactly what helps.
  rate_limited: { http: 429, queue: 'retry' },
  // What an error that is not a DomainError counts as (a bug, a lost connection): kept on the
  // queue until it is retried or dead-lettered, never recorded as the message's fault.
  internal_error: { http: 500, queue: 'retry' },
  unavailable: { http: 503, queue: 'retry' },
} as const satisfies Record<string, ErrorPolicy>;

export type DomainCode = keyof typeof DOMAIN_ERRORS;

/**
 * Words only the HTTP layer answers with, for requests refused before any service runs (unknown
 * route, wrong method, body or URL too big…). No service throws them, so they have no queue policy.
 */
export const HTTP_ONLY_ERRORS = {
  not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  payload_too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  headers_too_large: 431,
} as const satisfies Record<string, number>;

export type HttpOnlyCode = keyof typeof HTTP_ONLY_ERRORS;

/** Every `data.status` word a failure can carry, on either transport. */
export type ErrorCode = DomainCode | HttpOnlyCode;

/**
 * The HTTP status of every word (for the filter and the OpenAPI document), in status order so the
 * document lists the words as it always has.
 */
export const ERROR_HTTP_STATUS: Readonly<Record<ErrorCode, number>> = Object.fromEntries(
  [...Object.entries(HTTP_ONLY_ERRORS), ...Object.entries(DOMAIN_ERRORS).map(([code, p]) => [code, p.http] as const)].sort(
    (a, b) => a[1] - b[1],
  ),
) as Record<ErrorCode, number>;

export interface FieldError {
  field: string;
  message: string;
}

export class DomainError extends Error {
  constructor(
    readonly code: DomainCode,
    message: string,
    /** Extra fields for `data` (e.g. `credits`, `required`, `errors`). */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }

  get httpStatus(): number {
    return DOMAIN_ERRORS[this.code].http;
  }

  get queuePolicy(): QueuePolicy {
    return DOMAIN_ERRORS[this.code].queue;
  }
}

/**
 * What the queue does with anything a settlement threw: a DomainError by its code's policy;
 * anything else counts as `internal_error` (retry), since nothing says retrying is useless.
 */
export function queuePolicyOf(error: unknown): QueuePolicy {
  return error instanceof DomainError ? error.queuePolicy : DOMAIN_ERRORS.internal_error.queue;
}

export function validationError(errors: FieldError[]): DomainError {
  const first = errors[0];
  const message = first ? `${first.field} ${first.message}` : 'the request does not fit the route';
  return new DomainError('validation_error', message, { errors });
}
