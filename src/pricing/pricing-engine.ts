import { divRoundHalfUp, formatScaled, UNIT } from '../common/decimal';
import { DomainError } from '../common/domain-error';
import { Money } from '../common/money';

/**
 * The pricing engine of API.md §5, a pure function. Every input decimal is a bigint scaled by
 * 10^6 (prices in micro-USD per million tokens, margins and rates in millionths), so the whole
 * computation is integer arithmetic:
 *
 *   per usage   n = (input − cached)·P_in + cached·P_cached + output·P_out      [10^-6 USD per 10^6 tokens]
 *               credits_u = n · (10^6 + margin) · rate / 10^24                   [credits, exact rational]
 *   total       credits_charged = round_half_up(Σ credits_u + fixed_cost, 6)     [rounded once]
 *
 * Per-usage `cost_usd` and `credits` in the answer are rounded for display only; the charge is
 * the exact sum rounded once, so it never drifts with the number of usages.
 */

export interface ModelPrice {
  aiModel: string;
  version: number;
  inputPerMillion: bigint;
  outputPerMillion: bigint;
  /** Defaults to the input price. */
  cachedInputPerMillion: bigint | null;
  profitMargin: bigint | null;
}

export interface PricingSettings {
  creditsPerUsd: bigint;
  defaultProfitMargin: bigint;
}

export interface FeaturePricing {
  featureEndpointId: string;
  profitMargin: bigint | null;
  fixedCost: bigint | null;
}

export interface Usage {
  ai_model: string;
  input_tokens: number;
  output_tokens: number;
  /** Absent or null = 0 (the request DTO accepts null: partners send it). */
  cached_input_tokens?: number | null;
}

export interface PricedUsage {
  ai_model: string;
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
  cost_usd: string;
  credits: string;
}

/** What a charge was computed from, stored with the ledger entry so it stays explainable. */
export interface PriceSnapshot {
  credits_per_usd: string;
  default_profit_margin: string;
  feature: { feature_endpoint_id: string; profit_margin: string | null; fixed_cost: string };
  models: Record<
    string,
    {
      version: number;
      input_price_per_million: string;
      output_price_per_million: string;
      cached_input_price_per_million: string;
      profit_margin: string;
      margin_source: 'feature' | 'model' | 'default';
    }
  >;
}

export interface Quote {
  creditsCharged: Money;
  usages: PricedUsage[];
  snapshot: PriceSnapshot;
}

/** n·(10^6+m)·rate is in 10^-24 credits: dividing by 10^18 gives micro-credits. */
const TO_MICRO_CREDITS = UNIT * UNIT * UNIT;
/** n is in 10^-12 USD: dividing by 10^6 gives micro-USD. */
const TO_MICRO_USD = UNIT;

export function unknownModel(aiModel: string): DomainError {
  return new DomainError('unknown_model', `No price is set for ai_model "${aiModel}".`, { ai_model: aiModel });
}

export function priceUsages(
  usages: Usage[],
  feature: FeaturePricing,
  models: ReadonlyMap<string, ModelPrice>,
  settings: PricingSettings,
): Quote {
  let total = 0n; // in 10^-24 credits
  const priced: PricedUsage[] = [];
  const snapshotModels: PriceSnapshot['models'] = {};

  usages.forEach((u, index) => {
    const model = models.get(u.ai_model);
    if (!model) throw unknownModel(u.ai_model);
    const input = BigInt(u.input_tokens);
    const output = BigInt(u.output_tokens);
    const cached = BigInt(u.cached_input_tokens ?? 0);
    if (cached > input) {
      throw new DomainError('validation_error', 'cached_input_tokens must not exceed input_tokens', {
        errors: [{ field: `usages.${index}.cached_input_tokens`, message: 'must not exceed input_tokens' }],
      });
    }
    const cachedPrice = model.cachedInputPerMillion ?? model.inputPerMillion;
    const [margin, marginSource] =
      feature.profitMargin !== null
        ? [feature.profitMargin, 'feature' as const]
        : model.profitMargin !== null
          ? [model.profitMargin, 'model' as const]
          : [settings.defaultProfitMargin, 'default' as const];

    const n = (input - cached) * model.inputPerMillion + cached * cachedPrice + output * model.outputPerMillion;
    const credits = n * (UNIT + margin) * settings.creditsPerUsd; // 10^-24 credits
    total += credits;
    priced.push({
      ai_model: u.ai_model,
      input_tokens: u.input_tokens,
      output_tokens: u.output_tokens,
      cached_input_tokens: u.cached_input_tokens ?? 0,
      cost_usd: formatScaled(divRoundHalfUp(n, TO_MICRO_USD)),
      credits: formatScaled(divRoundHalfUp(credits, TO_MICRO_CREDITS)),
    });
    snapshotModels[u.ai_model] = {
      version: model.version,
      input_price_per_million: formatScaled(model.inputPerMillion),
      output_price_per_million: formatScaled(model.outputPerMillion),
      cached_input_price_per_million: formatScaled(cachedPrice),
      profit_margin: formatScaled(margin),
      margin_source: marginSource,
    };
  });

  const fixed = feature.fixedCost ?? 0n;
  const charged = divRoundHalfUp(total + fixed * TO_MICRO_CREDITS, TO_MICRO_CREDITS);
  return {
    creditsCharged: Money.ofMicros(charged),
    usages: priced,
    snapshot: {
      credits_per_usd: formatScaled(settings.creditsPerUsd),
      default_profit_margin: formatScaled(settings.defaultProfitMargin),
      feature: {
        feature_endpoint_id: feature.featureEndpointId,
        profit_margin: feature.profitMargin === null ? null : formatScaled(feature.profitMargin),
        fixed_cost: formatScaled(fixed),
      },
      models: snapshotModels,
    },
  };
}
