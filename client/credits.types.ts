/**
 * Types of the credits service's contract (API.md v1), as partners see them through CreditsClient.
 *
 * Requests are written in camelCase (TypeScript style); the client turns them into the contract's
 * snake_case bodies. Wire bodies and answers are not written here: they are the schemas of the
 * service's OpenAPI document, generated into ./openapi.ts (`npm run generate:client`), so what you
 * log is exactly what the service documented, and a change of an answer reaches this client's types
 * the moment the file is regenerated.
 */
import type { components, paths } from './openapi';

type Schemas = components['schemas'];

/** The generated OpenAPI types, for partners who want more than the named aliases below (e.g. openapi-fetch). */
export type { components as CreditsApiComponents, paths as CreditsApiPaths };

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
  /**
   * false = an increment of a long-running usage (API.md §13): charged now, the hold stays open.
   * Needs usageKey and idempotencyKey (each key charges once). Absent = true: closes the usage.
   * The CreditsSession helper (client/session.ts) sends these for you.
   */
  final?: boolean;
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

export type UsageBody = Schemas['UsageDto'];
export type EndMultiModelBody = Schemas['EndMultiModelDto'];
export type EndBody = Schemas['EndSingleModelDto'];
/** What both settlement bodies say about whom to charge, for what. */
export type SettlementTargetBody = Pick<EndMultiModelBody, 'user_id' | 'feature_endpoint_id' | 'usage_key' | 'idempotency_key' | 'final'>;

/** Options of startProcess (API.md §13). */
export interface StartOptions {
  /** What the work is expected to use: the hold is then max(min_holding_credits, its quote). */
  estimate?: Usage[];
}

/** Options of extend (API.md §13). */
export interface ExtendOptions {
  /** The hold then expires this many seconds from now (1..604800); default the feature's hold_ttl_seconds. */
  ttlSeconds?: number;
  /** Credits added to the hold (a decimal string such as "5" or "2.5"), refused with insufficient_credits when not available. */
  additionalHold?: Credits;
}

// ---------------------------------------------------------------------------------------------
// Answers (the `data` of a successful response), as the service documents them
// ---------------------------------------------------------------------------------------------

/** POST /api/credits-process/start: a hold of the feature's min_holding_credits was placed. */
export type AccessibleAnswer = Schemas['StartResponseDoc'];

/** One usage as priced by the service. */
export type PricedUsage = Schemas['PricedUsageDoc'];

/** The answer of a settlement over HTTP. A repeat of the same settlement answers `already_settled` with the first figures. */
export type SettlementAnswer = Schemas['SettlementResponseDoc'];

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

/**
 * POST /api/credits-process/extend (API.md §13). Written out until the service documents the route
 * (issue 18); then it becomes `Schemas['ExtendResponseDoc']`, the same fields.
 */
export interface ExtendAnswer {
  status: 'extended';
  usage_key: string;
  expires_at: IsoTimestamp;
  hold_amount: Credits;
  credits: Credits;
  balance: Credits;
  held: Credits;
}

/** POST /api/pricing/quote: what a settlement would charge now, charging nothing. */
export type QuoteAnswer = Schemas['QuoteResponseDoc'];

/** POST /api/credits-process/cancel. */
export type CancelAnswer = Schemas['CancelResponseDoc'];

export type LedgerEntry = Schemas['LedgerEntryResponseDoc'];
export type LedgerEntryKind = LedgerEntry['kind'];

/** GET /api/credits-process/usages/:usage_key: the authorization's whole story. */
export type UsageAnswer = Schemas['UsageResponseDoc'];
export type UsageStatus = UsageAnswer['status'];

/** GET /api/wallets/:user_id. */
export type Wallet = Schemas['WalletResponseDoc'];
export type WalletStatus = Wallet['status'];

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

/** The contract's `data.status` words of a failure (API.md §2 and §4). */
export type ServiceErrorStatus = Schemas['FailureDataDoc']['status'];

/**
 * Failures found by the client itself, with no answer from the service:
 * - `network_error`: the connection failed or dropped (the request may or may not have been applied);
 * - `timeout`: no answer within `timeoutMs`;
 * - `invalid_response`: an answer that is not the contract's envelope (e.g. a proxy's HTML page);
 * - `publish_failed`: RabbitMQ did not confirm the message (broker unreachable for `publishTimeoutMs`, or it refused it);
 * - `client_closed`: the client was closed;
 * - `session_closed`: a CreditsSession was used after finish/close; `aborted`: its signal was aborted before it started.
 * A `validation_error` may also come from the client: it checks a settlement's body before sending it.
 */
export type ClientErrorStatus =
  'network_error' | 'timeout' | 'invalid_response' | 'publish_failed' | 'client_closed' | 'session_closed' | 'aborted';

/** Every status a CreditsError can carry; a word added by a newer service still type-checks. */
export type CreditsErrorStatus = ServiceErrorStatus | ClientErrorStatus | (string & {});

export type FieldError = Schemas['FieldErrorDoc'];

/** The envelope every answer of the service comes in (API.md §2). */
export type Envelope<T> =
  { success: true; data: T } | { success: false; data: { status: string; message: string; [extra: string]: unknown } };
