import { describe, expect, it } from '@jest/globals';
import { createHmac } from 'node:crypto';
import { signatureHeader } from '../src/events/signature';
import { EVENT_TYPES } from '../src/events/event-types';
import { CREDITS_EVENT_TYPES, verifyWebhookSignature } from './events';

const SECRET = 'whsec_test';
const BODY = '{"id":"3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b","type":"wallet.depleted","created_at":"2026-12-02T10:05:00.000Z","data":{}}';

describe('verifyWebhookSignature', () => {
  const now = 1_800_000_000;

  it('accepts what the service signs, as a string or as bytes', () => {
    const header = signatureHeader(SECRET, BODY, now);
    expect(verifyWebhookSignature(BODY, header, SECRET, 300, now)).toBe(true);
    expect(verifyWebhookSignature(Buffer.from(BODY), header, SECRET, 300, now + 299)).toBe(true);
  });

  it('matches the documented formula: hex HMAC-SHA256(secret, "<t>.<raw body>")', () => {
    const v1 = createHmac('sha256', SECRET).update(`${now}.${BODY}`).digest('hex');
    expect(signatureHeader(SECRET, BODY, now)).toBe(`t=${now},v1=${v1}`);
  });

  it('refuses a changed body, another secret, an old timestamp, and malformed headers', () => {
    const header = signatureHeader(SECRET, BODY, now);
    expect(verifyWebhookSignature(BODY.replace('depleted', 'recovered'), header, SECRET, 300, now)).toBe(false);
    expect(verifyWebhookSignature(BODY, header, 'whsec_other', 300, now)).toBe(false);
    expect(verifyWebhookSignature(BODY, header, SECRET, 300, now + 301)).toBe(false);
    expect(verifyWebhookSignature(BODY, header.replace(/t=\d+/, `t=${now + 1}`), SECRET, 300, now)).toBe(false);
    for (const bad of [undefined, null, '', 'v1=abc', `t=${now}`, `t=${now},v1=zz`, `t=x,v1=${'0'.repeat(64)}`]) {
      expect(verifyWebhookSignature(BODY, bad, SECRET, 300, now)).toBe(false);
    }
  });

  it('accepts any of several v1 values (a rotation)', () => {
    const good = signatureHeader(SECRET, BODY, now).split(',')[1];
    expect(verifyWebhookSignature(BODY, `t=${now},v1=${'0'.repeat(64)},${good}`, SECRET, 300, now)).toBe(true);
  });

  it('knows every event type the service sends', () => {
    expect([...CREDITS_EVENT_TYPES].sort()).toEqual([...EVENT_TYPES].sort());
  });
});
