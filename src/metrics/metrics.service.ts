import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Money } from '../common/money';

export type SettlementOutcome = 'settled' | 'already_settled' | 'failed';

/**
 * The service's Prometheus metrics (API.md §3), in a registry of this app instance's own: two
 * apps in one process (tests, embedding) never collide on prom-client's global registry.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly starts = new Counter({
    name: 'credits_starts_total',
    help: 'Start requests by outcome: accessible or the denial status word',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly settlements = new Counter({
    name: 'credits_settlements_total',
    help: 'Settlements by channel (http|queue) and outcome (settled|already_settled|failed)',
    labelNames: ['channel', 'outcome'] as const,
    registers: [this.registry],
  });

  /**
   * Credits charged, as a float: Prometheus values are doubles. This is reporting only — the
   * ledger, never this counter, is the record of money.
   */
  readonly charged = new Counter({
    name: 'credits_charged_total',
    help: 'Credits charged by settlements (approximate; the ledger is exact)',
    registers: [this.registry],
  });

  /** Requests per coalesced batch: 1 at light load; a batch of several is one SQL statement. */
  readonly batchSize = new Histogram({
    name: 'credits_batch_size',
    help: 'Requests per coalesced batch, by kind (start|settle); a batch of several is written by one SQL statement',
    labelNames: ['kind'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });

  /**
   * Batches whose statement failed for another reason than an unreachable database and whose
   * requests were then run one by one (BATCH_FALLBACK=split). Should stay 0: each one is a batch
   * that a fault of one request, or a bug of the batch SQL, made fail.
   */
  readonly batchFallbacks = new Counter({
    name: 'credits_batch_fallbacks_total',
    help: 'Batches (start|settle) whose statement failed and whose requests were run one by one',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly settlementFailures = new Counter({
    name: 'credits_settlement_failures_total',
    help: 'Queued settlements recorded as settlement failures, by status word',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });

  readonly activeHolds = new Gauge({
    name: 'credits_active_holds',
    help: 'Holds currently placed (status held)',
    registers: [this.registry],
    collect: async () => {
      if (this.activeHoldsSource) this.activeHolds.set(await this.activeHoldsSource());
    },
  });

  readonly queueDepth = new Gauge({
    name: 'credits_queue_messages',
    help: 'Messages waiting in each settlement queue (consumer lag)',
    labelNames: ['queue'] as const,
    registers: [this.registry],
    collect: async () => {
      for (const [queue, depth] of await (this.queueDepthSource?.() ?? Promise.resolve(new Map<string, number>()))) {
        this.queueDepth.set({ queue }, depth);
      }
    },
  });

  /** Counted by the relay that fans an event out: each event once, across instances. */
  readonly eventsWritten = new Counter({
    name: 'credits_events_total',
    help: 'Events taken from the outbox (written by committed changes), by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  readonly eventDeliveries = new Counter({
    name: 'credits_event_deliveries_total',
    help: 'Event delivery attempts by target (webhook|exchange) and outcome (delivered|retrying|failed)',
    labelNames: ['target', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly outboxLag = new Gauge({
    name: 'credits_outbox_lag_seconds',
    help: 'Age of the oldest event not yet delivered to every endpoint it is going to (0 when none)',
    registers: [this.registry],
    collect: async () => {
      if (this.outboxLagSource) this.outboxLag.set(await this.outboxLagSource());
    },
  });

  private outboxLagSource?: () => Promise<number>;
  private activeHoldsSource?: () => Promise<number>;
  private queueDepthSource?: () => Promise<Map<string, number>>;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Gauges read their value at scrape time from these sources. */
  setSources(sources: { activeHolds?: () => Promise<number>; queueDepth?: () => Promise<Map<string, number>> }): void {
    this.activeHoldsSource = sources.activeHolds ?? this.activeHoldsSource;
    this.queueDepthSource = sources.queueDepth ?? this.queueDepthSource;
  }

  setEventSources(sources: { outboxLagSeconds: () => Promise<number> }): void {
    this.outboxLagSource = sources.outboxLagSeconds;
  }

  recordCharge(amount: Money): void {
    // Reporting only (see `charged`): the decimal string's value as a double.
    this.charged.inc(Number(amount.toString()));
  }
}
