/**
 * When and how long CreditsClient waits before trying a request again. Pure functions: no I/O,
 * no clock, no randomness of their own (the caller passes `random` and `now`), so the policy is
 * unit-tested exactly.
 *
 * Why retrying is safe: a settlement is idempotent by usage_key (or idempotency_key, which the
 * client generates for a direct charge before the first attempt), and cancel, quote and the reads
 * change nothing twice. /start is not idempotent — each accepted call places a new hold — so it is
 * retried only when the service certainly did nothing: 429, 503, or a connection that never opened.
 */
export interface RetryPolicy {
  /** Retries after the first attempt: 3 means at most 4 attempts. */
  retries: number;
  /** The first retry waits about this long; each next one twice as long (with jitter). */
  baseDelayMs: number;
  /** No backoff wait is longer than this. */
  maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: the call fails with the service's answer. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  retries: 3,
  baseDelayMs: 200,
  maxDelayMs: 5_000,
  maxRetryAfterMs: 30_000,
});

/** What went wrong with one attempt, as far as retrying is concerned. */
export type AttemptFailure =
  /** The service answered with a failure. */
  | { kind: 'answer'; httpStatus: number; retryAfterMs?: number }
  /**
   * No answer. `maybeApplied` is false only when the request certainly never reached the service
   * (connection refused, unknown host); a dropped connection or a timeout may have been applied.
   */
  | { kind: 'no_answer'; maybeApplied: boolean };

export type RetryDecision = { retry: true; delayMs: number } | { retry: false; reason: string };

/**
 * Decides whether to retry after attempt number `attempt` (1 = the first) failed.
 * `idempotent`: repeating the request cannot apply it twice.
 */
export function decideRetry(
  failure: AttemptFailure,
  attempt: number,
  policy: RetryPolicy,
  idempotent: boolean,
  random: () => number = Math.random,
): RetryDecision {
  if (attempt > policy.retries) return { retry: false, reason: `gave up after ${attempt} attempts` };
  if (failure.kind === 'no_answer') {
    if (!idempotent && failure.maybeApplied) {
      return { retry: false, reason: 'the request may have been applied and repeating it is not safe' };
    }
    return { retry: true, delayMs: backoffDelay(attempt, policy, random) };
  }
  const { httpStatus, retryAfterMs } = failure;
  // 429 and 503 are refusals: the service did nothing, so even /start may be repeated.
  const refused = httpStatus === 429 || httpStatus === 503;
  const serverError = httpStatus >= 500 && httpStatus <= 599;
  if (!refused && !serverError) return { retry: false, reason: `HTTP ${httpStatus} is final` };
  if (!refused && !idempotent) return { retry: false, reason: `HTTP ${httpStatus} may have been applied and repeating it is not safe` };
  if (retryAfterMs !== undefined) {
    if (retryAfterMs > policy.maxRetryAfterMs) {
      return { retry: false, reason: `Retry-After of ${retryAfterMs} ms exceeds the ${policy.maxRetryAfterMs} ms the client waits` };
    }
    return { retry: true, delayMs: retryAfterMs };
  }
  return { retry: true, delayMs: backoffDelay(attempt, policy, random) };
}

/**
 * Exponential backoff with "equal jitter": the n-th retry waits between half and all of
 * min(maxDelayMs, baseDelayMs · 2^(n−1)). The jitter spreads clients that failed together; the
 * fixed half keeps the wait growing.
 */
export function backoffDelay(
  retry: number,
  policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling / 2 + (r * ceiling) / 2);
}

/**
 * A Retry-After header in milliseconds: delay-seconds ("2") or an HTTP date. Undefined when absent
 * or unreadable (the caller then uses its own backoff).
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Only the IMF-fixdate senders must use ("Sun, 06 Nov 1994 08:49:37 GMT"): Date.parse alone
  // would read "-1" as a date in 2001.
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) return undefined;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Error codes meaning the connection never opened, so the request was certainly not applied. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

export interface NetworkFailure {
  status: 'timeout' | 'network_error';
  maybeApplied: boolean;
  /** The underlying reason, for the error message (e.g. "ECONNRESET: socket hang up"). */
  reason: string;
}

/** Classifies what fetch threw: a timeout, a connection that never opened, or one that dropped. */
export function classifyNetworkError(error: unknown): NetworkFailure {
  const e = error as { name?: unknown; message?: unknown };
  if (e && (e.name === 'TimeoutError' || e.name === 'AbortError')) {
    return { status: 'timeout', maybeApplied: true, reason: String(e.message ?? 'timed out') };
  }
  const codes = errorCodes(error);
  const maybeApplied = codes.length === 0 || codes.some((code) => !NOT_SENT_CODES.has(code));
  const message = deepestMessage(error);
  return { status: 'network_error', maybeApplied, reason: codes.length ? `${codes[0]}: ${message}` : message };
}

/** The `code`s along an error's cause chain (undici wraps the socket error as `cause`), and inside AggregateErrors. */
function errorCodes(error: unknown, depth = 0): string[] {
  if (!error || typeof error !== 'object' || depth > 5) return [];
  const e = error as { code?: unknown; cause?: unknown; errors?: unknown };
  const own = typeof e.code === 'string' ? [e.code] : [];
  const nested = Array.isArray(e.errors) ? e.errors.flatMap((inner) => errorCodes(inner, depth + 1)) : [];
  return [...own, ...nested, ...errorCodes(e.cause, depth + 1)];
}

function deepestMessage(error: unknown): string {
  let current = error as { message?: unknown; cause?: unknown } | undefined;
  let message = String(error);
  for (let i = 0; current && typeof current === 'object' && i < 5; i++) {
    if (typeof current.message === 'string' && current.message) message = current.message;
    current = current.cause as typeof current;
  }
  return message;
}
