import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { performance } from 'node:perf_hooks';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { queryRows } from '../database/sql';
import { MetricsService } from '../metrics/metrics.service';
import { EventPublisher } from './event-publisher';
import type { CreditsEventBody, EventType } from './event-types';
import { privateNetworkReason } from './network-guard';
import { signatureHeader } from './signature';

/** Deliveries in flight on one instance, in all and per endpoint (one slow endpoint cannot take every slot). */
const MAX_IN_FLIGHT = 64;
const MAX_IN_FLIGHT_PER_ENDPOINT = 8;
/** Events fanned out per tick. */
const FAN_OUT_BATCH = 500;
/** A claim outlives the longest attempt by this much; a relay killed mid-attempt frees its rows after it. */
const LEASE_MARGIN_SECONDS = 20;
/** The exchange is ours: its deliveries are retried forever, at most this far apart. */
const EXCHANGE_RETRY_DELAYS_MS = [1000, 2000, 5000, 10_000, 30_000];
/** How much of a failing answer is read for the attempt's error (the rest is never read). */
const ERROR_SNIPPET_BYTES = 512;
const PRUNE_EVERY_MS = 10 * 60_000;
/** A fixed key: only one instance fans out at a time, so the deliveries of one wallet are created in event order. */
const FAN_OUT_LOCK = 7_316_016;

interface Claimed {
  id: string;
  event_id: string;
  webhook_id: string | null;
  attempts: number;
  round_attempts: number;
  token: string;
  type: EventType;
  created_at: Date;
  data: Record<string, unknown>;
  url: string | null;
  secret: string | null;
  endpoint: string;
}

/** The JSON both channels carry, byte for byte: `{ id, type, created_at, data }`. */
export function eventJson(e: { event_id: string; type: EventType; created_at: Date; data: Record<string, unknown> }): string {
  const body: CreditsEventBody = { id: e.event_id, type: e.type, created_at: e.created_at.toISOString(), data: e.data };
  return JSON.stringify(body);
}

/**
 * Takes events from the outbox and delivers them at least once (API.md §10). Safe with several
 * instances:
 *  - fan-out: each new event gets one delivery row per matching active webhook, plus one for the
 *    exchange with RABBITMQ_URL; one instance at a time (an advisory lock), so one wallet's rows
 *    are created in its events' order;
 *  - claim: due rows are leased in one short statement under FOR UPDATE SKIP LOCKED, never two
 *    relays on one row; a row waits while an earlier event of its wallet is pending for the same
 *    endpoint, so a wallet's events reach each endpoint in order;
 *  - each attempt runs on its own (a slow endpoint holds only its own slots) and its outcome is
 *    written with the lease as token; a relay killed mid-attempt leaves the lease to lapse and
 *    another (or the restarted one) delivers again.
 */
@Injectable()
export class EventRelay implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(EventRelay.name);
  private readonly publisher?: EventPublisher;
  private readonly inFlight = new Map<string, { endpoint: string; work: Promise<void> }>();
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private wakeRequested = false;
  private stopped = true;
  private lastPrune = 0;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: MetricsService,
  ) {
    if (config.rabbitmqUrl && config.eventRelayIntervalMs > 0) this.publisher = new EventPublisher(config.rabbitmqUrl);
    metrics.setEventSources({ outboxLagSeconds: () => this.outboxLagSeconds() });
  }

  onApplicationBootstrap(): void {
    if (this.config.eventRelayIntervalMs === 0) return;
    this.stopped = false;
    this.schedule(0);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.allSettled([...this.inFlight.values()].map((f) => f.work));
    await this.publisher?.close();
  }

  /** Runs a tick as soon as possible (after a delivery finished: the wallet's next event may be due). */
  private wake(): void {
    this.wakeRequested = true;
    if (!this.ticking) this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    this.wakeRequested = false;
    try {
      await this.fanOut();
      await this.claimAndDeliver();
      if (Date.now() - this.lastPrune > PRUNE_EVERY_MS) {
        this.lastPrune = Date.now();
        await this.prune();
      }
    } catch (error) {
      this.logger.warn({ err: (error as Error).message }, 'event relay tick failed; retrying');
    } finally {
      this.ticking = false;
      this.schedule(this.wakeRequested ? 0 : this.config.eventRelayIntervalMs);
    }
  }

  private async fanOut(): Promise<void> {
    const rows = await this.dataSource.transaction(async (manager) => {
      const [{ locked }] = await queryRows<{ locked: boolean }>(manager, `SELECT pg_try_advisory_xact_lock($1) AS locked`, [FAN_OUT_LOCK]);
      if (!locked) return [];
      return queryRows<{ type: string; n: string }>(
        manager,
        `WITH ev AS (
           SELECT id, seq, type, user_id FROM events WHERE dispatched_at IS NULL ORDER BY seq LIMIT $2 FOR UPDATE
         ), targets AS (
           INSERT INTO event_deliveries (event_id, seq, user_id, webhook_id)
           SELECT ev.id, ev.seq, ev.user_id, w.webhook_id FROM ev JOIN webhooks w ON w.active AND w.events && ARRAY[ev.type, '*']::varchar[]
           UNION ALL SELECT ev.id, ev.seq, ev.user_id, NULL FROM ev WHERE $1
           ON CONFLICT (event_id, endpoint) DO NOTHING
         ), marked AS (
           UPDATE events SET dispatched_at = now() FROM ev WHERE events.id = ev.id RETURNING events.type
         )
         SELECT type, count(*)::text AS n FROM marked GROUP BY type`,
        [this.publisher !== undefined, FAN_OUT_BATCH],
      );
    });
    for (const r of rows) this.metrics.eventsWritten.inc({ type: r.type }, Number(r.n));
  }

  private async claimAndDeliver(): Promise<void> {
    const free = MAX_IN_FLIGHT - this.inFlight.size;
    if (free <= 0) return;
    const perEndpoint = new Map<string, number>();
    for (const f of this.inFlight.values()) perEndpoint.set(f.endpoint, (perEndpoint.get(f.endpoint) ?? 0) + 1);
    const busy = [...perEndpoint].filter(([, n]) => n >= MAX_IN_FLIGHT_PER_ENDPOINT).map(([e]) => e);
    const claimed = await queryRows<Claimed>(
      this.dataSource.manager,
      `WITH cand AS (
         SELECT id FROM (
           SELECT d.id, d.seq, row_number() OVER (PARTITION BY d.endpoint ORDER BY d.seq) AS n
           FROM event_deliveries d LEFT JOIN webhooks w ON w.webhook_id = d.webhook_id
           WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND (d.claimed_until IS NULL OR d.claimed_until < now())
             AND CASE WHEN d.webhook_id IS NULL THEN $2::bool ELSE w.active END
             AND NOT (d.endpoint = ANY ($3::varchar[]))
             AND NOT EXISTS (SELECT 1 FROM event_deliveries p
                             WHERE p.endpoint = d.endpoint AND p.user_id = d.user_id AND p.state = 'pending' AND p.seq < d.seq)
         ) x WHERE n <= $4 ORDER BY seq LIMIT $1
       ), locked AS (
         SELECT d.id FROM event_deliveries d
         WHERE d.id IN (SELECT id FROM cand) AND d.state = 'pending' AND (d.claimed_until IS NULL OR d.claimed_until < now())
         FOR UPDATE SKIP LOCKED
       ), claimed AS (
         UPDATE event_deliveries d SET claimed_until = now() + make_interval(secs => $5), attempts = d.attempts + 1,
           round_attempts = d.round_attempts + 1
         FROM locked WHERE d.id = locked.id
         RETURNING d.id, d.event_id, d.webhook_id, d.endpoint, d.attempts, d.round_attempts, d.claimed_until::text AS token, d.seq
       )
       SELECT c.id::text, c.event_id, c.webhook_id, c.endpoint, c.attempts, c.round_attempts, c.token,
              e.type, e.created_at, e.data, w.url, w.secret
       FROM claimed c JOIN events e ON e.id = c.event_id LEFT JOIN webhooks w ON w.webhook_id = c.webhook_id
       ORDER BY c.seq`,
      [
        free,
        this.publisher?.isConnected() ?? false,
        busy,
        MAX_IN_FLIGHT_PER_ENDPOINT,
        Math.ceil(this.config.webhookTimeoutMs / 1000) + LEASE_MARGIN_SECONDS,
      ],
    );
    for (const c of claimed) {
      const work = (c.webhook_id === null ? this.publish(c) : this.post(c))
        .catch((error: unknown) => this.logger.warn({ err: (error as Error).message, event_id: c.event_id }, 'recording a delivery failed'))
        .finally(() => {
          this.inFlight.delete(c.id);
          this.wake();
        });
      this.inFlight.set(c.id, { endpoint: c.endpoint, work });
    }
  }

  private async publish(c: Claimed): Promise<void> {
    try {
      await this.publisher!.publish({ id: c.event_id, type: c.type, created_at: c.created_at.toISOString() }, eventJson(c), 10_000);
      await this.finish(c, 'delivered', null, { statusCode: null, error: null, durationMs: 0 });
      this.metrics.eventDeliveries.inc({ target: 'exchange', outcome: 'delivered' });
    } catch (error) {
      const delay = EXCHANGE_RETRY_DELAYS_MS[Math.min(c.round_attempts, EXCHANGE_RETRY_DELAYS_MS.length) - 1];
      await this.finish(c, 'pending', delay, { statusCode: null, error: (error as Error).message, durationMs: 0 });
      this.metrics.eventDeliveries.inc({ target: 'exchange', outcome: 'retrying' });
    }
  }

  /** One POST of the event to a webhook, signed; its outcome recorded whatever happens. */
  private async post(c: Claimed): Promise<void> {
    const body = eventJson(c);
    const started = performance.now();
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const refused =
        this.config.nodeEnv === 'production' && !this.config.webhookAllowPrivateNetworks ? await privateNetworkReason(c.url!) : undefined;
      if (refused) throw new Error(`refused: ${refused}`);
      const res = await fetch(c.url!, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'credits-service-webhooks/1',
          'x-credits-event-id': c.event_id,
          'x-credits-event-type': c.type,
          'x-credits-signature': signatureHeader(c.secret!, body),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.config.webhookTimeoutMs),
      });
      statusCode = res.status;
      if (res.status >= 200 && res.status < 300) await res.body?.cancel().catch(() => undefined);
      else error = `answered ${res.status}${await snippet(res)}`;
    } catch (e) {
      error = describeFetchError(e as Error, this.config.webhookTimeoutMs);
    }
    const durationMs = Math.round(performance.now() - started);
    const delays = this.config.webhookRetryDelaysMs;
    const outcome = error === null ? 'delivered' : c.round_attempts <= delays.length ? 'pending' : 'failed';
    await this.finish(c, outcome, outcome === 'pending' ? delays[c.round_attempts - 1] : null, { statusCode, error, durationMs });
    this.metrics.eventDeliveries.inc({ target: 'webhook', outcome: outcome === 'pending' ? 'retrying' : outcome });
    if (outcome !== 'delivered') {
      this.logger.warn(
        { event_id: c.event_id, webhook_id: c.webhook_id, attempt: c.attempts, status_code: statusCode, error, outcome },
        'webhook delivery failed',
      );
    }
  }

  /** Ends the claim: the delivery's new state and, for a webhook, the attempt's record, in one statement. */
  private async finish(
    c: Claimed,
    state: 'delivered' | 'pending' | 'failed',
    delayMs: number | null,
    attempt: { statusCode: number | null; error: string | null; durationMs: number },
  ): Promise<void> {
    await queryRows(
      this.dataSource.manager,
      `WITH done AS (
         UPDATE event_deliveries SET state = $3, claimed_until = NULL,
           next_attempt_at = COALESCE(now() + make_interval(secs => $4::float8 / 1000), next_attempt_at)
         WHERE id = $1 AND claimed_until = $2::timestamptz
         RETURNING event_id, webhook_id, attempts, state, next_attempt_at
       )
       INSERT INTO webhook_deliveries (event_id, webhook_id, attempt, status_code, error, duration_ms, outcome, next_attempt_at)
       SELECT event_id, webhook_id, attempts, $5, $6, $7, CASE state WHEN 'pending' THEN 'retrying' ELSE state END,
              CASE WHEN state = 'pending' THEN next_attempt_at END
       FROM done WHERE webhook_id IS NOT NULL`,
      [c.id, c.token, state, delayMs, attempt.statusCode, attempt.error?.slice(0, 500) ?? null, attempt.durationMs],
    );
  }

  /** Deletes events older than EVENT_RETENTION_DAYS whose deliveries are all finished (delivered or failed). */
  async prune(): Promise<number> {
    const rows = await queryRows<{ n: string }>(
      this.dataSource.manager,
      `WITH gone AS (
         DELETE FROM events WHERE id IN (
           SELECT e.id FROM events e
           WHERE e.created_at < now() - make_interval(days => $1) AND e.dispatched_at IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_id = e.id AND d.state = 'pending')
           ORDER BY e.created_at LIMIT 5000)
         RETURNING 1
       ) SELECT count(*)::text AS n FROM gone`,
      [this.config.eventRetentionDays],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Age of the oldest event not yet delivered everywhere it is going (0 when none). */
  private async outboxLagSeconds(): Promise<number> {
    const [row] = await queryRows<{ lag: string | null }>(
      this.dataSource.manager,
      `SELECT EXTRACT(EPOCH FROM now() - min(created_at))::text AS lag FROM (
         (SELECT created_at FROM events WHERE dispatched_at IS NULL ORDER BY seq LIMIT 1)
         UNION ALL
         (SELECT e.created_at FROM event_deliveries d JOIN events e ON e.id = d.event_id
          LEFT JOIN webhooks w ON w.webhook_id = d.webhook_id
          WHERE d.state = 'pending' AND (d.webhook_id IS NULL OR w.active) ORDER BY d.seq LIMIT 1)
       ) x`,
    );
    return row?.lag == null ? 0 : Math.max(0, Number(row.lag));
  }
}

/** The first bytes of a failing answer, for the attempt's error; the rest is never read. */
async function snippet(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < ERROR_SNIPPET_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    /* a body cut short or too slow: what came is enough */
  } finally {
    void reader.cancel().catch(() => undefined);
  }
  const text = Buffer.concat(chunks)
    .subarray(0, ERROR_SNIPPET_BYTES)
    .toString('utf8')
    .replace(/\p{Cc}+/gu, ' ')
    .trim()
    .slice(0, 200);
  return text ? `: ${text}` : '';
}

function describeFetchError(error: Error, timeoutMs: number): string {
  if (error.name === 'TimeoutError' || error.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code}${cause.message ? `: ${cause.message}` : ''}`;
  return error.message;
}
