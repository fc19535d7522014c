/**
 * Exact fixed-point decimals as scaled bigints: the one home of money parsing and printing.
 * Nothing here ever goes through a binary float: a JSON number is accepted only when its shortest
 * text form is exact (≤ 15 significant digits, no exponent), and is then parsed as text.
 */
export const SCALE = 6;
export const UNIT = 1_000_000n; // 10^SCALE

const DECIMAL_TEXT = /^(-)?(\d+)(?:\.(\d+))?$/;

export type DecimalParseResult = { ok: true; value: bigint } | { ok: false; reason: string };

/** Parses a string or JSON number into units of 10^-SCALE. */
export function parseScaled(input: unknown, opts: { max: bigint; allowNegative?: boolean }): DecimalParseResult {
  let text: string;
  if (typeof input === 'string') {
    text = input.trim();
  } else if (typeof input === 'number') {
    if (!Number.isFinite(input)) return { ok: false, reason: 'must be a finite number' };
    text = String(input);
    if (/e/i.test(text)) return { ok: false, reason: 'must not use exponent notation; send it as a decimal string' };
    if (text.replace(/^-|\./g, '').replace(/^0+/, '').length > 15) {
      return { ok: false, reason: 'has too many digits for a JSON number; send it as a decimal string' };
    }
  } else {
    return { ok: false, reason: 'must be a decimal string or a number' };
  }
  const m = DECIMAL_TEXT.exec(text);
  if (!m) return { ok: false, reason: 'must be a decimal such as "12.5" (no exponent, no spaces)' };
  const [, minus, whole, frac = ''] = m;
  if (frac.length > SCALE) return { ok: false, reason: `must have at most ${SCALE} fraction digits` };
  if (whole.length > 30) return { ok: false, reason: 'is too large' };
  let value = BigInt(whole) * UNIT + BigInt(frac.padEnd(SCALE, '0') || '0');
  if (minus) value = -value;
  if (value < 0n && !opts.allowNegative) return { ok: false, reason: 'must not be negative' };
  if ((value < 0n ? -value : value) > opts.max) return { ok: false, reason: `must not exceed ${formatScaled(opts.max)}` };
  return { ok: true, value };
}

/** Prints units of 10^-SCALE with exactly SCALE fraction digits: 12500000n → "12.500000". */
export function formatScaled(value: bigint): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const whole = abs / UNIT;
  const frac = (abs % UNIT).toString().padStart(SCALE, '0');
  return `${negative ? '-' : ''}${whole}.${frac}`;
}

/** Reads a PostgreSQL `numeric` text with at most SCALE fraction digits (as stored by our columns). */
export function scaledFromDb(text: string): bigint {
  const m = DECIMAL_TEXT.exec(text);
  if (!m || (m[3] ?? '').length > SCALE) throw new Error(`not a numeric(…,${SCALE}) value: ${text}`);
  const value = BigInt(m[2]) * UNIT + BigInt((m[3] ?? '').padEnd(SCALE, '0') || '0');
  return m[1] ? -value : value;
}

/** Divides a non-negative bigint by a positive one, rounding half up. */
export function divRoundHalfUp(numerator: bigint, denominator: bigint): bigint {
  if (numerator < 0n) return -divRoundHalfUp(-numerator, denominator);
  return (numerator * 2n + denominator) / (denominator * 2n);
}

/** TypeORM transformer for `numeric(…, 6)` columns holding prices, margins and rates as scaled bigints. */
export const scaledColumn = {
  to: (value: bigint | null | undefined) => (value == null ? value : formatScaled(value)),
  from: (value: string | null) => (value == null ? value : scaledFromDb(value)),
};

/** Parses input the validators already accepted (a decimal with ≤ 6 fraction digits). */
export function toScaled(input: string | number): bigint {
  const r = parseScaled(input, { max: 10n ** 30n, allowNegative: true });
  if (!r.ok) throw new RangeError(`invalid decimal: ${r.reason}`);
  return r.value;
}
