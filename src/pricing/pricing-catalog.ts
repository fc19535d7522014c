import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In } from 'typeorm';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { Feature } from '../features/feature.entity';
import { featureNotFound } from '../features/features.errors';
import { AiModel } from './ai-model.entity';
import type { UsageDto } from './dto/usage.dto';
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

/**
 * Features, model prices and settings as settlement needs them, cached for PRICING_CACHE_TTL_MS
 * so pricing a settlement usually costs no database round trip. Writes through this instance's
 * admin routes invalidate at once; another instance sees a change within the TTL. Every charge
 * records the prices it used in its ledger entry, so a charge priced just before a change stays
 * explainable. Absent entries are never cached (a new model is usable at once).
 */
@Injectable()
export class PricingCatalog {
  private readonly ttlMs: number;
  private features = new Map<string, Cached<FeaturePricing>>();
  private models = new Map<string, Cached<ModelPrice>>();
  private settings?: Cached<PricingSettings>;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.ttlMs = config.pricingCacheTtlMs;
  }

  invalidate(): void {
    this.features = new Map();
    this.models = new Map();
    this.settings = undefined;
  }

  /** Prices usages for a feature with the current table; throws feature_not_found / unknown_model. */
  async quote(featureEndpointId: string, usages: UsageDto[]): Promise<Quote> {
    const now = Date.now();
    const [feature, models, settings] = await Promise.all([this.feature(featureEndpointId, now), this.modelTable(usages, now), this.pricingSettings(now)]);
    return priceUsages(usages, feature, models, settings);
  }

  private async feature(id: string, now: number): Promise<FeaturePricing> {
    const hit = this.features.get(id);
    if (hit && hit.until > now) return hit.value;
    const row = await this.dataSource.getRepository(Feature).findOneBy({ featureEndpointId: id });
    if (!row) throw featureNotFound(id);
    const value = toFeaturePricing(row);
    if (this.ttlMs > 0) this.features.set(id, { value, until: now + this.ttlMs });
    return value;
  }

  private async modelTable(usages: UsageDto[], now: number): Promise<Map<string, ModelPrice>> {
    const table = new Map<string, ModelPrice>();
    const missing: string[] = [];
    for (const { ai_model: name } of usages) {
      if (table.has(name)) continue;
      const hit = this.models.get(name);
      if (hit && hit.until > now) table.set(name, hit.value);
      else if (!missing.includes(name)) missing.push(name);
    }
    if (missing.length > 0) {
      for (const row of await this.dataSource.getRepository(AiModel).findBy({ aiModel: In(missing) })) {
        const value = toModelPrice(row);
        table.set(row.aiModel, value);
        if (this.ttlMs > 0) this.models.set(row.aiModel, { value, until: now + this.ttlMs });
      }
    }
    return table; // an absent model makes priceUsages throw unknown_model, naming it
  }

  private async pricingSettings(now: number): Promise<PricingSettings> {
    if (this.settings && this.settings.until > now) return this.settings.value;
    const row = await this.dataSource.getRepository(PricingSettingsRow).findOneByOrFail({ id: 1 });
    const value = { creditsPerUsd: row.creditsPerUsd, defaultProfitMargin: row.defaultProfitMargin };
    if (this.ttlMs > 0) this.settings = { value, until: now + this.ttlMs };
    return value;
  }
}
