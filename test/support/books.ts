import { micros } from './catalog';
import { withDb } from './faults';

/**
 * Reads the books straight from the test database and compares them with what a test expects,
 * usage by usage and wallet by wallet, in bigint micro-credits.
 */

export interface ExpectedUsage {
  userId: string;
  /** A hold's key (from /start), or the server-made key of a direct charge when the test knows it. */
  usageKey?: string;
  /** A direct charge's idempotency key. */
  idempotencyKey?: string;
  /** Micro-credits this usage must be charged, exactly once. */
  charge: bigint;
}

export interface BooksReport {
  expectedUsages: number;
  chargeEntries: number;
  /** Usages charged more than once (several charge entries for a key, or several authorizations for one idempotency key). */
  duplicates: number;
  /** Expected usages with no charge at all. */
  lost: number;
  /** Charges no expected usage explains (invented money). */
  unexpected: number;
  /** Usages charged a different amount than computed. */
  wrongAmount: string[];
  /** Wallets whose balance is not initial − Σ expected charges, or whose held is not Σ live holds. */
  walletMismatches: string[];
  negativeHeld: number;
  holdsByStatus: Record<string, number>;
}

export async function checkBooks(
  url: string,
  initial: ReadonlyMap<string, bigint>,
  usages: readonly ExpectedUsage[],
): Promise<BooksReport> {
  return withDb(url, async (c) => {
    // Only the wallets this check is about: a suite may run several scenarios on one database.
    const users = [...initial.keys()];
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const wallets = (
      await c.query<{ user_id: string; balance: string; held: string }>(
        'SELECT user_id, balance::text, held::text FROM wallets WHERE user_id = ANY($1)',
        [users],
      )
    ).rows;
    const charges = (
      await c.query<{ usage_key: string; amount: string }>(
        `SELECT usage_key::text, amount::text FROM ledger_entries WHERE kind = 'charge' AND user_id = ANY($1)`,
        [users],
      )
    ).rows;
    const keyed = (
      await c.query<{ user_id: string; idempotency_key: string; usage_key: string }>(
        'SELECT user_id, idempotency_key, usage_key::text FROM holds WHERE idempotency_key IS NOT NULL AND user_id = ANY($1)',
        [users],
      )
    ).rows;
    const live = (
      await c.query<{ user_id: string; total: string }>(
        `SELECT user_id, SUM(amount)::text AS total FROM holds WHERE status = 'held' AND user_id = ANY($1) GROUP BY user_id`,
        [users],
      )
    ).rows;
    const statuses = (
      await c.query<{ status: string; n: string }>(
        'SELECT status, COUNT(*)::text AS n FROM holds WHERE user_id = ANY($1) GROUP BY status',
        [users],
      )
    ).rows;
    await c.query('COMMIT');

    const chargesByKey = new Map<string, bigint[]>();
    for (const row of charges) chargesByKey.set(row.usage_key, [...(chargesByKey.get(row.usage_key) ?? []), -micros(row.amount)]);
    const authorizationsByIdempotency = new Map<string, string[]>();
    for (const row of keyed) {
      const k = `${row.user_id}\u0000${row.idempotency_key}`;
      authorizationsByIdempotency.set(k, [...(authorizationsByIdempotency.get(k) ?? []), row.usage_key]);
    }

    let duplicates = 0;
    for (const list of chargesByKey.values()) if (list.length > 1) duplicates += list.length - 1;
    for (const list of authorizationsByIdempotency.values()) if (list.length > 1) duplicates += list.length - 1;

    let lost = 0;
    const wrongAmount: string[] = [];
    const explained = new Set<string>();
    const expectedBalance = new Map(initial);
    for (const u of usages) {
      expectedBalance.set(u.userId, (expectedBalance.get(u.userId) ?? 0n) - u.charge);
      let keys: string[] = [];
      if (u.usageKey) keys = [u.usageKey];
      else if (u.idempotencyKey) keys = authorizationsByIdempotency.get(`${u.userId}\u0000${u.idempotencyKey}`) ?? [];
      const found = keys.flatMap((k) => chargesByKey.get(k) ?? []);
      keys.forEach((k) => explained.add(k));
      if (found.length === 0) lost++;
      else if (found.some((amount) => amount !== u.charge))
        wrongAmount.push(`${u.usageKey ?? u.idempotencyKey}: ${found.join(',')} ≠ ${u.charge}`);
    }
    let unexpected = 0;
    for (const key of chargesByKey.keys()) if (!explained.has(key)) unexpected++;

    const liveByUser = new Map(live.map((r) => [r.user_id, micros(r.total)]));
    const walletMismatches: string[] = [];
    let negativeHeld = 0;
    for (const w of wallets) {
      const balance = micros(w.balance);
      const held = micros(w.held);
      if (held < 0n) negativeHeld++;
      if (!expectedBalance.has(w.user_id)) continue;
      const want = expectedBalance.get(w.user_id)!;
      const liveHeld = liveByUser.get(w.user_id) ?? 0n;
      if (balance !== want || held !== liveHeld)
        walletMismatches.push(`${w.user_id}: balance ${balance} (want ${want}), held ${held} (live holds ${liveHeld})`);
    }
    return {
      expectedUsages: usages.length,
      chargeEntries: charges.length,
      duplicates,
      lost,
      unexpected,
      wrongAmount,
      walletMismatches,
      negativeHeld,
      holdsByStatus: Object.fromEntries(statuses.map((s) => [s.status, Number(s.n)])),
    };
  });
}

/** Figures for the run's report (messages, requests, faults, duplicates, lost, runtime): one line on stderr. */
export function reportFigures(suite: string, figures: Record<string, unknown>): void {
  process.stderr.write(`[figures] ${suite} ${JSON.stringify(figures)}\n`);
}
