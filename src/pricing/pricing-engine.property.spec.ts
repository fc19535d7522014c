import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { toScaled } from '../common/decimal';
import { FeaturePricing, ModelPrice, priceUsages, PricingSettings, Usage } from './pricing-engine';

/*
 * The engine against an independent oracle: exact rational arithmetic on bigint fractions built
 * straight from the decimal STRINGS an operator types (never from the engine's scaled bigints), and
 * one half-up rounding to 6 decimals at the very end.
 */

/** An exact non-negative rational n/d (d > 0). */
interface Fraction {
  n: bigint;
  d: bigint;
}

const frac = (n: bigint, d = 1n): Fraction => ({ n, d });
const add = (a: Fraction, b: Fraction): Fraction => ({ n: a.n * b.d + b.n * a.d, d: a.d * b.d });
const mul = (a: Fraction, b: Fraction): Fraction => ({ n: a.n * b.n, d: a.d * b.d });

/** "12.3400" → 123400/10000, read digit by digit from the text. */
function fromDecimalText(text: string): Fraction {
  const [whole, fraction = ''] = text.split('.');
  return { n: BigInt(whole + fraction), d: 10n ** BigInt(fraction.length) };
}

/** round_half_up(x, 6) in micro-units: the quotient, plus one when the remainder is at least half. */
function roundHalfUpMicros(x: Fraction): bigint {
  const scaled = x.n * 1_000_000n;
  const q = scaled / x.d;
  const r = scaled % x.d;
  return 2n * r >= x.d ? q + 1n : q;
}

/** Prints micro-units as the contract does, without the engine's formatter. */
function microsText(micros: bigint): string {
  const digits = micros.toString().padStart(7, '0');
  return `${digits.slice(0, -6)}.${digits.slice(-6)}`;
}

/** A decimal string with 0–6 fraction digits (trailing zeros included), whole part in [0, maxWhole]. */
const decimalText = (maxWhole: bigint) =>
  fc
    .tuple(fc.bigInt({ min: 0n, max: maxWhole }), fc.integer({ min: 0, max: 6 }), fc.bigInt({ min: 0n, max: 999_999n }))
    .map(([whole, digits, fraction]) =>
      digits === 0 ? whole.toString() : `${whole}.${fraction.toString().padStart(6, '0').slice(0, digits)}`,
    );

interface ModelText {
  input: string;
  output: string;
  cached: string | null;
  margin: string | null;
}

interface Case {
  models: ModelText[];
  featureMargin: string | null;
  fixedCost: string | null;
  creditsPerUsd: string;
  defaultMargin: string;
  usages: { model: number; input: number; output: number; cachedShare: number }[];
}

const price = decimalText(1_000_000n); // up to the API's maximum of 1,000,000 USD per million tokens
const margin = decimalText(100n); // up to the API's maximum margin of 100 (= 10,000 %)
const tokens = fc.oneof(fc.integer({ min: 0, max: 1_000_000_000 }), fc.integer({ min: 0, max: 5000 }), fc.constant(1_000_000_000));

const caseArb: fc.Arbitrary<Case> = fc
  .array(fc.record({ input: price, output: price, cached: fc.option(price, { nil: null }), margin: fc.option(margin, { nil: null }) }), {
    minLength: 1,
    maxLength: 4,
  })
  .chain((models) =>
    fc.record({
      models: fc.constant(models),
      featureMargin: fc.option(margin, { nil: null }),
      fixedCost: fc.option(decimalText(1_000_000_000_000n), { nil: null }),
      creditsPerUsd: decimalText(1_000_000_000n).filter((t) => fromDecimalText(t).n > 0n),
      defaultMargin: margin,
      usages: fc.array(
        fc.record({
          model: fc.integer({ min: 0, max: models.length - 1 }),
          input: tokens,
          output: tokens,
          // cached tokens as a share of the input tokens, so cached ≤ input always holds
          cachedShare: fc.oneof(fc.constant(0), fc.constant(1), fc.double({ min: 0, max: 1, noNaN: true })),
        }),
        { minLength: 1, maxLength: 10 },
      ),
    }),
  );

const modelName = (i: number) => `model-${i}`;

function toUsages(c: Case): Usage[] {
  return c.usages.map((u) => ({
    ai_model: modelName(u.model),
    input_tokens: u.input,
    output_tokens: u.output,
    // token counts (not money): an integer between 0 and input
    cached_input_tokens: Math.floor(u.input * u.cachedShare),
  }));
}

/** What the service would hand the engine: the same strings parsed by the app's own parser. */
function engineInputs(c: Case): { models: Map<string, ModelPrice>; feature: FeaturePricing; settings: PricingSettings } {
  return {
    models: new Map(
      c.models.map((m, i) => [
        modelName(i),
        {
          aiModel: modelName(i),
          version: 1,
          inputPerMillion: toScaled(m.input),
          outputPerMillion: toScaled(m.output),
          cachedInputPerMillion: m.cached === null ? null : toScaled(m.cached),
          profitMargin: m.margin === null ? null : toScaled(m.margin),
        },
      ]),
    ),
    feature: {
      featureEndpointId: 'f',
      profitMargin: c.featureMargin === null ? null : toScaled(c.featureMargin),
      fixedCost: c.fixedCost === null ? null : toScaled(c.fixedCost),
    },
    settings: { creditsPerUsd: toScaled(c.creditsPerUsd), defaultProfitMargin: toScaled(c.defaultMargin) },
  };
}

/** The oracle: API.md §5 in exact rationals. */
function oracle(c: Case, usages: Usage[]) {
  const million = frac(1_000_000n);
  const rate = fromDecimalText(c.creditsPerUsd);
  const perUsage = usages.map((u) => {
    const m = c.models[Number(u.ai_model.slice('model-'.length))];
    const input = fromDecimalText(m.input);
    const cachedPrice = m.cached === null ? input : fromDecimalText(m.cached);
    const cached = BigInt(u.cached_input_tokens ?? 0);
    let cost = mul(frac(BigInt(u.input_tokens) - cached), input);
    cost = add(cost, mul(frac(cached), cachedPrice));
    cost = add(cost, mul(frac(BigInt(u.output_tokens)), fromDecimalText(m.output)));
    cost = mul(cost, frac(1n, million.n)); // ÷ 1,000,000
    const marginText = c.featureMargin ?? m.margin ?? c.defaultMargin;
    const credits = mul(mul(cost, add(frac(1n), fromDecimalText(marginText))), rate);
    return { cost, credits };
  });
  const exactTotal = perUsage.reduce((sum, u) => add(sum, u.credits), c.fixedCost === null ? frac(0n) : fromDecimalText(c.fixedCost));
  return { perUsage, exactTotal };
}

describe('priceUsages against an exact rational oracle', () => {
  it('charges round_half_up(Σ credits + fixed_cost, 6) of the exact rational total, and shows each usage rounded the same way', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const usages = toUsages(c);
        const { models, feature, settings } = engineInputs(c);
        const quote = priceUsages(usages, feature, models, settings);
        const expected = oracle(c, usages);

        expect(quote.creditsCharged.toString()).toBe(microsText(roundHalfUpMicros(expected.exactTotal)));
        expect(quote.usages.map((u) => u.credits)).toEqual(expected.perUsage.map((u) => microsText(roundHalfUpMicros(u.credits))));
        expect(quote.usages.map((u) => u.cost_usd)).toEqual(expected.perUsage.map((u) => microsText(roundHalfUpMicros(u.cost))));
      }),
      { numRuns: 500 },
    );
  });

  it('lets Σ of the displayed per-usage credits differ from the charge by at most n/2 micro-credits, while the charge itself never drifts', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const usages = toUsages(c);
        const { models, feature, settings } = engineInputs(c);
        const quote = priceUsages(usages, feature, models, settings);
        const { exactTotal } = oracle(c, usages);

        // The charge is the exact total rounded once: within half a micro-credit of it.
        const charged = quote.creditsCharged.micros;
        expect(charged).toBe(roundHalfUpMicros(exactTotal));
        const errorTimesTwo = 2n * (charged * exactTotal.d - exactTotal.n * 1_000_000n); // 2·(charged − exact) in micros · d
        expect(errorTimesTwo <= exactTotal.d && errorTimesTwo > -exactTotal.d).toBe(true);

        // Each displayed figure is off by at most half a micro-credit, so their sum (plus the fixed
        // cost) is off from the charge by less than n/2 + 1/2, i.e. by at most ⌊n/2⌋ whole micros.
        const fixed = c.fixedCost === null ? 0n : roundHalfUpMicros(fromDecimalText(c.fixedCost));
        const displayedSum = quote.usages.reduce((sum, u) => sum + toScaled(u.credits), fixed);
        const drift = displayedSum - charged;
        const n = BigInt(usages.length);
        expect(drift <= n / 2n && drift >= -(n / 2n)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('finds the displayed figures drifting from the charge (so the bound above is not vacuous)', () => {
    // 3 usages of half a micro-credit each: displayed 3 × 0.000001, charged 0.000002.
    const c: Case = {
      models: [{ input: '0.5', output: '0', cached: null, margin: null }],
      featureMargin: null,
      fixedCost: null,
      creditsPerUsd: '1',
      defaultMargin: '0',
      usages: [0, 1, 2].map(() => ({ model: 0, input: 1, output: 0, cachedShare: 0 })),
    };
    const { models, feature, settings } = engineInputs(c);
    const quote = priceUsages(toUsages(c), feature, models, settings);
    const displayedSum = quote.usages.reduce((sum, u) => sum + toScaled(u.credits), 0n);
    expect(displayedSum).toBe(3n);
    expect(quote.creditsCharged.micros).toBe(2n);
    expect(displayedSum - quote.creditsCharged.micros).toBeLessThanOrEqual(3n / 2n);
  });
});
