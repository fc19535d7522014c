import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In } from 'typeorm';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { Feature } from '../features/feature.entity';
import { featureNotFound } from '../features/features.errors';
import { AiModel } from './ai-model.entity';
import type { UsageDto } from './dto/usage.dto';
import { Money } from '../common/money';
import { estimatedHold, HoldPriceSnapshot, LockedQuote, priceFromSnapshot, snapshotPrices } from './price-snapshot';
import { FeaturePricing, ModelPrice, priceUsages, PricingSettings, Quote } from './pricing-engine';
import { PricingSettingsRow } from './pricing-settings.entity';

interface Cached<T> {
  value: T;
  until: number;
}

export function toModelPrice(m: AiModel): ModelPrice {
  return {
    aiModel: m.aiModel,
    version: m.version,
    inputPerMillion: m.inputPricePerMillion,
    outputPerMillion: m.outputPricePerMillion,
    cachedInputPerMillion: m.cachedInputPricePerMillion,
    profitMargin: m.profitMargin,
  };
}

export function toFeaturePricing(f: Feature): FeaturePricing {
  return { featureEndpointId: f.featureEndpointId, profitMargin: f.profitMargin, fixedCost: f.fixedCost?.micros ?? null };
}

/** A feature as the catalog keeps it: its pricing, and what a start by estimate or a locked hold needs. */
export interface CatalogFeature extends FeaturePricing {
  minHoldingCredits: Money;
  priceLock: boolean;
}

function toCatalogFeature(f: Feature): CatalogFeature {
  return { ...toFeaturePricing(f), minHoldingCredits: f.minHoldingCredits, priceLock: f.priceLock };
}

/**
 * Features, model prices and settings as settlement needs them, cached for PRICING_CACHE_TTL_MS
 * so pricing a settlement usually costs no database round trip. Writes through this instance's
 * admin routes invalidate at once; another instance sees a change within the TTL. Every charge
 * records the prices it used in its ledger entry, so a charge priced just before a change stays
 * explainable. Absent entries are never cached (a new model is usable at once).
 *
 * The cache holds the *pending read*, not only its result: when an entry expires while a batch
 * of 200 queued settlements is being priced, they share one read instead of issuing 200.
 */
@Injectable()
export class PricingCatalog {
  private readonly ttlMs: number;
  private features = new Map<string, Cached<Promise<CatalogFeature | undefined>>>();
  private models = new Map<string, Cached<Promise<ModelPrice | undefined>>>();
  /** The whole price table, for snapshots (a locked hold may settle with any model). */
  private allModels?: Cached<Promise<ModelPrice[]>>;
  private settings?: Cached<Promise<PricingSettings>>;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.ttlMs = config.pricingCacheTtlMs;
  }

  invalidate(): void {
    this.features = new Map();
    this.models = new Map();
    this.allModels = undefined;
    this.settings = undefined;
  }

  /** Prices usages for a feature with the current table; throws feature_not_found / unknown_model. */
  async quote(featureEndpointId: string, usages: UsageDto[]): Promise<Quote> {
    const now = Date.now();
    const [feature, models, settings] = await Promise.all([
      this.feature(featureEndpointId, now),
      this.modelTable(usages, now),
      this.pricingSettings(now),
    ]);
    if (!feature) throw featureNotFound(featureEndpointId);
    return priceUsages(usages, feature, models, settings);
  }

  /**
   * What a start with an estimate holds (API.md §13): max(min_holding_credits, the quote of the
   * estimated usages at the prices of now). Throws feature_not_found / unknown_model (422).
   */
  async estimate(featureEndpointId: string, usages: UsageDto[]): Promise<{ amount: Money; quote: Quote; priceLock: boolean }> {
    const now = Date.now();
    const [feature, models, settings] = await Promise.all([
      this.feature(featureEndpointId, now),
      this.modelTable(usages, now),
      this.pricingSettings(now),
    ]);
    if (!feature) throw featureNotFound(featureEndpointId);
    return { ...estimatedHold(feature.minHoldingCredits, usages, feature, models, settings), priceLock: feature.priceLock };
  }

  /** Whether the feature settles its holds at the prices of their start (from the cache: usually no round trip). */
  async locksPrices(featureEndpointId: string): Promise<boolean> {
    return (await this.feature(featureEndpointId, Date.now()))?.priceLock ?? false;
  }

  /**
   * Prices usages from a hold's snapshot (API.md §13); a model priced only after the hold was
   * placed is taken at its current price, with the snapshot's margins and rate.
   */
  async quoteLocked(usages: UsageDto[], snapshot: HoldPriceSnapshot): Promise<LockedQuote> {
    return priceFromSnapshot(usages, snapshot, await this.modelTable(usages, Date.now()));
  }

  /**
   * The prices in force now for a hold of this feature — settings, the feature's pricing and the
   * whole model table — as the hold of a `price_lock` feature keeps them; undefined when the feature
   * does not lock its prices (nothing to keep). Throws feature_not_found.
   */
  async snapshot(featureEndpointId: string, at = new Date()): Promise<HoldPriceSnapshot | undefined> {
    const now = at.getTime();
    const feature = await this.feature(featureEndpointId, now);
    if (!feature) throw featureNotFound(featureEndpointId);
    if (!feature.priceLock) return undefined;
    const [models, settings] = await Promise.all([this.modelList(now), this.pricingSettings(now)]);
    return snapshotPrices(feature, models, settings, at);
  }

  private modelList(now: number): Promise<ModelPrice[]> {
    if (this.allModels && this.allModels.until > now) return this.allModels.value;
    const read = this.dataSource
      .getRepository(AiModel)
      .find()
      .then((rows) => rows.map(toModelPrice));
    if (this.ttlMs > 0) {
      const entry = { value: read, until: now + this.ttlMs };
      this.allModels = entry;
      read.catch(() => this.allModels === entry && (this.allModels = undefined));
    }
    return read;
  }

  private feature(id: string, now: number): Promise<CatalogFeature | undefined> {
    const hit = this.features.get(id);
    if (hit && hit.until > now) return hit.value;
    const read = this.dataSource
      .getRepository(Feature)
      .findOneBy({ featureEndpointId: id })
      .then((row) => (row ? toCatalogFeature(row) : undefined));
    return this.remember(this.features, id, read, now);
  }

  private async modelTable(usages: UsageDto[], now: number): Promise<Map<string, ModelPrice>> {
    const pending = new Map<string, Promise<ModelPrice | undefined>>();
    const missing: string[] = [];
    for (const { ai_model: name } of usages) {
      const hit = this.models.get(name);
      if (hit && hit.until > now) pending.set(name, hit.value);
      else if (!missing.includes(name)) missing.push(name);
    }
    if (missing.length > 0) {
      // One read for every model this quote misses, each remembered on its own.
      const read = this.dataSource
        .getRepository(AiModel)
        .findBy({ aiModel: In(missing) })
        .then((rows) => new Map(rows.map((row) => [row.aiModel, toModelPrice(row)])));
      for (const name of missing)
        pending.set(
          name,
          this.remember(
            this.models,
            name,
            read.then((found) => found.get(name)),
            now,
          ),
        );
    }
    // Promise.all, not a loop of awaits: every pending read gets a handler, even after one fails.
    const prices = await Promise.all(pending.values());
    const table = new Map<string, ModelPrice>();
    for (const price of prices) if (price) table.set(price.aiModel, price);
    return table; // an absent model makes priceUsages throw unknown_model, naming it
  }

  private pricingSettings(now: number): Promise<PricingSettings> {
    if (this.settings && this.settings.until > now) return this.settings.value;
    const read = this.dataSource
      .getRepository(PricingSettingsRow)
      .findOneByOrFail({ id: 1 })
      .then((row) => ({ creditsPerUsd: row.creditsPerUsd, defaultProfitMargin: row.defaultProfitMargin }));
    if (this.ttlMs > 0) {
      const entry = { value: read, until: now + this.ttlMs };
      this.settings = entry;
      read.catch(() => this.settings === entry && (this.settings = undefined));
    }
    return read;
  }

  /**
   * Caches a pending read under `key` for the TTL. A read that finds nothing, or fails, is
   * forgotten as soon as it settles, so the next caller reads again.
   */
  private remember<T>(
    map: Map<string, Cached<Promise<T | undefined>>>,
    key: string,
    read: Promise<T | undefined>,
    now: number,
  ): Promise<T | undefined> {
    if (this.ttlMs <= 0) return read;
    const entry = { value: read, until: now + this.ttlMs };
    map.set(key, entry);
    const forget = () => {
      if (map.get(key) === entry) map.delete(key);
    };
    read.then((value) => value === undefined && forget(), forget);
    return read;
  }
}
