import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { DataSource, MoreThan } from 'typeorm';
import type { Actor } from '../audit/actor';
import { AuditService } from '../audit/audit.service';
import { LedgerService } from '../ledger/ledger.service';
import type { Caller } from '../common/api-key.guard';
import { DomainError, validationError } from '../common/domain-error';
import { Money } from '../common/money';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { queryRows } from '../database/sql';
import { LIVE_HOLD_STATUS } from '../ledger/hold-states';
import { ApiKey } from './api-key.entity';
import { CreateKeyDto, RotateKeyDto, UpdateKeyDto } from './dto/keys.dto';

export const keyNotFound = (keyId: string) => new DomainError('key_not_found', `No API key ${keyId} exists.`);
const keyRevoked = (keyId: string) => new DomainError('conflict', `The API key ${keyId} is revoked.`);

export const sha256 = (secret: string) => createHash('sha256').update(secret).digest('hex');

/**
 * Whether two sha-256 hex digests are equal, in constant time: `timingSafeEqual` on their 32 bytes
 * (never `===`, which stops at the first differing character). Secrets themselves are never
 * compared: a presented secret is hashed first, and the database finds its record by that hash
 * (an index lookup whose timing depends only on the presented secret's hash, which tells an
 * attacker nothing about any stored secret). The environment's keys: ApiKeyGuard.identify.
 */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === 32 && y.length === 32 && timingSafeEqual(x, y);
}

export interface KeyView {
  key_id: string;
  name: string;
  scope: ApiKey['scope'];
  prefix: string;
  allowed_features: string[];
  spend_cap: { amount: string; period: 'day' | 'month' } | null;
  expires_at: string | null;
  revoked_at: string | null;
  created_at: string;
  updated_at: string;
}

export type KeyDetailView = KeyView & { spend_period: 'day' | 'month'; spent_this_period: string; period_resets_at: string };

export function keyView(k: ApiKey): KeyView {
  return {
    key_id: k.keyId,
    name: k.name,
    scope: k.scope,
    prefix: k.prefix,
    allowed_features: k.allowedFeatures,
    spend_cap: k.spendCapAmount && k.spendCapPeriod ? { amount: k.spendCapAmount.toString(), period: k.spendCapPeriod } : null,
    expires_at: k.expiresAt?.toISOString() ?? null,
    revoked_at: k.revokedAt?.toISOString() ?? null,
    created_at: k.createdAt.toISOString(),
    updated_at: k.updatedAt.toISOString(),
  };
}

/** A new secret: 32 random bytes, base64url, behind a prefix that says what it is. */
function newSecret(scope: ApiKey['scope']): { secret: string; prefix: string } {
  const secret = `ck_${scope === 'admin' ? 'a' : 's'}_${randomBytes(32).toString('base64url')}`;
  return { secret, prefix: secret.slice(0, 12) };
}

/** A cached lookup: the record as read, and until when it may be used without reading again. */
interface Cached {
  key: ApiKey;
  until: number;
}

@Injectable()
export class KeysService {
  /**
   * Secret hash → record, for KEY_CACHE_TTL_MS (1 s by default): a request with a known key costs
   * no round trip, and a revocation (or an update) made on another instance is seen within the
   * TTL; on this instance it is seen at once (the entry is dropped). Unknown secrets are not
   * cached: a key created on another instance works on its first request here. Expiry and the
   * rotation grace are checked against the clock on every request, never cached.
   */
  private readonly cache = new Map<string, Cached>();

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly audit: AuditService,
    private readonly ledger: LedgerService,
  ) {}

  /** The caller a presented secret identifies, or undefined (unknown, revoked, expired, past its grace). */
  async authenticate(secret: string): Promise<Caller | undefined> {
    const hash = sha256(secret);
    const now = Date.now();
    let cached = this.cache.get(hash);
    if (!cached || cached.until <= now) {
      const key = await this.dataSource
        .getRepository(ApiKey)
        .createQueryBuilder('k')
        .where('k.secret_hash = :hash OR k.previous_secret_hash = :hash', { hash })
        .getOne();
      if (!key) {
        this.cache.delete(hash);
        return undefined;
      }
      cached = { key, until: now + this.config.keyCacheTtlMs };
      if (this.config.keyCacheTtlMs > 0) this.cache.set(hash, cached);
    }
    const key = cached.key;
    if (key.revokedAt || (key.expiresAt && key.expiresAt.getTime() <= now)) return undefined;
    if (!sameHash(key.secretHash, hash) && !(key.previousValidUntil && key.previousValidUntil.getTime() > now)) return undefined;
    return {
      scope: key.scope,
      keyId: key.keyId,
      recordId: key.keyId,
      name: key.name,
      allowedFeatures: key.allowedFeatures,
      spendCap: key.spendCapAmount && key.spendCapPeriod ? { amount: key.spendCapAmount, period: key.spendCapPeriod } : null,
    };
  }

  /** Drops every cached entry of a key on this instance (its current and previous secret). */
  private forget(key: Pick<ApiKey, 'secretHash' | 'previousSecretHash'>): void {
    this.cache.delete(key.secretHash);
    if (key.previousSecretHash) this.cache.delete(key.previousSecretHash);
  }

  async create(dto: CreateKeyDto, actor: Actor): Promise<KeyView & { key: string }> {
    const expiresAt = dto.expires_at == null ? null : new Date(dto.expires_at);
    if (expiresAt && expiresAt.getTime() <= Date.now()) throw validationError([{ field: 'expires_at', message: 'must be in the future' }]);
    const { secret, prefix } = newSecret(dto.scope);
    const key = await this.dataSource.transaction(async (manager) => {
      const repo = manager.getRepository(ApiKey);
      const keyId = randomUUID();
      await repo.insert({
        keyId,
        name: dto.name,
        scope: dto.scope,
        prefix,
        secretHash: sha256(secret),
        allowedFeatures: dto.allowed_features ?? [],
        spendCapAmount: dto.spend_cap ? Money.parse(dto.spend_cap.amount) : null,
        spendCapPeriod: dto.spend_cap?.period ?? null,
        expiresAt,
      });
      const created = await repo.findOneByOrFail({ keyId });
      await this.audit.append(manager, actor, 'key.create', keyId, { ...keyView(created) });
      return created;
    });
    // The secret is in this answer only: never stored, logged or shown again.
    return { ...keyView(key), key: secret };
  }

  async list(cursor: string | undefined, limit = DEFAULT_PAGE_SIZE): Promise<Page<KeyView>> {
    if (cursor !== undefined && !isUuid(cursor)) throw validationError([{ field: 'cursor', message: 'is not a valid cursor' }]);
    const rows = await this.dataSource.getRepository(ApiKey).find({
      where: cursor ? { keyId: MoreThan(cursor.toLowerCase()) } : {},
      order: { keyId: 'ASC' },
      take: limit + 1,
    });
    return toPage(rows, limit, (k) => k.keyId, keyView);
  }

  async get(keyId: string): Promise<KeyDetailView> {
    const key = await this.find(keyId);
    const period = key.spendCapPeriod ?? 'day';
    const spent = await this.spentThisPeriod(key.keyId, period);
    return {
      ...keyView(key),
      spend_period: period,
      spent_this_period: spent.spent.toString(),
      period_resets_at: spent.resetsAt.toISOString(),
    };
  }

  /**
   * What the key spent in the current UTC period: the charges of its ledger entries since the
   * period began (index ledger_entries_by_key) plus what its live holds hold (holds_live_by_key) —
   * the figure the spend cap is checked against. Computed from the ledger itself, so it is right
   * for every key, capped or not; PLACE_HOLDS checks the same figure from the counters on a capped
   * key's row (see the migration 1764000000017).
   */
  async spentThisPeriod(keyId: string, period: 'day' | 'month'): Promise<{ spent: Money; resetsAt: Date }> {
    const [row] = await queryRows<{ spent: string; resets_at: Date }>(
      this.dataSource.manager,
      `WITH p AS (SELECT date_trunc($2, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS starts)
       SELECT (COALESCE((SELECT -sum(amount) FROM ledger_entries, p WHERE key_id = $1 AND kind = 'charge' AND created_at >= p.starts), 0)
             + COALESCE((SELECT sum(amount) FROM holds WHERE key_id = $1 AND status = '${LIVE_HOLD_STATUS}'), 0))::text AS spent,
              (SELECT (starts AT TIME ZONE 'UTC' + ('1 ' || $2)::interval) AT TIME ZONE 'UTC' FROM p) AS resets_at`,
      [keyId, period],
    );
    return { spent: Money.fromDb(row.spent), resetsAt: row.resets_at };
  }

  async update(keyId: string, dto: UpdateKeyDto, actor: Actor): Promise<KeyView> {
    return this.change(keyId, actor, 'key.update', (key) => {
      const changes: Partial<ApiKey> = {};
      if (dto.name != null) changes.name = dto.name;
      if (dto.allowed_features != null) changes.allowedFeatures = dto.allowed_features;
      if (dto.spend_cap !== undefined) {
        changes.spendCapAmount = dto.spend_cap ? Money.parse(dto.spend_cap.amount) : null;
        changes.spendCapPeriod = dto.spend_cap?.period ?? null;
      }
      if (key.revokedAt) throw keyRevoked(keyId);
      return changes;
    });
  }

  /** Effective at once on this instance, within KEY_CACHE_TTL_MS on the others. Repeating it is harmless. */
  async revoke(keyId: string, actor: Actor): Promise<KeyView> {
    return this.change(keyId, actor, 'key.revoke', (key) => (key.revokedAt ? {} : { revokedAt: new Date() }));
  }

  /** A new secret for the same key; the old one keeps working for `grace_seconds`. */
  async rotate(keyId: string, dto: RotateKeyDto, actor: Actor): Promise<KeyView & { key: string }> {
    let secret = '';
    const view = await this.change(keyId, actor, 'key.rotate', (key) => {
      if (key.revokedAt) throw keyRevoked(keyId);
      const next = newSecret(key.scope);
      secret = next.secret;
      const grace = dto.grace_seconds ?? 0;
      return {
        prefix: next.prefix,
        secretHash: sha256(next.secret),
        previousSecretHash: grace > 0 ? key.secretHash : null,
        previousValidUntil: grace > 0 ? new Date(Date.now() + grace * 1000) : null,
      };
    });
    return { ...view, key: secret };
  }

  /**
   * One audited change of a key: the row is locked, `decide` returns the new values (or throws),
   * and the update and its audit row commit together. Cached entries of the old and the new
   * secrets are dropped on this instance.
   */
  private async change(
    keyId: string,
    actor: Actor,
    action: 'key.update' | 'key.revoke' | 'key.rotate',
    decide: (key: ApiKey) => Partial<ApiKey>,
  ) {
    if (!isUuid(keyId)) throw keyNotFound(keyId);
    const updated = await this.dataSource.transaction(async (manager) => {
      const repo = manager.getRepository(ApiKey);
      const key = await repo.findOne({ where: { keyId: keyId.toLowerCase() }, lock: { mode: 'pessimistic_write' } });
      if (!key) throw keyNotFound(keyId);
      const changes = decide(key);
      this.forget(key);
      if (Object.keys(changes).length === 0) return key;
      await repo.update({ keyId: key.keyId }, changes);
      // A cap set or changed starts from what the key holds and spent already (under this row lock).
      if ('spendCapAmount' in changes || 'spendCapPeriod' in changes) await this.ledger.recomputeKeySpend(manager, key.keyId);
      const after = await repo.findOneByOrFail({ keyId: key.keyId });
      await this.audit.append(manager, actor, action, key.keyId, { before: keyView(key), after: keyView(after) });
      return after;
    });
    this.forget(updated);
    return keyView(updated);
  }

  private async find(keyId: string): Promise<ApiKey> {
    const key = isUuid(keyId) ? await this.dataSource.getRepository(ApiKey).findOneBy({ keyId: keyId.toLowerCase() }) : null;
    if (!key) throw keyNotFound(keyId);
    return key;
  }
}

function isUuid(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
