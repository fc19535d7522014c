/**
 * HAND-WRITTEN from API.md §8 (grants) and §10 (events and webhooks), because client/openapi.ts
 * does not have these schemas yet: their routes are being built on other branches.
 * TODO(grants, events): once those land and `npm run generate:client` has run, replace each type
 * below with the generated one (`components['schemas'][…]`, as api.ts does) and delete this file.
 */

export type GrantKind = 'paid' | 'promotional';
export type GrantStatus = 'active' | 'depleted' | 'expired' | 'voided';

/** §8: a grant (lot) of a wallet. Money fields are 6-decimal strings. */
export interface Grant {
  grant_id: string;
  user_id: string;
  kind: GrantKind;
  amount: string;
  remaining: string;
  priority: number;
  expires_at: string | null;
  status: GrantStatus;
  created_at: string;
}

/** §8: what the wallet view gains with grants (absent on a server without them). */
export interface WalletGrantFigures {
  grants?: { paid: string; promotional: string };
  next_expiry?: { at: string; amount: string } | null;
}

/** §8: `POST /api/wallets/:user_id/grants` answer. */
export interface GrantCreated {
  status: 'applied' | 'already_applied';
  grant: Grant;
  debt_paid?: string;
}

/** §8: `POST …/grants/:grant_id/void` answer. */
export interface GrantVoided {
  status: string;
  grant?: Grant;
}

/** §10: a webhook as listed (`secret` only in the create answer). */
export interface Webhook {
  webhook_id: string;
  url: string;
  events: string[];
  active: boolean;
  description?: string | null;
  created_at?: string;
}

export interface WebhookWithSecret extends Webhook {
  secret: string;
}

/** §10: one delivery attempt of one event to one webhook. */
export interface WebhookDelivery {
  event_id: string;
  attempt: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
  at: string;
  outcome: 'delivered' | 'retrying' | 'failed';
}

/** §10: an outbox event. */
export interface CreditEvent {
  id: string;
  type: string;
  created_at: string;
  data: Record<string, unknown>;
}

/** §10: the event types a webhook may subscribe to (or "*"). */
export const EVENT_TYPES = [
  'wallet.low_balance',
  'wallet.depleted',
  'wallet.recovered',
  'grant.expiring',
  'grant.expired',
  'usage.refunded',
  'settlement_failure.recorded',
] as const;
