import { describe, expect, it } from '@jest/globals';
import { backoffDelay, classifyNetworkError, decideRetry, DEFAULT_RETRY_POLICY, parseRetryAfter, RetryPolicy } from './retry-policy';

const policy: RetryPolicy = { retries: 3, baseDelayMs: 100, maxDelayMs: 1_000, maxRetryAfterMs: 10_000 };

/** An error shaped like undici's: TypeError('fetch failed') with the socket error as cause. */
function fetchFailed(code: string, message = 'socket error'): TypeError {
  return new TypeError('fetch failed', { cause: Object.assign(new Error(message), { code }) });
}

describe('backoffDelay', () => {
  it('doubles the ceiling with each retry and waits between half of it and all of it', () => {
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, policy, () => 0))).toEqual([50, 100, 200, 400]);
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, policy, () => 0.999999))).toEqual([100, 200, 400, 800]);
    expect(backoffDelay(2, policy, () => 0.5)).toBe(150);
  });

  it('never exceeds maxDelayMs, however many retries', () => {
    for (const n of [5, 10, 50, 1000]) {
      expect(backoffDelay(n, policy, () => 0.999999)).toBeLessThanOrEqual(1_000);
      expect(backoffDelay(n, policy, () => 0)).toBe(500);
    }
  });

  it('spreads clients that failed together (jitter)', () => {
    let seed = 1;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(3, policy, random)));
    expect(delays.size).toBeGreaterThan(10);
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(200);
      expect(d).toBeLessThanOrEqual(400);
    }
  });
});

describe('decideRetry', () => {
  const zero = () => 0;

  it('retries network failures, 5xx, 503 and 429 of an idempotent request with backoff', () => {
    expect(decideRetry({ kind: 'no_answer', maybeApplied: true }, 1, policy, true, zero)).toEqual({ retry: true, delayMs: 50 });
    expect(decideRetry({ kind: 'answer', httpStatus: 500 }, 2, policy, true, zero)).toEqual({ retry: true, delayMs: 100 });
    expect(decideRetry({ kind: 'answer', httpStatus: 502 }, 1, policy, true, zero)).toEqual({ retry: true, delayMs: 50 });
    expect(decideRetry({ kind: 'answer', httpStatus: 503 }, 3, policy, true, zero)).toEqual({ retry: true, delayMs: 200 });
    expect(decideRetry({ kind: 'answer', httpStatus: 429 }, 1, policy, true, zero)).toEqual({ retry: true, delayMs: 50 });
  });

  it('never retries a 4xx other than 429', () => {
    for (const httpStatus of [400, 401, 402, 403, 404, 409, 413, 422]) {
      expect(decideRetry({ kind: 'answer', httpStatus }, 1, policy, true, zero).retry).toBe(false);
    }
  });

  it('stops after `retries` retries', () => {
    expect(decideRetry({ kind: 'answer', httpStatus: 503 }, 3, policy, true, zero).retry).toBe(true);
    expect(decideRetry({ kind: 'answer', httpStatus: 503 }, 4, policy, true, zero)).toEqual({
      retry: false,
      reason: 'gave up after 4 attempts',
    });
    expect(decideRetry({ kind: 'answer', httpStatus: 503 }, 1, { ...policy, retries: 0 }, true, zero).retry).toBe(false);
  });

  it('honours Retry-After, and gives up when it is longer than maxRetryAfterMs', () => {
    expect(decideRetry({ kind: 'answer', httpStatus: 429, retryAfterMs: 3_000 }, 1, policy, false, zero)).toEqual({
      retry: true,
      delayMs: 3_000,
    });
    expect(decideRetry({ kind: 'answer', httpStatus: 503, retryAfterMs: 0 }, 1, policy, true, zero)).toEqual({ retry: true, delayMs: 0 });
    expect(decideRetry({ kind: 'answer', httpStatus: 429, retryAfterMs: 10_001 }, 1, policy, true, zero).retry).toBe(false);
  });

  it('retries a non-idempotent request (start) only when the service certainly did nothing', () => {
    // Refusals and connections that never opened: nothing was applied.
    expect(decideRetry({ kind: 'answer', httpStatus: 503 }, 1, policy, false, zero).retry).toBe(true);
    expect(decideRetry({ kind: 'answer', httpStatus: 429 }, 1, policy, false, zero).retry).toBe(true);
    expect(decideRetry({ kind: 'no_answer', maybeApplied: false }, 1, policy, false, zero).retry).toBe(true);
    // A lost answer or a 500 may have placed a hold: repeating would place a second one.
    expect(decideRetry({ kind: 'no_answer', maybeApplied: true }, 1, policy, false, zero).retry).toBe(false);
    expect(decideRetry({ kind: 'answer', httpStatus: 500 }, 1, policy, false, zero).retry).toBe(false);
    expect(decideRetry({ kind: 'answer', httpStatus: 504 }, 1, policy, false, zero).retry).toBe(false);
  });

  it('defaults to 3 retries', () => {
    expect(DEFAULT_RETRY_POLICY.retries).toBe(3);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-11-02T10:00:00Z');

  it('reads delay-seconds and HTTP dates', () => {
    expect(parseRetryAfter('2', now)).toBe(2_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Mon, 02 Nov 2026 10:00:05 GMT', now)).toBe(5_000);
    expect(parseRetryAfter('Mon, 02 Nov 2026 09:00:00 GMT', now)).toBe(0);
  });

  it('is undefined when absent or unreadable', () => {
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-1', now)).toBeUndefined();
  });
});

describe('classifyNetworkError', () => {
  it('knows a connection that never opened was not applied', () => {
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']) {
      expect(classifyNetworkError(fetchFailed(code))).toMatchObject({ status: 'network_error', maybeApplied: false });
    }
    // Node tries every address of "localhost" and reports them together.
    const both = new TypeError('fetch failed', {
      cause: new AggregateError([fetchFailed('ECONNREFUSED').cause, fetchFailed('ECONNREFUSED').cause]),
    });
    expect(classifyNetworkError(both).maybeApplied).toBe(false);
  });

  it('treats a dropped connection, an unknown failure and a timeout as maybe applied', () => {
    expect(classifyNetworkError(fetchFailed('ECONNRESET', 'socket hang up'))).toEqual({
      status: 'network_error',
      maybeApplied: true,
      reason: 'ECONNRESET: socket hang up',
    });
    expect(classifyNetworkError(fetchFailed('UND_ERR_SOCKET', 'other side closed')).maybeApplied).toBe(true);
    expect(classifyNetworkError(new TypeError('fetch failed')).maybeApplied).toBe(true);
    expect(classifyNetworkError(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))).toMatchObject({
      status: 'timeout',
      maybeApplied: true,
    });
  });
});
