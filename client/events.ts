/**
 * Events the credits service sends (API.md §10) — on RabbitMQ (topic exchange `credits.events`,
 * routing key = type) and to webhooks — and the check of a webhook's signature.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The topic exchange every event is published to; bind a queue with a routing key such as `wallet.*`. */
export const CREDITS_EVENTS_EXCHANGE = 'credits.events';

/** Money in `data` is a 6-decimal string ("5.000000"). */
export interface CreditsEventData {
  'wallet.low_balance': { user_id: string; threshold: string; credits: string; balance: string };
  'wallet.depleted': { user_id: string; credits: string; balance: string };
  'wallet.recovered': { user_id: string; credits: string; balance: string };
  'grant.expiring': { user_id: string; grant_id: string; remaining: string; expires_at: string };
  'grant.expired': { user_id: string; grant_id: string; expired_amount: string };
  'usage.refunded': { user_id: string; usage_key: string; amount: string };
  'settlement_failure.recorded': { id: string; queue: string; reason: string };
}
export type CreditsEventType = keyof CreditsEventData;
export const CREDITS_EVENT_TYPES: readonly CreditsEventType[] = [
  'wallet.low_balance',
  'wallet.depleted',
  'wallet.recovered',
  'grant.expiring',
  'grant.expired',
  'usage.refunded',
  'settlement_failure.recorded',
];

/** One event as delivered (webhook body and message body alike): deduplicate on `id` (delivery is at least once). */
export type CreditsEvent = {
  [T in CreditsEventType]: { id: string; type: T; created_at: string; data: CreditsEventData[T] };
}[CreditsEventType];

/** Default tolerance between the signature's timestamp and now (replay protection). */
export const DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300;

/**
 * True when `header` (x-credits-signature: `t=<unix>,v1=<hex>`) is a valid signature of the raw
 * body with this webhook's secret, made within `toleranceSeconds` of now. Pass the body exactly as
 * received (bytes or string), before any JSON parsing. Compares in constant time; several v1
 * values are accepted (any may match).
 */
export function verifyWebhookSignature(
  rawBody: string | Uint8Array,
  header: string | undefined | null,
  secret: string,
  toleranceSeconds = DEFAULT_SIGNATURE_TOLERANCE_SECONDS,
  nowSeconds = Math.floor(Date.now() / 1000),
): boolean {
  if (!header || !secret) return false;
  let timestamp: string | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') timestamp = value;
    else if (key === 'v1') signatures.push(value);
  }
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp) || signatures.length === 0) return false;
  if (Math.abs(nowSeconds - Number(timestamp)) > toleranceSeconds) return false;
  const body = typeof rawBody === 'string' ? Buffer.from(rawBody, 'utf8') : Buffer.from(rawBody);
  const expected = createHmac('sha256', secret)
    .update(Buffer.concat([Buffer.from(`${timestamp}.`, 'utf8'), body]))
    .digest();
  return signatures.some((s) => {
    if (!/^[0-9a-f]{64}$/i.test(s)) return false;
    return timingSafeEqual(Buffer.from(s, 'hex'), expected);
  });
}
