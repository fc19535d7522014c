import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomBytes, randomUUID } from 'node:crypto';
import { DataSource, EntityManager } from 'typeorm';
import type { Actor } from '../audit/actor';
import { AuditService } from '../audit/audit.service';
import { DomainError, validationError } from '../common/domain-error';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { queryRows } from '../database/sql';
import type {
  CreateWebhookDto,
  EventResponseDoc,
  EventsQueryDto,
  RedeliverResponseDoc,
  UpdateWebhookDto,
  WebhookDeliveryResponseDoc,
  WebhookResponseDoc,
  WebhookWithSecretResponseDoc,
} from './dto/events.dto';
import type { EventType } from './event-types';
import { privateNetworkReason } from './network-guard';

export const webhookNotFound = (id: string) => new DomainError('webhook_not_found', `No webhook ${id} exists.`);
export const eventNotFound = (id: string) => new DomainError('event_not_found', `No event ${id} exists.`);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BIGINT = /^\d{1,19}$/;

interface WebhookRow {
  webhook_id: string;
  url: string;
  events: string[];
  description: string | null;
  active: boolean;
  created_at: Date;
  updated_at: Date;
}
const WEBHOOK_COLUMNS = 'webhook_id, url, events, description, active, created_at, updated_at';

export function webhookView(w: WebhookRow): WebhookResponseDoc {
  return {
    webhook_id: w.webhook_id,
    url: w.url,
    events: w.events,
    description: w.description,
    active: w.active,
    created_at: w.created_at.toISOString(),
    updated_at: w.updated_at.toISOString(),
  };
}

interface EventRow {
  id: string;
  seq: string;
  type: EventType;
  user_id: string | null;
  data: Record<string, unknown>;
  created_at: Date;
  pending: number;
  delivered: number;
  failed: number;
}

function eventView(e: EventRow): EventResponseDoc {
  return {
    id: e.id,
    type: e.type,
    created_at: e.created_at.toISOString(),
    data: e.data,
    user_id: e.user_id,
    deliveries: { pending: Number(e.pending), delivered: Number(e.delivered), failed: Number(e.failed) },
  };
}

const EVENT_SELECT = `SELECT e.id, e.seq, e.type, e.user_id, e.data, e.created_at,
   (SELECT count(*) FILTER (WHERE d.state = 'pending') FROM event_deliveries d WHERE d.event_id = e.id)
     + CASE WHEN e.dispatched_at IS NULL THEN 1 ELSE 0 END AS pending,
   (SELECT count(*) FILTER (WHERE d.state = 'delivered') FROM event_deliveries d WHERE d.event_id = e.id) AS delivered,
   (SELECT count(*) FILTER (WHERE d.state = 'failed') FROM event_deliveries d WHERE d.event_id = e.id) AS failed
 FROM events e`;

/** Webhook management and the outbox's listing (API.md §10). Admin scope. */
@Injectable()
export class WebhooksService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly audit: AuditService,
  ) {}

  /** In production, a URL resolving to a private network is refused (unless allowed by configuration). */
  private async checkUrl(url: string): Promise<void> {
    if (this.config.nodeEnv !== 'production' || this.config.webhookAllowPrivateNetworks) return;
    const reason = await privateNetworkReason(url);
    if (reason) throw validationError([{ field: 'url', message: `is refused: ${reason}` }]);
  }

  async create(dto: CreateWebhookDto, actor: Actor): Promise<WebhookWithSecretResponseDoc> {
    await this.checkUrl(dto.url);
    const secret = `whsec_${randomBytes(32).toString('base64url')}`;
    const webhook = await this.dataSource.transaction(async (manager) => {
      const [row] = await queryRows<WebhookRow>(
        manager,
        `INSERT INTO webhooks (webhook_id, url, events, description, secret) VALUES ($1, $2, $3, $4, $5) RETURNING ${WEBHOOK_COLUMNS}`,
        [randomUUID(), dto.url, dto.events, dto.description ?? null, secret],
      );
      const view = webhookView(row);
      await this.audit.append(manager, actor, 'webhook.create', view.webhook_id, { ...view });
      return view;
    });
    // The secret is in this answer only: never logged, audited or answered again.
    return { ...webhook, secret };
  }

  async list(cursor: string | undefined, limit = DEFAULT_PAGE_SIZE): Promise<Page<WebhookResponseDoc>> {
    if (cursor !== undefined && !UUID.test(cursor)) throw validationError([{ field: 'cursor', message: 'is not a valid cursor' }]);
    const rows = await queryRows<WebhookRow>(
      this.dataSource.manager,
      `SELECT ${WEBHOOK_COLUMNS} FROM webhooks WHERE $1::uuid IS NULL OR webhook_id > $1::uuid ORDER BY webhook_id LIMIT $2`,
      [cursor ?? null, limit + 1],
    );
    return toPage(rows, limit, (w) => w.webhook_id, webhookView);
  }

  async get(id: string): Promise<WebhookResponseDoc> {
    return webhookView(await this.find(this.dataSource.manager, id));
  }

  private async find(manager: EntityManager, id: string, lock = false): Promise<WebhookRow> {
    const [row] = UUID.test(id)
      ? await queryRows<WebhookRow>(manager, `SELECT ${WEBHOOK_COLUMNS} FROM webhooks WHERE webhook_id = $1 ${lock ? 'FOR UPDATE' : ''}`, [
          id,
        ])
      : [];
    if (!row) throw webhookNotFound(id);
    return row;
  }

  async update(id: string, dto: UpdateWebhookDto, actor: Actor): Promise<WebhookResponseDoc> {
    if (dto.url !== undefined) await this.checkUrl(dto.url);
    return this.dataSource.transaction(async (manager) => {
      const before = webhookView(await this.find(manager, id, true));
      const [row] = await queryRows<WebhookRow>(
        manager,
        `UPDATE webhooks SET url = COALESCE($2, url), events = COALESCE($3, events), active = COALESCE($4, active),
           description = COALESCE($5, description), updated_at = now()
         WHERE webhook_id = $1 RETURNING ${WEBHOOK_COLUMNS}`,
        [id, dto.url ?? null, dto.events ?? null, dto.active ?? null, dto.description ?? null],
      );
      const after = webhookView(row);
      const changes = Object.fromEntries(
        (['url', 'events', 'active', 'description'] as const)
          .filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
          .map((k) => [k, { from: before[k], to: after[k] }]),
      );
      await this.audit.append(manager, actor, 'webhook.update', id, changes);
      return after;
    });
  }

  /** Deletes the webhook with its pending deliveries and its attempt history. */
  async delete(id: string, actor: Actor): Promise<WebhookResponseDoc> {
    return this.dataSource.transaction(async (manager) => {
      const view = webhookView(await this.find(manager, id, true));
      await manager.query(`DELETE FROM webhooks WHERE webhook_id = $1`, [id]);
      await this.audit.append(manager, actor, 'webhook.delete', id, { ...view });
      return view;
    });
  }

  /** Every attempt on the webhook, newest first; the cursor is the last attempt id seen. */
  async deliveries(id: string, cursor: string | undefined, limit = DEFAULT_PAGE_SIZE): Promise<Page<WebhookDeliveryResponseDoc>> {
    await this.find(this.dataSource.manager, id);
    if (cursor !== undefined && !BIGINT.test(cursor)) throw validationError([{ field: 'cursor', message: 'is not a valid cursor' }]);
    const rows = await queryRows<{
      id: string;
      event_id: string;
      attempt: number;
      status_code: number | null;
      error: string | null;
      duration_ms: number;
      at: Date;
      outcome: WebhookDeliveryResponseDoc['outcome'];
      next_attempt_at: Date | null;
    }>(
      this.dataSource.manager,
      `SELECT id::text, event_id, attempt, status_code, error, duration_ms, at, outcome, next_attempt_at FROM webhook_deliveries
       WHERE webhook_id = $1 AND ($2::bigint IS NULL OR id < $2::bigint) ORDER BY id DESC LIMIT $3`,
      [id, cursor ?? null, limit + 1],
    );
    return toPage(
      rows,
      limit,
      (r) => r.id,
      (r) => ({
        id: r.id,
        event_id: r.event_id,
        attempt: r.attempt,
        status_code: r.status_code,
        error: r.error,
        duration_ms: r.duration_ms,
        at: r.at.toISOString(),
        outcome: r.outcome,
        next_attempt_at: r.next_attempt_at?.toISOString() ?? null,
      }),
    );
  }

  /** The outbox, newest first; the cursor is an opaque position (the event's sequence number). */
  async events(query: EventsQueryDto): Promise<Page<EventResponseDoc>> {
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    if (query.cursor !== undefined && !BIGINT.test(query.cursor)) {
      throw validationError([{ field: 'cursor', message: 'is not a valid cursor' }]);
    }
    const rows = await queryRows<EventRow>(
      this.dataSource.manager,
      `${EVENT_SELECT}
       WHERE ($1::varchar IS NULL OR e.type = $1) AND ($2::varchar IS NULL OR e.user_id = $2) AND ($3::bigint IS NULL OR e.seq < $3::bigint)
       ORDER BY e.seq DESC LIMIT $4`,
      [query.type ?? null, query.user_id ?? null, query.cursor ?? null, limit + 1],
    );
    return toPage(rows, limit, (e) => String(e.seq), eventView);
  }

  async event(id: string): Promise<EventResponseDoc> {
    const [row] = UUID.test(id) ? await queryRows<EventRow>(this.dataSource.manager, `${EVENT_SELECT} WHERE e.id = $1`, [id]) : [];
    if (!row) throw eventNotFound(id);
    return eventView(row);
  }

  /**
   * Delivers the event again to every matching active webhook and to the exchange (when RabbitMQ
   * is configured): each such delivery is pending again, due now, with a fresh retry budget. A
   * delivery in flight finishes first (its lease is kept).
   */
  async redeliver(id: string): Promise<RedeliverResponseDoc> {
    const [event] = UUID.test(id)
      ? await queryRows<{ id: string }>(this.dataSource.manager, `SELECT id FROM events WHERE id = $1`, [id])
      : [];
    if (!event) throw eventNotFound(id);
    const rows = await queryRows<{ n: string }>(
      this.dataSource.manager,
      `WITH e AS (SELECT id, seq, type, user_id FROM events WHERE id = $1),
       targets AS (
         SELECT e.id, e.seq, e.user_id, w.webhook_id FROM e JOIN webhooks w ON w.active AND w.events && ARRAY[e.type, '*']::varchar[]
         UNION ALL SELECT e.id, e.seq, e.user_id, NULL FROM e WHERE $2
       ), upserted AS (
         INSERT INTO event_deliveries (event_id, seq, user_id, webhook_id) SELECT * FROM targets
         ON CONFLICT (event_id, endpoint) DO UPDATE SET state = 'pending', round_attempts = 0, next_attempt_at = now()
         RETURNING 1
       )
       SELECT count(*)::text AS n FROM upserted`,
      [id, this.config.rabbitmqUrl !== undefined],
    );
    return { status: 'queued', event_id: id, deliveries: Number(rows[0]?.n ?? 0) };
  }
}
