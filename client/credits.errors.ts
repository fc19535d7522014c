import type { CreditsErrorStatus, FieldError } from './credits.types';

export interface CreditsErrorInit {
  status: CreditsErrorStatus;
  message: string;
  /** The HTTP status of the service's answer; null when there was none (network, timeout, queue, client checks). */
  httpStatus?: number | null;
  /** The rest of the failure's `data` (e.g. `credits` and `required` of insufficient_credits, `errors` of validation_error). */
  details?: Record<string, unknown>;
  /** The request's x-request-id, to find the service's log lines about it. */
  requestId?: string | null;
  /** How many attempts were made before giving up. */
  attempts?: number;
  cause?: unknown;
}

/**
 * Every failure of a CreditsClient call. `status` is the contract's `data.status` word
 * (`wallet_not_found`, `insufficient_credits`, …) or one of the client's own words
 * (`network_error`, `timeout`, `invalid_response`, `publish_failed`, `client_closed`);
 * `message` is the service's one sentence for a person.
 */
export class CreditsError extends Error {
  override readonly name = 'CreditsError';
  readonly status: CreditsErrorStatus;
  readonly httpStatus: number | null;
  readonly details: Readonly<Record<string, unknown>>;
  readonly requestId: string | null;
  readonly attempts: number;

  constructor(init: CreditsErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status;
    this.httpStatus = init.httpStatus ?? null;
    this.details = init.details ?? {};
    this.requestId = init.requestId ?? null;
    this.attempts = init.attempts ?? 1;
  }

  /** The field errors of a `validation_error` (empty for any other status). */
  get fieldErrors(): FieldError[] {
    const errors = this.details['errors'];
    return Array.isArray(errors) ? (errors as FieldError[]) : [];
  }
}

/** Narrows a caught value to a CreditsError with the given status. */
export function isCreditsError(error: unknown, status?: CreditsErrorStatus): error is CreditsError {
  return error instanceof CreditsError && (status === undefined || error.status === status);
}

/** True when `error` is the service's `402 insufficient_credits`; then `details.credits` and `details.required` are the amounts. */
export function isInsufficientCredits(error: unknown): error is CreditsError & { details: { credits: string; required: string } } {
  return isCreditsError(error, 'insufficient_credits');
}

/**
 * True when the service refused a call because the API key is scoped to other features
 * (`403 feature_not_allowed_for_key`): `details.feature_endpoint_id` is the feature it named.
 * Nothing was written; calling again with the same key will not succeed — use the key issued for
 * that feature.
 */
export function isFeatureNotAllowedForKey(error: unknown): error is CreditsError & { details: { feature_endpoint_id: string } } {
  return isCreditsError(error, 'feature_not_allowed_for_key');
}

/**
 * True when `startProcess` was refused by the key's spend cap (`402 spend_cap_exceeded`):
 * `details.spent` (this period's charges plus live holds), `details.cap` and `details.resets_at`
 * (when the UTC day or month ends). Settlements are never refused for the cap.
 */
export function isSpendCapExceeded(error: unknown): error is CreditsError & { details: { spent: string; cap: string; resets_at: string } } {
  return isCreditsError(error, 'spend_cap_exceeded');
}
