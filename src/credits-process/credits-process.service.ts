import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { createHash, randomUUID } from 'node:crypto';
import { DataSource, EntityManager } from 'typeorm';
import { Coalescer } from '../common/coalescer';
import { isDatabaseUnavailable } from '../common/database-errors';
import { DomainError } from '../common/domain-error';
import { MetricsService } from '../metrics/metrics.service';
import { Money } from '../common/money';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { queryRows } from '../database/sql';
import { Feature } from '../features/feature.entity';
import { featureNotFound } from '../features/features.errors';
import { PricingCatalog } from '../pricing/pricing-catalog';
import type { Quote } from '../pricing/pricing-engine';
import { LedgerEntry } from '../wallets/ledger-entry.entity';
import { ledgerEntryView } from '../wallets/wallets.views';
import { isUuid, WalletsService } from '../wallets/wallets.service';
import { walletNotFound } from '../wallets/wallets.errors';
import { EndMultiModelDto } from './dto/credits-process.dto';
import {
  alreadySettled,
  featureInactive,
  featureNotPermitted,
  holdCancelled,
  idempotencyConflict,
  insufficientCredits,
  usageKeyMismatch,
  usageKeyNotFound,
  walletSuspended,
} from './credits-process.errors';
import { Hold } from './hold.entity';

export type Channel = 'http' | 'queue';

export interface StartResult {
  status: 'accessible';
  usage_key: string;
  user_id: string;
  feature_endpoint_id: string;
  credits: string;
  balance: string;
  held: string;
  hold_amount: string;
  expires_at: string;
}

export interface SettlementResult {
  status: 'settled' | 'already_settled';
  usage_key: string;
  transaction_id: string;
  user_id: string;
  feature_endpoint_id: string;
  credits_charged: string;
  credits: string;
  balance: string;
  held: string;
  late: boolean;
  usages: unknown[];
}

interface StartRow {
  balance: string;
  held: string;
  hold_amount: string;
  expires_at: Date;
}

interface StartRequest {
  userId: string;
  featureEndpointId: string;
}

interface SettleRequest {
  dto: EndMultiModelDto;
  channel: Channel;
}

/** A settlement ready for the set-based statement: its key, its priced charge. */
interface Priced {
  index: number;
  dto: EndMultiModelDto;
  quote: Quote;
  usageKey: string;
  channel: Channel;
}

/**
 * The credits process: start (check + hold), settle (price + charge + release), cancel, expire.
 * Both transports (HTTP controller, RabbitMQ consumer) call these same methods.
 */
@Injectable()
export class CreditsProcessService {
  private readonly logger = new Logger(CreditsProcessService.name);

  /**
   * Concurrent starts, and concurrent settlements (HTTP and queue alike), are written by one
   * set-based statement per batch: one round trip and one commit for the lot instead of one each.
   * A batch forms only from requests that are already waiting, so a lone request is never delayed.
   */
  private readonly starts: Coalescer<StartRequest, StartResult>;
  private readonly settlements: Coalescer<SettleRequest, SettlementResult>;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly wallets: WalletsService,
    private readonly catalog: PricingCatalog,
    private readonly metrics: MetricsService,
  ) {
    metrics.setSources({ activeHolds: () => this.activeHolds() });
    this.starts = new Coalescer((items) => this.startMany(items), config.batchMaxSize, config.batchConcurrency);
    this.settlements = new Coalescer((items) => this.settleMany(items), config.batchMaxSize, config.batchConcurrency);
  }

  private async activeHolds(): Promise<number> {
    const [row] = await this.dataSource.query(`SELECT count(*)::int AS n FROM holds WHERE status = 'held'`);
    return row.n as number;
  }

  /**
   * Places a hold of the feature's min_holding_credits if every check passes. The happy path is
   * ONE statement: the conditional UPDATE takes the wallet's row lock and re-checks available
   * credits against the committed row, so N concurrent starts with room for K give exactly K.
   * Only when it matches nothing do we look at why (and answer in the contract's check order).
   */
  async start(userId: string, featureEndpointId: string): Promise<StartResult> {
    try {
      const result = await this.starts.submit({ userId, featureEndpointId });
      this.metrics.starts.inc({ outcome: 'accessible' });
      return result;
    } catch (error) {
      if (error instanceof DomainError) this.metrics.starts.inc({ outcome: error.code });
      throw error;
    }
  }

  /**
   * A batch of starts: the holds that fit are placed by ONE statement (`tryHolds`); any start it
   * did not place — refused, or the statement failed — takes the single path, which re-checks,
   * frees expired holds and names the reason. So a batch answers exactly what its starts would
   * have answered one by one. Resolves once the batch statement is done, with one answer per
   * start: a placed start is answered at once, not after the refused ones' single paths.
   */
  private async startMany(items: StartRequest[]): Promise<Promise<StartResult>[]> {
    const keys = items.map(() => randomUUID());
    this.metrics.batchSize.observe({ kind: 'start' }, items.length);
    let placed = new Map<number, StartRow>();
    if (items.length > 1) {
      try {
        placed = await this.tryHolds(items, keys);
      } catch (error) {
        // Unreachable database: every start of the batch gets that answer (503), not N more tries.
        if (isDatabaseUnavailable(error)) return items.map(() => Promise.reject(error));
        this.logger.warn({ err: (error as Error).message, size: items.length }, 'batched start failed; placing its holds one by one');
      }
    }
    return items.map((item, i) => {
      const row = placed.get(i);
      return row ? Promise.resolve(startView(keys[i], item, row)) : this.placeHold(item.userId, item.featureEndpointId, keys[i]);
    });
  }

  private async placeHold(userId: string, featureEndpointId: string, usageKey: string): Promise<StartResult> {
    let row = await this.tryHold(userId, featureEndpointId, usageKey);
    if (!row && (await this.expireHolds(userId)) > 0) row = await this.tryHold(userId, featureEndpointId, usageKey);
    for (let attempt = 1; !row; attempt++) {
      const why = await this.whyNotAccessible(userId, featureEndpointId);
      // The refusal was decided by the conditional UPDATE; the reason is read by a later statement.
      // If settlements released credits in between, the reason would say "insufficient" while
      // showing enough: try the hold again instead of answering figures that contradict it.
      if (!(why instanceof StaleRefusal)) throw why;
      if (attempt >= STALE_REFUSAL_RETRIES) throw why.error;
      row = await this.tryHold(userId, featureEndpointId, usageKey);
    }
    return startView(usageKey, { userId, featureEndpointId }, row);
  }

  /**
   * Places the holds of several starts in ONE statement, with the same checks as `tryHold`. The
   * wallets are locked first, in user_id order (the order every multi-wallet statement uses, so
   * batches cannot deadlock each other), and read as committed under that lock. Starts on one
   * wallet are taken in arrival order, each against what the earlier ones left available; after
   * the first that does not fit, none of that wallet's later starts is placed here (they go the
   * single path). Returns the placed ones by index, with balance and held as of each hold.
   */
  private async tryHolds(items: StartRequest[], keys: string[]): Promise<Map<number, StartRow>> {
    const rows = await queryRows<StartRow & { ord: string }>(
      this.dataSource.manager,
      `WITH r AS (
         SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::uuid[]) WITH ORDINALITY AS r(user_id, feature_endpoint_id, usage_key, ord)
       ), f AS (
         SELECT feature_endpoint_id, min_holding_credits AS amount, COALESCE(hold_ttl_seconds, $4) AS ttl, allowed_plans
         FROM features WHERE feature_endpoint_id IN (SELECT feature_endpoint_id FROM r) AND active
       ), locked AS (
         SELECT user_id, plan, balance, held FROM wallets
         WHERE user_id IN (SELECT user_id FROM r) AND status = 'active'
         ORDER BY user_id FOR UPDATE
       ), c AS (
         SELECT r.*, f.amount, f.ttl, l.balance, l.held + sum(f.amount) OVER w - f.amount AS held_before
         FROM r JOIN f USING (feature_endpoint_id) JOIN locked l USING (user_id)
         WHERE cardinality(f.allowed_plans) = 0 OR l.plan = ANY (f.allowed_plans)
         WINDOW w AS (PARTITION BY r.user_id ORDER BY r.ord)
       ), ok AS (
         SELECT * FROM (
           SELECT c.*, bool_and(balance - held_before > 0 AND balance - held_before >= amount) OVER (PARTITION BY user_id ORDER BY ord) AS fits FROM c
         ) x WHERE fits
       ), w AS (
         UPDATE wallets SET held = wallets.held + t.amount, version = wallets.version + t.n, updated_at = now()
         FROM (SELECT user_id, sum(amount) AS amount, count(*)::int AS n FROM ok GROUP BY user_id) t
         WHERE wallets.user_id = t.user_id
       ), h AS (
         INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at)
         SELECT usage_key, user_id, feature_endpoint_id, amount, 'held', now() + make_interval(secs => ttl) FROM ok
         RETURNING usage_key, expires_at
       )
       SELECT ok.ord, ok.balance, ok.held_before + ok.amount AS held, ok.amount AS hold_amount, h.expires_at FROM ok JOIN h USING (usage_key)`,
      [items.map((i) => i.userId), items.map((i) => i.featureEndpointId), keys, this.config.holdTtlSeconds],
      { prepared: true },
    );
    return new Map(rows.map((row) => [Number(row.ord) - 1, row]));
  }

  private async tryHold(userId: string, featureEndpointId: string, usageKey: string): Promise<StartRow | undefined> {
    const rows = await queryRows<StartRow>(
      this.dataSource.manager,
      `WITH f AS (
         SELECT feature_endpoint_id, min_holding_credits, COALESCE(hold_ttl_seconds, $3) AS ttl, allowed_plans
         FROM features WHERE feature_endpoint_id = $2 AND active
       ), w AS (
         UPDATE wallets w SET held = w.held + f.min_holding_credits, version = w.version + 1, updated_at = now()
         FROM f
         WHERE w.user_id = $1 AND w.status = 'active'
           AND (cardinality(f.allowed_plans) = 0 OR w.plan = ANY (f.allowed_plans))
           AND w.balance - w.held > 0
           AND w.balance - w.held >= f.min_holding_credits
         RETURNING w.balance, w.held, f.min_holding_credits, f.ttl
       ), h AS (
         INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at)
         SELECT $4, $1, $2, w.min_holding_credits, 'held', now() + make_interval(secs => w.ttl) FROM w
         RETURNING expires_at
       )
       SELECT w.balance, w.held, w.min_holding_credits AS hold_amount, h.expires_at FROM w, h`,
      [userId, featureEndpointId, this.config.holdTtlSeconds, usageKey],
      { prepared: true },
    );
    return rows[0];
  }

  /**
   * Reads wallet and feature to name the first failed check, in the contract's order; a
   * StaleRefusal when every check passes now (the hold was refused on figures since changed).
   */
  private async whyNotAccessible(userId: string, featureEndpointId: string): Promise<Error | StaleRefusal> {
    const wallet = await this.wallets.find(userId).catch((e: unknown) => e as Error);
    if (wallet instanceof Error) return wallet;
    if (wallet.status !== 'active') return walletSuspended(userId);
    const feature = await this.dataSource.getRepository(Feature).findOneBy({ featureEndpointId });
    if (!feature) return featureNotFound(featureEndpointId);
    if (!feature.active) return featureInactive(featureEndpointId);
    if (feature.allowedPlans.length > 0 && !feature.allowedPlans.includes(wallet.plan)) {
      return featureNotPermitted(featureEndpointId, wallet.plan);
    }
    const available = wallet.balance.minus(wallet.held);
    const refusal = insufficientCredits(available, feature.minHoldingCredits);
    return !available.isNegative() && !available.isZero() && available.gte(feature.minHoldingCredits) ? new StaleRefusal(refusal) : refusal;
  }

  /**
   * Settles an authorization. The usages are priced first (from the pricing cache: usually no
   * round trip), so a bad model or feature fails before anything is touched. Then the charge is
   * claimed and posted atomically — together with the settlements that arrived at the same time
   * (see `settleMany`). When nothing was claimed — the common case being a retry of a settled
   * key — `explain` answers with the first settlement's figures (read back from its ledger entry,
   * charging nothing) or the reason it cannot settle.
   */
  async settle(dto: EndMultiModelDto, channel: Channel): Promise<SettlementResult> {
    const result = await this.settlements.submit({ dto: normalize(dto), channel });
    // Logged here, in the caller's own context (its request_id), not inside the shared batch.
    if (result.status === 'settled') {
      this.logger.log(
        { usage_key: result.usage_key, user_id: result.user_id, channel, credits_charged: result.credits_charged, late: result.late },
        'settled',
      );
    }
    return result;
  }

  /**
   * Settles a batch. Every settlement that priced, and is the first in the batch for its key, is
   * written by ONE statement (`applyMany`), each still exactly once. One that statement did not
   * claim is a repeat or an error: `explain` answers it, with no second write. Twins, a batch of
   * one, and all of a batch whose statement failed go the single path (`settleAlone`), which
   * answers exactly as a lone settlement does.
   */
  private async settleMany(items: SettleRequest[]): Promise<Promise<SettlementResult>[]> {
    const quotes = await Promise.allSettled(items.map(({ dto }) => this.price(dto)));
    const priced: Priced[] = [];
    const seen = new Set<string>();
    items.forEach(({ dto, channel }, index) => {
      const quote = quotes[index];
      // A second message for the same key in one batch waits for the single path: it then finds
      // the first one's settlement and answers already_settled.
      const twin = dto.usage_key ?? (dto.idempotency_key === undefined ? undefined : `${dto.user_id}\u0000${dto.idempotency_key}`);
      if (quote.status === 'rejected' || (twin !== undefined && seen.has(twin))) return;
      if (twin !== undefined) seen.add(twin);
      priced.push({ index, dto, quote: quote.value, usageKey: dto.usage_key ?? randomUUID(), channel });
    });
    this.metrics.batchSize.observe({ kind: 'settle' }, items.length);
    let rows: AppliedRow[] | undefined;
    let unavailable: unknown;
    if (priced.length > 1) {
      try {
        rows = await this.applyMany(priced);
      } catch (error) {
        // Unreachable database: every settlement of the batch gets that answer, not N more tries.
        if (isDatabaseUnavailable(error)) unavailable = error;
        else
          this.logger.warn(
            { err: (error as Error).message, size: priced.length },
            'batched settlement failed; settling its messages one by one',
          );
      }
    }
    // Outside the try: once the batch committed, nothing may send its settlements the single path
    // again (a direct charge without a key would be charged twice).
    const applied = rows ? settledByIndex(priced, rows) : new Map<number, SettlementResult>();
    const inBatch = new Set(rows ? priced.map((p) => p.index) : []);
    return items.map(async ({ dto, channel }, i) => {
      try {
        const quote = quotes[i];
        if (quote.status === 'rejected') throw quote.reason;
        if (unavailable) throw unavailable;
        const settled = applied.get(i);
        if (settled) return this.recorded(settled, channel);
        // Was in the committed batch and claimed nothing: a repeat or an error, which `explain`
        // names without another write. Otherwise (a twin, a failed batch, a batch of one): alone.
        return this.recorded(inBatch.has(i) ? await this.explain(dto) : await this.settleAlone(dto, quote.value, channel), channel);
      } catch (error) {
        this.metrics.settlements.inc({ channel, outcome: 'failed' });
        throw error;
      }
    });
  }

  private async price(dto: EndMultiModelDto): Promise<Quote> {
    if (dto.usage_key !== undefined && !isUuid(dto.usage_key)) throw usageKeyNotFound(dto.usage_key);
    return this.catalog.quote(dto.feature_endpoint_id, dto.usages);
  }

  /** One settlement by itself: its own statement, then `explain` if it claimed nothing. */
  private async settleAlone(dto: EndMultiModelDto, quote: Quote, channel: Channel): Promise<SettlementResult> {
    // One statement, so no explicit transaction: it commits (or not) by itself.
    const settled = await this.apply(this.dataSource.manager, dto, quote, channel);
    return settled ?? this.explain(dto);
  }

  /**
   * Settles several authorizations in ONE statement — the set-based twin of `apply`, with the
   * same claims and the same ledger entries:
   *  - holds named by usage_key are locked in key order and claimed held|expired → settled only
   *    if user and feature match (a racing settlement of the same key claims nothing);
   *  - direct charges insert their settled authorization; ON CONFLICT on the idempotency key
   *    makes a concurrent twin claim nothing;
   *  - then the wallets of what was claimed are locked in user_id order (holds first, then wallets,
   *    each in key order: the one lock order of every multi-row statement, so no deadlock), each
   *    entry gets balance_after/held_after as of its place in arrival order, and each wallet is
   *    updated once by its total.
   * Returns the ledger entries written; a settlement with none claimed nothing and wrote nothing.
   */
  private async applyMany(batch: Priced[]): Promise<AppliedRow[]> {
    return queryRows<AppliedRow>(
      this.dataSource.manager,
      `WITH r AS (
         SELECT u.*, m.metadata
         FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::numeric[], $6::bool[], $7::varchar[], $8::varchar[])
           WITH ORDINALITY AS u(usage_key, user_id, feature_endpoint_id, amount, direct, idempotency_key, request_hash, ord)
         -- The metadata come as one JSON array (cheaper to send than a jsonb[] of escaped texts).
         JOIN jsonb_array_elements($5::jsonb) WITH ORDINALITY AS m(metadata, ord) USING (ord)
       ), old AS (
         SELECT usage_key, status, expires_at FROM holds
         WHERE usage_key IN (SELECT usage_key FROM r WHERE NOT direct)
         ORDER BY usage_key FOR UPDATE
       ), claimed AS (
         UPDATE holds h SET status = 'settled', closed_at = now(), late = (old.status = 'expired' OR old.expires_at < now())
         FROM old JOIN r USING (usage_key)
         WHERE h.usage_key = old.usage_key AND NOT r.direct AND old.status IN ('held', 'expired')
           AND h.user_id = r.user_id AND h.feature_endpoint_id = r.feature_endpoint_id
         -- An expired hold was already released by the sweeper: release only a live one.
         RETURNING h.usage_key, CASE WHEN old.status = 'held' THEN -h.amount ELSE 0 END AS held_delta, h.late
       ), inserted AS (
         INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at, idempotency_key, request_hash, direct, closed_at)
         SELECT usage_key, user_id, feature_endpoint_id, 0, 'settled', now(), idempotency_key, request_hash, true, now()
         FROM r WHERE direct AND EXISTS (SELECT 1 FROM wallets w WHERE w.user_id = r.user_id)
         ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING usage_key, 0::numeric AS held_delta, false AS late
       ), ok AS (
         SELECT r.*, x.held_delta, x.late FROM (SELECT * FROM claimed UNION ALL SELECT * FROM inserted) x JOIN r USING (usage_key)
       ), locked AS (
         -- ARRAY(…) is computed whole first, so every hold above is locked before any wallet.
         SELECT user_id, balance, held FROM wallets WHERE user_id = ANY (ARRAY(SELECT user_id FROM ok)) ORDER BY user_id FOR UPDATE
       ), run AS (
         SELECT ok.*, l.balance + sum(ok.amount) OVER w AS balance_after, l.held + sum(ok.held_delta) OVER w AS held_after
         FROM ok JOIN locked l USING (user_id)
         WINDOW w AS (PARTITION BY ok.user_id ORDER BY ok.ord)
       ), w AS (
         UPDATE wallets SET balance = wallets.balance + t.amount, held = wallets.held + t.held_delta, version = wallets.version + t.n, updated_at = now()
         FROM (SELECT user_id, sum(amount) AS amount, sum(held_delta) AS held_delta, count(*)::int AS n FROM run GROUP BY user_id) t
         WHERE wallets.user_id = t.user_id
       )
       INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key, description, metadata)
       SELECT user_id, 'charge', amount, balance_after, held_after, usage_key, 'usage of ' || feature_endpoint_id, metadata || jsonb_build_object('late', late)
       FROM run ORDER BY user_id, ord
       RETURNING id, usage_key, amount, balance_after, held_after, (metadata->>'late')::bool AS late`,
      [
        batch.map((p) => p.usageKey),
        batch.map((p) => p.dto.user_id),
        batch.map((p) => p.dto.feature_endpoint_id),
        batch.map((p) => p.quote.creditsCharged.negate().toString()),
        JSON.stringify(batch.map((p) => chargeMetadata(p.dto, p.quote, p.channel))),
        batch.map((p) => p.dto.usage_key === undefined),
        batch.map((p) => (p.dto.usage_key === undefined ? (p.dto.idempotency_key ?? null) : null)),
        batch.map((p) => (p.dto.usage_key === undefined ? requestHash(p.dto) : null)),
      ],
      { prepared: true },
    );
  }

  private recorded(result: SettlementResult, channel: Channel): SettlementResult {
    this.metrics.settlements.inc({ channel, outcome: result.status });
    // A computed charge, not request input: Money.parse's request limit does not apply (a charge at the
    // limits is far above it, and throwing here, after the commit, answered 500 to a written charge).
    if (result.status === 'settled') this.metrics.recordCharge(Money.fromDb(result.credits_charged));
    return result;
  }

  /**
   * Claims the authorization and posts its charge in ONE statement (WalletsService.post with a
   * guard), so a settlement is a single round trip and atomic by itself; undefined when there
   * was nothing to claim (then nothing was written).
   *  - With a usage_key: held|expired → settled is a conditional UPDATE under the hold's row lock
   *    that also checks user and feature, so of any number of racing settlements one claims it.
   *    It releases what the hold still holds (an expired hold was released by the sweeper).
   *  - Without: a settled authorization is inserted carrying the idempotency key; ON CONFLICT
   *    DO NOTHING makes a concurrent twin claim nothing instead of failing.
   */
  private async apply(
    manager: EntityManager,
    dto: EndMultiModelDto,
    quote: Quote,
    channel: Channel,
  ): Promise<SettlementResult | undefined> {
    const usageKey = dto.usage_key ?? randomUUID();
    const guard =
      dto.usage_key !== undefined
        ? {
            sql: `UPDATE holds h SET status = 'settled', closed_at = now(), late = (old.status = 'expired' OR old.expires_at < now())
                  FROM (SELECT usage_key, status, expires_at FROM holds WHERE usage_key = $1 FOR UPDATE) old
                  WHERE h.usage_key = old.usage_key AND old.status IN ('held', 'expired') AND h.user_id = $2 AND h.feature_endpoint_id = $3
                  RETURNING CASE WHEN old.status = 'held' THEN -h.amount ELSE 0 END AS held_delta, jsonb_build_object('late', h.late) AS meta`,
            params: [usageKey, dto.user_id, dto.feature_endpoint_id],
          }
        : {
            sql: `INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at, idempotency_key, request_hash, direct, closed_at)
                  SELECT $1::uuid, $2::varchar, $3::varchar, 0, 'settled', now(), $4::varchar, $5::varchar, true, now()
                  WHERE EXISTS (SELECT 1 FROM wallets WHERE user_id = $2)
                  ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                  RETURNING 0::numeric AS held_delta, jsonb_build_object('late', false) AS meta`,
            params: [usageKey, dto.user_id, dto.feature_endpoint_id, dto.idempotency_key ?? null, requestHash(dto)],
          };
    const posted = await this.wallets.post(manager, {
      userId: dto.user_id,
      kind: 'charge',
      amount: quote.creditsCharged.negate(),
      usageKey,
      description: `usage of ${dto.feature_endpoint_id}`,
      metadata: chargeMetadata(dto, quote, channel),
      guard,
    });
    return posted && settlementView(usageKey, dto.user_id, dto.feature_endpoint_id, posted.entry, 'settled');
  }

  /** Why `apply` claimed nothing: the first settlement's answer, or the error to report. */
  private async explain(dto: EndMultiModelDto): Promise<SettlementResult> {
    if (dto.usage_key === undefined) {
      const previous = await this.replayDirect(dto);
      if (previous) return previous;
      throw walletNotFound(dto.user_id);
    }
    const hold = await this.dataSource.getRepository(Hold).findOneBy({ usageKey: dto.usage_key });
    if (!hold) throw usageKeyNotFound(dto.usage_key);
    if (hold.userId !== dto.user_id || hold.featureEndpointId !== dto.feature_endpoint_id) throw usageKeyMismatch(dto.usage_key);
    if (hold.status === 'settled') return this.replay(hold);
    throw holdCancelled(dto.usage_key);
  }

  /** A direct charge seen before under this idempotency key: its answer, or 409 for another body. */
  private async replayDirect(dto: EndMultiModelDto): Promise<SettlementResult | undefined> {
    const key = dto.idempotency_key;
    if (!key) return undefined;
    const previous = await this.dataSource.getRepository(Hold).findOneBy({ userId: dto.user_id, idempotencyKey: key });
    if (!previous) return undefined;
    if (previous.requestHash !== requestHash(dto)) throw idempotencyConflict(key);
    return this.replay(previous);
  }

  /** The first settlement's answer, rebuilt from its ledger entry: a retry charges nothing. */
  private async replay(hold: Hold): Promise<SettlementResult> {
    const entry = await this.dataSource.getRepository(LedgerEntry).findOneByOrFail({ usageKey: hold.usageKey, kind: 'charge' });
    return settlementView(hold.usageKey, hold.userId, hold.featureEndpointId, entry, 'already_settled');
  }

  /** Releases a live hold without a charge. Repeating it is harmless; a settled key is a 409. */
  async cancel(rawUsageKey: string) {
    const usageKey = rawUsageKey.toLowerCase();
    if (!isUuid(usageKey)) throw usageKeyNotFound(rawUsageKey);
    return this.dataSource.transaction(async (manager) => {
      const [claimed] = await queryRows<{ user_id: string; amount: string }>(
        manager,
        `UPDATE holds SET status = 'cancelled', closed_at = now()
         WHERE usage_key = $1 AND status = 'held'
         RETURNING user_id, amount`,
        [usageKey],
      );
      if (claimed) {
        const release = Money.fromDb(claimed.amount);
        if (!release.isZero()) await this.releaseHeld(manager, claimed.user_id, release);
        return { status: 'cancelled' as const, usage_key: usageKey, released: release.toString() };
      }
      // Already cancelled, or expired (its credits were released then; it keeps its expired story).
      const hold = await manager.getRepository(Hold).findOneBy({ usageKey });
      if (!hold) throw usageKeyNotFound(usageKey);
      if (hold.status === 'settled') throw alreadySettled(usageKey);
      return { status: 'cancelled' as const, usage_key: usageKey, released: Money.ZERO.toString() };
    });
  }

  private async releaseHeld(manager: EntityManager, userId: string, amount: Money): Promise<void> {
    await manager.query(`UPDATE wallets SET held = held - $2, version = version + 1, updated_at = now() WHERE user_id = $1`, [
      userId,
      amount.toString(),
    ]);
  }

  /**
   * Marks holds past their expiry as expired and releases what they held, in one statement.
   * Safe with several instances: rows are claimed with SKIP LOCKED and the status condition, so a
   * hold is released once. Returns how many holds expired.
   */
  async expireHolds(userId?: string, batch = 500): Promise<number> {
    const rows = await queryRows<{ n: string }>(
      this.dataSource.manager,
      `WITH expired AS (
         UPDATE holds SET status = 'expired', closed_at = now()
         WHERE usage_key IN (
           SELECT usage_key FROM holds
           WHERE status = 'held' AND expires_at <= now() AND ($1::varchar IS NULL OR user_id = $1)
           ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING user_id, amount
       ), per_wallet AS (
         SELECT user_id, SUM(amount) AS total, COUNT(*) AS n FROM expired GROUP BY user_id
       ), locked AS (
         -- Lock the wallets in one global order so two sweepers can never deadlock on them.
         SELECT user_id FROM wallets WHERE user_id IN (SELECT user_id FROM per_wallet) ORDER BY user_id FOR UPDATE
       ), released AS (
         UPDATE wallets w SET held = w.held - p.total, version = w.version + 1, updated_at = now()
         FROM per_wallet p JOIN locked l USING (user_id) WHERE w.user_id = p.user_id
         RETURNING p.n
       )
       SELECT COALESCE(SUM(n), 0)::text AS n FROM released`,
      [userId ?? null, batch],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** The authorization's whole story: status, hold, expiry, settlement and its ledger entries. */
  async usage(usageKey: string) {
    const hold = isUuid(usageKey) ? await this.dataSource.getRepository(Hold).findOneBy({ usageKey }) : null;
    if (!hold) throw usageKeyNotFound(usageKey);
    const entries = await this.dataSource.getRepository(LedgerEntry).find({ where: { usageKey }, order: { id: 'ASC' } });
    const expired = hold.status === 'held' && hold.expiresAt.getTime() <= Date.now();
    const charge = entries.find((e) => e.kind === 'charge');
    return {
      usage_key: hold.usageKey,
      status: expired ? 'expired' : hold.status,
      user_id: hold.userId,
      feature_endpoint_id: hold.featureEndpointId,
      hold_amount: hold.amount.toString(),
      direct_charge: hold.direct,
      idempotency_key: hold.idempotencyKey,
      created_at: hold.createdAt.toISOString(),
      expires_at: hold.expiresAt.toISOString(),
      closed_at: hold.closedAt?.toISOString() ?? null,
      late: hold.late,
      settlement: charge ? settlementView(hold.usageKey, hold.userId, hold.featureEndpointId, charge, 'settled') : null,
      ledger_entries: entries.map(ledgerEntryView),
    };
  }
}

/** A ledger entry written by `applyMany`. */
interface AppliedRow {
  id: string;
  usage_key: string;
  amount: string;
  balance_after: string;
  held_after: string;
  late: boolean;
}

/** The answers of a batch's settlements that `applyMany` wrote, by batch index. */
function settledByIndex(batch: Priced[], rows: AppliedRow[]): Map<number, SettlementResult> {
  const byKey = new Map(rows.map((row) => [row.usage_key, row]));
  const settled = new Map<number, SettlementResult>();
  for (const p of batch) {
    const row = byKey.get(p.usageKey);
    if (!row) continue;
    // The entry's usages are the quote's, which this process just wrote: not read back.
    const entry = Object.assign(new LedgerEntry(), {
      id: row.id,
      amount: Money.fromDb(row.amount),
      balanceAfter: Money.fromDb(row.balance_after),
      heldAfter: Money.fromDb(row.held_after),
      metadata: { late: row.late, usages: p.quote.usages },
    });
    settled.set(p.index, settlementView(p.usageKey, p.dto.user_id, p.dto.feature_endpoint_id, entry, 'settled'));
  }
  return settled;
}

/** How often a start refused for credits it now has is tried again before answering 402. */
const STALE_REFUSAL_RETRIES = 5;

/** whyNotAccessible found every check passing now: the refusal it explains is out of date. */
class StaleRefusal {
  constructor(readonly error: Error) {}
}

/** What a charge's ledger entry records besides its figures (`late` is added when it is written). */
function chargeMetadata(dto: EndMultiModelDto, quote: Quote, channel: Channel): Record<string, unknown> {
  return { channel, feature_endpoint_id: dto.feature_endpoint_id, usages: quote.usages, pricing: quote.snapshot };
}

function startView(usageKey: string, request: StartRequest, row: StartRow): StartResult {
  const balance = Money.fromDb(row.balance);
  const held = Money.fromDb(row.held);
  return {
    status: 'accessible',
    usage_key: usageKey,
    user_id: request.userId,
    feature_endpoint_id: request.featureEndpointId,
    credits: balance.minus(held).toString(),
    balance: balance.toString(),
    held: held.toString(),
    hold_amount: Money.fromDb(row.hold_amount).toString(),
    expires_at: row.expires_at.toISOString(),
  };
}

/** Usage keys are UUIDs; compare them in one spelling. */
function normalize(dto: EndMultiModelDto): EndMultiModelDto {
  return dto.usage_key === undefined || dto.usage_key === dto.usage_key.toLowerCase()
    ? dto
    : { ...dto, usage_key: dto.usage_key.toLowerCase() };
}

/** Fingerprint of a direct charge, to refuse an idempotency key reused for another body. */
function requestHash(dto: EndMultiModelDto): string {
  const usages = dto.usages.map((u) => [u.ai_model, u.input_tokens, u.output_tokens, u.cached_input_tokens ?? 0]);
  return createHash('sha256')
    .update(JSON.stringify([dto.user_id, dto.feature_endpoint_id, usages]))
    .digest('hex');
}

function settlementView(
  usageKey: string,
  userId: string,
  featureEndpointId: string,
  entry: LedgerEntry,
  status: SettlementResult['status'],
): SettlementResult {
  return {
    status,
    usage_key: usageKey,
    transaction_id: entry.id,
    user_id: userId,
    feature_endpoint_id: featureEndpointId,
    credits_charged: entry.amount.negate().toString(),
    credits: entry.balanceAfter.minus(entry.heldAfter).toString(),
    balance: entry.balanceAfter.toString(),
    held: entry.heldAfter.toString(),
    late: entry.metadata.late === true,
    usages: entry.metadata.usages,
  };
}
