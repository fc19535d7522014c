/**
 * The grant and refund events (API.md §10): grant.expired and usage.refunded written by triggers in
 * the change's statement, grant.expiring by the events module's sweep, once per grant whatever the
 * number of sweeps and instances, and all three delivered to webhooks, signed.
 *
 * Wallets, grants and ledger entries are written with SQL here: the events must follow any
 * writer of those rows (the ledger's statements included), and only the rows matter to them.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { GrantExpiryNotices } from '../src/events/grant-expiry-notices';
import { startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import { Receiver, startReceiver } from './support/webhook-receiver';

interface EventView {
  id: string;
  type: string;
  user_id: string | null;
  created_at: string;
  data: Record<string, string>;
}

const DAY = 86_400;

describe('grant and refund events (API.md §10)', () => {
  let t: TestApp;
  /** A second instance on the same database, sweeping by its own timer. */
  let other: TestApp;
  let receiver: Receiver;
  let sql: pg.Client;
  const secrets = new Map<string, string>();

  const ok = async (method: string, path: string, body?: unknown) => {
    const res = await t.request(method, path, { body });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.data;
  };
  const events = async (query = ''): Promise<EventView[]> => {
    const items: EventView[] = [];
    let cursor: string | null = null;
    do {
      const page = await ok('GET', `/api/events?limit=200${query}${cursor ? `&cursor=${cursor}` : ''}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return items.reverse(); // oldest first
  };
  const wallet = async (userId: string, balance = '100') => {
    await sql.query(`INSERT INTO wallets (user_id, plan, status, balance, held, version) VALUES ($1, 'free', 'active', $2, 0, 1)`, [
      userId,
      balance,
    ]);
  };
  /** A grant expiring `inSeconds` from now (null: never), with `remaining` of `amount` left. */
  const grant = async (userId: string, amount: string, inSeconds: number | null, opts: { remaining?: string; status?: string } = {}) => {
    const { rows } = await sql.query<{ grant_id: string; expires_at: Date | null }>(
      `INSERT INTO grants (user_id, kind, origin, amount, remaining, status, expires_at)
       VALUES ($1, 'promotional', 'grant', $2, $3, $4, CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $5::float8) END)
       RETURNING grant_id, expires_at`,
      [userId, amount, opts.remaining ?? amount, opts.status ?? 'active', inSeconds],
    );
    return rows[0];
  };
  const sweep = (app: TestApp) => app.app.get(GrantExpiryNotices).sweep();

  beforeAll(async () => {
    receiver = await startReceiver((path) => secrets.get(path));
    // The sweep is called by the tests on this instance (its timer is off), so they see exactly what one call does.
    t = await startTestApp({ EVENT_RELAY_INTERVAL_MS: '50', GRANT_SWEEP_INTERVAL_MS: '0', WEBHOOK_RETRY_DELAYS_MS: '100,200' });
    other = await startTestApp({ EVENT_RELAY_INTERVAL_MS: '0', GRANT_SWEEP_INTERVAL_MS: '100' }, t.db);
    sql = new pg.Client({ connectionString: t.db.url });
    await sql.connect();
    for (const path of ['/grants']) {
      const created = await ok('POST', '/api/webhooks', {
        url: receiver.url(path),
        events: ['grant.expiring', 'grant.expired', 'usage.refunded'],
      });
      secrets.set(path, created.secret);
    }
  }, 60_000);

  afterAll(async () => {
    await sql?.end();
    await other?.close();
    await t?.close();
    await receiver?.close();
  }, 30_000);

  it('writes one grant.expired with what expired, and another with the difference when expired grows again', async () => {
    await wallet('ge-1');
    const g = await grant('ge-1', '30', 7 * DAY, { remaining: '12.345678' });
    // A charge (remaining lowered, even to depleted) writes no grant event.
    await sql.query(`UPDATE grants SET remaining = remaining - 2 WHERE grant_id = $1`, [g.grant_id]);
    expect(await events('&type=grant.expired&user_id=ge-1')).toEqual([]);

    // What the expiry does: remaining leaves the grant as `expired`.
    await sql.query(
      `UPDATE grants SET status = 'expired', expired = expired + remaining, remaining = 0, closed_at = now() WHERE grant_id = $1`,
      [g.grant_id],
    );
    let got = await events('&type=grant.expired&user_id=ge-1');
    expect(got.map((e) => e.data)).toEqual([{ user_id: 'ge-1', grant_id: g.grant_id, expired_amount: '10.345678' }]);
    expect(got[0].user_id).toBe('ge-1');

    // An update that does not raise `expired` writes nothing more.
    await sql.query(`UPDATE grants SET closed_at = now() WHERE grant_id = $1`, [g.grant_id]);
    expect(await events('&type=grant.expired&user_id=ge-1')).toHaveLength(1);

    // A refund returned to the expired grant expires that part at once (API.md §9): its own event.
    await sql.query(`UPDATE grants SET refunded = refunded + 0.5, expired = expired + 0.5 WHERE grant_id = $1`, [g.grant_id]);
    got = await events('&type=grant.expired&user_id=ge-1');
    expect(got.map((e) => e.data.expired_amount)).toEqual(['10.345678', '0.500000']);
  });

  it('writes no grant.expired for a grant that expires with nothing left, or for a voided one', async () => {
    await wallet('ge-2');
    const empty = await grant('ge-2', '5', DAY, { remaining: '0', status: 'depleted' });
    await sql.query(`UPDATE grants SET status = 'expired', closed_at = now() WHERE grant_id = $1`, [empty.grant_id]);
    const voided = await grant('ge-2', '5', DAY);
    await sql.query(`UPDATE grants SET status = 'voided', voided = remaining, remaining = 0 WHERE grant_id = $1`, [voided.grant_id]);
    expect(await events('&type=grant.expired&user_id=ge-2')).toEqual([]);
  });

  it('writes one grant.expired per grant when one statement expires several', async () => {
    await wallet('ge-3');
    const a = await grant('ge-3', '1', DAY);
    const b = await grant('ge-3', '2.25', DAY);
    await sql.query(`UPDATE grants SET status = 'expired', expired = expired + remaining, remaining = 0 WHERE user_id = 'ge-3'`);
    const got = await events('&type=grant.expired&user_id=ge-3');
    expect(Object.fromEntries(got.map((e) => [e.data.grant_id, e.data.expired_amount]))).toEqual({
      [a.grant_id]: '1.000000',
      [b.grant_id]: '2.250000',
    });
  });

  it('writes usage.refunded for each refund ledger entry, and nothing for other kinds', async () => {
    await wallet('rf-1', '90');
    const usageKey = randomUUID();
    const entry = (kind: string, amount: string, balanceAfter: string) =>
      sql.query(
        `INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key, metadata) VALUES ('rf-1', $1, $2, $3, 0, $4, '{}')`,
        [kind, amount, balanceAfter, usageKey],
      );
    await entry('charge', '-10', '90');
    expect(await events('&type=usage.refunded&user_id=rf-1')).toEqual([]);
    await entry('refund', '4.5', '94.5');
    await entry('refund', '0.000001', '94.500001');
    const got = await events('&type=usage.refunded&user_id=rf-1');
    expect(got.map((e) => e.data)).toEqual([
      { user_id: 'rf-1', usage_key: usageKey, amount: '4.500000' },
      { user_id: 'rf-1', usage_key: usageKey, amount: '0.000001' },
    ]);
    expect(got.every((e) => e.user_id === 'rf-1')).toBe(true);
  });

  it('writes no event when the refund is rolled back', async () => {
    await wallet('rf-2');
    await sql.query('BEGIN');
    await sql.query(
      `INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key) VALUES ('rf-2', 'refund', 1, 101, 0, $1)`,
      [randomUUID()],
    );
    await sql.query('ROLLBACK');
    expect(await events('&user_id=rf-2')).toEqual([]);
  });

  it('notices a grant in the window exactly once, however many sweeps on however many instances, and no other', async () => {
    await wallet('gx-1');
    const soon: Awaited<ReturnType<typeof grant>>[] = [];
    for (let i = 0; i < 20; i++) soon.push(await grant('gx-1', `${i + 1}.5`, DAY + i, { remaining: `${i + 1}` }));
    const outside = await grant('gx-1', '7', 4 * DAY); // beyond the default 259200 s
    const never = await grant('gx-1', '7', null);
    const depleted = await grant('gx-1', '7', DAY, { remaining: '0', status: 'depleted' });
    const expired = await grant('gx-1', '7', DAY, { remaining: '0', status: 'expired' });
    const past = await grant('gx-1', '7', -60); // its expiry is the ledger's, not a notice

    // Concurrent sweeps here and on the other instance (whose timer sweeps as well), then again.
    const counts = await Promise.all([sweep(t), sweep(other), sweep(t), sweep(other)]);
    expect(counts.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(soon.length);
    await sweep(t);
    await sweep(other);

    const got = await events('&type=grant.expiring&user_id=gx-1');
    expect(got).toHaveLength(soon.length);
    const byGrant = new Map(got.map((e) => [e.data.grant_id, e]));
    expect(byGrant.size).toBe(soon.length);
    soon.forEach((g, i) => {
      expect(byGrant.get(g.grant_id)?.data).toEqual({
        user_id: 'gx-1',
        grant_id: g.grant_id,
        remaining: `${i + 1}.000000`,
        expires_at: g.expires_at!.toISOString(),
      });
    });
    for (const g of [outside, never, depleted, expired, past]) expect(byGrant.has(g.grant_id)).toBe(false);
    const notices = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM grant_notices n JOIN grants g USING (grant_id) WHERE g.user_id = 'gx-1'`,
    );
    expect(notices.rows[0].n).toBe(soon.length);
  });

  it('notices a grant as it enters the window, by the timer alone, once', async () => {
    await wallet('gx-2');
    // Just outside the 3-day window: the window reaches it within a second.
    const g = await grant('gx-2', '3', 3 * DAY + 1);
    const [e] = await waitFor('the timer to notice the grant', async () => {
      const got = await events('&type=grant.expiring&user_id=gx-2');
      return got.length > 0 && got;
    });
    expect(e.data).toMatchObject({ grant_id: g.grant_id, remaining: '3.000000' });
    // Swept again on both instances (the timer goes on too): still one.
    expect(await sweep(t)).toBe(0);
    expect(await sweep(other)).toBe(0);
    expect(await events('&type=grant.expiring&user_id=gx-2')).toHaveLength(1);
  });

  it('delivers grant.expiring, grant.expired and usage.refunded to a webhook, signed, as listed', async () => {
    await wallet('dv-g');
    const g = await grant('dv-g', '8', DAY);
    await sweep(t);
    await sql.query(`UPDATE grants SET status = 'expired', expired = expired + remaining, remaining = 0 WHERE grant_id = $1`, [g.grant_id]);
    await sql.query(
      `INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key) VALUES ('dv-g', 'refund', 2, 102, 0, $1)`,
      [randomUUID()],
    );
    const mine = await events('&user_id=dv-g');
    expect(mine.map((e) => e.type)).toEqual(['grant.expiring', 'grant.expired', 'usage.refunded']);
    const got = await waitFor('the deliveries', async () => {
      const r = receiver.at('/grants').filter((x) => x.body.data.user_id === 'dv-g');
      return r.length >= 3 && r;
    });
    expect(got.map((r) => r.id)).toEqual(mine.map((e) => e.id)); // in order, once each
    for (const r of got) {
      expect(r.verified).toBe(true);
      expect(r.type).toBe(r.body.type);
      const e = mine.find((m) => m.id === r.id)!;
      expect(r.body).toEqual({ id: e.id, type: e.type, created_at: e.created_at, data: e.data });
    }
    expect(receiver.received.filter((r) => !r.verified)).toEqual([]);
  });
});
