import type pg from 'pg';
import {
  ADMIN_KEY,
  FEATURE,
  FEATURE_ID,
  HOLD_AMOUNT,
  HOT_INITIAL_CREDITS,
  HOT_WALLET,
  INITIAL_CREDITS,
  K_INITIAL_CREDITS,
  K_WALLET,
  MODELS,
  PARITY_WALLET,
  SPAN_GRANTS,
  SPAN_WALLET_PREFIX,
  SPAN_WALLETS,
} from './workload';

/**
 * The benchmark's data. The feature and the price table go through the admin API (they are few,
 * and this checks the API); wallets are bulk SQL, each with its 'initial' ledger entry so that
 * balance = Σ ledger holds from the first row, exactly as POST /api/wallets would leave it, and
 * with three grants adding up to it (API.md §8): a promotional one drawn first that expires in 30
 * days (10 %), a paid one that expires in a year (30 %) and a paid one with no expiry (60 %). The
 * reconciliation (balance = Σ remaining − debt, each grant = amount − its draws) holds from the start.
 */
const GRANTS_OF = (walletsSql: string) => `
  INSERT INTO grants (user_id, kind, origin, amount, remaining, priority, expires_at, description)
  SELECT w.user_id, g.kind, g.origin, round(w.balance * g.share, 6), round(w.balance * g.share, 6), g.priority, now() + g.expires_in, 'bench'
  FROM (${walletsSql}) w,
       (VALUES ('promotional', 'grant', 0.1, 10, interval '30 days'), ('paid', 'grant', 0.3, 50, interval '365 days')) AS g(kind, origin, share, priority, expires_in)
  UNION ALL
  SELECT w.user_id, 'paid', 'initial', w.balance - round(w.balance * 0.1, 6) - round(w.balance * 0.3, 6),
         w.balance - round(w.balance * 0.1, 6) - round(w.balance * 0.3, 6), 50, NULL, 'bench'
  FROM (${walletsSql}) w`;

const log = (line: string) => process.stdout.write(`${line}\n`);

async function admin(origin: string, method: string, path: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${origin}${path}`, {
    method,
    headers: { 'content-type': 'application/json', 'x-server-api-key': ADMIN_KEY },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
  return JSON.parse(text);
}

/** A service key issued through the API (`--db-key`): the HTTP load then authenticates with a database record. */
export async function issueServiceKey(origin: string): Promise<string> {
  const answer = (await admin(origin, 'POST', '/api/keys', { name: 'bench', scope: 'service' })) as { data: { key: string } };
  return answer.data.key;
}

export async function seedCatalogue(origin: string): Promise<void> {
  await admin(origin, 'POST', '/api/features', FEATURE);
  for (const model of MODELS) await admin(origin, 'POST', '/api/pricing/models', model);
}

/** What the service would charge for these usages (POST /api/pricing/quote, charges nothing). */
export async function quote(origin: string, usages: unknown[]): Promise<string> {
  const answer = (await admin(origin, 'POST', '/api/pricing/quote', { feature_endpoint_id: FEATURE_ID, usages })) as {
    data: { credits_charged: string };
  };
  return answer.data.credits_charged;
}

/**
 * Wallets `bench-u-<from>` … `bench-u-<to>` with `initial` credits, one 'initial' entry each,
 * inserted `chunk` wallets per statement.
 */
export async function seedWallets(db: pg.Pool, from: number, to: number, initial = INITIAL_CREDITS, chunk = 100_000): Promise<void> {
  for (let lo = from; lo <= to; lo += chunk) {
    const hi = Math.min(to, lo + chunk - 1);
    await db.query(
      `WITH w AS (
         INSERT INTO wallets (user_id, plan, status, balance, held, version)
         SELECT 'bench-u-' || lpad(g::text, 7, '0'), 'pro', 'active', $3::numeric, 0, 1 FROM generate_series($1::int, $2::int) g
         RETURNING user_id, balance)
       INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, description)
       SELECT user_id, 'initial', balance, balance, 0, 'initial credits' FROM w ORDER BY user_id`,
      [lo, hi, initial],
    );
    await db.query(
      GRANTS_OF(
        `SELECT user_id, balance FROM wallets WHERE user_id BETWEEN 'bench-u-' || lpad($1::text, 7, '0') AND 'bench-u-' || lpad($2::text, 7, '0')`,
      ),
      [lo, hi],
    );
  }
}

/**
 * The span point's wallets (SPAN_WALLETS of them, see workload.ts): SPAN_GRANTS promotional grants
 * of `small` credits each (priority 10, drawn first), then a paid one with the rest.
 */
export async function seedSpanWallets(db: pg.Pool, small: string): Promise<void> {
  await db.query(
    `WITH w AS (
       INSERT INTO wallets (user_id, plan, status, balance, held, version)
       SELECT $1 || lpad(g::text, 7, '0'), 'pro', 'active', $3::numeric, 0, 1 FROM generate_series(1, $2::int) g
       RETURNING user_id, balance)
     INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, description)
     SELECT user_id, 'initial', balance, balance, 0, 'initial credits' FROM w ORDER BY user_id`,
    [SPAN_WALLET_PREFIX, SPAN_WALLETS, INITIAL_CREDITS],
  );
  await db.query(
    `INSERT INTO grants (user_id, kind, origin, amount, remaining, priority, expires_at, created_at, description)
     SELECT w.user_id, 'promotional', 'grant', $3::numeric, $3::numeric, 10, now() + interval '30 days', now() + make_interval(secs => k), 'bench span'
     FROM wallets w, generate_series(1, $2::int) k WHERE w.user_id LIKE $1 || '%'
     UNION ALL
     SELECT w.user_id, 'paid', 'initial', w.balance - $2::int * $3::numeric, w.balance - $2::int * $3::numeric, 50, NULL, now(), 'bench span'
     FROM wallets w WHERE w.user_id LIKE $1 || '%'`,
    [SPAN_WALLET_PREFIX, SPAN_GRANTS, small],
  );
}

/** One named wallet with its initial entry. */
export async function seedWallet(db: pg.Pool, userId: string, initial: string): Promise<void> {
  await db.query(
    `WITH w AS (INSERT INTO wallets (user_id, plan, status, balance, held, version) VALUES ($1, 'pro', 'active', $2::numeric, 0, 1) RETURNING user_id, balance)
     INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, description) SELECT user_id, 'initial', balance, balance, 0, 'initial credits' FROM w`,
    [userId, initial],
  );
  await db.query(GRANTS_OF(`SELECT user_id, balance FROM wallets WHERE user_id = $1`), [userId]);
}

export async function seedSpecialWallets(db: pg.Pool): Promise<void> {
  await seedWallet(db, HOT_WALLET, HOT_INITIAL_CREDITS);
  await seedWallet(db, PARITY_WALLET, HOT_INITIAL_CREDITS);
  await seedWallet(db, K_WALLET, K_INITIAL_CREDITS);
}

/**
 * The --scale data set: wallets `from`…`to`, each with `entriesPerWallet` ledger rows (one
 * 'initial', then top-ups), balance = Σ entries and balance_after a true running total; wallets
 * 1…from−1 get entriesPerWallet − 1 top-ups, so 1,000,000 wallets × 10 = 10,000,000 rows. The
 * foreign-key triggers are skipped for the load (session_replication_role = replica: the rows are
 * generated from the wallets just inserted, so they hold by construction); the indexes are kept.
 */
export async function seedScale(db: pg.Pool, from: number, to: number, entriesPerWallet: number, chunk = 50_000): Promise<void> {
  const client = await db.connect();
  const started = Date.now();
  try {
    await client.query(`SET session_replication_role = replica`);
    for (let lo = from; lo <= to; lo += chunk) {
      const hi = Math.min(to, lo + chunk - 1);
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO wallets (user_id, plan, status, balance, held, version)
         SELECT 'bench-u-' || lpad(g::text, 7, '0'), 'pro', 'active', $3::numeric + ($4::int - 1), 0, $4::int
         FROM generate_series($1::int, $2::int) g`,
        [lo, hi, INITIAL_CREDITS, entriesPerWallet],
      );
      await client.query(
        `INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, description, created_at)
         SELECT 'bench-u-' || lpad(g::text, 7, '0'),
                CASE WHEN k = 1 THEN 'initial' ELSE 'top_up' END,
                CASE WHEN k = 1 THEN $3::numeric ELSE 1 END,
                $3::numeric + (k - 1), 0,
                CASE WHEN k = 1 THEN 'initial credits' ELSE 'bench top-up' END,
                now() - make_interval(days => $4::int - k)
         FROM generate_series($1::int, $2::int) g, generate_series(1, $4::int) k
         ORDER BY g, k`,
        [lo, hi, INITIAL_CREDITS, entriesPerWallet],
      );
      await client.query('COMMIT');
      const done = hi - from + 1;
      const total = to - from + 1;
      if (done === total || Math.floor(done / 200_000) !== Math.floor((done - (hi - lo + 1)) / 200_000)) {
        log(
          `  scale seed: ${done.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} wallets (${((Date.now() - started) / 1000).toFixed(0)} s)`,
        );
      }
    }
    // The main data set's wallets get the same history depth, so every wallet has ≥ entriesPerWallet rows.
    if (from > 1 && entriesPerWallet > 1) {
      await client.query(
        `WITH w AS (
           UPDATE wallets SET balance = balance + ($3::int - 1), version = version + 1, updated_at = now()
           WHERE user_id BETWEEN 'bench-u-' || lpad($1::text, 7, '0') AND 'bench-u-' || lpad($2::text, 7, '0')
           RETURNING user_id, balance - ($3::int - 1) AS before)
         INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, description)
         SELECT user_id, 'top_up', 1, before + k, 0, 'bench top-up' FROM w, generate_series(1, $3::int - 1) k ORDER BY user_id, k`,
        [1, from - 1, entriesPerWallet],
      );
    }
    // Their credits as grants (API.md §8): one paid grant per scale wallet, and one per top-up total
    // of the main data set's wallets, so the grant reconciliation holds as well.
    await client.query(
      `INSERT INTO grants (user_id, kind, origin, amount, remaining, description)
       SELECT user_id, 'paid', 'initial', balance, balance, 'bench scale' FROM wallets
       WHERE user_id BETWEEN 'bench-u-' || lpad($1::text, 7, '0') AND 'bench-u-' || lpad($2::text, 7, '0')`,
      [from, to],
    );
    if (from > 1 && entriesPerWallet > 1) {
      await client.query(
        `INSERT INTO grants (user_id, kind, origin, amount, remaining, description)
         SELECT user_id, 'paid', 'top_up', $3::int - 1, $3::int - 1, 'bench scale' FROM wallets
         WHERE user_id BETWEEN 'bench-u-' || lpad($1::text, 7, '0') AND 'bench-u-' || lpad($2::text, 7, '0')`,
        [1, from - 1, entriesPerWallet],
      );
    }
    await client.query(`SET session_replication_role = DEFAULT`);
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
  await db.query('ANALYZE wallets');
  await db.query('ANALYZE ledger_entries');
  await db.query('ANALYZE grants');
}

/**
 * Holds ready to be settled by queue messages, as /start would leave them: `n` holds spread over
 * wallets 1…walletCount, with each wallet's `held` raised by what it now holds.
 */
export async function seedHolds(db: pg.Pool, n: number, walletCount: number): Promise<{ usage_key: string; user_id: string }[]> {
  const { rows } = await db.query<{ usage_key: string; user_id: string }>(
    `WITH h AS (
       INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at)
       SELECT gen_random_uuid(), 'bench-u-' || lpad(((g - 1) % $2::int + 1)::text, 7, '0'), $3, $4::numeric, 'held', now() + interval '1 hour'
       FROM generate_series(1, $1::int) g
       RETURNING usage_key, user_id, amount
     ), per_wallet AS (
       SELECT user_id, sum(amount) AS total FROM h GROUP BY user_id
     ), raised AS (
       -- Runs to completion although nothing reads it (a data-modifying WITH always does).
       UPDATE wallets w SET held = w.held + p.total, version = w.version + 1, updated_at = now()
       FROM per_wallet p WHERE w.user_id = p.user_id
     )
     SELECT usage_key::text, user_id FROM h`,
    [n, walletCount, FEATURE_ID, HOLD_AMOUNT],
  );
  return rows;
}

export interface WalletCheck {
  userId: string;
  balance: string;
  held: string;
  ledgerSum: string;
  liveHolds: number;
  ok: boolean;
}

/** balance = Σ ledger and held = 0 with no live hold, for one wallet. */
export async function checkWallet(db: pg.Pool, userId: string): Promise<WalletCheck> {
  const { rows } = await db.query<{ balance: string; held: string; ledger_sum: string; live: string }>(
    `SELECT w.balance::text, w.held::text,
            (SELECT COALESCE(sum(amount), 0) FROM ledger_entries WHERE user_id = w.user_id)::numeric(24,6)::text AS ledger_sum,
            (SELECT count(*) FROM holds WHERE user_id = w.user_id AND status = 'held')::text AS live
     FROM wallets w WHERE w.user_id = $1`,
    [userId],
  );
  const r = rows[0];
  return {
    userId,
    balance: r.balance,
    held: r.held,
    ledgerSum: r.ledger_sum,
    liveHolds: Number(r.live),
    ok: r.balance === r.ledger_sum && r.held === '0.000000' && r.live === '0',
  };
}

/** Every wallet: balance = Σ ledger, held = Σ live holds, balance = Σ grants − debt (less the baseline's charges). Returns how many disagree. */
export async function reconcile(db: pg.Pool): Promise<{ wallets: number; mismatches: number }> {
  const { rows } = await db.query<{ wallets: string; mismatches: string }>(
    `SELECT count(*)::text AS wallets,
            count(*) FILTER (WHERE w.balance <> COALESCE(l.total, 0) OR w.held <> COALESCE(h.total, 0)
                               OR w.balance - COALESCE(l.baseline, 0) <> COALESCE(g.total, 0) - w.debt)::text AS mismatches
     FROM wallets w
     -- The bare-SQL baseline charges the same wallets with v1's statement, which draws no grant
     -- (its entries have no metadata.draws): what it charged is left out of the grant check.
     LEFT JOIN (SELECT user_id, sum(amount) AS total, sum(amount) FILTER (WHERE metadata->>'channel' = 'baseline') AS baseline
                FROM ledger_entries GROUP BY user_id) l USING (user_id)
     LEFT JOIN (SELECT user_id, sum(amount) AS total FROM holds WHERE status = 'held' GROUP BY user_id) h USING (user_id)
     LEFT JOIN (SELECT user_id, sum(remaining) AS total FROM grants GROUP BY user_id) g USING (user_id)`,
  );
  return { wallets: Number(rows[0].wallets), mismatches: Number(rows[0].mismatches) };
}

/**
 * Puts the database in the same state before every measured point, service's and baseline's
 * alike: what the previous point left vacuumed (dead wallet and hold rows; the ledger's new rows,
 * which would otherwise trigger an insert-driven autovacuum mid-point), statistics fresh, and a
 * checkpoint taken, so no point pays for its predecessor's autovacuum or checkpoint.
 */
export async function quiesce(db: pg.Pool): Promise<void> {
  await db.query('VACUUM ANALYZE wallets, holds, ledger_entries');
  await db.query('CHECKPOINT');
}
