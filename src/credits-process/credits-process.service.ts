import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { createHash, randomUUID } from 'node:crypto';
import { DataSource, EntityManager } from 'typeorm';
import type { Actor } from '../audit/actor';
import { AuditService } from '../audit/audit.service';
import { assertFeatureAllowed, type Caller, isFeatureScoped } from '../common/api-key.guard';
import { Coalescer } from '../common/coalescer';
import { isDatabaseUnavailable, isUniqueViolation } from '../common/database-errors';
import { queryRows } from '../database/sql';
import { DomainError, validationError } from '../common/domain-error';
import { Money } from '../common/money';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { Feature } from '../features/feature.entity';
import { featureNotFound } from '../features/features.errors';
import { LIVE_HOLD_STATUS } from '../ledger/hold-states';
import { Charge, HoldRequest, LedgerService, PlacedHold, RefundRefused, SettledCharge } from '../ledger/ledger.service';
import { MetricsService } from '../metrics/metrics.service';
import { PricingCatalog } from '../pricing/pricing-catalog';
import type { HoldPriceSnapshot, LockedQuote } from '../pricing/price-snapshot';
import type { Quote } from '../pricing/pricing-engine';
import { LedgerEntry } from '../wallets/ledger-entry.entity';
import { walletNotFound } from '../wallets/wallets.errors';
import { isUuid, WalletsService } from '../wallets/wallets.service';
import { ledgerEntryView } from '../wallets/wallets.views';
import { EndMultiModelDto, EstimateDto, ExtendDto, RefundDto } from './dto/credits-process.dto';
import type {
  CancelResponseDoc,
  ExtendResponseDoc,
  RefundResponseDoc,
  SettlementResponseDoc,
  StartResponseDoc,
  UsageResponseDoc,
} from './dto/credits-process-responses.dto';
import {
  alreadySettled,
  extendCancelled,
  extendSettled,
  featureInactive,
  featureNotPermitted,
  holdCancelled,
  holdExpired,
  idempotencyConflict,
  insufficientCredits,
  notSettled,
  refundExceedsCharge,
  spendCapExceeded,
  usageKeyMismatch,
  usageKeyNotFound,
  walletSuspended,
} from './credits-process.errors';
import { Hold } from './hold.entity';

export type Channel = 'http' | 'queue';

/** The answers, under the names the adapters use; declared once, by the response classes. */
export type StartResult = StartResponseDoc;
export type SettlementResult = SettlementResponseDoc;

interface StartRequest {
  userId: string;
  featureEndpointId: string;
  /** The caller's key record (API.md §11): recorded on the hold, its spend cap checked; null for env keys. */
  keyId: string | null;
  /** An estimate's hold, when larger than min_holding_credits (§13). */
  amount?: Money;
  /** A price_lock feature's prices now (§13). */
  priceSnapshot?: HoldPriceSnapshot;
}

interface SettleRequest {
  dto: EndMultiModelDto;
  channel: Channel;
  /** The settling key record (HTTP); a queue message carries none. */
  keyId: string | null;
}

/** A settlement that priced: its place in the batch, its key (made here for a direct charge), its charge. */
interface Priced {
  index: number;
  dto: EndMultiModelDto;
  quote: Quote;
  usageKey: string;
  channel: Channel;
  /** A later message of a key already in this batch: it runs alone, after the batch. */
  twin: boolean;
  keyId: string | null;
}

type BatchKind = 'start' | 'settle';

/**
 * The credits process: start (check + hold), settle (price + charge + release), cancel. Both
 * transports (HTTP controller, RabbitMQ consumer) call these same methods. It decides; every
 * write to wallets, holds and the ledger is a statement of LedgerService.
 */
@Injectable()
export class CreditsProcessService {
  private readonly logger = new Logger(CreditsProcessService.name);

  /**
   * Concurrent starts, and concurrent settlements (HTTP and queue alike), are written by one
   * set-based statement per batch: one round trip and one commit for the lot instead of one each.
   * A batch forms only from requests that are already waiting, so a lone request is never delayed;
   * it is a batch of one, written by the same statement.
   */
  private readonly starts: Coalescer<StartRequest, StartResult>;
  private readonly settlements: Coalescer<SettleRequest, SettlementResult>;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly ledger: LedgerService,
    private readonly wallets: WalletsService,
    private readonly catalog: PricingCatalog,
    private readonly metrics: MetricsService,
    private readonly audit: AuditService,
  ) {
    metrics.setSources({ activeHolds: () => this.activeHolds() });
    this.starts = new Coalescer((items) => this.startMany(items), config.batchMaxSize, config.batchConcurrency);
    this.settlements = new Coalescer((items) => this.settleMany(items), config.batchMaxSize, config.batchConcurrency);
  }

  private async activeHolds(): Promise<number> {
    const [row] = await this.dataSource.query(`SELECT count(*)::int AS n FROM holds WHERE status = '${LIVE_HOLD_STATUS}'`);
    return row.n as number;
  }

  /**
   * Places a hold of the feature's min_holding_credits if every check passes. The happy path is
   * ONE statement (`LedgerService.placeHolds`, shared with the starts that arrive at the same
   * time): it takes the wallet's row lock and re-checks available credits against the committed
   * row, so N concurrent starts with room for K give exactly K. Only when it places nothing do we
   * look at why (and answer in the contract's check order).
   */
  async start(userId: string, featureEndpointId: string, caller?: Caller, estimate?: EstimateDto): Promise<StartResult> {
    try {
      // A key scoped to other features: 403 before anything is written (the body names the feature).
      assertFeatureAllowed(caller, featureEndpointId);
      // From the pricing cache (usually no round trip). An unknown feature is left to the start's own
      // checks, so their order (wallet first) holds; an estimate with an unknown model is 422.
      const [amount, priceSnapshot] = await Promise.all([
        estimate === undefined
          ? undefined
          : this.catalog.estimate(featureEndpointId, estimate.usages).then((e) => e.amount, unlessFeatureMissing),
        this.catalog.snapshot(featureEndpointId).catch(unlessFeatureMissing),
      ]);
      const result = await this.starts.submit({ userId, featureEndpointId, keyId: caller?.recordId ?? null, amount, priceSnapshot });
      this.metrics.starts.inc({ outcome: 'accessible' });
      return result;
    } catch (error) {
      if (error instanceof DomainError) this.metrics.starts.inc({ outcome: error.code });
      throw error;
    }
  }

  /**
   * A batch of starts (one or more): the holds that fit are placed by ONE statement; a start it
   * did not place takes `startAlone`, which frees expired holds, tries again and names the reason.
   * So a batch answers exactly what its starts would have answered one by one. Resolves once the
   * batch statement is done, with one answer per start: a placed start is answered at once, not
   * after the refused ones' further statements.
   */
  private async startMany(items: StartRequest[]): Promise<Promise<StartResult>[]> {
    const requests: HoldRequest[] = items.map((item) => ({ ...item, usageKey: randomUUID() }));
    this.metrics.batchSize.observe({ kind: 'start' }, items.length);
    let placed = new Map<number, PlacedHold>();
    let split = false;
    try {
      placed = await this.ledger.placeHolds(requests, this.config.holdTtlSeconds);
    } catch (error) {
      if (!this.fallsBack('start', error, items.length)) return items.map(() => Promise.reject(error));
      split = true;
    }
    const refused = new Set<string>();
    return requests.map((request, i) => {
      const hold = placed.get(i);
      if (hold) return Promise.resolve(startView(request, hold));
      // After a wallet's first start that did not fit, its later starts were not tried (arrival
      // order): each of those is tried again alone before anything else.
      const tryAgain = split || refused.has(request.userId);
      refused.add(request.userId);
      return this.startAlone(request, tryAgain);
    });
  }

  /** A start the batch did not place: the same statement for it alone, around the reason it is refused. */
  private async startAlone(request: HoldRequest, tryAgain: boolean): Promise<StartResult> {
    let hold = tryAgain ? await this.placeHold(request) : undefined;
    // Refused: free what has lapsed on this wallet (holds past expiry; grants past expiry, which may
    // have made it refuse on figures the sweeper has not caught up with) and try once more.
    if (!hold && (await this.ledger.expireGrants(request.userId)) + (await this.ledger.expireHolds(request.userId)) > 0) {
      hold = await this.placeHold(request);
    }
    for (let attempt = 1; !hold; attempt++) {
      const why = await this.whyNotAccessible(request);
      // The refusal was decided by the conditional statement; the reason is read by a later one.
      // If settlements released credits in between, the reason would say "insufficient" while
      // showing enough: try the hold again instead of answering figures that contradict it.
      if (!(why instanceof StaleRefusal)) throw why;
      if (attempt >= STALE_REFUSAL_RETRIES) throw why.error;
      hold = await this.placeHold(request);
    }
    return startView(request, hold);
  }

  /** A batch of one: the set-based statement serves a lone start too, so the two cannot drift. */
  private async placeHold(request: HoldRequest): Promise<PlacedHold | undefined> {
    return (await this.ledger.placeHolds([request], this.config.holdTtlSeconds)).get(0);
  }

  /**
   * Reads wallet and feature to name the first failed check, in the contract's order; a
   * StaleRefusal when every check passes now (the hold was refused on figures since changed).
   */
  private async whyNotAccessible({ userId, featureEndpointId, keyId, amount }: HoldRequest): Promise<Error | StaleRefusal> {
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
    const hold = amount && amount.gte(feature.minHoldingCredits) ? amount : feature.minHoldingCredits;
    const refusal = insufficientCredits(available, hold);
    if (available.isNegative() || available.isZero() || !available.gte(hold)) return refusal;
    // Last: the key's spend cap (API.md §11), from the same counters the statement checks.
    const cap = keyId === null ? undefined : await this.capOf(keyId);
    if (cap && !cap.cap.gte(cap.spent.plus(hold))) return spendCapExceeded(cap.spent, cap.cap, hold, cap.resetsAt, cap.period);
    return new StaleRefusal(cap ? spendCapExceeded(cap.spent, cap.cap, hold, cap.resetsAt, cap.period) : refusal);
  }

  /** A capped key's figures as the ledger keeps them: spent this UTC period + live holds, and when it resets. */
  private async capOf(keyId: string): Promise<{ cap: Money; spent: Money; resetsAt: Date; period: string } | undefined> {
    const [row] = await queryRows<{ cap: string; spent: string; resets_at: Date; period: string }>(
      this.dataSource.manager,
      `SELECT k.spend_cap_amount::text AS cap, k.spend_cap_period AS period,
              (CASE WHEN k.period_starts_at = p.starts THEN k.period_spent ELSE 0 END + k.held)::text AS spent,
              (p.starts AT TIME ZONE 'UTC' + ('1 ' || k.spend_cap_period)::interval) AT TIME ZONE 'UTC' AS resets_at
       FROM api_keys k CROSS JOIN LATERAL (SELECT date_trunc(k.spend_cap_period, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS starts) p
       WHERE k.key_id = $1 AND k.spend_cap_amount IS NOT NULL`,
      [keyId],
    );
    return row && { cap: Money.fromDb(row.cap), spent: Money.fromDb(row.spent), resetsAt: row.resets_at, period: row.period };
  }

  /**
   * Whether a batch whose statement failed runs its requests one by one (BATCH_FALLBACK=split) or
   * answers the error to all of them. A batch of one has nothing to split; an unreachable
   * database is answered to the whole batch at once (503), not with N more tries. The split is
   * counted and logged: it means one request's fault, or a bug in the batch SQL, failed a batch.
   */
  private fallsBack(kind: BatchKind, error: unknown, size: number): boolean {
    if (size < 2 || isDatabaseUnavailable(error)) return false;
    const err = (error as Error).message;
    if (this.config.batchFallback === 'fail') {
      this.logger.error({ err, size }, `batched ${kind} failed; answering the error to all of it (BATCH_FALLBACK=fail)`);
      return false;
    }
    this.metrics.batchFallbacks.inc({ kind });
    this.logger.warn({ err, size }, `batched ${kind} failed; running its requests one by one`);
    return true;
  }

  /**
   * Settles an authorization. The usages are priced first (from the pricing cache: usually no
   * round trip), so a bad model or feature fails before anything is touched. Then the charge is
   * claimed and posted atomically — together with the settlements that arrived at the same time
   * (see `settleMany`). When nothing was claimed — the common case being a retry of a settled
   * key — `explain` answers with the first settlement's figures (read back from its ledger entry,
   * charging nothing) or the reason it cannot settle.
   */
  async settle(dto: EndMultiModelDto, channel: Channel, caller?: Caller): Promise<SettlementResult> {
    // The body's feature is checked against the key's scope; the hold's own feature must equal it
    // (the settle statement claims only a hold of that user and feature: usage_key_mismatch
    // otherwise), so a scoped key never settles another feature's hold, and no read is added.
    // Queue messages carry no key (caller undefined): nothing to check.
    if (caller) {
      try {
        assertFeatureAllowed(caller, dto.feature_endpoint_id);
      } catch (error) {
        this.metrics.settlements.inc({ channel, outcome: 'failed' });
        throw error;
      }
    }
    // Issue 18: an increment must keep the hold open, which needs the ledger's part; until then it
    // is refused (400, nothing written) rather than settled as final.
    if (dto.final === false) throw notYet('final', 'incremental settlement (final: false)');
    const result = await this.settlements.submit({ dto: normalize(dto), channel, keyId: caller?.recordId ?? null });
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
   * Settles a batch (one or more). Every settlement that priced, and is the first in the batch for
   * its key, is written by ONE statement (`LedgerService.settle`), each still exactly once. One
   * that statement did not claim is a repeat or an error: `explain` answers it, with no second
   * write. A twin (a later message of a key already in the batch) runs alone after the batch, and
   * then finds the first one's settlement (already_settled) or settles if the first one could not.
   */
  private async settleMany(items: SettleRequest[]): Promise<Promise<SettlementResult>[]> {
    const quotes = await Promise.allSettled(items.map(({ dto }) => this.price(dto)));
    const priced = new Map<number, Priced>();
    const seen = new Set<string>();
    items.forEach(({ dto, channel, keyId }, index) => {
      const quote = quotes[index];
      if (quote.status === 'rejected') return;
      const key = dto.usage_key ?? (dto.idempotency_key === undefined ? undefined : `${dto.user_id}\u0000${dto.idempotency_key}`);
      const twin = key !== undefined && seen.has(key);
      if (key !== undefined) seen.add(key);
      priced.set(index, { index, dto, quote: quote.value, usageKey: dto.usage_key ?? randomUUID(), channel, twin, keyId });
    });
    const batch = [...priced.values()].filter((p) => !p.twin);
    this.metrics.batchSize.observe({ kind: 'settle' }, items.length);
    let settled: Map<number, SettlementResult> | undefined;
    let failure: { error: unknown } | undefined;
    if (batch.length > 0) {
      try {
        settled = await this.charge(batch);
      } catch (error) {
        if (!this.fallsBack('settle', error, batch.length)) failure = { error };
      }
    }
    // Outside the try: once the batch committed, nothing may send its settlements alone again
    // (a direct charge without a key would be charged twice).
    const inBatch = new Set(settled ? batch.map((p) => p.index) : []);
    return items.map(async ({ dto, channel }, i) => {
      try {
        const quote = quotes[i];
        if (quote.status === 'rejected') throw quote.reason;
        if (failure) throw failure.error;
        const answer = settled?.get(i);
        if (answer) return this.recorded(answer, channel);
        // In the committed batch and claimed nothing: a repeat or an error, which `explain` names
        // without another write. Otherwise (a twin, or a batch that was split): alone.
        return this.recorded(inBatch.has(i) ? await this.explain(dto) : await this.settleAlone(priced.get(i)!), channel);
      } catch (error) {
        this.metrics.settlements.inc({ channel, outcome: 'failed' });
        throw error;
      }
    });
  }

  /**
   * A settlement's price: at today's prices, or, for a hold of a feature with price_lock, from the
   * prices its hold kept (§13; one read of the hold, only for such features). A hold placed before the
   * feature locked its prices has no snapshot and is priced live.
   */
  private async price(dto: EndMultiModelDto): Promise<Quote> {
    if (dto.usage_key !== undefined && !isUuid(dto.usage_key)) throw usageKeyNotFound(dto.usage_key);
    if (dto.usage_key !== undefined && (await this.catalog.locksPrices(dto.feature_endpoint_id))) {
      const hold = await this.dataSource
        .getRepository(Hold)
        .findOne({ select: { usageKey: true, priceSnapshot: true, createdAt: true }, where: { usageKey: dto.usage_key.toLowerCase() } });
      // priced_at says the hold's creation time (the snapshot was read as the start was sent, moments before).
      if (hold?.priceSnapshot) {
        const locked: LockedQuote = {
          ...(await this.catalog.quoteLocked(dto.usages, hold.priceSnapshot)),
          pricedAt: hold.createdAt.toISOString(),
        };
        return locked;
      }
    }
    return this.catalog.quote(dto.feature_endpoint_id, dto.usages);
  }

  /** One settlement by itself: the batch statement for it alone, then `explain` if it claimed nothing. */
  private async settleAlone(p: Priced): Promise<SettlementResult> {
    return (await this.charge([p])).get(p.index) ?? this.explain(p.dto);
  }

  /** Claims and charges priced settlements in one statement; their answers by batch index. */
  private async charge(batch: Priced[]): Promise<Map<number, SettlementResult>> {
    const written = await this.ledger.settle(batch.map(toCharge));
    const answers = new Map<number, SettlementResult>();
    for (const [j, charge] of written) {
      const p = batch[j];
      // The entry's usages are the quote's, which this process just wrote: not read back.
      answers.set(p.index, settlementView(p.usageKey, p.dto.user_id, p.dto.feature_endpoint_id, charge, p.quote.usages, 'settled'));
    }
    return answers;
  }

  private recorded(result: SettlementResult, channel: Channel): SettlementResult {
    this.metrics.settlements.inc({ channel, outcome: result.status });
    // A computed charge, not request input: Money.parse's request limit does not apply (a charge at the
    // limits is far above it, and throwing here, after the commit, answered 500 to a written charge).
    if (result.status === 'settled') this.metrics.recordCharge(Money.fromDb(result.credits_charged));
    return result;
  }

  /** Why a settlement claimed nothing: the first settlement's answer, or the error to report. */
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
    return entrySettlementView(hold, entry, 'already_settled');
  }

  /**
   * Extends a live hold (API.md §13): a new expiry and optionally a bigger hold, checked like /start
   * in one statement (LedgerService.extendHold). Nothing changes when it is refused; the reason is
   * named from what that statement found.
   */
  async extend(dto: ExtendDto, caller?: Caller): Promise<ExtendResponseDoc> {
    const usageKey = dto.usage_key.toLowerCase();
    if (!isUuid(usageKey)) throw usageKeyNotFound(dto.usage_key);
    if (isFeatureScoped(caller)) {
      const hold = await this.dataSource.getRepository(Hold).findOne({ select: { featureEndpointId: true }, where: { usageKey } });
      if (!hold) throw usageKeyNotFound(usageKey);
      assertFeatureAllowed(caller, hold.featureEndpointId);
    }
    const additional = dto.additional_hold === undefined ? null : Money.parse(dto.additional_hold);
    const outcome = await this.ledger.extendHold({ usageKey, ttlSeconds: dto.ttl_seconds ?? null, additional }, this.config.holdTtlSeconds);
    if (!outcome) throw usageKeyNotFound(usageKey);
    if (!outcome.extended) {
      if (outcome.status === 'settled') throw extendSettled(usageKey);
      if (outcome.status === 'cancelled') throw extendCancelled(usageKey);
      if (outcome.status === 'expired' || outcome.lapsed) throw holdExpired(usageKey);
      const cap = outcome.overCap && outcome.keyId ? await this.capOf(outcome.keyId) : undefined;
      if (cap) throw spendCapExceeded(cap.spent, cap.cap, additional!, cap.resetsAt, cap.period);
      throw insufficientCredits(outcome.spendable, additional!);
    }
    return {
      status: 'extended',
      usage_key: usageKey,
      expires_at: outcome.expiresAt.toISOString(),
      hold_amount: outcome.amount.toString(),
      credits: outcome.balance.minus(outcome.held).toString(),
      balance: outcome.balance.toString(),
      held: outcome.held.toString(),
    };
  }

  /** Releases a live hold without a charge. Repeating it is harmless; a settled key is a 409. */
  async cancel(rawUsageKey: string, caller?: Caller): Promise<CancelResponseDoc> {
    const usageKey = rawUsageKey.toLowerCase();
    if (!isUuid(usageKey)) throw usageKeyNotFound(rawUsageKey);
    // The body names no feature: a scoped key reads the hold's (its feature never changes) before
    // releasing. Unrestricted keys skip the read.
    if (isFeatureScoped(caller)) {
      const hold = await this.dataSource.getRepository(Hold).findOne({ select: { featureEndpointId: true }, where: { usageKey } });
      if (!hold) throw usageKeyNotFound(usageKey);
      assertFeatureAllowed(caller, hold.featureEndpointId);
    }
    const released = await this.ledger.release(usageKey);
    if (released) return { status: 'cancelled', usage_key: usageKey, released: released.released.toString() };
    // Already cancelled, or expired (its credits were released then; it keeps its expired story).
    const hold = await this.dataSource.getRepository(Hold).findOneBy({ usageKey });
    if (!hold) throw usageKeyNotFound(usageKey);
    if (hold.status === 'settled') throw alreadySettled(usageKey);
    return { status: 'cancelled', usage_key: usageKey, released: Money.ZERO.toString() };
  }

  /**
   * Gives back all or part of what a usage was charged (API.md §9), to the grants its charge drew
   * from. The ledger decides under the wallet's lock how much is left (so concurrent refunds never
   * give back more than was charged) and where it goes. With an idempotency key a repeat gives
   * nothing more and answers the first refund (`already_refunded`).
   */
  async refund(rawUsageKey: string, dto: RefundDto, caller: Caller | undefined, actor: Actor): Promise<RefundResponseDoc> {
    const usageKey = rawUsageKey.toLowerCase();
    const hold = isUuid(usageKey) ? await this.dataSource.getRepository(Hold).findOneBy({ usageKey }) : null;
    if (!hold) throw usageKeyNotFound(rawUsageKey);
    assertFeatureAllowed(caller, hold.featureEndpointId);
    const amount = dto.amount === undefined ? null : Money.parse(dto.amount);
    const key = dto.idempotency_key === undefined ? null : `refund:${usageKey}:${dto.idempotency_key}`;
    const request = { amount: amount?.toString() ?? null, reason: dto.reason };
    if (key) {
      const previous = await this.replayRefund(hold, key, request);
      if (previous) return previous;
    }
    if (hold.status !== 'settled') throw notSettled(usageKey, hold.status);
    try {
      return await this.dataSource.transaction(async (manager) => {
        const posted = await this.ledger.refund(manager, {
          userId: hold.userId,
          usageKey,
          amount,
          reason: dto.reason,
          idempotencyKey: key,
          request,
        });
        if (!posted) throw walletNotFound(hold.userId);
        const answer = await this.refundView(manager, hold, posted.entry, 'refunded', posted.also.at(-1) ?? posted.entry);
        if (caller?.scope === 'admin') {
          await this.audit.append(manager, actor, 'usage.refund', usageKey, {
            user_id: hold.userId,
            amount: answer.amount,
            reason: dto.reason,
            idempotency_key: dto.idempotency_key ?? null,
            transaction_id: posted.entry.id,
            returned: answer.returned,
          });
        }
        return answer;
      });
    } catch (error) {
      if (error instanceof RefundRefused) {
        if (error.code === 'not_settled') throw notSettled(usageKey, hold.status);
        throw refundExceedsCharge(usageKey, error.left ?? Money.ZERO, amount);
      }
      if (key && isUniqueViolation(error, 'ledger_entries_idempotency')) {
        const previous = await this.replayRefund(hold, key, request);
        if (previous) return previous;
      }
      throw error;
    }
  }

  /** The refund first made under this key, or 409 when it was asked with another amount or reason. */
  private async replayRefund(
    hold: Hold,
    key: string,
    request: { amount: string | null; reason: string },
  ): Promise<RefundResponseDoc | undefined> {
    const entry = await this.dataSource.getRepository(LedgerEntry).findOneBy({ userId: hold.userId, idempotencyKey: key });
    if (!entry) return undefined;
    if (entry.kind !== 'refund' || JSON.stringify(entry.metadata.request) !== JSON.stringify(request)) throw idempotencyConflict(key);
    return this.refundView(this.dataSource.manager, hold, entry, 'already_refunded', undefined);
  }

  /** A refund's answer; `last`: the last entry it wrote (the wallet figures after it), else read now. */
  private async refundView(
    manager: EntityManager,
    hold: Hold,
    entry: LedgerEntry,
    status: RefundResponseDoc['status'],
    last: LedgerEntry | undefined,
  ): Promise<RefundResponseDoc> {
    const [totals] = await queryRows<{ charged: string; refunded: string }>(
      manager,
      `SELECT COALESCE(-sum(amount) FILTER (WHERE kind = 'charge'), 0)::numeric(38,6)::text AS charged,
              COALESCE(sum(amount) FILTER (WHERE kind = 'refund'), 0)::numeric(38,6)::text AS refunded
       FROM ledger_entries WHERE usage_key = $1 AND kind IN ('charge', 'refund')`,
      [hold.usageKey],
    );
    const wallet = last ? { balance: last.balanceAfter, held: last.heldAfter } : await this.wallets.find(hold.userId);
    const meta = entry.metadata as { returned?: RefundResponseDoc['returned']; debt_cancelled?: string };
    return {
      status,
      usage_key: hold.usageKey,
      transaction_id: entry.id,
      amount: entry.amount.toString(),
      credits_charged: totals.charged,
      credits_refunded: totals.refunded,
      balance: wallet.balance.toString(),
      held: wallet.held.toString(),
      credits: wallet.balance.minus(wallet.held).toString(),
      debt_cancelled: meta.debt_cancelled ?? Money.ZERO.toString(),
      returned: meta.returned ?? [],
    };
  }

  /** The authorization's whole story: status, hold, expiry, settlement and its ledger entries. */
  async usage(usageKey: string, caller?: Caller): Promise<UsageResponseDoc> {
    const hold = isUuid(usageKey) ? await this.dataSource.getRepository(Hold).findOneBy({ usageKey }) : null;
    if (!hold) throw usageKeyNotFound(usageKey);
    assertFeatureAllowed(caller, hold.featureEndpointId);
    const entries = await this.dataSource.getRepository(LedgerEntry).find({ where: { usageKey }, order: { id: 'ASC' } });
    // Past its expiry and not swept yet: it is expired already, whatever the row says.
    const expired = hold.status === LIVE_HOLD_STATUS && hold.expiresAt.getTime() <= Date.now();
    const charge = entries.find((e) => e.kind === 'charge');
    const refunded = entries.filter((e) => e.kind === 'refund').reduce((sum, e) => sum.plus(e.amount), Money.ZERO);
    return {
      usage_key: hold.usageKey,
      status: expired ? 'expired' : hold.status,
      user_id: hold.userId,
      feature_endpoint_id: hold.featureEndpointId,
      hold_amount: hold.amount.toString(),
      direct_charge: hold.direct,
      idempotency_key: hold.idempotencyKey,
      key_id: hold.keyId,
      created_at: hold.createdAt.toISOString(),
      expires_at: hold.expiresAt.toISOString(),
      closed_at: hold.closedAt?.toISOString() ?? null,
      late: hold.late,
      settlement: charge ? entrySettlementView(hold, charge, 'settled') : null,
      credits_refunded: refunded.toString(),
      ledger_entries: entries.map(ledgerEntryView),
    };
  }
}

/** What the ledger needs to claim and charge a priced settlement. */
function toCharge(p: Priced): Charge {
  return {
    usageKey: p.usageKey,
    userId: p.dto.user_id,
    featureEndpointId: p.dto.feature_endpoint_id,
    credits: p.quote.creditsCharged,
    metadata: chargeMetadata(p.dto, p.quote, p.channel),
    direct: p.dto.usage_key === undefined ? { idempotencyKey: p.dto.idempotency_key ?? null, requestHash: requestHash(p.dto) } : undefined,
    keyId: p.keyId,
  };
}

/** A §13 field this build parses but cannot honour yet (issue 18's ledger part). */
function notYet(field: string, what: string): DomainError {
  return validationError([{ field, message: `is not accepted yet: ${what} is not available on this server` }]);
}

/** How often a start refused for credits it now has is tried again before answering 402. */
const STALE_REFUSAL_RETRIES = 5;

/** whyNotAccessible found every check passing now: the refusal it explains is out of date. */
class StaleRefusal {
  constructor(readonly error: Error) {}
}

/** What a charge's ledger entry records besides its figures (`late` is added when it is written). */
function chargeMetadata(dto: EndMultiModelDto, quote: Quote, channel: Channel): Record<string, unknown> {
  const pricedAt = (quote as Partial<LockedQuote>).pricedAt;
  return {
    channel,
    feature_endpoint_id: dto.feature_endpoint_id,
    usages: quote.usages,
    pricing: quote.snapshot,
    ...(pricedAt !== undefined && { priced_at: pricedAt }),
  };
}

/** A pricing read that found no feature: left to the start's own checks (they name it in order). */
function unlessFeatureMissing(error: unknown): undefined {
  if (error instanceof DomainError && error.code === 'feature_not_found') return undefined;
  throw error;
}

function startView(request: HoldRequest, hold: PlacedHold): StartResult {
  return {
    status: 'accessible',
    usage_key: request.usageKey,
    user_id: request.userId,
    feature_endpoint_id: request.featureEndpointId,
    credits: hold.balance.minus(hold.held).toString(),
    balance: hold.balance.toString(),
    held: hold.held.toString(),
    hold_amount: hold.amount.toString(),
    expires_at: hold.expiresAt.toISOString(),
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

/** A settlement's answer from its charge's figures: the one view of every settlement answer. */
function settlementView(
  usageKey: string,
  userId: string,
  featureEndpointId: string,
  charge: SettledCharge,
  usages: SettlementResult['usages'],
  status: SettlementResult['status'],
): SettlementResult {
  return {
    status,
    usage_key: usageKey,
    transaction_id: charge.entryId,
    user_id: userId,
    feature_endpoint_id: featureEndpointId,
    credits_charged: charge.amount.negate().toString(),
    credits: charge.balanceAfter.minus(charge.heldAfter).toString(),
    balance: charge.balanceAfter.toString(),
    held: charge.heldAfter.toString(),
    late: charge.late,
    // One charge per usage until incremental settlement lands in the ledger (issue 18): the
    // settlement closes the usage and is all it was charged.
    final: true,
    credits_charged_total: charge.amount.negate().toString(),
    usages,
  };
}

/** A settlement's answer read back from its ledger entry (a repeat, or the usage's story). */
function entrySettlementView(hold: Hold, entry: LedgerEntry, status: SettlementResult['status']): SettlementResult {
  const charge = {
    entryId: entry.id,
    amount: entry.amount,
    balanceAfter: entry.balanceAfter,
    heldAfter: entry.heldAfter,
    late: entry.metadata.late === true,
  };
  return settlementView(hold.usageKey, hold.userId, hold.featureEndpointId, charge, entry.metadata.usages, status);
}
