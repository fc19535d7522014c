/**
 * Types of the credits service's contract (API.md v1), as partners see them through CreditsClient.
 *
 * Requests are written in camelCase (TypeScript style); the client turns them into the contract's
 * snake_case bodies. Answers are the contract's `data` objects, field for field, so what you log is
 * what the service documented.
 */

/**
 * An amount of credits: a decimal string with exactly 6 fraction digits, e.g. "12.500000".
 * Never turn it into a JS number on a money path; compare and add with a decimal or bigint type.
 */
export type Credits = string;
/** A decimal string (USD and other figures that are not credits), e.g. "0.006000". */
export type Decimal = string;
/** An ISO 8601 UTC timestamp, e.g. "2026-11-02T10:15:00.000Z". */
export type IsoTimestamp = string;

/** The settlement queues of API.md §7. */
export const END_MULTIMODEL_QUEUE = 'credits_process_end_multimodel_queue';
export const END_QUEUE = 'credits_process_end_queue';
export type SettlementQueue = typeof END_MULTIMODEL_QUEUE | typeof END_QUEUE;

// ---------------------------------------------------------------------------------------------
// Requests (what you pass to the client)
// ---------------------------------------------------------------------------------------------

/** One model's token counts. Counts are integers 0..1,000,000,000. */
export interface Usage {
  aiModel: string;
  inputTokens: number;
  outputTokens: number;
  /** The part of inputTokens served from cache (≤ inputTokens). */
  cachedInputTokens?: number;
}

interface SettlementTarget {
  userId: string;
  featureEndpointId: string;
  /** The usage_key from startProcess. Absent = a direct charge with no hold. */
  usageKey?: string;
  /**
   * Makes a direct charge safe to repeat. When a direct charge has none, the client generates one
   * (a UUID) before the first attempt, so its own retries never charge twice.
   */
  idempotencyKey?: string;
}

/** Settlement of several models' usage (POST /end-multimodel, credits_process_end_multimodel_queue). */
export interface EndMultiModelRequest extends SettlementTarget {
  /** 1..100 usages. */
  usages: Usage[];
}

/** The legacy single-model settlement (POST /end, credits_process_end_queue). */
export interface EndRequest extends SettlementTarget, Usage {}

/** Per-call choice of channel for a settlement. */
export interface SettleOptions {
  /**
   * `queue` publishes to RabbitMQ (needs `rabbitmqUrl`), `http` calls the service and returns its
   * answer. Default: `queue` when the client has a `rabbitmqUrl`, else `http`.
   */
  via?: 'queue' | 'http';
}

// ---------------------------------------------------------------------------------------------
// Wire bodies (API.md §4, snake_case): what goes over HTTP and into the queues, byte for byte
// ---------------------------------------------------------------------------------------------

export interface UsageBody {
  ai_model: string;
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens?: number;
}

export interface SettlementTargetBody {
  user_id: string;
  feature_endpoint_id: string;
  usage_key?: string;
  idempotency_key?: string;
}

export interface EndMultiModelBody extends SettlementTargetBody {
  usages: UsageBody[];
}

export interface EndBody extends SettlementTargetBody, UsageBody {}

// ---------------------------------------------------------------------------------------------
// Answers (the `data` of a successful response)
// ---------------------------------------------------------------------------------------------

/** POST /api/credits-process/start: a hold of the feature's min_holding_credits was placed. */
export interface AccessibleAnswer {
  status: 'accessible';
  /** Pass it to endMultiModel/end (or cancel) to settle this authorization. */
  usage_key: string;
  user_id: string;
  feature_endpoint_id: string;
  /** Available after the hold: balance − held. */
  credits: Credits;
  balance: Credits;
  held: Credits;
  hold_amount: Credits;
  expires_at: IsoTimestamp;
}

/** One usage as priced by the service. */
export interface PricedUsage {
  ai_model: string;
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
  cost_usd: Decimal;
  credits: Credits;
}

/** The answer of a settlement over HTTP. A repeat of the same settlement answers `already_settled` with the first figures. */
export interface SettlementAnswer {
  status: 'settled' | 'already_settled';
  usage_key: string;
  /** The ledger entry of the charge. */
  transaction_id: string;
  user_id: string;
  feature_endpoint_id: string;
  credits_charged: Credits;
  credits: Credits;
  balance: Credits;
  held: Credits;
  /** True when the hold had expired before the settlement arrived (it is still charged). */
  late: boolean;
  usages: PricedUsage[];
}

/**
 * What a settlement published to RabbitMQ resolves to: the broker confirmed it holds the message
 * (persistently). The service settles it shortly after; follow it with getUsage(usage_key) when you
 * know the key, or getWallet.
 */
export interface QueuedSettlement {
  status: 'queued';
  queue: SettlementQueue;
  user_id: string;
  feature_endpoint_id: string;
  usage_key: string | null;
  /** The idempotency key sent (yours, or the one the client generated for a direct charge). */
  idempotency_key: string | null;
}

export type SettlementOutcome = SettlementAnswer | QueuedSettlement;

/** POST /api/pricing/quote: what a settlement would charge now, charging nothing. */
export interface QuoteAnswer {
  status: 'quoted';
  feature_endpoint_id: string;
  credits_charged: Credits;
  usages: PricedUsage[];
}

/** POST /api/credits-process/cancel. */
export interface CancelAnswer {
  status: 'cancelled';
  usage_key: string;
  /** What this call released (0 when it was already cancelled or had expired). */
  released: Credits;
}

export type LedgerEntryKind = 'initial' | 'top_up' | 'adjustment' | 'charge';

export interface LedgerEntry {
  id: string;
  user_id: string;
  kind: LedgerEntryKind;
  /** Signed: a charge is negative. */
  amount: Credits;
  balance_after: Credits;
  usage_key: string | null;
  idempotency_key: string | null;
  description: string | null;
  metadata: Record<string, unknown>;
  created_at: IsoTimestamp;
}

export type UsageStatus = 'held' | 'settled' | 'cancelled' | 'expired';

/** GET /api/credits-process/usages/:usage_key: the authorization's whole story. */
export interface UsageAnswer {
  usage_key: string;
  status: UsageStatus;
  user_id: string;
  feature_endpoint_id: string;
  hold_amount: Credits;
  /** True for a settlement without a hold (no usage_key was sent). */
  direct_charge: boolean;
  idempotency_key: string | null;
  created_at: IsoTimestamp;
  expires_at: IsoTimestamp;
  closed_at: IsoTimestamp | null;
  late: boolean;
  /** The settlement's answer once settled (its status is `settled`), else null. */
  settlement: SettlementAnswer | null;
  ledger_entries: LedgerEntry[];
}

export type WalletStatus = 'active' | 'suspended';

/** GET /api/wallets/:user_id. */
export interface Wallet {
  user_id: string;
  plan: string;
  status: WalletStatus;
  balance: Credits;
  held: Credits;
  /** Available: balance − held. */
  credits: Credits;
  created_at: IsoTimestamp;
  updated_at?: IsoTimestamp;
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

/** The contract's `data.status` words of a failure (API.md §2 and §4). */
export type ServiceErrorStatus =
  | 'validation_error'
  | 'unauthorized'
  | 'insufficient_credits'
  | 'forbidden'
  | 'wallet_suspended'
  | 'feature_inactive'
  | 'feature_not_permitted'
  | 'not_found'
  | 'wallet_not_found'
  | 'feature_not_found'
  | 'usage_key_not_found'
  | 'model_not_found'
  | 'conflict'
  | 'usage_key_mismatch'
  | 'already_settled'
  | 'already_exists'
  | 'payload_too_large'
  | 'unknown_model'
  | 'rate_limited'
  | 'internal_error'
  | 'unavailable';

/**
 * Failures found by the client itself, with no answer from the service:
 * - `network_error`: the connection failed or dropped (the request may or may not have been applied);
 * - `timeout`: no answer within `timeoutMs`;
 * - `invalid_response`: an answer that is not the contract's envelope (e.g. a proxy's HTML page);
 * - `publish_failed`: RabbitMQ did not confirm the message (broker unreachable for `publishTimeoutMs`, or it refused it);
 * - `client_closed`: the client was closed.
 * A `validation_error` may also come from the client: it checks a settlement's body before sending it.
 */
export type ClientErrorStatus = 'network_error' | 'timeout' | 'invalid_response' | 'publish_failed' | 'client_closed';

/** Every status a CreditsError can carry; a word added by a newer service still type-checks. */
export type CreditsErrorStatus = ServiceErrorStatus | ClientErrorStatus | (string & {});

export interface FieldError {
  field: string;
  message: string;
}

/** The envelope every answer of the service comes in (API.md §2). */
export type Envelope<T> =
  { success: true; data: T } | { success: false; data: { status: string; message: string; [extra: string]: unknown } };
