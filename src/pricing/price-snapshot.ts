import { formatScaled, scaledFromDb } from '../common/decimal';
import { Money } from '../common/money';
import { FeaturePricing, ModelPrice, priceUsages, PricingSettings, Quote, Usage } from './pricing-engine';

/**
 * The prices in force at one moment, as a hold with `price_lock` keeps them (a jsonb column; API.md
 * §13): the settings, the feature's pricing and every model's current price, each figure the exact
 * decimal string of its numeric(…, 6) column. Nullable figures stay null, so the engine applies the
 * same defaults to a snapshot as to the live table (cached price = input price, margin = feature ??
 * model ?? default) and prices from it exactly as it would have priced live at `priced_at`.
 *
 * Not the `PriceSnapshot` of a charge's metadata (pricing-engine.ts): that one records what a charge
 * USED (the resolved margin of each model priced); this one records what a hold MAY use.
 */
export interface HoldPriceSnapshot {
  /** When the prices were read: the hold's creation time, said by every charge priced from it. */
  priced_at: string;
  credits_per_usd: string;
  default_profit_margin: string;
  feature: { feature_endpoint_id: string; profit_margin: string | null; fixed_cost: string | null };
  models: Record<
    string,
    {
      version: number;
      input_price_per_million: string;
      output_price_per_million: string;
      cached_input_price_per_million: string | null;
      profit_margin: string | null;
    }
  >;
}

const text = (value: bigint | null): string | null => (value === null ? null : formatScaled(value));
const scaled = (value: string | null): bigint | null => (value === null ? null : scaledFromDb(value));

/** The snapshot of these prices (a pure function: the catalog reads them, see PricingCatalog.snapshot). */
export function snapshotPrices(
  feature: FeaturePricing,
  models: Iterable<ModelPrice>,
  settings: PricingSettings,
  pricedAt: Date,
): HoldPriceSnapshot {
  const table: HoldPriceSnapshot['models'] = {};
  // Sorted, so two snapshots of the same prices are the same JSON.
  for (const m of [...models].sort((a, b) => (a.aiModel < b.aiModel ? -1 : a.aiModel > b.aiModel ? 1 : 0))) {
    table[m.aiModel] = {
      version: m.version,
      input_price_per_million: formatScaled(m.inputPerMillion),
      output_price_per_million: formatScaled(m.outputPerMillion),
      cached_input_price_per_million: text(m.cachedInputPerMillion),
      profit_margin: text(m.profitMargin),
    };
  }
  return {
    priced_at: pricedAt.toISOString(),
    credits_per_usd: formatScaled(settings.creditsPerUsd),
    default_profit_margin: formatScaled(settings.defaultProfitMargin),
    feature: {
      feature_endpoint_id: feature.featureEndpointId,
      profit_margin: text(feature.profitMargin),
      fixed_cost: text(feature.fixedCost),
    },
    models: table,
  };
}

/** The engine's inputs back from a snapshot (as read from jsonb: plain JSON). */
export function pricesOfSnapshot(snapshot: HoldPriceSnapshot): {
  feature: FeaturePricing;
  models: Map<string, ModelPrice>;
  settings: PricingSettings;
} {
  const models = new Map<string, ModelPrice>();
  for (const [aiModel, m] of Object.entries(snapshot.models)) {
    models.set(aiModel, {
      aiModel,
      version: m.version,
      inputPerMillion: scaledFromDb(m.input_price_per_million),
      outputPerMillion: scaledFromDb(m.output_price_per_million),
      cachedInputPerMillion: scaled(m.cached_input_price_per_million),
      profitMargin: scaled(m.profit_margin),
    });
  }
  return {
    feature: {
      featureEndpointId: snapshot.feature.feature_endpoint_id,
      profitMargin: scaled(snapshot.feature.profit_margin),
      fixedCost: scaled(snapshot.feature.fixed_cost),
    },
    models,
    settings: { creditsPerUsd: scaledFromDb(snapshot.credits_per_usd), defaultProfitMargin: scaledFromDb(snapshot.default_profit_margin) },
  };
}

/** A quote priced from a snapshot, saying when its prices were in force. */
export interface LockedQuote extends Quote {
  pricedAt: string;
}

/**
 * Prices usages with a snapshot's prices, margins and rate: the same engine, so the same figures as
 * pricing live at `priced_at`. A model the snapshot does not know (priced only after the hold was
 * placed) is priced from `laterModels` (the live table) when given, with the snapshot's margins
 * and rate: the lock keeps the prices that existed, it cannot refuse work done with a newer model.
 * Absent from both: 422 unknown_model, as live.
 */
export function priceFromSnapshot(
  usages: Usage[],
  snapshot: HoldPriceSnapshot,
  laterModels?: ReadonlyMap<string, ModelPrice>,
): LockedQuote {
  const { feature, models, settings } = pricesOfSnapshot(snapshot);
  if (laterModels)
    for (const u of usages)
      if (!models.has(u.ai_model) && laterModels.has(u.ai_model)) models.set(u.ai_model, laterModels.get(u.ai_model)!);
  return { ...priceUsages(usages, feature, models, settings), pricedAt: snapshot.priced_at };
}

/**
 * The hold of a start with an estimate (API.md §13): max(min_holding_credits, what settling the
 * estimated usages would charge). Throws unknown_model (422) for a model without a price.
 */
export function estimatedHold(
  minHoldingCredits: Money,
  usages: Usage[],
  feature: FeaturePricing,
  models: ReadonlyMap<string, ModelPrice>,
  settings: PricingSettings,
): { amount: Money; quote: Quote } {
  const quote = priceUsages(usages, feature, models, settings);
  return { amount: quote.creditsCharged.gte(minHoldingCredits) ? quote.creditsCharged : minHoldingCredits, quote };
}
