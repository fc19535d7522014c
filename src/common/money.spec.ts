import { describe, expect, it } from '@jest/globals';
import { MAX_REQUEST_CREDITS, Money, moneyColumn } from './money';

const m = (micros: bigint) => Money.ofMicros(micros);

describe('Money', () => {
  it('caps a request at exactly a trillion credits', () => {
    expect(MAX_REQUEST_CREDITS).toBe(1_000_000_000_000_000_000n);
    expect(Money.parse('1000000000000').micros).toBe(MAX_REQUEST_CREDITS);
    expect(Money.parse('-1000000000000', true).micros).toBe(-MAX_REQUEST_CREDITS);
    expect(() => Money.parse('1000000000000.000001')).toThrow('must not exceed 1000000000000.000000');
    expect(() => Money.parse('-1000000000000.000001', true)).toThrow('must not exceed');
  });

  it('parses strings and exact JSON numbers into micro-credits', () => {
    expect(Money.parse('12.5').micros).toBe(12_500_000n);
    expect(Money.parse(0.000001).micros).toBe(1n);
    expect(Money.parse('0').micros).toBe(0n);
  });

  it('refuses negatives unless asked to accept them, with the parser reason in the message', () => {
    expect(() => Money.parse('-1')).toThrow(new RangeError('invalid credit amount: must not be negative'));
    expect(() => Money.parse('-1', false)).toThrow(RangeError);
    expect(Money.parse('-1', true).micros).toBe(-1_000_000n);
  });

  it.each([null, undefined, '', 'abc', '1.0000001', 1e21, {}])('refuses %p with a RangeError, never a wrong amount', (input) => {
    expect(() => Money.parse(input)).toThrow(RangeError);
    expect(() => Money.parse(input)).toThrow(/^invalid credit amount: /);
  });

  it('shares one ZERO, whichever way zero is made', () => {
    expect(Money.ZERO.micros).toBe(0n);
    expect(m(0n)).toBe(Money.ZERO);
    expect(Money.parse('0.000000')).toBe(Money.ZERO);
    expect(m(5n).minus(m(5n))).toBe(Money.ZERO);
    expect(m(1n)).not.toBe(Money.ZERO);
    expect(m(1n).micros).toBe(1n);
  });

  it('reads database numeric text', () => {
    expect(Money.fromDb('95.000000').micros).toBe(95_000_000n);
    expect(Money.fromDb('-0.000001').micros).toBe(-1n);
    expect(Money.fromDb('0.000000')).toBe(Money.ZERO);
  });

  it('adds, subtracts and negates exactly, beyond the range of a double', () => {
    const big = m(2n ** 70n + 1n);
    expect(big.plus(m(2n)).micros).toBe(2n ** 70n + 3n);
    expect(big.minus(m(2n)).micros).toBe(2n ** 70n - 1n);
    expect(m(3n).minus(m(5n)).micros).toBe(-2n);
    expect(big.negate().micros).toBe(-(2n ** 70n) - 1n);
    expect(m(-4n).negate().micros).toBe(4n);
    expect(Money.ZERO.negate()).toBe(Money.ZERO);
  });

  it('compares by value', () => {
    expect(m(-1n).isNegative()).toBe(true);
    expect(Money.ZERO.isNegative()).toBe(false);
    expect(m(1n).isNegative()).toBe(false);

    expect(Money.ZERO.isZero()).toBe(true);
    expect(m(1n).isZero()).toBe(false);
    expect(m(-1n).isZero()).toBe(false);

    expect(m(5n).gte(m(4n))).toBe(true);
    expect(m(5n).gte(m(5n))).toBe(true);
    expect(m(5n).gte(m(6n))).toBe(false);

    expect(m(7n).equals(Money.parse('0.000007'))).toBe(true);
    expect(m(7n).equals(m(8n))).toBe(false);
  });

  it('prints and serialises as the contract decimal string with six fraction digits', () => {
    expect(m(12_500_000n).toString()).toBe('12.500000');
    expect(m(-1n).toString()).toBe('-0.000001');
    expect(m(12_500_000n).toJSON()).toBe('12.500000');
    expect(JSON.stringify({ balance: m(3n), held: Money.ZERO })).toBe('{"balance":"0.000003","held":"0.000000"}');
  });
});

describe('moneyColumn', () => {
  it('stores Money as numeric text and reads it back as Money', () => {
    expect(moneyColumn.to(m(1_500_000n))).toBe('1.500000');
    const read = moneyColumn.from('1.500000') as Money;
    expect(read).toBeInstanceOf(Money);
    expect(read.micros).toBe(1_500_000n);
  });

  it('passes null and undefined through untouched both ways', () => {
    expect(moneyColumn.to(null)).toBeNull();
    expect(moneyColumn.to(undefined)).toBeUndefined();
    expect(moneyColumn.from(null)).toBeNull();
    expect(moneyColumn.from(undefined)).toBeUndefined();
  });
});
