import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { toScaled } from '../common/decimal';
import { DomainError } from '../common/domain-error';
import { Money } from '../common/money';
import { estimatedHold, HoldPriceSnapshot, priceFromSnapshot, snapshotPrices } from './price-snapshot';
import { FeaturePricing, ModelPrice, priceUsages, PricingSettings, Usage } from './pricing-engine';

/*
 * A hold with price_lock keeps a snapshot of the prices (jsonb) and is settled from it. The rule
 * that makes that safe: pricing from the snapshot of a table, after the trip through JSON that
 * jsonb makes, gives exactly what pricing live from that table gives — every figure of the quote,
 * the charge's own metadata included.
 */

const model = (aiModel: string, input: string, output: string, cached: string | null = null, margin: string | null = null): ModelPrice => ({
  aiModel,
  version: 3,
  inputPerMillion: toScaled(input),
  outputPerMillion: toScaled(output),
  cachedInputPerMillion: cached === null ? null : toScaled(cached),
  profitMargin: margin === null ? null : toScaled(margin),
});

const settings: PricingSettings = { creditsPerUsd: toScaled('100'), defaultProfitMargin: toScaled('0.1') };
const feature: FeaturePricing = { featureEndpointId: 'agent_v1', profitMargin: null, fixedCost: toScaled('0.01') };
const table = new Map([
  ['gpt-4o', model('gpt-4o', '5', '15', '2.5')],
  ['claude', model('claude', '3', '15', null, '0.25')],
]);
const usages: Usage[] = [
  { ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300, cached_input_tokens: 200 },
  { ai_model: 'claude', input_tokens: 10, output_tokens: 7 },
];
const at = new Date('2026-11-25T10:00:00.000Z');

/** What jsonb gives back: plain JSON. */
const throughJsonb = (s: HoldPriceSnapshot) => JSON.parse(JSON.stringify(s)) as HoldPriceSnapshot;

describe('snapshotPrices', () => {
  it('keeps every figure as the exact decimal string of its column, nulls as null, models sorted', () => {
    expect(snapshotPrices(feature, [...table.values()].reverse(), settings, at)).toEqual({
      priced_at: '2026-11-25T10:00:00.000Z',
      credits_per_usd: '100.000000',
      default_profit_margin: '0.100000',
      feature: { feature_endpoint_id: 'agent_v1', profit_margin: null, fixed_cost: '0.010000' },
      models: {
        claude: {
          version: 3,
          input_price_per_million: '3.000000',
          output_price_per_million: '15.000000',
          cached_input_price_per_million: null,
          profit_margin: '0.250000',
        },
        'gpt-4o': {
          version: 3,
          input_price_per_million: '5.000000',
          output_price_per_million: '15.000000',
          cached_input_price_per_million: '2.500000',
          profit_margin: null,
        },
      },
    });
    expect(Object.keys(snapshotPrices(feature, [...table.values()].reverse(), settings, at).models)).toEqual(['claude', 'gpt-4o']);
  });
});

describe('priceFromSnapshot', () => {
  it('prices exactly as the live engine did when the snapshot was taken, and says when', () => {
    const snapshot = throughJsonb(snapshotPrices(feature, table.values(), settings, at));
    const locked = priceFromSnapshot(usages, snapshot);
    const { pricedAt, ...quote } = locked;
    expect(quote).toEqual(priceUsages(usages, feature, table, settings));
    expect(pricedAt).toBe('2026-11-25T10:00:00.000Z');
  });

  it('keeps the old prices after the live table changed (the lock), where live pricing moves', () => {
    const snapshot = throughJsonb(snapshotPrices(feature, table.values(), settings, at));
    const raised = new Map([...table].map(([k, m]) => [k, { ...m, version: 4, inputPerMillion: m.inputPerMillion * 2n }]));
    const dearer = { ...settings, creditsPerUsd: toScaled('120') };
    expect(priceUsages(usages, feature, raised, dearer).creditsCharged.gte(priceFromSnapshot(usages, snapshot).creditsCharged)).toBe(true);
    expect(priceUsages(usages, feature, raised, dearer).creditsCharged).not.toEqual(priceFromSnapshot(usages, snapshot).creditsCharged);
    expect(priceFromSnapshot(usages, snapshot).creditsCharged).toEqual(priceUsages(usages, feature, table, settings).creditsCharged);
  });

  it('prices a model created after the snapshot from the live table, with the locked margins and rate', () => {
    const snapshot = throughJsonb(snapshotPrices(feature, table.values(), settings, at));
    const later = model('new-model', '1', '2');
    const used: Usage[] = [{ ai_model: 'new-model', input_tokens: 1_000_000, output_tokens: 0 }];
    expect(() => priceFromSnapshot(used, snapshot)).toThrow(DomainError);
    const quote = priceFromSnapshot(used, snapshot, new Map([['new-model', later]]));
    // 1 USD × (1 + 0.1 default margin) × 100 credits/USD + 0.01 fixed
    expect(quote.creditsCharged.toString()).toBe('110.010000');
    // A model the snapshot knows is never taken from the live table.
    const cheaper = new Map([['gpt-4o', model('gpt-4o', '0', '0')]]);
    expect(priceFromSnapshot(usages, snapshot, cheaper).creditsCharged).toEqual(priceFromSnapshot(usages, snapshot).creditsCharged);
  });

  it('answers unknown_model (422) for a model in neither', () => {
    const snapshot = snapshotPrices(feature, table.values(), settings, at);
    try {
      priceFromSnapshot([{ ai_model: 'nope', input_tokens: 1, output_tokens: 1 }], snapshot, new Map());
      throw new Error('priced');
    } catch (error) {
      expect(error).toMatchObject({ code: 'unknown_model', details: { ai_model: 'nope' } });
    }
  });
});

describe('estimatedHold', () => {
  it('holds the quote when it is above min_holding_credits, else min_holding_credits', () => {
    const quote = priceUsages(usages, feature, table, settings).creditsCharged;
    expect(estimatedHold(Money.parse('0.000001'), usages, feature, table, settings).amount).toEqual(quote);
    expect(estimatedHold(Money.parse('1000'), usages, feature, table, settings).amount.toString()).toBe('1000.000000');
    expect(estimatedHold(quote, usages, feature, table, settings).amount).toEqual(quote);
  });

  it('answers unknown_model for an estimate naming a model without a price', () => {
    expect(() => estimatedHold(Money.ZERO, [{ ai_model: 'nope', input_tokens: 1, output_tokens: 1 }], feature, table, settings)).toThrow(
      expect.objectContaining({ code: 'unknown_model' }) as unknown as Error,
    );
  });
});

// --- the property: snapshot pricing = live pricing, for any table and usages ------------------

const decimalText = (maxWhole: bigint) =>
  fc
    .tuple(fc.bigInt({ min: 0n, max: maxWhole }), fc.integer({ min: 0, max: 6 }), fc.bigInt({ min: 0n, max: 999_999n }))
    .map(([whole, digits, fraction]) =>
      digits === 0 ? whole.toString() : `${whole}.${fraction.toString().padStart(6, '0').slice(0, digits)}`,
    );
const price = decimalText(1_000_000n);
const margin = decimalText(100n);
const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null });
const tokens = fc.oneof(fc.integer({ min: 0, max: 1_000_000_000 }), fc.integer({ min: 0, max: 5000 }));

const caseArb = fc
  .array(
    fc.record({ input: price, output: price, cached: optional(price), margin: optional(margin), version: fc.integer({ min: 1, max: 99 }) }),
    {
      minLength: 1,
      maxLength: 5,
    },
  )
  .chain((models) =>
    fc.record({
      models: fc.constant(models),
      featureMargin: optional(margin),
      fixedCost: optional(decimalText(1_000_000_000n)),
      creditsPerUsd: decimalText(1_000_000_000n).filter((t) => toScaled(t) > 0n),
      defaultMargin: margin,
      usages: fc.array(
        fc.record({
          model: fc.integer({ min: 0, max: models.length - 1 }),
          input: tokens,
          output: tokens,
          cachedShare: fc.oneof(fc.constant(0), fc.constant(1), fc.double({ min: 0, max: 1, noNaN: true })),
          cachedAbsent: fc.boolean(),
        }),
        { minLength: 1, maxLength: 8 },
      ),
    }),
  );

describe('pricing from a snapshot of the current data equals pricing live', () => {
  it('gives the same quote, figure for figure, after the trip through jsonb', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const live = new Map(
          c.models.map((m, i): [string, ModelPrice] => [
            `model-${i}`,
            { ...model(`model-${i}`, m.input, m.output, m.cached, m.margin), version: m.version },
          ]),
        );
        const f: FeaturePricing = {
          featureEndpointId: 'f',
          profitMargin: c.featureMargin === null ? null : toScaled(c.featureMargin),
          fixedCost: c.fixedCost === null ? null : toScaled(c.fixedCost),
        };
        const s: PricingSettings = { creditsPerUsd: toScaled(c.creditsPerUsd), defaultProfitMargin: toScaled(c.defaultMargin) };
        const used: Usage[] = c.usages.map((u) => ({
          ai_model: `model-${u.model}`,
          input_tokens: u.input,
          output_tokens: u.output,
          ...(u.cachedAbsent ? {} : { cached_input_tokens: Math.floor(u.input * u.cachedShare) }),
        }));
        const { pricedAt: _at, ...fromSnapshot } = priceFromSnapshot(used, throughJsonb(snapshotPrices(f, live.values(), s, at)));
        expect(fromSnapshot).toEqual(priceUsages(used, f, live, s));
      }),
      { numRuns: 400 },
    );
  });
});
