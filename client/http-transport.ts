import { randomUUID } from 'node:crypto';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { CreditsError } from './credits.errors';
import type { Envelope } from './credits.types';
import { AttemptFailure, classifyNetworkError, decideRetry, parseRetryAfter, RetryPolicy } from './retry-policy';

/** A logger the client writes to: console works, and so does any object with these methods. */
export interface CreditsLogger {
  debug?(message: string, context?: Record<string, unknown>): void;
  info?(message: string, context?: Record<string, unknown>): void;
  warn?(message: string, context?: Record<string, unknown>): void;
  error?(message: string, context?: Record<string, unknown>): void;
}

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface HttpTransportOptions {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
  policy: RetryPolicy;
  fetch: FetchLike;
  sleep: (ms: number) => Promise<void>;
  logger?: CreditsLogger;
}

export interface RequestSpec {
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  /** Repeating the request cannot apply it twice (see retry-policy.ts). */
  idempotent: boolean;
}

/**
 * The HTTP side of CreditsClient: one request = up to 1 + retries attempts, each with its own
 * timeout, all under one x-request-id so the service's logs tie them together.
 */
export class HttpTransport {
  constructor(private readonly options: HttpTransportOptions) {}

  async request<T>(spec: RequestSpec): Promise<T> {
    const requestId = randomUUID();
    const body = spec.body === undefined ? undefined : JSON.stringify(spec.body);
    for (let attempt = 1; ; attempt++) {
      const result = await this.attempt<T>(spec, body, requestId, attempt);
      if (result.ok) return result.data;
      const decision = decideRetry(result.failure, attempt, this.options.policy, spec.idempotent);
      if (!decision.retry) throw result.error;
      this.options.logger?.warn?.('credits request failed; retrying', {
        method: spec.method,
        path: spec.path,
        request_id: requestId,
        attempt,
        status: result.error.status,
        http_status: result.error.httpStatus,
        retry_in_ms: decision.delayMs,
      });
      await this.options.sleep(decision.delayMs);
    }
  }

  /** One attempt: the answer's `data`, or the error and what the retry decision needs to know. */
  private async attempt<T>(spec: RequestSpec, body: string | undefined, requestId: string, attempt: number): Promise<AttemptResult<T>> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'x-server-api-key': this.options.apiKey,
      'x-request-id': requestId,
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    let text: string;
    try {
      response = await this.options.fetch(`${this.options.baseUrl}${spec.path}`, {
        method: spec.method,
        headers,
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      text = await response.text();
    } catch (cause) {
      const network = classifyNetworkError(cause);
      const message =
        network.status === 'timeout'
          ? `No answer from the credits service within ${this.options.timeoutMs} ms (${spec.method} ${spec.path}).`
          : `Could not reach the credits service (${spec.method} ${spec.path}): ${network.reason}.`;
      return {
        ok: false,
        error: new CreditsError({ status: network.status, message, requestId, attempts: attempt, cause }),
        failure: { kind: 'no_answer', maybeApplied: network.maybeApplied },
      };
    }
    const envelope = parseEnvelope<T>(text);
    if (envelope?.success === true) return { ok: true, data: envelope.data };
    const failure: AttemptFailure = {
      kind: 'answer',
      httpStatus: response.status,
      retryAfterMs: parseRetryAfter(response.headers.get('retry-after'), Date.now()),
    };
    if (!envelope) {
      const error = new CreditsError({
        status: 'invalid_response',
        message: `The credits service answered HTTP ${response.status} without the expected JSON envelope (${spec.method} ${spec.path}).`,
        httpStatus: response.status,
        details: { body: text.slice(0, 500) },
        requestId,
        attempts: attempt,
      });
      return { ok: false, error, failure };
    }
    const { status, message, ...details } = envelope.data;
    const error = new CreditsError({
      status,
      message,
      httpStatus: response.status,
      details,
      requestId: response.headers.get('x-request-id') ?? requestId,
      attempts: attempt,
    });
    return { ok: false, error, failure };
  }
}

type AttemptResult<T> = { ok: true; data: T } | { ok: false; error: CreditsError; failure: AttemptFailure };

/** The contract's envelope, or undefined when the text is not one. */
function parseEnvelope<T>(text: string): Envelope<T> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== 'object') return undefined;
  const v = value as { success?: unknown; data?: unknown };
  if (v.success === true && 'data' in v) return v as Envelope<T>;
  if (v.success === false && v.data && typeof v.data === 'object') {
    const data = v.data as { status?: unknown; message?: unknown };
    if (typeof data.status === 'string' && typeof data.message === 'string') return v as Envelope<T>;
  }
  return undefined;
}

export const defaultSleep = (ms: number): Promise<void> => sleepFor(ms).then(() => undefined);
