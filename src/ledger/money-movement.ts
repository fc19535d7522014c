/**
 * How postings move money: the ONE place that decides it, for every writer of `balance` —
 * charges (settled by their hold, or direct), initial credits, top-ups, adjustments.
 *
 * The caller defines a CTE named by `postings`, one row per ledger entry to write:
 *   ord bigint           arrival order: one wallet's entries chain in this order
 *   user_id varchar      the wallet
 *   kind varchar         the ledger entry kind
 *   amount numeric       signed change of balance
 *   held_delta numeric   signed change of held in the same step (a settled live hold's release)
 *   usage_key uuid, idempotency_key varchar, description varchar, metadata jsonb
 * and appends the CTEs returned here:
 *   locked   the wallets concerned, locked in user_id order, after every row the caller's CTEs
 *            locked (holds, by key): the one lock order of every statement that locks several rows,
 *            so statements cannot deadlock each other;
 *   chain    each posting's balance_after / held_after as of its place in arrival order, so a
 *            wallet's entries chain exactly whatever the size of the batch;
 *   moved    each wallet updated once by its totals (RETURNING the wallet after);
 *   entries  one append-only ledger entry per posting (RETURNING the entry).
 * A posting whose wallet does not exist writes nothing. One statement: the balance change and its
 * entry commit together or not at all.
 *
 * What comes next changes this function only: a charge drawn from several grants becomes several
 * rows of `chain` for one posting; a usage with several charges is several postings.
 */
export function moveMoney(postings: string): string {
  return `locked AS (
    -- ARRAY(…) is computed whole first, so every row the postings' CTEs lock is locked before any wallet.
    SELECT user_id, balance, held FROM wallets WHERE user_id = ANY (ARRAY(SELECT user_id FROM ${postings})) ORDER BY user_id FOR UPDATE
  ), chain AS (
    SELECT p.*, l.balance + sum(p.amount) OVER w AS balance_after, l.held + sum(p.held_delta) OVER w AS held_after
    FROM ${postings} p JOIN locked l USING (user_id)
    WINDOW w AS (PARTITION BY p.user_id ORDER BY p.ord)
  ), moved AS (
    UPDATE wallets SET balance = wallets.balance + t.amount, held = wallets.held + t.held_delta, version = wallets.version + t.n, updated_at = now()
    FROM (SELECT user_id, sum(amount) AS amount, sum(held_delta) AS held_delta, count(*)::int AS n FROM chain GROUP BY user_id) t
    WHERE wallets.user_id = t.user_id
    RETURNING wallets.*
  ), entries AS (
    INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key, idempotency_key, description, metadata)
    SELECT user_id, kind, amount, balance_after, held_after, usage_key, idempotency_key, description, metadata FROM chain ORDER BY user_id, ord
    RETURNING *
  )`;
}
