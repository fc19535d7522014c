import { describe, expect, it } from '@jest/globals';
import { divRoundHalfUp, formatScaled, parseScaled, scaledFromDb } from './decimal';

const max = 10n ** 18n;

describe('parseScaled', () => {
  it.each([
    ['0.1', 100_000n],
    ['12.5', 12_500_000n],
    ['0.000001', 1n],
    [0.2, 200_000n],
    [100, 100_000_000n],
    ['-3.25', -3_250_000n],
  ])('reads %p exactly', (input, micros) => {
    expect(parseScaled(input, { max, allowNegative: true })).toEqual({ ok: true, value: micros });
  });

  it.each([
    ['1.1234567', 'fraction digits'],
    ['1e5', 'decimal'],
    [1e21, 'exponent'],
    [Number.NaN, 'finite'],
    ['', 'decimal'],
    [' 1', undefined],
    ['0x10', 'decimal'],
    [12345678901234.56, 'too many digits'],
    [true, 'decimal string'],
  ])('refuses %p', (input, why) => {
    const r = parseScaled(input, { max: 10n ** 30n });
    if (input === ' 1') return expect(r.ok).toBe(true); // surrounding spaces in a string are trimmed
    expect(r.ok).toBe(false);
    if (!r.ok && why) expect(r.reason).toContain(why);
  });

  it('refuses negatives unless allowed, and amounts over the maximum', () => {
    expect(parseScaled('-1', { max }).ok).toBe(false);
    expect(parseScaled('1000001', { max: 1_000_000n * 1_000_000n }).ok).toBe(false);
  });
});

describe('formatScaled / scaledFromDb', () => {
  it('prints exactly six fraction digits', () => {
    expect(formatScaled(300_000n)).toBe('0.300000');
    expect(formatScaled(-1n)).toBe('-0.000001');
    expect(formatScaled(123_456_789_000_000n)).toBe('123456789.000000');
  });

  it('reads numeric text from the database', () => {
    expect(scaledFromDb('95.000000')).toBe(95_000_000n);
    expect(scaledFromDb('-0.5')).toBe(-500_000n);
    expect(scaledFromDb('7')).toBe(7_000_000n);
  });
});

describe('divRoundHalfUp', () => {
  it('rounds half away from zero', () => {
    expect(divRoundHalfUp(15n, 10n)).toBe(2n);
    expect(divRoundHalfUp(14n, 10n)).toBe(1n);
    expect(divRoundHalfUp(-15n, 10n)).toBe(-2n);
    expect(divRoundHalfUp(0n, 7n)).toBe(0n);
  });
});
