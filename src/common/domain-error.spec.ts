import { describe, expect, it } from '@jest/globals';
import { DOMAIN_ERRORS, DomainError, ERROR_HTTP_STATUS, HTTP_ONLY_ERRORS, queuePolicyOf } from './domain-error';

describe('the error table', () => {
  it('keeps every word at the HTTP status the contract gives it', () => {
    // API.md §2: a word's status never changes. Written out here so a moved row is noticed.
    expect(ERROR_HTTP_STATUS).toEqual({
      validation_error: 400,
      unauthorized: 401,
      insufficient_credits: 402,
      spend_cap_exceeded: 402,
      forbidden: 403,
      wallet_suspended: 403,
      feature_inactive: 403,
      feature_not_allowed_for_key: 403,
      feature_not_permitted: 403,
      not_found: 404,
      wallet_not_found: 404,
      feature_not_found: 404,
      usage_key_not_found: 404,
      model_not_found: 404,
      settlement_failure_not_found: 404,
      method_not_allowed: 405,
      request_timeout: 408,
      conflict: 409,
      usage_key_mismatch: 409,
      already_settled: 409,
      already_exists: 409,
      hold_expired: 409,
      payload_too_large: 413,
      uri_too_long: 414,
      unsupported_media_type: 415,
      unknown_model: 422,
      rate_limited: 429,
      headers_too_large: 431,
      internal_error: 500,
      key_not_found: 404,
      webhook_not_found: 404,
      event_not_found: 404,
      grant_not_found: 404,
      refund_exceeds_charge: 409,
      not_settled: 409,
      unavailable: 503,
    });
  });

  it('keeps transport-only words out of the domain codes', () => {
    for (const word of Object.keys(HTTP_ONLY_ERRORS)) expect(Object.keys(DOMAIN_ERRORS)).not.toContain(word);
    // Checked by the compiler (`npm run typecheck`), never run: a service cannot throw a word
    // only the HTTP layer answers with.
    // @ts-expect-error 'uri_too_long' is not a DomainCode
    const refused = () => new DomainError('uri_too_long', 'x');
    expect(typeof refused).toBe('function');
  });

  it('records what retrying cannot fix and retries what it can', () => {
    const record = Object.entries(DOMAIN_ERRORS)
      .filter(([, p]) => p.queue === 'record')
      .map(([code]) => code);
    const retry = Object.entries(DOMAIN_ERRORS)
      .filter(([, p]) => p.queue === 'retry')
      .map(([code]) => code);
    expect(retry.sort()).toEqual(['internal_error', 'rate_limited', 'unavailable']);
    // Every 4xx but 429 is the message's own fault: a retry would fail the same way.
    expect(record.every((code) => DOMAIN_ERRORS[code as keyof typeof DOMAIN_ERRORS].http < 500)).toBe(true);
    expect(queuePolicyOf(new DomainError('unknown_model', 'x'))).toBe('record');
    expect(queuePolicyOf(new DomainError('unavailable', 'x'))).toBe('retry');
    expect(queuePolicyOf(new Error('connection terminated'))).toBe('retry');
    expect(queuePolicyOf('not even an Error')).toBe('retry');
  });
});
