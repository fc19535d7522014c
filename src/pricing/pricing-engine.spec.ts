import { describe, expect, it } from '@jest/globals';
import { toScaled } from '../common/decimal';
import { DomainError } from '../common/domain-error';
import { FeaturePricing, ModelPrice, priceUsages, PricingSettings, Usage } from './pricing-engine';

/*
 * Every expected figure below is worked out by hand in the comment next to it, from the formula of
 * API.md §5:
 *   cost_usd = ((input − cached)·P_in + cached·P_cached + output·P_out) / 1,000,000
 *   credits  = cost_usd · (1 + margin) · credits_per_usd
 *   credits_charged = round_half_up(Σ credits + fixed_cost, 6)
 */

interface ModelSpec {
  input: string;
  output: string;
  cached?: string;
  margin?: string;
  version?: number;
}

function table(specs: Record<string, ModelSpec>): Map<string, ModelPrice> {
  return new Map(
    Object.entries(specs).map(([aiModel, s]) => [
      aiModel,
      {
        aiModel,
        version: s.version ?? 1,
        inputPerMillion: toScaled(s.input),
        outputPerMillion: toScaled(s.output),
        cachedInputPerMillion: s.cached === undefined ? null : toScaled(s.cached),
        profitMargin: s.margin === undefined ? null : toScaled(s.margin),
      },
    ]),
  );
}

function feature(opts: { margin?: string; fixedCost?: string } = {}): FeaturePricing {
  return {
    featureEndpointId: 'ai_chat_v1',
    profitMargin: opts.margin === undefined ? null : toScaled(opts.margin),
    fixedCost: opts.fixedCost === undefined ? null : toScaled(opts.fixedCost),
  };
}

function settings(creditsPerUsd = '100', defaultMargin = '0'): PricingSettings {
  return { creditsPerUsd: toScaled(creditsPerUsd), defaultProfitMargin: toScaled(defaultMargin) };
}

const usage = (ai_model: string, input_tokens: number, output_tokens: number, cached_input_tokens?: number): Usage => ({
  ai_model,
  input_tokens,
  output_tokens,
  ...(cached_input_tokens === undefined ? {} : { cached_input_tokens }),
});

function thrown(fn: () => unknown): DomainError {
  try {
    fn();
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('expected a DomainError, nothing was thrown');
}

const GPT_4O = { 'gpt-4o': { input: '2.5', output: '10' } };

describe('priceUsages: the contract example', () => {
  it('prices gpt-4o at 2.5/10 USD per million, 1200 in / 300 out, margin 0.2, 100 credits per USD', () => {
    // cost_usd = (1200·2.5 + 300·10) / 1e6 = (3000 + 3000) / 1e6 = 0.006
    // credits  = 0.006 · 1.2 · 100 = 0.72
    const q = priceUsages([usage('gpt-4o', 1200, 300)], feature({ margin: '0.2' }), table(GPT_4O), settings());
    expect(q.creditsCharged.toString()).toBe('0.720000');
    expect(q.usages).toEqual([
      { ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300, cached_input_tokens: 0, cost_usd: '0.006000', credits: '0.720000' },
    ]);
  });
});

describe('priceUsages: several usages of different models', () => {
  it('sums every usage at its own model price', () => {
    const models = table({
      'gpt-4o': { input: '2.5', output: '10', cached: '1.25' },
      'claude-sonnet-4': { input: '3', output: '15' },
      'gpt-4o-mini': { input: '0.15', output: '0.6' },
    });
    const q = priceUsages(
      [usage('gpt-4o', 1000, 500, 200), usage('claude-sonnet-4', 2000, 1000), usage('gpt-4o-mini', 10_000, 4000)],
      feature(),
      models,
      settings('100', '0.1'),
    );
    // gpt-4o:          (800·2.5 + 200·1.25 + 500·10) / 1e6 = (2000 + 250 + 5000) / 1e6 = 0.00725 USD
    //                  0.00725 · 1.1 · 100 = 0.7975 credits
    // claude-sonnet-4: (2000·3 + 1000·15) / 1e6 = 21000 / 1e6 = 0.021 USD → 0.021 · 110 = 2.31 credits
    // gpt-4o-mini:     (10000·0.15 + 4000·0.6) / 1e6 = (1500 + 2400) / 1e6 = 0.0039 USD → 0.429 credits
    // total:           0.7975 + 2.31 + 0.429 = 3.5365
    expect(q.usages.map((u) => [u.ai_model, u.cost_usd, u.credits])).toEqual([
      ['gpt-4o', '0.007250', '0.797500'],
      ['claude-sonnet-4', '0.021000', '2.310000'],
      ['gpt-4o-mini', '0.003900', '0.429000'],
    ]);
    expect(q.creditsCharged.toString()).toBe('3.536500');
  });

  it('prices the same model twice without merging the usages', () => {
    // 2 × (1200·2.5 + 300·10)/1e6 · 100 = 2 × 0.6 = 1.2 (default margin 0)
    const q = priceUsages([usage('gpt-4o', 1200, 300), usage('gpt-4o', 1200, 300)], feature(), table(GPT_4O), settings());
    expect(q.usages).toHaveLength(2);
    expect(q.creditsCharged.toString()).toBe('1.200000');
  });
});

describe('priceUsages: margin precedence feature → model → default', () => {
  // One million input tokens at 1 USD per million = 1 USD of cost in every case; rate 100.
  const models = table({ 'with-margin': { input: '1', output: '0', margin: '0.5' }, 'no-margin': { input: '1', output: '0' } });
  const oneUsd = (m: string) => [usage(m, 1_000_000, 0)];

  it('uses the feature margin over the model margin', () => {
    // 1 · (1 + 0.2) · 100 = 120
    const q = priceUsages(oneUsd('with-margin'), feature({ margin: '0.2' }), models, settings('100', '0.1'));
    expect(q.creditsCharged.toString()).toBe('120.000000');
    expect(q.snapshot.models['with-margin']).toMatchObject({ profit_margin: '0.200000', margin_source: 'feature' });
  });

  it('uses a feature margin of 0 over the model margin (0 is a margin, not "unset")', () => {
    // 1 · (1 + 0) · 100 = 100
    const q = priceUsages(oneUsd('with-margin'), feature({ margin: '0' }), models, settings('100', '0.1'));
    expect(q.creditsCharged.toString()).toBe('100.000000');
    expect(q.snapshot.models['with-margin']).toMatchObject({ profit_margin: '0.000000', margin_source: 'feature' });
  });

  it('uses the model margin over the default when the feature has none', () => {
    // 1 · (1 + 0.5) · 100 = 150
    const q = priceUsages(oneUsd('with-margin'), feature(), models, settings('100', '0.1'));
    expect(q.creditsCharged.toString()).toBe('150.000000');
    expect(q.snapshot.models['with-margin']).toMatchObject({ profit_margin: '0.500000', margin_source: 'model' });
  });

  it('uses the default margin when neither feature nor model has one', () => {
    // 1 · (1 + 0.1) · 100 = 110
    const q = priceUsages(oneUsd('no-margin'), feature(), models, settings('100', '0.1'));
    expect(q.creditsCharged.toString()).toBe('110.000000');
    expect(q.snapshot.models['no-margin']).toMatchObject({ profit_margin: '0.100000', margin_source: 'default' });
  });

  it('applies each model its own margin within one settlement', () => {
    // with-margin: 1 · 1.5 · 100 = 150; no-margin: 1 · 1.1 · 100 = 110; total 260
    const q = priceUsages([...oneUsd('with-margin'), ...oneUsd('no-margin')], feature(), models, settings('100', '0.1'));
    expect(q.usages.map((u) => u.credits)).toEqual(['150.000000', '110.000000']);
    expect(q.creditsCharged.toString()).toBe('260.000000');
  });
});

describe('priceUsages: cached input tokens', () => {
  it('prices cached tokens at the cached price', () => {
    // (600000·2 + 400000·0.5 + 0) / 1e6 = (1,200,000 + 200,000) / 1e6 = 1.4 USD → 1.4 · 100 = 140
    const models = table({ m: { input: '2', output: '0', cached: '0.5' } });
    const q = priceUsages([usage('m', 1_000_000, 0, 400_000)], feature(), models, settings());
    expect(q.usages[0]).toMatchObject({ cached_input_tokens: 400_000, cost_usd: '1.400000', credits: '140.000000' });
    expect(q.creditsCharged.toString()).toBe('140.000000');
  });

  it('prices cached tokens at the input price when the model has no cached price', () => {
    // (600000·2 + 400000·2) / 1e6 = 2 USD → 200
    const models = table({ m: { input: '2', output: '0' } });
    const q = priceUsages([usage('m', 1_000_000, 0, 400_000)], feature(), models, settings());
    expect(q.creditsCharged.toString()).toBe('200.000000');
    expect(q.snapshot.models.m.cached_input_price_per_million).toBe('2.000000');
  });

  it('accepts every input token served from cache', () => {
    // (0·2.5 + 1200·1.25 + 300·10) / 1e6 = (1500 + 3000) / 1e6 = 0.0045 USD → 0.45
    const models = table({ 'gpt-4o': { input: '2.5', output: '10', cached: '1.25' } });
    const q = priceUsages([usage('gpt-4o', 1200, 300, 1200)], feature(), models, settings());
    expect(q.creditsCharged.toString()).toBe('0.450000');
  });

  it('refuses cached_input_tokens above input_tokens with validation_error naming the usage', () => {
    const error = thrown(() => priceUsages([usage('gpt-4o', 10, 0), usage('gpt-4o', 100, 0, 101)], feature(), table(GPT_4O), settings()));
    expect(error.code).toBe('validation_error');
    expect(error.httpStatus).toBe(400);
    expect(error.message).toBe('cached_input_tokens must not exceed input_tokens');
    expect(error.details.errors).toEqual([{ field: 'usages.1.cached_input_tokens', message: 'must not exceed input_tokens' }]);
  });
});

describe('priceUsages: fixed cost', () => {
  it('adds the feature fixed cost once, in credits, after margin and rate', () => {
    // 0.72 (the contract example) + 2.5 fixed = 3.22
    const q = priceUsages([usage('gpt-4o', 1200, 300)], feature({ margin: '0.2', fixedCost: '2.5' }), table(GPT_4O), settings());
    expect(q.creditsCharged.toString()).toBe('3.220000');
    // the per-usage breakdown never includes the fixed cost
    expect(q.usages[0].credits).toBe('0.720000');
    expect(q.snapshot.feature.fixed_cost).toBe('2.500000');
  });

  it('charges the fixed cost alone for usages that cost nothing', () => {
    // 0 tokens → 0 + 0.000001 fixed
    const q = priceUsages([usage('gpt-4o', 0, 0)], feature({ fixedCost: '0.000001' }), table(GPT_4O), settings());
    expect(q.creditsCharged.toString()).toBe('0.000001');
  });
});

describe('priceUsages: rounding happens once, half up, on the total', () => {
  // 1 input token at 0.5 USD per million, rate 1, margin 0 → 0.5 / 1e6 = 0.0000005 credits per usage:
  // exactly half a micro-credit, the worst case for per-usage rounding.
  const half = table({ half: { input: '0.5', output: '0' } });

  it('charges 3 × 0.0000005 = 0.0000015 → 0.000002, not 3 × 0.000001 nor 0', () => {
    const q = priceUsages([usage('half', 1, 0), usage('half', 1, 0), usage('half', 1, 0)], feature(), half, settings('1', '0'));
    expect(q.creditsCharged.toString()).toBe('0.000002');
    // each usage is displayed rounded half up on its own (0.0000005 → 0.000001)…
    expect(q.usages.map((u) => u.credits)).toEqual(['0.000001', '0.000001', '0.000001']);
    // …so the displayed figures add up to 0.000003: the charge is not their sum
    expect(q.usages.map((u) => u.cost_usd)).toEqual(['0.000001', '0.000001', '0.000001']);
  });

  it('rounds an exact half micro-credit up', () => {
    // 0.0000005 → 0.000001
    const q = priceUsages([usage('half', 1, 0)], feature(), half, settings('1', '0'));
    expect(q.creditsCharged.toString()).toBe('0.000001');
  });

  it('rounds just under a half down', () => {
    // 1 token at 0.499999 USD/M, rate 1 → 0.000000499999 → 0.000000
    const models = table({ under: { input: '0.499999', output: '0' } });
    const q = priceUsages([usage('under', 1, 0)], feature(), models, settings('1', '0'));
    expect(q.creditsCharged.toString()).toBe('0.000000');
  });

  it('charges amounts that each round to zero once they add up', () => {
    // 3 × 1 token at 0.4 USD/M, rate 1 → 3 × 0.0000004 = 0.0000012 → 0.000001 (per-usage rounding: 0)
    const models = table({ small: { input: '0.4', output: '0' } });
    const q = priceUsages([usage('small', 1, 0), usage('small', 1, 0), usage('small', 1, 0)], feature(), models, settings('1', '0'));
    expect(q.usages.map((u) => u.credits)).toEqual(['0.000000', '0.000000', '0.000000']);
    expect(q.creditsCharged.toString()).toBe('0.000001');
  });

  it('rounds the fixed cost together with the usages, not separately', () => {
    // 0.0000005 + 0.000001 fixed = 0.0000015 → 0.000002
    const q = priceUsages([usage('half', 1, 0)], feature({ fixedCost: '0.000001' }), half, settings('1', '0'));
    expect(q.creditsCharged.toString()).toBe('0.000002');
  });

  it('does not drift over 100 usages of a third of a micro-credit', () => {
    // 1 token at 1 USD/M, rate 1, margin 0 → 0.000001 USD; with rate 0.333333 → 0.000000333333 each.
    // 100 × 0.000000333333 = 0.0000333333 → 0.000033 (per-usage rounding would give 0)
    const models = table({ third: { input: '1', output: '0' } });
    const usages = Array.from({ length: 100 }, () => usage('third', 1, 0));
    const q = priceUsages(usages, feature(), models, settings('0.333333', '0'));
    expect(q.creditsCharged.toString()).toBe('0.000033');
    expect(new Set(q.usages.map((u) => u.credits))).toEqual(new Set(['0.000000']));
  });
});

describe('priceUsages: huge counts stay exact', () => {
  it('prices 1e9 input and 1e9 output tokens at near-maximum prices, margin and rate without loss', () => {
    // cost_usd = (1e9·999999.999999 + 1e9·999999.999999) / 1e6 = 2000 · 999999.999999 = 1,999,999,999.998 USD
    // × (1 + 0.123457) = 1,999,999,999.998 · 1.123457
    //                  = 2,246,914,000 − 0.002·1.123457 = 2,246,913,999.997753086
    // × 1000.000001    = 2,246,913,999,997.753086 + 2,246.913999997753086
    //                  = 2,246,914,002,244.667085997753086
    // round half up 6  = 2,246,914,002,244.667086  (19 significant digits: a double would lose them)
    const models = table({ huge: { input: '999999.999999', output: '999999.999999' } });
    const q = priceUsages(
      [usage('huge', 1_000_000_000, 1_000_000_000)],
      feature({ margin: '0.123457' }),
      models,
      settings('1000.000001', '0'),
    );
    expect(q.usages[0].cost_usd).toBe('1999999999.998000');
    expect(q.usages[0].credits).toBe('2246914002244.667086');
    expect(q.creditsCharged.toString()).toBe('2246914002244.667086');
    expect(q.creditsCharged.micros).toBe(2_246_914_002_244_667_086n);
  });

  it('sums 100 huge usages exactly', () => {
    // each: (1e9·1,000,000 + 1e9·1,000,000) / 1e6 = 2e9 USD · (1 + 100) · 1e9 = 2.02e20 credits
    // 100 usages: 2.02e22 credits
    const models = table({ max: { input: '1000000', output: '1000000' } });
    const usages = Array.from({ length: 100 }, () => usage('max', 1_000_000_000, 1_000_000_000));
    const q = priceUsages(usages, feature({ margin: '100' }), models, settings('1000000000', '0'));
    expect(q.creditsCharged.toString()).toBe('20200000000000000000000.000000');
  });
});

describe('priceUsages: errors', () => {
  it('refuses an unknown model with unknown_model naming it', () => {
    const error = thrown(() => priceUsages([usage('gpt-4o', 1, 1), usage('gpt-9', 1, 1)], feature(), table(GPT_4O), settings()));
    expect(error.code).toBe('unknown_model');
    expect(error.httpStatus).toBe(422);
    expect(error.message).toContain('gpt-9');
    expect(error.details).toEqual({ ai_model: 'gpt-9' });
  });
});

describe('priceUsages: the snapshot stored with the charge', () => {
  it('records the prices, the margin and where it came from, the rate and the fixed cost it used', () => {
    const models = table({
      'gpt-4o': { input: '2.5', output: '10', cached: '1.25', version: 3 },
      'claude-sonnet-4': { input: '3', output: '15', margin: '0.3', version: 1 },
      'gpt-4o-mini': { input: '0.15', output: '0.6', version: 2 },
    });
    const q = priceUsages(
      [usage('gpt-4o', 1, 1), usage('claude-sonnet-4', 1, 1), usage('gpt-4o', 2, 2)],
      feature({ fixedCost: '1.5' }),
      models,
      settings('100', '0.1'),
    );
    expect(q.snapshot).toEqual({
      credits_per_usd: '100.000000',
      default_profit_margin: '0.100000',
      feature: { feature_endpoint_id: 'ai_chat_v1', profit_margin: null, fixed_cost: '1.500000' },
      // only the models used, once each
      models: {
        'gpt-4o': {
          version: 3,
          input_price_per_million: '2.500000',
          output_price_per_million: '10.000000',
          cached_input_price_per_million: '1.250000',
          profit_margin: '0.100000',
          margin_source: 'default',
        },
        'claude-sonnet-4': {
          version: 1,
          input_price_per_million: '3.000000',
          output_price_per_million: '15.000000',
          cached_input_price_per_million: '3.000000',
          profit_margin: '0.300000',
          margin_source: 'model',
        },
      },
    });
  });

  it('records a feature margin on the feature and as the source of every model margin', () => {
    const q = priceUsages([usage('gpt-4o', 1, 1)], feature({ margin: '0.2' }), table(GPT_4O), settings());
    expect(q.snapshot.feature).toEqual({ feature_endpoint_id: 'ai_chat_v1', profit_margin: '0.200000', fixed_cost: '0.000000' });
    expect(q.snapshot.models['gpt-4o']).toMatchObject({ profit_margin: '0.200000', margin_source: 'feature' });
  });

  it('is plain JSON (no bigint), so it can be stored in the ledger entry as is', () => {
    const q = priceUsages([usage('gpt-4o', 1200, 300)], feature(), table(GPT_4O), settings());
    expect(JSON.parse(JSON.stringify(q.snapshot))).toEqual(q.snapshot);
    expect(JSON.parse(JSON.stringify(q.usages))).toEqual(q.usages);
  });
});
