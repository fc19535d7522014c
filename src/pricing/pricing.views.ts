import { formatScaled } from '../common/decimal';
import type { AiModel, ModelPriceVersion } from './ai-model.entity';
import type {
  ModelPriceResponseDoc,
  ModelPriceSummaryDoc,
  ModelPriceVersionDoc,
  PricedUsageDoc,
  PricingSettingsResponseDoc,
  QuoteResponseDoc,
} from './dto/pricing-responses.dto';
import type { PricedUsage, PricingSettings, Quote } from './pricing-engine';

/*
 * The API's picture of prices, settings and quotes (STYLE.md §7). Each view is typed as its
 * documentation class, so the answer, the OpenAPI document and the client types generated from it
 * cannot drift apart: a field on one side only, or of another type, fails to compile.
 */

const nullableScaled = (v: bigint | null) => (v === null ? null : formatScaled(v));

/** A model's price as listed: the current version, without its history. */
export function modelPriceSummaryView(m: AiModel | ModelPriceVersion): ModelPriceSummaryDoc {
  return {
    ai_model: m.aiModel,
    version: m.version,
    input_price_per_million: formatScaled(m.inputPricePerMillion),
    output_price_per_million: formatScaled(m.outputPricePerMillion),
    cached_input_price_per_million: nullableScaled(m.cachedInputPricePerMillion),
    profit_margin: nullableScaled(m.profitMargin),
  };
}

export function modelPriceVersionView(v: ModelPriceVersion): ModelPriceVersionDoc {
  return { ...modelPriceSummaryView(v), valid_from: v.validFrom.toISOString() };
}

/** The current price with every version, newest first as given. */
export function modelPriceView(m: AiModel, history: ModelPriceVersion[]): ModelPriceResponseDoc {
  return { ...modelPriceSummaryView(m), updated_at: m.updatedAt.toISOString(), history: history.map(modelPriceVersionView) };
}

export function pricingSettingsView(
  s: PricingSettings & { defaultLowBalanceThresholds: string[]; updatedAt: Date },
): PricingSettingsResponseDoc {
  return {
    credits_per_usd: formatScaled(s.creditsPerUsd),
    default_profit_margin: formatScaled(s.defaultProfitMargin),
    default_low_balance_thresholds: s.defaultLowBalanceThresholds,
    updated_at: s.updatedAt.toISOString(),
  };
}

/** Field by field: whatever else the engine computes for a usage stays out of the answer. */
export function pricedUsageView(u: PricedUsage): PricedUsageDoc {
  return {
    ai_model: u.ai_model,
    input_tokens: u.input_tokens,
    output_tokens: u.output_tokens,
    cached_input_tokens: u.cached_input_tokens,
    cost_usd: u.cost_usd,
    credits: u.credits,
  };
}

export function quoteView(featureEndpointId: string, q: Quote): QuoteResponseDoc {
  return {
    status: 'quoted',
    feature_endpoint_id: featureEndpointId,
    credits_charged: q.creditsCharged.toString(),
    usages: q.usages.map(pricedUsageView),
  };
}
