import { CreditsError } from './credits.errors';
import {
  AccessibleAnswer,
  CancelAnswer,
  END_MULTIMODEL_QUEUE,
  END_QUEUE,
  EndMultiModelRequest,
  EndRequest,
  ExtendAnswer,
  ExtendOptions,
  QueuedSettlement,
  QuoteAnswer,
  SettleOptions,
  SettlementAnswer,
  SettlementOutcome,
  SettlementQueue,
  SettlementTargetBody,
  StartOptions,
  Usage,
  UsageAnswer,
  Wallet,
} from './credits.types';
import { CreditsLogger, defaultSleep, FetchLike, HttpTransport, RequestSpec } from './http-transport';
import { endBody, endMultiModelBody, usageBodies } from './request-bodies';
import { DEFAULT_RETRY_POLICY, RetryPolicy } from './retry-policy';
import { SettlementPublisher } from './settlement.publisher';

export interface CreditsClientOptions {
  /** The service's base URL, e.g. "http://credits.internal:3000". */
  baseUrl: string;
  /** A key with the `service` scope, sent as `x-server-api-key`. Never logged. */
  apiKey: string;
  /**
   * AMQP URL of the service's RabbitMQ. When set, endMultiModel/end publish to the settlement
   * queues; when absent they call HTTP.
   */
  rabbitmqUrl?: string;
  /** Per HTTP attempt. Default 10,000 ms. */
  timeoutMs?: number;
  /** Retries after the first attempt on network errors, 5xx and 429. Default 3. 0 turns retrying off. */
  retries?: number;
  /** First backoff wait (doubling, with jitter). Default 200 ms. */
  retryBaseDelayMs?: number;
  /** Longest backoff wait. Default 5,000 ms. */
  retryMaxDelayMs?: number;
  /** A Retry-After longer than this fails the call instead of waiting. Default 30,000 ms. */
  maxRetryAfterMs?: number;
  /** How long a queued settlement may wait for the broker's confirm, reconnects included. Default 30,000 ms. */
  publishTimeoutMs?: number;
  /** Seconds between reconnection attempts to RabbitMQ. Default 1. */
  reconnectTimeInSeconds?: number;
  /** Receives retries, reconnects and channel errors. `console` works. */
  logger?: CreditsLogger;
  /** The fetch to use (default: the global fetch). For proxies, instrumentation and tests. */
  fetch?: FetchLike;
  /** How to wait between retries (default: a timer). For tests. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * A typed client of the credits service (API.md v1) for partner services: check and hold credits
 * before the work (startProcess), settle what the work used after it (endMultiModel / end, through
 * RabbitMQ or HTTP), and read wallets, usages and quotes. Every failure is a CreditsError.
 *
 * ```ts
 * const credits = new CreditsClient({ baseUrl, apiKey, rabbitmqUrl });
 * const { usage_key } = await credits.startProcess(userId, 'ai_chat_v1');
 * // … the AI work …
 * await credits.endMultiModel({ userId, usageKey: usage_key, featureEndpointId: 'ai_chat_v1', usages });
 * await credits.close();
 * ```
 */
export class CreditsClient {
  private readonly http: HttpTransport;
  private readonly publisher?: SettlementPublisher;
  private closed = false;

  constructor(options: CreditsClientOptions) {
    const baseUrl = checkBaseUrl(options.baseUrl);
    if (typeof options.apiKey !== 'string' || options.apiKey.length === 0) throw new TypeError('CreditsClient: apiKey is required');
    const policy: RetryPolicy = {
      retries: checkInt('retries', options.retries, DEFAULT_RETRY_POLICY.retries, 0, 20),
      baseDelayMs: checkInt('retryBaseDelayMs', options.retryBaseDelayMs, DEFAULT_RETRY_POLICY.baseDelayMs, 0, 600_000),
      maxDelayMs: checkInt('retryMaxDelayMs', options.retryMaxDelayMs, DEFAULT_RETRY_POLICY.maxDelayMs, 0, 600_000),
      maxRetryAfterMs: checkInt('maxRetryAfterMs', options.maxRetryAfterMs, DEFAULT_RETRY_POLICY.maxRetryAfterMs, 0, 3_600_000),
    };
    const fetchFn: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
    const sleep = options.sleep ?? defaultSleep;
    this.http = new HttpTransport({
      baseUrl,
      apiKey: options.apiKey,
      timeoutMs: checkInt('timeoutMs', options.timeoutMs, 10_000, 1, 3_600_000),
      policy,
      fetch: fetchFn,
      sleep,
      logger: options.logger,
    });
    if (options.rabbitmqUrl) {
      this.publisher = new SettlementPublisher({
        url: options.rabbitmqUrl,
        publishTimeoutMs: checkInt('publishTimeoutMs', options.publishTimeoutMs, 30_000, 1, 3_600_000),
        reconnectTimeInSeconds: checkInt('reconnectTimeInSeconds', options.reconnectTimeInSeconds, 1, 1, 3_600),
        sleep,
        logger: options.logger,
      });
    }
  }

  /** True when settlements go to RabbitMQ by default. */
  get usesQueue(): boolean {
    return this.publisher !== undefined;
  }

  /**
   * POST /api/credits-process/start: checks the wallet, plan and credits and places a hold.
   * Throws a CreditsError whose `status` says why not: `wallet_not_found`, `wallet_suspended`,
   * `feature_not_found`, `feature_inactive`, `feature_not_permitted`, or `insufficient_credits`
   * (with `details.credits` and `details.required`).
   *
   * Retried only when the service certainly did nothing (429, 503, connection refused): a start
   * whose answer was lost is not repeated, because each start places a new hold.
   */
  async startProcess(userId: string, featureEndpointId: string, options: StartOptions = {}): Promise<AccessibleAnswer> {
    const body: Record<string, unknown> = { user_id: userId, feature_endpoint_id: featureEndpointId };
    if (options.estimate !== undefined) body.estimate = { usages: usageBodies(options.estimate) };
    return this.call<AccessibleAnswer>({ method: 'POST', path: '/api/credits-process/start', body, idempotent: false });
  }

  /**
   * POST /api/credits-process/extend (API.md §13): the hold of `usageKey` then expires `ttlSeconds`
   * from now, and grows by `additionalHold` when given. Throws `hold_expired`, `already_settled`,
   * `conflict` (cancelled) or `insufficient_credits`.
   *
   * Retried like every idempotent call: a new expiry is the same whether it is set once or twice.
   * With `additionalHold` it is retried only when the service certainly did nothing, since a lost
   * answer of a grown hold would grow it twice.
   */
  async extend(usageKey: string, options: ExtendOptions = {}): Promise<ExtendAnswer> {
    const body: Record<string, unknown> = { usage_key: usageKey };
    if (options.ttlSeconds !== undefined) {
      if (!Number.isInteger(options.ttlSeconds) || options.ttlSeconds < 1 || options.ttlSeconds > 604_800)
        throw new CreditsError({
          status: 'validation_error',
          message: 'ttl_seconds must be an integer from 1 to 604800',
          details: { errors: [{ field: 'ttl_seconds', message: 'must be an integer from 1 to 604800' }] },
        });
      body.ttl_seconds = options.ttlSeconds;
    }
    if (options.additionalHold !== undefined) body.additional_hold = options.additionalHold;
    return this.call<ExtendAnswer>({
      method: 'POST',
      path: '/api/credits-process/extend',
      body,
      idempotent: options.additionalHold === undefined,
    });
  }

  /**
   * Settles the usage of several models: with `usageKey` it releases that hold and charges the
   * real cost; without, it is a direct charge (made idempotent with a generated key when you give
   * none). Through RabbitMQ it resolves once the broker confirmed the message (`status: 'queued'`);
   * over HTTP it resolves with the settlement (`settled`, or `already_settled` for a repeat).
   */
  endMultiModel(request: EndMultiModelRequest, options: SettleOptions & { via: 'http' }): Promise<SettlementAnswer>;
  endMultiModel(request: EndMultiModelRequest, options: SettleOptions & { via: 'queue' }): Promise<QueuedSettlement>;
  endMultiModel(request: EndMultiModelRequest, options?: SettleOptions): Promise<SettlementOutcome>;
  async endMultiModel(request: EndMultiModelRequest, options: SettleOptions = {}): Promise<SettlementOutcome> {
    this.assertOpen();
    const body = endMultiModelBody(request);
    return this.settle(END_MULTIMODEL_QUEUE, '/api/credits-process/end-multimodel', body, options);
  }

  /** The legacy single-model settlement: same rules and answers as endMultiModel. */
  end(request: EndRequest, options: SettleOptions & { via: 'http' }): Promise<SettlementAnswer>;
  end(request: EndRequest, options: SettleOptions & { via: 'queue' }): Promise<QueuedSettlement>;
  end(request: EndRequest, options?: SettleOptions): Promise<SettlementOutcome>;
  async end(request: EndRequest, options: SettleOptions = {}): Promise<SettlementOutcome> {
    this.assertOpen();
    const body = endBody(request);
    return this.settle(END_QUEUE, '/api/credits-process/end', body, options);
  }

  /** POST /api/pricing/quote: what settling these usages on this feature would charge now. Charges nothing. */
  async quote(featureEndpointId: string, usages: Usage[]): Promise<QuoteAnswer> {
    return this.call<QuoteAnswer>({
      method: 'POST',
      path: '/api/pricing/quote',
      body: { feature_endpoint_id: featureEndpointId, usages: usageBodies(usages) },
      idempotent: true,
    });
  }

  /** POST /api/credits-process/cancel: releases the hold without a charge. Repeating it is harmless; a settled key throws `already_settled`. */
  async cancel(usageKey: string): Promise<CancelAnswer> {
    return this.call<CancelAnswer>({
      method: 'POST',
      path: '/api/credits-process/cancel',
      body: { usage_key: usageKey },
      idempotent: true,
    });
  }

  /** GET /api/credits-process/usages/:usage_key: status, hold, settlement and ledger entries of an authorization. */
  async getUsage(usageKey: string): Promise<UsageAnswer> {
    return this.call<UsageAnswer>({ method: 'GET', path: `/api/credits-process/usages/${encodeURIComponent(usageKey)}`, idempotent: true });
  }

  /** GET /api/wallets/:user_id: balance, held and available credits. */
  async getWallet(userId: string): Promise<Wallet> {
    return this.call<Wallet>({ method: 'GET', path: `/api/wallets/${encodeURIComponent(userId)}`, idempotent: true });
  }

  /** Closes the RabbitMQ connection after the messages being published are confirmed (or time out). Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await this.publisher?.close();
  }

  private async settle(
    queue: SettlementQueue,
    path: string,
    body: SettlementTargetBody,
    options: SettleOptions,
  ): Promise<SettlementOutcome> {
    const via = options.via ?? (this.publisher ? 'queue' : 'http');
    if (via === 'http') return this.http.request<SettlementAnswer>({ method: 'POST', path, body, idempotent: true });
    if (!this.publisher) throw new TypeError('CreditsClient: via "queue" needs the rabbitmqUrl option');
    await this.publisher.publish(queue, body);
    return {
      status: 'queued',
      queue,
      user_id: body.user_id,
      feature_endpoint_id: body.feature_endpoint_id,
      usage_key: body.usage_key ?? null,
      idempotency_key: body.idempotency_key ?? null,
    };
  }

  private async call<T>(spec: RequestSpec): Promise<T> {
    this.assertOpen();
    return this.http.request<T>(spec);
  }

  private assertOpen(): void {
    if (this.closed) throw new CreditsError({ status: 'client_closed', message: 'The credits client is closed.' });
  }
}

function checkBaseUrl(value: unknown): string {
  if (typeof value !== 'string') throw new TypeError('CreditsClient: baseUrl is required');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`CreditsClient: baseUrl is not a URL: "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TypeError('CreditsClient: baseUrl must start with http:// or https://');
  return value.replace(/\/+$/, '');
}

function checkInt(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`CreditsClient: ${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}
