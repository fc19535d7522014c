/**
 * The life of an authorization (a row of `holds`), spelled out once. The SQL of the ledger builds
 * its status conditions from these constants, and the entity takes its type from here, so a new
 * state or transition is one edit and the statements cannot disagree about it.
 *
 *   /start ──▶ held ──settle──▶ settled
 *                 ├──cancel──▶ cancelled
 *                 └──expire──▶ expired ──settle (late)──▶ settled
 *   direct charge ──▶ settled (born settled: no hold was ever placed)
 *
 * Every transition is a conditional UPDATE on `status`: of any number of racing callers, the one
 * whose UPDATE matched the row won; the others claimed nothing.
 */
export const HOLD_STATUSES = ['held', 'settled', 'cancelled', 'expired'] as const;
export type HoldStatus = (typeof HOLD_STATUSES)[number];

/**
 * The one state whose amount counts in `wallets.held` (available = balance − held). Leaving it
 * releases the amount; leaving any other state releases nothing (an expired hold was released by
 * the sweeper that expired it, so its late settlement must not release it again).
 */
export const LIVE_HOLD_STATUS = 'held' satisfies HoldStatus;

export const HOLD_TRANSITIONS = {
  /** A settlement claims a live hold, or a lapsed one (then the charge is `late`). */
  settle: { from: ['held', 'expired'], to: 'settled' },
  /** A cancel releases a live hold only: a swept hold keeps its `expired` story. */
  cancel: { from: ['held'], to: 'cancelled' },
  /** The sweeper (or /start, for its own wallet) releases holds past their expiry. */
  expire: { from: ['held'], to: 'expired' },
} as const satisfies Record<string, { from: readonly HoldStatus[]; to: HoldStatus }>;

export type HoldTransition = keyof typeof HOLD_TRANSITIONS;

/** The state a direct charge (a settlement without usage_key) is inserted in. */
export const DIRECT_CHARGE_STATUS = 'settled' satisfies HoldStatus;

export function canTransition(from: HoldStatus, transition: HoldTransition): boolean {
  return (HOLD_TRANSITIONS[transition].from as readonly HoldStatus[]).includes(from);
}

/** A status list as SQL: `('held', 'expired')`. Only these constants are ever inlined. */
export function sqlStatuses(statuses: readonly HoldStatus[]): string {
  return `(${statuses.map((s) => `'${s}'`).join(', ')})`;
}
