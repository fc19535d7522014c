/**
 * Money arrives as the API's exact decimal strings ("1234.500000") and is only ever re-spelled as
 * text here: grouped digits, never converted to a binary float.
 */
export function money(value: string): string {
  const negative = value.startsWith('-');
  const [whole, fraction = ''] = (negative ? value.slice(1) : value).split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${negative ? '−' : ''}${grouped}${fraction ? `.${fraction}` : ''}`;
}

/** Whether a money string is below zero / exactly zero, read from its digits. */
export const isNegative = (value: string) => value.startsWith('-') && /[1-9]/.test(value);
export const isZero = (value: string) => !/[1-9]/.test(value);

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
const absolute = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'medium', timeZone: 'UTC' });

/** "3 minutes ago" / "in 2 hours" (time, not money: plain numbers are fine here). */
export function ago(iso: string, now = Date.now()): string {
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const steps: [Intl.RelativeTimeFormatUnit, number][] = [
    ['second', 60],
    ['minute', 60],
    ['hour', 24],
    ['day', 30],
    ['month', 12],
    ['year', Infinity],
  ];
  let amount = seconds;
  for (const [unit, size] of steps) {
    if (Math.abs(amount) < size) return relative.format(Math.trunc(amount), unit);
    amount /= size;
  }
  return iso;
}

export const utc = (iso: string) => `${absolute.format(new Date(iso))} UTC`;
