import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager, FindOptionsWhere, IsNull, LessThan } from 'typeorm';
import { validationError } from '../common/domain-error';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { jsonb } from '../database/sql';
import type { Actor } from './actor';
import { AuditAction, AuditEntry } from './audit-entry.entity';

export interface AuditView {
  id: string;
  at: string;
  actor: { key_id: string; name: string };
  action: AuditAction;
  target: string;
  request_id: string | null;
  changes: Record<string, unknown>;
}

/** Field names whose values never enter the log, at any depth (a key's secret, a webhook's secret). */
const SECRET_FIELDS = /^(key|secret|secret_hash|previous_secret_hash|api_key|password|token)$/i;

/** `changes` without secrets: a secret field keeps its name, its value becomes "[redacted]". */
export function withoutSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutSecrets);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_FIELDS.test(k) ? '[redacted]' : withoutSecrets(v)]));
}

/**
 * The fields that differ between two views of a thing, before and after: an update's `changes`.
 * `updated_at` is not a change of its own.
 */
export function changedFields<T extends object>(before: T, after: T): { before: Partial<T>; after: Partial<T> } {
  const b: Partial<T> = {};
  const a: Partial<T> = {};
  for (const k of Object.keys(after) as (keyof T)[]) {
    if (k === 'updated_at' || JSON.stringify(before[k]) === JSON.stringify(after[k])) continue;
    b[k] = before[k];
    a[k] = after[k];
  }
  return { before: b, after: a };
}

export function auditView(e: AuditEntry): AuditView {
  return {
    id: e.id,
    at: e.at.toISOString(),
    actor: { key_id: e.actorKeyId ?? 'env', name: e.actorName },
    action: e.action,
    target: e.target,
    request_id: e.requestId,
    changes: e.changes,
  };
}

@Injectable()
export class AuditService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /**
   * Appends one row with the caller's transaction, so the row exists if and only if the change
   * committed. `changes` is what the write changed (never a secret: see withoutSecrets).
   */
  async append(manager: EntityManager, actor: Actor, action: AuditAction, target: string, changes: Record<string, unknown>): Promise<void> {
    await manager.getRepository(AuditEntry).insert({
      actorKeyId: actor.keyId,
      actorName: actor.name,
      action,
      target,
      requestId: actor.requestId,
      changes: jsonb(withoutSecrets(changes) as Record<string, unknown>),
    });
  }

  /** Newest first; the cursor is the last id seen. */
  async list(query: { target?: string; actor?: string; action?: AuditAction; cursor?: string; limit?: number }): Promise<Page<AuditView>> {
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const where: FindOptionsWhere<AuditEntry> = {};
    if (query.target !== undefined) where.target = query.target;
    if (query.action !== undefined) where.action = query.action;
    if (query.actor !== undefined) {
      // `env` names the environment's keys; anything else must be a key id.
      if (query.actor === 'env') where.actorKeyId = IsNull();
      else if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(query.actor)) {
        throw validationError([{ field: 'actor', message: 'must be a key_id or "env"' }]);
      } else where.actorKeyId = query.actor.toLowerCase();
    }
    if (query.cursor !== undefined) {
      if (!/^\d{1,19}$/.test(query.cursor)) throw validationError([{ field: 'cursor', message: 'is not a valid cursor' }]);
      where.id = LessThan(query.cursor);
    }
    const rows = await this.dataSource.getRepository(AuditEntry).find({ where, order: { id: 'DESC' }, take: limit + 1 });
    return toPage(rows, limit, (e) => e.id, auditView);
  }
}
