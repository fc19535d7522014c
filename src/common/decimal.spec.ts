import { describe, expect, it } from '@jest/globals';
import { divRoundHalfUp, formatScaled, parseScaled, scaledColumn, scaledFromDb, toScaled } from './decimal';

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

describe('parseScaled: the edges a mutant would move', () => {
  const huge = 10n ** 60n;

  it('accepts exactly SCALE fraction digits and refuses one more', () => {
    expect(parseScaled('0.123456', { max })).toEqual({ ok: true, value: 123_456n });
    expect(parseScaled('0.1234567', { max })).toEqual({ ok: false, reason: 'must have at most 6 fraction digits' });
  });

  it('pads a short fraction with zeros and reads a missing one as zero', () => {
    expect(parseScaled('7', { max })).toEqual({ ok: true, value: 7_000_000n });
    expect(parseScaled('7.05', { max })).toEqual({ ok: true, value: 7_050_000n });
    expect(parseScaled('0', { max })).toEqual({ ok: true, value: 0n });
  });

  it('accepts 30 whole digits and refuses 31, whatever the maximum', () => {
    const thirty = '9'.repeat(30);
    expect(parseScaled(thirty, { max: huge })).toEqual({ ok: true, value: BigInt(thirty) * 1_000_000n });
    expect(parseScaled('1' + '0'.repeat(30), { max: huge })).toEqual({ ok: false, reason: 'is too large' });
  });

  it('accepts the maximum itself, refuses one unit more, on both sides of zero', () => {
    const cap = 5_000_000n;
    expect(parseScaled('5', { max: cap })).toEqual({ ok: true, value: cap });
    expect(parseScaled('-5', { max: cap, allowNegative: true })).toEqual({ ok: true, value: -cap });
    expect(parseScaled('5.000001', { max: cap })).toEqual({ ok: false, reason: 'must not exceed 5.000000' });
    expect(parseScaled('-5.000001', { max: cap, allowNegative: true })).toEqual({ ok: false, reason: 'must not exceed 5.000000' });
  });

  it('treats zero, and minus zero, as not negative', () => {
    expect(parseScaled('0', { max })).toEqual({ ok: true, value: 0n });
    expect(parseScaled('-0', { max })).toEqual({ ok: true, value: 0n });
    expect(parseScaled('-0.000001', { max })).toEqual({ ok: false, reason: 'must not be negative' });
    expect(parseScaled('-0.000001', { max, allowNegative: false })).toEqual({ ok: false, reason: 'must not be negative' });
  });

  it('trims the spaces around a string, but not inside it', () => {
    expect(parseScaled(' \t12.5\n', { max })).toEqual({ ok: true, value: 12_500_000n });
    expect(parseScaled('12 .5', { max }).ok).toBe(false);
  });

  it('anchors the decimal syntax at both ends', () => {
    for (const text of ['x1', '1x', '1.', '.5', '--1', '+1', '1.2.3', '1,5', '١']) {
      expect(parseScaled(text, { max })).toEqual({ ok: false, reason: 'must be a decimal such as "12.5" (no exponent, no spaces)' });
    }
  });

  it('gives each refusal of a JSON number its own reason', () => {
    expect(parseScaled(Number.POSITIVE_INFINITY, { max })).toEqual({ ok: false, reason: 'must be a finite number' });
    expect(parseScaled(Number.NaN, { max })).toEqual({ ok: false, reason: 'must be a finite number' });
    expect(parseScaled(1e-7, { max })).toEqual({ ok: false, reason: 'must not use exponent notation; send it as a decimal string' });
    expect(parseScaled(1e21, { max: huge })).toEqual({ ok: false, reason: 'must not use exponent notation; send it as a decimal string' });
    expect(parseScaled(1234567890123456, { max: huge })).toEqual({
      ok: false,
      reason: 'has too many digits for a JSON number; send it as a decimal string',
    });
    expect(parseScaled(null, { max })).toEqual({ ok: false, reason: 'must be a decimal string or a number' });
    expect(parseScaled(10n, { max })).toEqual({ ok: false, reason: 'must be a decimal string or a number' });
  });

  it('counts the significant digits of a JSON number: sign, point and leading zeros do not count', () => {
    // 15 digits, negative, with a fraction: exact, so accepted.
    expect(parseScaled(-123456789.123456, { max: huge, allowNegative: true })).toEqual({ ok: true, value: -123_456_789_123_456n });
    expect(parseScaled(123456789012345, { max: huge })).toEqual({ ok: true, value: 123_456_789_012_345_000_000n });
    // 16 digits once the sign and the point are dropped.
    expect(parseScaled(-1234567890.123456, { max: huge, allowNegative: true }).ok).toBe(false);
    // Leading zeros are not significant: 15 digits after "0.0", so the digit count passes and the
    // fraction rule is the one that refuses it.
    expect(parseScaled(0.0123456789012345, { max: huge })).toEqual({ ok: false, reason: 'must have at most 6 fraction digits' });
    // Zeros inside a number are significant: 16 digits.
    expect(parseScaled(1000000000000001, { max: huge }).ok).toBe(false);
  });
});

describe('formatScaled / scaledFromDb: edges', () => {
  it('prints zero without a sign and pads every fraction to six digits', () => {
    expect(formatScaled(0n)).toBe('0.000000');
    expect(formatScaled(1n)).toBe('0.000001');
    expect(formatScaled(-1_000_000n)).toBe('-1.000000');
    expect(formatScaled(10n ** 30n + 10n)).toBe('1000000000000000000000000.000010');
  });

  it('reads the whole, the fraction and the sign of database text, and nothing else', () => {
    expect(scaledFromDb('0.000001')).toBe(1n);
    expect(scaledFromDb('12.34')).toBe(12_340_000n);
    expect(scaledFromDb('-7')).toBe(-7_000_000n);
    expect(scaledFromDb('0')).toBe(0n);
    expect(() => scaledFromDb('1.0000001')).toThrow('not a numeric(…,6) value: 1.0000001');
    expect(() => scaledFromDb('abc')).toThrow('not a numeric(…,6) value: abc');
    expect(() => scaledFromDb('1e5')).toThrow('not a numeric(…,6) value');
    expect(() => scaledFromDb('')).toThrow('not a numeric(…,6) value');
  });
});

describe('divRoundHalfUp: edges', () => {
  it('rounds only an exact half up, for positive and negative numerators', () => {
    expect(divRoundHalfUp(5n, 10n)).toBe(1n);
    expect(divRoundHalfUp(4n, 10n)).toBe(0n);
    expect(divRoundHalfUp(-5n, 10n)).toBe(-1n);
    expect(divRoundHalfUp(-4n, 10n)).toBe(0n);
    expect(divRoundHalfUp(25n, 10n)).toBe(3n);
    expect(divRoundHalfUp(7n, 7n)).toBe(1n);
    expect(divRoundHalfUp(10n ** 40n + 1n, 2n)).toBe(5n * 10n ** 39n + 1n);
  });
});

describe('scaledColumn / toScaled', () => {
  it('stores scaled bigints as numeric text and reads them back', () => {
    expect(scaledColumn.to(2_500_000n)).toBe('2.500000');
    expect(scaledColumn.from('2.500000')).toBe(2_500_000n);
  });

  it('passes null and undefined through untouched both ways', () => {
    expect(scaledColumn.to(null)).toBeNull();
    expect(scaledColumn.to(undefined)).toBeUndefined();
    expect(scaledColumn.from(null)).toBeNull();
    expect(scaledColumn.from(undefined as unknown as null)).toBeUndefined();
  });

  it('reads validated input, negatives included, up to 10^24 whole units', () => {
    expect(toScaled('1.25')).toBe(1_250_000n);
    expect(toScaled(0.5)).toBe(500_000n);
    expect(toScaled('-0.3')).toBe(-300_000n);
    expect(toScaled('1' + '0'.repeat(24))).toBe(10n ** 30n);
    expect(() => toScaled('1' + '0'.repeat(24) + '.000001')).toThrow(RangeError);
    expect(() => toScaled('abc')).toThrow('invalid decimal: must be a decimal such as');
  });
});
