/**
 * Every failure the service reports has one stable code from this list (the contract's
 * `data.status` words). Services throw DomainError; each transport maps the code once:
 * HTTP through HTTP_STATUS below, the queue consumer through `isPermanent`.
 */
export const ERROR_HTTP_STATUS = {
  validation_error: 400,
  unauthorized: 401,
  insufficient_credits: 402,
  spend_cap_exceeded: 402,
  forbidden: 403,
  wallet_suspended: 403,
  feature_inactive: 403,
  feature_not_permitted: 403,
  feature_not_allowed_for_key: 403,
  not_found: 404,
  wallet_not_found: 404,
  feature_not_found: 404,
  usage_key_not_found: 404,
  model_not_found: 404,
  settlement_failure_not_found: 404,
  key_not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  conflict: 409,
  usage_key_mismatch: 409,
  already_settled: 409,
  already_exists: 409,
  payload_too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  unknown_model: 422,
  rate_limited: 429,
  headers_too_large: 431,
  internal_error: 500,
  unavailable: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_HTTP_STATUS;

export interface FieldError {
  field: string;
  message: string;
}

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra fields for `data` (e.g. `credits`, `required`, `errors`). */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }

  get httpStatus(): number {
    return ERROR_HTTP_STATUS[this.code];
  }
}

export function validationError(errors: FieldError[]): DomainError {
  const first = errors[0];
  const message = first ? `${first.field} ${first.message}` : 'the request does not fit the route';
  return new DomainError('validation_error', message, { errors });
}
