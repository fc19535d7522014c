/**
 * How postings move money: the ONE place that decides it, for every writer of `balance` —
 * charges (settled by their hold, or direct), initial credits, top-ups, adjustments, grants,
 * their expiry and voiding, and refunds.
 *
 * The caller defines a CTE named by `postings`, one row per posting:
 *   ord bigint           arrival order, distinct: one wallet's entries chain in this order
 *   user_id varchar      the wallet
 *   kind varchar         the ledger entry kind
 *   amount numeric       signed change of balance (NULL where ledger_apply decides it: expiry, void, "refund all")
 *   held_delta numeric   signed change of held in the same step (a settled live hold's release)
 *   usage_key uuid, idempotency_key varchar, description varchar, metadata jsonb
 *   key_id uuid          the API key record that made it (API.md §11), or NULL
 *   spec jsonb           what a grant-moving posting needs besides (see ledger_apply), else NULL
 * and appends the CTEs returned here:
 *   locked   the wallets concerned, locked in user_id order, after every row the caller's CTEs
 *            locked (holds, by key): the one lock order of every statement that locks several rows,
 *            so statements cannot deadlock each other;
 *   applied  ledger_apply (migration 1764000000018): under those locks, what each posting draws from
 *            or gives to the wallet's grants and debt, and the entries it writes (usually one;
 *            none for a grant already expired; a refund to an expired grant adds its re-expiry);
 *   chain    each entry's balance_after / held_after as of its place in arrival order, so a
 *            wallet's entries chain exactly whatever the size of the batch;
 *   moved    each wallet updated once by its totals (RETURNING the wallet after);
 *   entries  one append-only ledger entry per row of `applied` (RETURNING the entry).
 * A posting whose wallet does not exist writes nothing. One statement: the balance change, the
 * grants it moved and its entries commit together or not at all, and no round trip is added.
 */
export function moveMoney(postings: string): string {
  return `locked AS (
    -- ARRAY(…) is computed whole first, so every row the postings' CTEs lock is locked before any wallet.
    SELECT user_id, balance, held, debt, version FROM wallets WHERE user_id = ANY (ARRAY(SELECT user_id FROM ${postings})) ORDER BY user_id FOR UPDATE
  ), applied AS (
    -- The aggregate reads all of locked first: ledger_apply runs once every wallet is locked.
    SELECT a.* FROM (
      SELECT array_agg(p.ord ORDER BY p.user_id, p.ord) AS ords, array_agg(p.user_id ORDER BY p.user_id, p.ord) AS users,
             array_agg(p.kind ORDER BY p.user_id, p.ord) AS kinds, array_agg(p.amount ORDER BY p.user_id, p.ord) AS amounts,
             array_agg(p.usage_key ORDER BY p.user_id, p.ord) AS usage_keys, array_agg(p.spec ORDER BY p.user_id, p.ord) AS specs,
             array_agg(l.debt ORDER BY p.user_id, p.ord) AS debts
      FROM ${postings} p JOIN locked l ON l.user_id = p.user_id
    ) x, LATERAL ledger_apply(x.ords, x.users, x.kinds, x.amounts, x.usage_keys, x.specs, x.debts) a
  ), chain AS (
    SELECT p.user_id, a.ord, a.sub, a.kind, a.amount, a.debt_delta,
           CASE WHEN a.sub = 0 THEN p.held_delta ELSE 0 END AS held_delta,
           CASE WHEN a.sub = 0 THEN p.usage_key END AS usage_key,
           CASE WHEN a.sub = 0 THEN p.idempotency_key END AS idempotency_key,
           CASE WHEN a.sub = 0 THEN p.key_id END AS key_id,
           COALESCE(a.description, p.description) AS description,
           CASE WHEN a.sub = 0 THEN p.metadata ELSE '{}'::jsonb END || a.extra AS metadata,
           l.balance + sum(a.amount) OVER w AS balance_after,
           l.held + sum(CASE WHEN a.sub = 0 THEN p.held_delta ELSE 0 END) OVER w AS held_after
    FROM applied a JOIN ${postings} p ON p.ord = a.ord JOIN locked l ON l.user_id = p.user_id
    WINDOW w AS (PARTITION BY p.user_id ORDER BY a.ord, a.sub)
  ), moved AS (
    -- New values from \`locked\` (the row as locked), not from the UPDATE's own read of it: once
    -- ledger_apply has written (grants), the UPDATE's re-read of a row another transaction changed
    -- while this one waited for its lock was seen to use the old version (a lost debt update).
    UPDATE wallets SET balance = t.balance, held = t.held, debt = t.debt, version = t.version, updated_at = now()
    FROM (SELECT c.user_id, l.balance + sum(c.amount) AS balance, l.held + sum(c.held_delta) AS held,
                 l.debt + sum(c.debt_delta) AS debt, l.version + count(*)::int AS version
          FROM chain c JOIN locked l ON l.user_id = c.user_id GROUP BY c.user_id, l.balance, l.held, l.debt, l.version) t
    WHERE wallets.user_id = t.user_id
    RETURNING wallets.*
  ), entries AS (
    INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key, idempotency_key, description, metadata, key_id)
    SELECT user_id, kind, amount, balance_after, held_after, usage_key, idempotency_key, description, metadata, key_id
    FROM chain ORDER BY user_id, ord, sub
    RETURNING *
  )`;
}
