import type { components } from '../../client/openapi';
import type { LedgerEntry, Wallet } from '../../client/credits.types';

/**
 * The console talks to the service's public API only, same origin, with the admin key the operator
 * typed. The key lives in this tab's sessionStorage: never in a URL, a cookie or a log.
 */
const KEY = 'credits-console-key';

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
}

/** An answer with `success: false`: its `data.status` word and `data.message`, as the API wrote them. */
export class ApiError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly status: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown, key = storedKey()): Promise<T> {
  const headers: Record<string, string> = { 'x-server-api-key': key ?? '' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'unavailable', 'The service cannot be reached. Is it running?');
  }
  const envelope = (await response.json().catch(() => null)) as {
    success: boolean;
    data: T & { status?: string; message?: string };
  } | null;
  if (!envelope) throw new ApiError(response.status, 'internal_error', `The service answered ${response.status} without a JSON body.`);
  if (!envelope.success) {
    throw new ApiError(response.status, envelope.data.status ?? 'error', envelope.data.message ?? `HTTP ${response.status}`);
  }
  return envelope.data;
}

/** Checks the key with a cheap admin read before keeping it. */
export async function signIn(key: string): Promise<void> {
  await api('GET', '/api/wallets?limit=1', undefined, key);
  sessionStorage.setItem(KEY, key);
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/**
 * The answers' shapes, generated from the service's OpenAPI document (client/openapi.ts): declared
 * once. The partner client already names the shared ones; the operator-only ones are read here.
 */
type Schemas = components['schemas'];
export type { LedgerEntry, Wallet };
export type Hold = Schemas['LiveHoldResponseDoc'];
export type SettlementFailure = Schemas['SettlementFailureResponseDoc'];
export type Mismatch = Schemas['MismatchDoc'];
export type ModelPrice = Schemas['ModelPriceSummaryDoc'];
export type Feature = Schemas['FeatureResponseDoc'];
export type PricingSettings = Schemas['PricingSettingsResponseDoc'];
export type Key = Schemas['KeyResponseDoc'];
export type KeyDetail = Schemas['KeyDetailResponseDoc'];
export type KeyWithSecret = Schemas['KeyWithSecretResponseDoc'];
export type AuditEntry = Schemas['AuditEntryResponseDoc'];
export type Grant = Schemas['GrantResponseDoc'];
/** The answer of a grant's create and void: `{ status, grant, debt_paid, transaction, wallet }`. */
export type GrantChange = Schemas['GrantChangeResponseDoc'];
export type Webhook = Schemas['WebhookResponseDoc'];
export type WebhookWithSecret = Schemas['WebhookWithSecretResponseDoc'];
export type WebhookDelivery = Schemas['WebhookDeliveryResponseDoc'];
export type CreditEvent = Schemas['EventResponseDoc'];
export type EventType = CreditEvent['type'];

/**
 * The event types a webhook may subscribe to (besides "*"), for the forms' choices. A record over the
 * generated union, so a type added to the API fails to compile here until it is listed.
 */
export const EVENT_TYPES = Object.keys({
  'wallet.low_balance': true,
  'wallet.depleted': true,
  'wallet.recovered': true,
  'grant.expiring': true,
  'grant.expired': true,
  'usage.refunded': true,
  'settlement_failure.recorded': true,
} satisfies Record<EventType, true>) as EventType[];

/**
 * The server has no such route (an older build, or a feature not merged yet): the framework's plain
 * `404 not_found`, which no domain error uses (those say `wallet_not_found`, `key_not_found`, …).
 */
export const isMissingRoute = (error: unknown) => error instanceof ApiError && error.httpStatus === 404 && error.status === 'not_found';

export const enc = encodeURIComponent;
