import { ApiProperty } from '@nestjs/swagger';
import { MONEY_ANSWER } from '../../common/openapi';
import { tokenCount } from './usage.dto';

/*
 * Documentation of the pricing answers. Never instantiated: the views in pricing.views.ts build
 * the answers and are typed as these classes.
 */

/** A price as answered: 6 fraction digits (USD per million tokens, or a margin fraction). */
const PRICE = { ...MONEY_ANSWER } as const;

/** A model's price as listed: the current version. */
export class ModelPriceSummaryDoc {
  @ApiProperty({ example: 'gpt-4o' })
  ai_model!: string;

  @ApiProperty({ description: 'Grows by one at every price change.', type: 'integer', example: 1 })
  version!: number;

  @ApiProperty({ description: 'USD per million input tokens.', ...PRICE, example: '2.500000' })
  input_price_per_million!: string;

  @ApiProperty({ description: 'USD per million output tokens.', ...PRICE, example: '10.000000' })
  output_price_per_million!: string;

  @ApiProperty({
    ...PRICE,
    nullable: true,
    description: 'USD per million cached input tokens; null = the input price applies.',
    example: '1.250000',
  })
  cached_input_price_per_million!: string | null;

  @ApiProperty({ ...PRICE, nullable: true, description: "The model's margin; null = the default margin applies.", example: null })
  profit_margin!: string | null;
}

/** One version of a model's price, kept after a change. */
export class ModelPriceVersionDoc extends ModelPriceSummaryDoc {
  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:00:00.000Z' })
  valid_from!: string;
}

const MODEL_VERSION_EXAMPLE = {
  ai_model: 'gpt-4o',
  version: 1,
  input_price_per_million: '2.500000',
  output_price_per_million: '10.000000',
  cached_input_price_per_million: '1.250000',
  profit_margin: null,
  valid_from: '2026-11-25T10:00:00.000Z',
} satisfies ModelPriceVersionDoc;

export const MODEL_PRICE_EXAMPLE = {
  ai_model: 'gpt-4o',
  version: 1,
  input_price_per_million: '2.500000',
  output_price_per_million: '10.000000',
  cached_input_price_per_million: '1.250000',
  profit_margin: null,
  updated_at: '2026-11-25T10:00:00.000Z',
  history: [MODEL_VERSION_EXAMPLE],
} satisfies ModelPriceResponseDoc;

export const MODEL_PRICE_SUMMARY_EXAMPLE = (({ history: _history, updated_at: _updated, ...current }) => current)(
  MODEL_PRICE_EXAMPLE,
) satisfies ModelPriceSummaryDoc;

/** A model's current price with every earlier one. */
export class ModelPriceResponseDoc extends ModelPriceSummaryDoc {
  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:00:00.000Z' })
  updated_at!: string;

  @ApiProperty({ description: 'Every price this model had, newest first (old charges stay explainable).', type: [ModelPriceVersionDoc] })
  history!: ModelPriceVersionDoc[];
}

export const PRICING_SETTINGS_EXAMPLE = {
  credits_per_usd: '100.000000',
  default_profit_margin: '0.000000',
  default_low_balance_thresholds: [],
  updated_at: '2026-11-25T10:00:00.000Z',
} satisfies PricingSettingsResponseDoc;

export class PricingSettingsResponseDoc {
  @ApiProperty({ description: 'Credits per USD of cost.', ...PRICE, example: '100.000000' })
  credits_per_usd!: string;

  @ApiProperty({ description: 'Margin when neither the feature nor the model sets one.', ...PRICE, example: '0.000000' })
  default_profit_margin!: string;

  @ApiProperty({ description: 'Low-balance thresholds of wallets without their own, highest first.', type: [String], example: [] })
  default_low_balance_thresholds!: string[];

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:00:00.000Z' })
  updated_at!: string;
}

export const PRICED_USAGE_EXAMPLE = {
  ai_model: 'gpt-4o',
  input_tokens: 1200,
  output_tokens: 300,
  cached_input_tokens: 0,
  cost_usd: '0.006000',
  credits: '0.720000',
} satisfies PricedUsageDoc;

/** One usage as priced: cost_usd and credits before the final rounding of the total. */
export class PricedUsageDoc {
  @ApiProperty({ example: 'gpt-4o' })
  ai_model!: string;

  @ApiProperty(tokenCount('Input tokens.', 1200))
  input_tokens!: number;

  @ApiProperty(tokenCount('Output tokens.', 300))
  output_tokens!: number;

  @ApiProperty(tokenCount('Cached input tokens.', 0))
  cached_input_tokens!: number;

  @ApiProperty({ description: 'Cost in USD.', ...MONEY_ANSWER, example: '0.006000' })
  cost_usd!: string;

  @ApiProperty({ description: 'Credits for this usage (margin and rate applied).', ...MONEY_ANSWER, example: '0.720000' })
  credits!: string;
}

export const QUOTE_EXAMPLE = {
  status: 'quoted',
  feature_endpoint_id: 'ai_chat_v1',
  credits_charged: '0.720000',
  usages: [PRICED_USAGE_EXAMPLE],
} satisfies QuoteResponseDoc;

export class QuoteResponseDoc {
  @ApiProperty({ enum: ['quoted'], example: 'quoted' })
  status!: 'quoted';

  @ApiProperty({ example: 'ai_chat_v1' })
  feature_endpoint_id!: string;

  @ApiProperty({
    description: 'What a settlement would charge now: Σ credits + fixed_cost, rounded half-up once.',
    ...MONEY_ANSWER,
    example: '0.720000',
  })
  credits_charged!: string;

  @ApiProperty({ type: [PricedUsageDoc] })
  usages!: PricedUsageDoc[];
}
