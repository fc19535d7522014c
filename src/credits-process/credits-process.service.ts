import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { createHash, randomUUID } from 'node:crypto';
import { DataSource, EntityManager } from 'typeorm';
import { isUniqueViolation } from '../common/database-errors';
import { DomainError } from '../common/domain-error';
import { MetricsService } from '../metrics/metrics.service';
import { Money } from '../common/money';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { jsonb, queryRows } from '../database/sql';
import { Feature } from '../features/feature.entity';
import { featureNotFound } from '../features/features.errors';
import { PricingService, toFeaturePricing } from '../pricing/pricing.service';
import { LedgerEntry } from '../wallets/ledger-entry.entity';
import { ledgerEntryView } from '../wallets/wallets.views';
import { isUuid, WalletsService } from '../wallets/wallets.service';
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

/** Thrown inside a settlement transaction when another settlement of the same key won the race. */
class LostRace extends Error {}

interface StartRow {
  balance: string;
  held: string;
  hold_amount: string;
  expires_at: Date;
}

/**
 * The credits process: start (check + hold), settle (price + charge + release), cancel, expire.
 * Both transports (HTTP controller, RabbitMQ consumer) call these same methods.
 */
@Injectable()
export class CreditsProcessService {
  private readonly logger = new Logger(CreditsProcessService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly wallets: WalletsService,
    private readonly pricing: PricingService,
    private readonly metrics: MetricsService,
  ) {
    metrics.setSources({ activeHolds: () => this.activeHolds() });
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
      const result = await this.placeHold(userId, featureEndpointId);
      this.metrics.starts.inc({ outcome: 'accessible' });
      return result;
    } catch (error) {
      if (error instanceof DomainError) this.metrics.starts.inc({ outcome: error.code });
      throw error;
    }
  }

  private async placeHold(userId: string, featureEndpointId: string): Promise<StartResult> {
    const usageKey = randomUUID();
    let row = await this.tryHold(userId, featureEndpointId, usageKey);
    if (!row && (await this.expireHolds(userId)) > 0) row = await this.tryHold(userId, featureEndpointId, usageKey);
    if (!row) throw await this.whyNotAccessible(userId, featureEndpointId);
    const balance = Money.fromDb(row.balance);
    const held = Money.fromDb(row.held);
    return {
      status: 'accessible',
      usage_key: usageKey,
      user_id: userId,
      feature_endpoint_id: featureEndpointId,
      credits: balance.minus(held).toString(),
      balance: balance.toString(),
      held: held.toString(),
      hold_amount: Money.fromDb(row.hold_amount).toString(),
      expires_at: row.expires_at.toISOString(),
    };
  }

  private async tryHold(userId: string, featureEndpointId: string, usageKey: string): Promise<StartRow | undefined> {
    const rows: StartRow[] = await this.dataSource.query(
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
    );
    return rows[0];
  }

  /** Reads wallet and feature to name the first failed check, in the contract's order. */
  private async whyNotAccessible(userId: string, featureEndpointId: string): Promise<Error> {
    const wallet = await this.wallets.find(userId).catch((e: unknown) => e as Error);
    if (wallet instanceof Error) return wallet;
    if (wallet.status !== 'active') return walletSuspended(userId);
    const feature = await this.dataSource.getRepository(Feature).findOneBy({ featureEndpointId });
    if (!feature) return featureNotFound(featureEndpointId);
    if (!feature.active) return featureInactive(featureEndpointId);
    if (feature.allowedPlans.length > 0 && !feature.allowedPlans.includes(wallet.plan)) {
      return featureNotPermitted(featureEndpointId, wallet.plan);
    }
    return insufficientCredits(wallet.balance.minus(wallet.held), feature.minHoldingCredits);
  }

  /**
   * Settles an authorization: prices the usages, then in ONE transaction claims the hold
   * (held|expired → settled, a conditional UPDATE under the hold's row lock), releases what it
   * held, charges the wallet and stores the answer. A second settlement of the same key — in
   * sequence or racing this one — finds it settled and gets the stored answer, charging nothing.
   */
  async settle(dto: EndMultiModelDto, channel: Channel): Promise<SettlementResult> {
    try {
      const result = await (dto.usage_key === undefined ? this.directCharge(dto, channel) : this.settleHold(dto, dto.usage_key.toLowerCase(), channel));
      this.metrics.settlements.inc({ channel, outcome: result.status });
      if (result.status === 'settled') {
        this.metrics.recordCharge(Money.parse(result.credits_charged));
        this.logger.log(
          { usage_key: result.usage_key, user_id: result.user_id, channel, credits_charged: result.credits_charged, late: result.late },
          'settled',
        );
      }
      return result;
    } catch (error) {
      this.metrics.settlements.inc({ channel, outcome: 'failed' });
      throw error;
    }
  }

  private async settleHold(dto: EndMultiModelDto, usageKey: string, channel: Channel): Promise<SettlementResult> {
    const hold = isUuid(usageKey) ? await this.dataSource.getRepository(Hold).findOneBy({ usageKey }) : null;
    if (!hold) throw usageKeyNotFound(usageKey);
    if (hold.userId !== dto.user_id || hold.featureEndpointId !== dto.feature_endpoint_id) throw usageKeyMismatch(usageKey);
    if (hold.status === 'settled') return replay(hold);
    if (hold.status === 'cancelled') throw holdCancelled(usageKey);

    const quote = await this.pricing.price(this.dataSource.manager, toFeaturePricing(await this.feature(dto.feature_endpoint_id)), dto.usages);
    try {
      return await this.dataSource.transaction(async (manager) => {
        const [claimed] = await queryRows<{ previous_status: 'held' | 'expired'; amount: string; late: boolean }>(
          manager,
          `UPDATE holds h SET status = 'settled', settlement = '{}', closed_at = now(), late = (old.status = 'expired' OR old.expires_at < now())
           FROM (SELECT usage_key, status, expires_at FROM holds WHERE usage_key = $1 FOR UPDATE) old
           WHERE h.usage_key = old.usage_key AND old.status IN ('held', 'expired')
           RETURNING old.status AS previous_status, h.amount, h.late`,
          [usageKey],
        );
        if (!claimed) throw new LostRace();
        // An expired hold was already released by the sweeper: release only a live one.
        const release = claimed.previous_status === 'held' ? Money.fromDb(claimed.amount) : Money.ZERO;
        return this.charge(manager, dto, usageKey, quote, release.negate(), claimed.late, channel);
      });
    } catch (error) {
      if (!(error instanceof LostRace)) throw error;
      const after = await this.dataSource.getRepository(Hold).findOneByOrFail({ usageKey });
      if (after.status === 'settled') return replay(after);
      throw holdCancelled(usageKey);
    }
  }

  /**
   * A charge with no hold. With an idempotency key (body or Idempotency-Key header) it is
   * recorded as an authorization with that key; the unique index makes a repeat — even a
   * concurrent one — replay the first answer, and a repeat with another body a 409.
   */
  private async directCharge(dto: EndMultiModelDto, channel: Channel): Promise<SettlementResult> {
    const key = dto.idempotency_key ?? null;
    const requestHash = createHash('sha256')
      .update(JSON.stringify([dto.user_id, dto.feature_endpoint_id, dto.usages.map((u) => [u.ai_model, u.input_tokens, u.output_tokens, u.cached_input_tokens ?? 0])]))
      .digest('hex');
    const replayByKey = async () => {
      if (!key) return undefined;
      const previous = await this.dataSource.getRepository(Hold).findOneBy({ userId: dto.user_id, idempotencyKey: key });
      if (!previous) return undefined;
      if (previous.requestHash !== requestHash) throw idempotencyConflict(key);
      return replay(previous);
    };
    const previous = await replayByKey();
    if (previous) return previous;

    const quote = await this.pricing.price(this.dataSource.manager, toFeaturePricing(await this.feature(dto.feature_endpoint_id)), dto.usages);
    const usageKey = randomUUID();
    try {
      return await this.dataSource.transaction(async (manager) => {
        const result = await this.charge(manager, dto, usageKey, quote, Money.ZERO, false, channel, async () => {
          await manager.getRepository(Hold).insert({
            usageKey,
            userId: dto.user_id,
            featureEndpointId: dto.feature_endpoint_id,
            amount: Money.ZERO,
            status: 'settled',
            expiresAt: new Date(),
            idempotencyKey: key,
            requestHash,
            direct: true,
            late: false,
            closedAt: new Date(),
            settlement: {},
          });
        });
        return result;
      });
    } catch (error) {
      if (key && isUniqueViolation(error, 'holds_direct_idempotency')) {
        const replayed = await replayByKey();
        if (replayed) return replayed;
      }
      throw error;
    }
  }

  /** Charges the wallet (releasing `heldDelta`) and stores the answer on the hold. */
  private async charge(
    manager: EntityManager,
    dto: EndMultiModelDto,
    usageKey: string,
    quote: Awaited<ReturnType<PricingService['price']>>,
    heldDelta: Money,
    late: boolean,
    channel: Channel,
    beforeStore?: () => Promise<void>,
  ): Promise<SettlementResult> {
    const { wallet, entry } = await this.wallets.post(manager, {
      userId: dto.user_id,
      kind: 'charge',
      amount: quote.creditsCharged.negate(),
      heldDelta,
      usageKey,
      description: `usage of ${dto.feature_endpoint_id}`,
      metadata: { channel, feature_endpoint_id: dto.feature_endpoint_id, late, usages: quote.usages, pricing: quote.snapshot },
    });
    const result: SettlementResult = {
      status: 'settled',
      usage_key: usageKey,
      transaction_id: entry.id,
      user_id: dto.user_id,
      feature_endpoint_id: dto.feature_endpoint_id,
      credits_charged: quote.creditsCharged.toString(),
      credits: wallet.balance.minus(wallet.held).toString(),
      balance: wallet.balance.toString(),
      held: wallet.held.toString(),
      late,
      usages: quote.usages,
    };
    if (beforeStore) await beforeStore();
    await manager.getRepository(Hold).update({ usageKey }, { transactionId: entry.id, settlement: jsonb(result) });
    return result;
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
    const rows: { n: string }[] = await this.dataSource.query(
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
      settlement: hold.settlement,
      ledger_entries: entries.map(ledgerEntryView),
    };
  }

  private async feature(featureEndpointId: string): Promise<Feature> {
    const feature = await this.dataSource.getRepository(Feature).findOneBy({ featureEndpointId });
    if (!feature) throw featureNotFound(featureEndpointId);
    return feature;
  }
}

function replay(hold: Hold): SettlementResult {
  return { ...(hold.settlement as unknown as SettlementResult), status: 'already_settled' };
}

