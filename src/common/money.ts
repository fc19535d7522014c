import { ValueTransformer } from 'typeorm';
import { formatScaled, parseScaled, scaledFromDb, UNIT } from './decimal';

/** The largest amount accepted in one request: a trillion credits. */
export const MAX_REQUEST_CREDITS = 1_000_000_000_000n * UNIT;

/**
 * A credit amount, exact to the micro-credit (6 fraction digits), held as a bigint of micro-credits.
 * Serialises to JSON as the contract's decimal string ("12.500000").
 */
export class Money {
  static readonly ZERO = new Money(0n);

  private constructor(readonly micros: bigint) {}

  static ofMicros(micros: bigint): Money {
    return micros === 0n ? Money.ZERO : new Money(micros);
  }

  /** Parses request input; throws on anything the validators should already have refused. */
  static parse(input: unknown, allowNegative = false): Money {
    const r = parseScaled(input, { max: MAX_REQUEST_CREDITS, allowNegative });
    if (!r.ok) throw new RangeError(`invalid credit amount: ${r.reason}`);
    return Money.ofMicros(r.value);
  }

  static fromDb(text: string): Money {
    return Money.ofMicros(scaledFromDb(text));
  }

  plus(other: Money): Money {
    return Money.ofMicros(this.micros + other.micros);
  }

  minus(other: Money): Money {
    return Money.ofMicros(this.micros - other.micros);
  }

  negate(): Money {
    return Money.ofMicros(-this.micros);
  }

  isNegative(): boolean {
    return this.micros < 0n;
  }

  isZero(): boolean {
    return this.micros === 0n;
  }

  gte(other: Money): boolean {
    return this.micros >= other.micros;
  }

  equals(other: Money): boolean {
    return this.micros === other.micros;
  }

  toString(): string {
    return formatScaled(this.micros);
  }

  toJSON(): string {
    return this.toString();
  }
}

/** TypeORM transformer for `numeric(…, 6)` columns: the database text never becomes a JS number. */
export const moneyColumn: ValueTransformer = {
  to: (value: Money | null | undefined) => (value == null ? value : value.toString()),
  from: (value: string | null) => (value == null ? value : Money.fromDb(value)),
};
