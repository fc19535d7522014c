import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { Money } from '../common/money';
import { queryRows } from '../database/sql';
import { LedgerEntry, LedgerEntryKind } from '../wallets/ledger-entry.entity';
import { Wallet, WalletStatus } from '../wallets/wallet.entity';
import type { HoldPriceSnapshot } from '../pricing/price-snapshot';
import { DIRECT_CHARGE_STATUS, HOLD_TRANSITIONS, HoldStatus, LIVE_HOLD_STATUS, sqlStatuses } from './hold-states';
import { moveMoney } from './money-movement';

/** A start asking for a hold of its feature's min_holding_credits. */
export interface HoldRequest {
  userId: string;
  featureEndpointId: string;
  /** The new authorization's key (the caller makes it, so it can answer with it). */
  usageKey: string;
  /** The API key record that asks (API.md §11): recorded on the hold; its spend cap, if any, is checked. */
  keyId: string | null;
  /** A hold by estimate (API.md §13): held instead of min_holding_credits when larger. */
  amount?: Money;
  /** A price_lock feature's prices now, kept on the hold for its charges. */
  priceSnapshot?: HoldPriceSnapshot;
}

/** An extend of a live hold (API.md §13); null fields are left as they are (ttl: the feature's). */
export interface ExtendRequest {
  usageKey: string;
  ttlSeconds: number | null;
  additional: Money | null;
}

/** What an extend found and did: `extended` false when it changed nothing (the reason is in the figures). */
export interface ExtendOutcome {
  extended: boolean;
  status: HoldStatus;
  /** Past its expiry (swept or not). */
  lapsed: boolean;
  /** Refused for its key's cap (else for the wallet's available credits, when `additional` was asked). */
  overCap: boolean;
  userId: string;
  featureEndpointId: string;
  keyId: string | null;
  amount: Money;
  expiresAt: Date;
  balance: Money;
  held: Money;
  /** Available for the additional hold: balance − held − what grants past expiry still hold. */
  spendable: Money;
}

export interface PlacedHold {
  /** The wallet's balance and held right after this hold (as of its place in the batch). */
  balance: Money;
  held: Money;
  amount: Money;
  expiresAt: Date;
}

/** A settlement's charge, priced: what `settle` claims and charges. */
export interface Charge {
  /** The hold to claim; for a direct charge, the key of the authorization it creates. */
  usageKey: string;
  userId: string;
  featureEndpointId: string;
  /** Credits charged (positive): the balance goes down by this much. */
  credits: Money;
  /** What the charge's ledger entry records besides its figures (`late` is added by `settle`). */
  metadata: Record<string, unknown>;
  /** Without a hold: inserted settled, idempotent per user by `idempotencyKey` when there is one. */
  direct?: { idempotencyKey: string | null; requestHash: string };
  /** The settling key record: a direct charge is its key's spend (a hold's charge is its hold's key's). */
  keyId: string | null;
}

/** The ledger entry a charge wrote. */
export interface SettledCharge {
  entryId: string;
  /** Signed, as in the ledger: the negated credits charged. */
  amount: Money;
  balanceAfter: Money;
  heldAfter: Money;
  late: boolean;
}

/** A balance change that is not a charge (charges go through `settle`). */
export interface Posting {
  userId: string;
  kind: 'initial' | 'top_up' | 'adjustment';
  /** Signed change of the balance: a credit is a new paid grant, a debit draws like a charge. */
  amount: Money;
  idempotencyKey?: string | null;
  description?: string | null;
  metadata?: Record<string, unknown>;
}

/** A posting as `moveMoney` takes it (ledger_apply reads `spec`; a null amount is its to decide). */
interface RawPosting {
  userId: string;
  kind: Exclude<LedgerEntryKind, 'charge' | 'grant_expired'>;
  amount: Money | null;
  usageKey?: string | null;
  idempotencyKey?: string | null;
  description?: string | null;
  metadata?: Record<string, unknown>;
  spec?: Record<string, unknown> | null;
}

/** What one posting wrote: the wallet after it, its entry, and any entry it added (a re-expiry). */
export interface Posted {
  wallet: Wallet;
  entry: LedgerEntry;
  also: LedgerEntry[];
}

export type GrantKind = 'paid' | 'promotional';

/** A grant given by POST …/grants (API.md §8). */
export interface GrantRequest {
  userId: string;
  amount: Money;
  kind: GrantKind;
  priority: number;
  expiresAt: Date | null;
  idempotencyKey: string | null;
  requestHash: string;
  description: string | null;
}

/** A refund of a settled usage (API.md §9); a null amount is all that is left to refund. */
export interface RefundRequest {
  userId: string;
  usageKey: string;
  amount: Money | null;
  reason: string;
  /** Namespaced by the caller per usage; a repeat is a unique violation on `ledger_entries_idempotency`. */
  idempotencyKey: string | null;
  /** What was asked, kept on the entry (metadata.request) so a repeat of the key can be compared. */
  request: Record<string, unknown>;
}

/** A refund ledger_apply refused, by the API's error word. */
export class RefundRefused extends Error {
  constructor(
    readonly code: 'refund_exceeds_charge' | 'not_settled',
    /** For refund_exceeds_charge: what was left to refund. */
    readonly left: Money | null,
  ) {
    super(code);
  }
}

export interface Mismatch {
  userId: string;
  balance: Money;
  ledgerSum: Money;
  lastBalanceAfter: Money | null;
  held: Money;
  liveHolds: Money;
  /** Σ remaining of the wallet's grants − its debt: must equal balance. */
  grantsLessDebt: Money;
  /** The wallet's grants whose remaining ≠ amount − debt_paid − Σ draws − expired − voided + refunded. */
  grantMismatches: { grantId: string; remaining: Money; expected: Money }[];
}

/** More than this many mismatching wallets are not listed (the first ones by user_id are). */
export const MAX_MISMATCHES = 1000;

const SETTLE = HOLD_TRANSITIONS.settle;
const CANCEL = HOLD_TRANSITIONS.cancel;
const EXPIRE = HOLD_TRANSITIONS.expire;
const WALLET_COLUMNS = 'user_id, plan, status, balance, held, version, created_at, updated_at';

/**
 * The ledger: the owner of `wallets`, `holds`, `ledger_entries`, `grants` and the keys' spend counters. Every statement that writes
 * them is here, one named function each; services decide what to do and call these. The set-based
 * statements (`placeHolds`, `settle`) serve a batch of one and a batch of a hundred alike, so a
 * lone request and a batched one cannot be treated differently.
 *
 * Each function is ONE statement, atomic by itself. Those taking a manager run in the caller's
 * transaction when it must commit with other writes; the others commit on their own (and are
 * retried whole by `queryRows` when PostgreSQL picks them as a deadlock victim).
 */
@Injectable()
export class LedgerService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  // --- wallets -------------------------------------------------------------------------------

  /**
   * A new wallet with nothing on it (credits come by `post`, in the same transaction). With
   * `ifMissing`, an existing wallet is left alone and undefined returned; otherwise a unique
   * violation on `wallets_pkey` says it exists.
   */
  async createWallet(manager: EntityManager, w: { userId: string; plan: string; ifMissing?: boolean }): Promise<Wallet | undefined> {
    const [row] = await queryRows<WalletRow>(
      manager,
      `INSERT INTO wallets (user_id, plan, status, balance, held, version) VALUES ($1, $2, 'active', 0, 0, 1)
       ${w.ifMissing ? 'ON CONFLICT (user_id) DO NOTHING' : ''} RETURNING ${WALLET_COLUMNS}`,
      [w.userId, w.plan],
    );
    return row && walletFromRow(row);
  }

  /** Plan and/or status (null leaves it as is); undefined when the wallet does not exist. */
  async updateWalletPlanStatus(
    manager: EntityManager,
    userId: string,
    change: { plan: string | null; status: WalletStatus | null },
  ): Promise<Wallet | undefined> {
    const [row] = await queryRows<WalletRow>(
      manager,
      `UPDATE wallets SET plan = COALESCE($2, plan), status = COALESCE($3, status), version = version + 1, updated_at = now()
       WHERE user_id = $1 RETURNING ${WALLET_COLUMNS}`,
      [userId, change.plan, change.status],
    );
    return row && walletFromRow(row);
  }

  /**
   * Credits or debits a wallet outside a settlement (initial credits, top-up, adjustment): the
   * wallet update, the grant it creates or the grants it draws, and its ledger entry, in one
   * statement (`moveMoney`). An idempotency key already used for the wallet is a unique violation
   * on `ledger_entries_idempotency` ("already done"). Undefined when the wallet does not exist.
   */
  async post(manager: EntityManager, p: Posting): Promise<Posted | undefined> {
    return this.postRaw(manager, p);
  }

  /**
   * A grant (API.md §8): a new grant paying the wallet's debt first, with its `grant` ledger entry.
   * A repeated idempotency key is a unique violation on `grants_idempotency`.
   */
  async createGrant(manager: EntityManager, g: GrantRequest): Promise<Posted | undefined> {
    return this.postRaw(manager, {
      userId: g.userId,
      kind: 'grant',
      amount: g.amount,
      description: g.description,
      metadata: { grant_kind: g.kind, priority: g.priority, expires_at: g.expiresAt?.toISOString() ?? null },
      spec: {
        kind: g.kind,
        priority: g.priority,
        expires_at: g.expiresAt?.toISOString() ?? null,
        idempotency_key: g.idempotencyKey,
        request_hash: g.requestHash,
        description: g.description,
      },
    });
  }

  /**
   * Voids a grant: what remains leaves the balance (`grant_voided` entry). Undefined when there was
   * nothing to write: no such grant of that wallet, already voided or expired, or nothing remained
   * (a depleted grant is marked voided all the same).
   */
  async voidGrant(manager: EntityManager, userId: string, grantId: string, reason: string): Promise<Posted | undefined> {
    return this.postRaw(manager, {
      userId,
      kind: 'grant_voided',
      amount: null,
      description: reason,
      metadata: { reason },
      spec: { grant_id: grantId, reason },
    });
  }

  /**
   * Refunds (part of) a settled usage to the grants its charges drew (API.md §9): one `refund`
   * entry, plus a `grant_expired` entry per expired or voided grant it gave back to. Never more than
   * is left: ledger_apply checks it under the wallet's lock (RefundRefused).
   */
  async refund(manager: EntityManager, r: RefundRequest): Promise<Posted | undefined> {
    try {
      return await this.postRaw(manager, {
        userId: r.userId,
        kind: 'refund',
        amount: r.amount,
        usageKey: r.usageKey,
        idempotencyKey: r.idempotencyKey,
        description: r.reason,
        metadata: { reason: r.reason, request: r.request },
      });
    } catch (error) {
      const e = error as { code?: string; message?: string; detail?: string; driverError?: { code?: string } };
      if ((e.code ?? e.driverError?.code) === 'P0001' && (e.message === 'refund_exceeds_charge' || e.message === 'not_settled')) {
        throw new RefundRefused(e.message, e.detail ? Money.fromDb(e.detail) : null);
      }
      throw error;
    }
  }

  private async postRaw(manager: EntityManager, p: RawPosting): Promise<Posted | undefined> {
    const rows = await queryRows<WalletRow & LedgerEntryRow>(
      manager,
      `WITH postings AS (
         SELECT 1::bigint AS ord, $1::varchar AS user_id, $2::varchar AS kind, $3::numeric AS amount, 0::numeric AS held_delta,
                $7::uuid AS usage_key, $4::varchar AS idempotency_key, $5::varchar AS description, $6::jsonb AS metadata,
                NULL::uuid AS key_id, $8::jsonb AS spec
       ), ${moveMoney('postings')}
       SELECT ${WALLET_COLUMNS.split(', ')
         .map((c) => `m.${c}`)
         .join(', ')},
              e.id, e.kind, e.amount, e.balance_after, e.held_after, e.usage_key, e.idempotency_key, e.description, e.metadata,
              e.key_id, e.created_at AS entry_created_at
       FROM moved m JOIN entries e ON e.user_id = m.user_id ORDER BY e.id`,
      [
        p.userId,
        p.kind,
        p.amount?.toString() ?? null,
        p.idempotencyKey ?? null,
        p.description ?? null,
        JSON.stringify(p.metadata ?? {}),
        p.usageKey ?? null,
        p.spec ? JSON.stringify(p.spec) : null,
      ],
      { prepared: true },
    );
    if (rows.length === 0) return undefined;
    return { wallet: walletFromRow(rows[0]), entry: ledgerEntryFromRow(rows[0]), also: rows.slice(1).map(ledgerEntryFromRow) };
  }

  /**
   * Expires the grants past their expiry (all wallets', or one's): what remains of each leaves the
   * balance as a `grant_expired` entry, in one statement per batch. Safe with several instances:
   * ledger_apply re-checks each grant under its wallet's lock, so a grant expires once. Live holds
   * are left alone. Returns how many grants were due (a full batch means there may be more).
   */
  async expireGrants(userId?: string, limit = 500): Promise<number> {
    const rows = await queryRows<{ due: string }>(
      this.dataSource.manager,
      `WITH due AS (
         SELECT grant_id, user_id FROM grants
         WHERE status IN ('active', 'depleted') AND expires_at <= now() AND ($1::varchar IS NULL OR user_id = $1)
         ORDER BY expires_at LIMIT $2
       ), postings AS (
         SELECT row_number() OVER (ORDER BY user_id, grant_id) AS ord, user_id, 'grant_expired'::varchar AS kind, NULL::numeric AS amount,
                0::numeric AS held_delta, NULL::uuid AS usage_key, NULL::varchar AS idempotency_key, 'grant expired'::varchar AS description,
                '{}'::jsonb AS metadata, NULL::uuid AS key_id, jsonb_build_object('grant_id', grant_id) AS spec
         FROM due
       ), ${moveMoney('postings')}
       SELECT (SELECT count(*) FROM due)::text AS due`,
      [userId ?? null, limit],
    );
    return Number(rows[0]?.due ?? 0);
  }

  // --- holds ---------------------------------------------------------------------------------

  /**
   * Places the holds of the starts that pass every check, in ONE statement: wallet active, feature
   * active and permitted to the plan, available > 0 and ≥ the hold. The wallets are locked in
   * user_id order and read as committed under that lock; starts on one wallet are taken in arrival
   * order, each against what the earlier ones left available (so N starts with room for K place
   * exactly K); after the first that does not fit, none of that wallet's later starts is placed.
   * Returns the placed ones by index; a start not placed wrote nothing.
   */
  async placeHolds(requests: HoldRequest[], defaultTtlSeconds: number): Promise<Map<number, PlacedHold>> {
    const rows = await queryRows<{ ord: string; balance: string; held: string; hold_amount: string; expires_at: Date }>(
      this.dataSource.manager,
      PLACE_HOLDS,
      [
        requests.map((r) => r.userId),
        requests.map((r) => r.featureEndpointId),
        requests.map((r) => r.usageKey),
        defaultTtlSeconds,
        requests.map((r) => r.keyId),
        requests.map((r) => r.amount?.toString() ?? null),
        // As one JSON array (cheaper than a jsonb[] of escaped texts); nulls for unlocked holds.
        requests.some((r) => r.priceSnapshot) ? JSON.stringify(requests.map((r) => r.priceSnapshot ?? null)) : null,
      ],
      { prepared: true },
    );
    return new Map(
      rows.map((row) => [
        Number(row.ord) - 1,
        {
          balance: Money.fromDb(row.balance),
          held: Money.fromDb(row.held),
          amount: Money.fromDb(row.hold_amount),
          expiresAt: row.expires_at,
        },
      ]),
    );
  }

  /**
   * Claims and charges, in ONE statement, a set of settlements (their usage keys distinct):
   *  - a charge with a hold claims it (held|expired → settled) under the hold's row lock, holds
   *    locked in key order, only if user and feature match: of racing settlements of one key, one
   *    claims it. It releases what the hold still holds (an expired hold was released by the
   *    sweeper) and is `late` when the hold had lapsed;
   *  - a direct charge inserts its settled authorization; ON CONFLICT on (user, idempotency key)
   *    makes a repeat, or a concurrent twin, claim nothing;
   *  - what was claimed moves money through `moveMoney`: one entry per charge, chained in order.
   * Returns the entries written by index; a charge with none claimed nothing and wrote nothing.
   */
  async settle(charges: Charge[]): Promise<Map<number, SettledCharge>> {
    const index = new Map(charges.map((c, i) => [c.usageKey, i]));
    // Two charges of one key in one statement would both join its one claim: refuse the call.
    if (index.size !== charges.length) throw new Error('settle: usage keys of one call must be distinct');
    const rows = await queryRows<{
      id: string;
      usage_key: string;
      amount: string;
      balance_after: string;
      held_after: string;
      late: boolean;
    }>(
      this.dataSource.manager,
      SETTLE_CHARGES,
      [
        charges.map((c) => c.usageKey),
        charges.map((c) => c.userId),
        charges.map((c) => c.featureEndpointId),
        charges.map((c) => c.credits.negate().toString()),
        // The metadata go as one JSON array (cheaper to send than a jsonb[] of escaped texts).
        JSON.stringify(charges.map((c) => c.metadata)),
        charges.map((c) => c.direct !== undefined),
        charges.map((c) => c.direct?.idempotencyKey ?? null),
        charges.map((c) => c.direct?.requestHash ?? null),
        charges.map((c) => c.keyId),
      ],
      { prepared: true },
    );
    return new Map(
      rows.map((row) => [
        index.get(row.usage_key)!,
        {
          entryId: row.id,
          amount: Money.fromDb(row.amount),
          balanceAfter: Money.fromDb(row.balance_after),
          heldAfter: Money.fromDb(row.held_after),
          late: row.late,
        },
      ]),
    );
  }

  /**
   * Extends a live hold (API.md §13) in one statement: a new expiry (now + ttl), and with
   * `additional` a bigger hold, checked like /start against the wallet's available credits and the
   * key's cap under their row locks (hold, then wallet, then key: the one lock order), so extends
   * and starts racing on one wallet never hold more than is there. A hold past its expiry is never
   * brought back, swept or not. Changes nothing unless every check passes; undefined for an unknown key.
   */
  async extendHold(e: ExtendRequest, defaultTtlSeconds: number): Promise<ExtendOutcome | undefined> {
    const [row] = await queryRows<{
      extended: boolean;
      status: HoldStatus;
      lapsed: boolean;
      over_cap: boolean;
      user_id: string;
      feature_endpoint_id: string;
      key_id: string | null;
      amount: string;
      expires_at: Date;
      balance: string;
      held: string;
      spendable: string;
    }>(
      this.dataSource.manager,
      `WITH old AS (
         SELECT usage_key, user_id, feature_endpoint_id, status, amount, expires_at, key_id, expires_at <= now() AS lapsed
         FROM holds WHERE usage_key = $1 FOR UPDATE
       ), locked AS (
         SELECT w.user_id, w.balance, w.held, w.version FROM wallets w
         WHERE w.user_id = (SELECT user_id FROM old) AND (SELECT count(*) FROM old) >= 0 FOR UPDATE
       ), due AS (
         SELECT COALESCE(sum(remaining), 0) AS amount FROM grants
         WHERE user_id = (SELECT user_id FROM old) AND status = 'active' AND expires_at <= now()
       ), keys AS (${capturedKeys('SELECT key_id FROM old WHERE key_id IS NOT NULL', 'locked')}
       ), ok AS (
         SELECT old.usage_key, old.user_id, COALESCE($2::int, f.hold_ttl_seconds, $4::int) AS ttl
         FROM old JOIN features f USING (feature_endpoint_id) CROSS JOIN locked l CROSS JOIN due d LEFT JOIN keys k ON k.key_id = old.key_id
         WHERE old.status = '${LIVE_HOLD_STATUS}' AND NOT old.lapsed
           AND ($3::numeric IS NULL OR (l.balance - d.amount - l.held >= $3 AND (k.cap IS NULL OR k.spent + k.held + $3 <= k.cap)))
       ), hu AS (
         UPDATE holds h SET expires_at = now() + make_interval(secs => ok.ttl), amount = h.amount + COALESCE($3::numeric, 0)
         FROM ok WHERE h.usage_key = ok.usage_key
         RETURNING h.amount, h.expires_at
       ), wu AS (
         UPDATE wallets w SET held = l.held + $3::numeric, version = l.version + 1, updated_at = now()
         FROM ok JOIN locked l USING (user_id) WHERE $3::numeric IS NOT NULL AND $3::numeric <> 0 AND w.user_id = ok.user_id
         RETURNING w.balance, w.held
       ), ku AS (
         UPDATE api_keys a SET held = k.held + $3::numeric, period_spent = k.spent, period_starts_at = k.starts
         FROM keys k WHERE $3::numeric IS NOT NULL AND a.key_id = k.key_id AND EXISTS (SELECT 1 FROM ok)
       )
       SELECT EXISTS (SELECT 1 FROM ok) AS extended, old.status, old.lapsed, old.user_id, old.feature_endpoint_id, old.key_id,
              COALESCE((SELECT amount FROM hu), old.amount)::text AS amount, COALESCE((SELECT expires_at FROM hu), old.expires_at) AS expires_at,
              COALESCE((SELECT balance FROM wu), l.balance)::text AS balance, COALESCE((SELECT held FROM wu), l.held)::text AS held,
              (l.balance - (SELECT amount FROM due) - l.held)::text AS spendable,
              ($3::numeric IS NOT NULL AND EXISTS (SELECT 1 FROM keys k WHERE k.spent + k.held + $3::numeric > k.cap)) AS over_cap
       FROM old LEFT JOIN locked l ON true`,
      [e.usageKey, e.ttlSeconds, e.additional?.toString() ?? null, defaultTtlSeconds],
    );
    if (!row) return undefined;
    return {
      extended: row.extended,
      status: row.status,
      lapsed: row.lapsed,
      overCap: row.over_cap,
      userId: row.user_id,
      featureEndpointId: row.feature_endpoint_id,
      keyId: row.key_id,
      amount: Money.fromDb(row.amount),
      expiresAt: row.expires_at,
      balance: Money.fromDb(row.balance),
      held: Money.fromDb(row.held),
      spendable: Money.fromDb(row.spendable),
    };
  }

  /**
   * Cancels a live hold and releases its amount, in one statement (hold, then wallet: the one lock
   * order). Undefined when the hold was not live (unknown, settled, cancelled, expired): nothing
   * was written, and an expired hold keeps its story.
   */
  async release(usageKey: string): Promise<{ userId: string; released: Money } | undefined> {
    const [row] = await queryRows<{ user_id: string; amount: string }>(
      this.dataSource.manager,
      `WITH claimed AS (
         UPDATE holds SET status = '${CANCEL.to}', closed_at = now()
         WHERE usage_key = $1 AND status IN ${sqlStatuses(CANCEL.from)}
         RETURNING user_id, amount, key_id
       ), released AS (
         UPDATE wallets SET held = wallets.held - c.amount, version = wallets.version + 1, updated_at = now()
         FROM claimed c WHERE wallets.user_id = c.user_id AND c.amount <> 0
         RETURNING 1
       ), keys AS (${capturedKeys('SELECT key_id FROM claimed WHERE key_id IS NOT NULL', 'released')}
       ), kr AS (
         UPDATE api_keys a SET held = k.held - c.amount FROM claimed c JOIN keys k USING (key_id) WHERE a.key_id = c.key_id
       )
       SELECT user_id, amount FROM claimed`,
      [usageKey],
    );
    return row && { userId: row.user_id, released: Money.fromDb(row.amount) };
  }

  /**
   * Expires holds past their expiry (all wallets', or one's) and releases what they held, in one
   * statement. Safe with several instances: rows are claimed with SKIP LOCKED and the status
   * condition, so a hold is released once. Returns how many holds expired.
   */
  async expireHolds(userId?: string, limit = 500): Promise<number> {
    const rows = await queryRows<{ n: string }>(
      this.dataSource.manager,
      `WITH expired AS (
         UPDATE holds SET status = '${EXPIRE.to}', closed_at = now()
         WHERE usage_key IN (
           SELECT usage_key FROM holds
           WHERE status IN ${sqlStatuses(EXPIRE.from)} AND expires_at <= now() AND ($1::varchar IS NULL OR user_id = $1)
           ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING user_id, amount, key_id
       ), per_wallet AS (
         SELECT user_id, SUM(amount) AS total, COUNT(*) AS n FROM expired GROUP BY user_id
       ), locked AS (
         -- Lock the wallets in one global order so two sweepers can never deadlock on them.
         SELECT user_id FROM wallets WHERE user_id IN (SELECT user_id FROM per_wallet) ORDER BY user_id FOR UPDATE
       ), released AS (
         UPDATE wallets w SET held = w.held - p.total, version = w.version + 1, updated_at = now()
         FROM per_wallet p JOIN locked l USING (user_id) WHERE w.user_id = p.user_id
         RETURNING p.n
       ), keys AS (${capturedKeys('SELECT key_id FROM expired WHERE key_id IS NOT NULL', 'released')}
       ), kr AS (
         UPDATE api_keys a SET held = k.held - t.total
         FROM (SELECT key_id, sum(amount) AS total FROM expired WHERE key_id IS NOT NULL GROUP BY key_id) t JOIN keys k USING (key_id)
         WHERE a.key_id = t.key_id
       )
       SELECT COALESCE(SUM(n), 0)::text AS n FROM released`,
      [userId ?? null, limit],
    );
    return Number(rows[0]?.n ?? 0);
  }

  // --- spend caps ----------------------------------------------------------------------------

  /**
   * Sets a key's spend counters (API.md §11, migration 1764000000017) from the books: what its live
   * holds hold and what its charges spent since its period began. For a key whose cap was just set
   * or changed, in the caller's transaction, which must already hold the key's row lock: this
   * statement then reads every change that lock waited for. Undefined period (no cap): counters 0.
   */
  async recomputeKeySpend(manager: EntityManager, keyId: string): Promise<void> {
    await queryRows(
      manager,
      `UPDATE api_keys k SET
         period_starts_at = p.starts,
         held = COALESCE((SELECT sum(h.amount) FROM holds h WHERE h.key_id = k.key_id AND h.status = '${LIVE_HOLD_STATUS}'), 0),
         period_spent = CASE WHEN p.starts IS NULL THEN 0 ELSE COALESCE((SELECT -sum(e.amount) FROM ledger_entries e
                          WHERE e.key_id = k.key_id AND e.kind = 'charge' AND e.created_at >= p.starts), 0) END
       FROM api_keys k2 LEFT JOIN LATERAL (
         SELECT date_trunc(k2.spend_cap_period, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS starts WHERE k2.spend_cap_period IS NOT NULL
       ) p ON true
       WHERE k.key_id = $1 AND k2.key_id = k.key_id`,
      [keyId],
    );
  }

  // --- the books -----------------------------------------------------------------------------

  /**
   * Checks every wallet: balance = Σ its ledger = the last entry's balance_after, held = Σ its live
   * holds, balance = Σ its grants' remaining − debt, and each grant's remaining = amount − debt it
   * paid − Σ its draws (the charges' metadata.draws) − expired − voided + refunded. Read in one
   * REPEATABLE READ snapshot so concurrent traffic cannot produce a false mismatch, and compared in
   * SQL, exactly, so only mismatches cross the wire.
   */
  async reconcile(): Promise<{ walletsChecked: number; mismatches: Mismatch[] }> {
    return this.dataSource.transaction('REPEATABLE READ', async (manager) => {
      const [{ n }] = await queryRows<{ n: string }>(manager, `SELECT count(*)::text AS n FROM wallets`);
      const rows = await queryRows<{
        user_id: string;
        balance: string;
        held: string;
        ledger_sum: string;
        last_balance_after: string | null;
        live_holds: string;
        grants_less_debt: string;
        bad_grants: { grant_id: string; remaining: string; expected: string }[] | null;
      }>(
        manager,
        `WITH drawn AS (
           SELECT (d->>'grant_id')::uuid AS grant_id, sum((d->>'amount')::numeric) AS amount
           FROM ledger_entries e, jsonb_array_elements(e.metadata->'draws') d
           WHERE e.kind IN ('charge', 'adjustment') AND e.metadata ? 'draws' AND d ? 'grant_id' GROUP BY 1
         ), bad_grants AS (
           SELECT user_id, jsonb_agg(jsonb_build_object('grant_id', grant_id, 'remaining', remaining::text, 'expected', expected::text) ORDER BY grant_id) AS list
           FROM (SELECT t.user_id, t.grant_id, t.remaining,
                        t.amount - t.debt_paid - COALESCE(dr.amount, 0) - t.expired - t.voided + t.refunded AS expected
                 FROM grants t LEFT JOIN drawn dr USING (grant_id)) x
           WHERE remaining <> expected GROUP BY user_id
         )
         SELECT * FROM (
             SELECT w.user_id, w.balance, w.held,
                    COALESCE(l.total, 0) AS ledger_sum,
                    (SELECT e.balance_after FROM ledger_entries e WHERE e.user_id = w.user_id ORDER BY e.id DESC LIMIT 1) AS last_balance_after,
                    COALESCE(h.total, 0) AS live_holds,
                    COALESCE(g.total, 0) - w.debt AS grants_less_debt,
                    b.list AS bad_grants
             FROM wallets w
             LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM ledger_entries GROUP BY user_id) l ON l.user_id = w.user_id
             LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM holds WHERE status = '${LIVE_HOLD_STATUS}' GROUP BY user_id) h
               ON h.user_id = w.user_id
             LEFT JOIN (SELECT user_id, SUM(remaining) AS total FROM grants GROUP BY user_id) g ON g.user_id = w.user_id
             LEFT JOIN bad_grants b ON b.user_id = w.user_id
           ) c
           -- A wallet with no entry yet must have a zero balance.
           WHERE balance <> ledger_sum OR held <> live_holds OR COALESCE(last_balance_after, 0) <> balance
              OR balance <> grants_less_debt OR bad_grants IS NOT NULL
           ORDER BY user_id LIMIT $1`,
        [MAX_MISMATCHES],
      );
      return {
        walletsChecked: Number(n),
        mismatches: rows.map((r) => ({
          userId: r.user_id,
          balance: Money.fromDb(r.balance),
          ledgerSum: Money.fromDb(r.ledger_sum),
          lastBalanceAfter: r.last_balance_after === null ? null : Money.fromDb(r.last_balance_after),
          held: Money.fromDb(r.held),
          liveHolds: Money.fromDb(r.live_holds),
          grantsLessDebt: Money.fromDb(r.grants_less_debt),
          grantMismatches: (r.bad_grants ?? []).map((g) => ({
            grantId: g.grant_id,
            remaining: Money.fromDb(g.remaining),
            expected: Money.fromDb(g.expected),
          })),
        })),
      };
    });
  }
}

/**
 * A capped key's row in a statement that moves its spend (API.md §11), locked after the wallets
 * (`after`: a CTE that has locked them; the one lock order: holds, wallets, keys) and read as
 * committed under that lock: its cap, its live holds, and what it spent in the current UTC period
 * (the counters of migration 1764000000017; a new period starts at 0). New figures are set from
 * these values, never from the UPDATE's own re-read of the row.
 */
const capturedKeys = (keyIds: string, after: string) => `
   SELECT k.key_id, k.spend_cap_amount AS cap, k.held, p.starts,
          CASE WHEN k.period_starts_at = p.starts THEN k.period_spent ELSE 0 END AS spent
   FROM api_keys k CROSS JOIN LATERAL (SELECT date_trunc(k.spend_cap_period, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS starts) p
   WHERE k.key_id IN (${keyIds}) AND k.spend_cap_amount IS NOT NULL AND (SELECT count(*) FROM ${after}) >= 0
   ORDER BY k.key_id FOR UPDATE OF k`;

/** `placeHolds`: the statement of every start (see there). */
const PLACE_HOLDS = `WITH r AS (
   SELECT u.*, $7::jsonb -> (u.ord::int - 1) AS price_snapshot
   FROM unnest($1::varchar[], $2::varchar[], $3::uuid[], $5::uuid[], $6::numeric[])
     WITH ORDINALITY AS u(user_id, feature_endpoint_id, usage_key, key_id, asked, ord)
 ), f AS (
   SELECT feature_endpoint_id, min_holding_credits, COALESCE(hold_ttl_seconds, $4) AS ttl, allowed_plans
   FROM features WHERE feature_endpoint_id IN (SELECT feature_endpoint_id FROM r) AND active
 ), locked AS (
   SELECT user_id, plan, balance, held FROM wallets
   WHERE user_id IN (SELECT user_id FROM r) AND status = 'active'
   ORDER BY user_id FOR UPDATE
 ), keys AS (${capturedKeys('SELECT key_id FROM r WHERE key_id IS NOT NULL', 'locked')}
 ), due AS (
   -- What grants past their expiry still hold (the sweeper has not run yet): not available. Read in the
   -- statement's snapshot; a grant expired meanwhile is counted twice at worst, and the refused start
   -- expires the wallet's grants and tries again.
   SELECT user_id, sum(remaining) AS amount FROM grants
   WHERE user_id IN (SELECT user_id FROM r) AND status = 'active' AND expires_at <= now() GROUP BY user_id
 ), a AS (
   -- The hold: the feature's min_holding_credits, or an estimate's quote when that is more (§13).
   SELECT r.*, GREATEST(f.min_holding_credits, COALESCE(r.asked, 0)) AS amount, f.ttl, f.allowed_plans
   FROM r JOIN f USING (feature_endpoint_id)
 ), c AS (
   SELECT a.*, l.balance, l.balance - COALESCE(d.amount, 0) AS spendable,
          l.held + sum(a.amount) OVER w - a.amount AS held_before
   FROM a JOIN locked l USING (user_id) LEFT JOIN due d USING (user_id)
   WHERE cardinality(a.allowed_plans) = 0 OR l.plan = ANY (a.allowed_plans)
   WINDOW w AS (PARTITION BY a.user_id ORDER BY a.ord)
 ), fit AS (
   SELECT * FROM (
     -- A wallet at or below zero is refused even for a hold of 0.
     SELECT c.*, bool_and(spendable - held_before > 0 AND spendable - held_before >= amount) OVER (PARTITION BY user_id ORDER BY ord) AS fits FROM c
   ) x WHERE fits
 ), keyed AS (
   -- Of those, a capped key's starts in arrival order while its cap has room: spent this period + its
   -- live holds + the new holds ≤ cap, against the row as locked (so N racing starts with room for K
   -- place exactly K). An uncapped key (or none) is never refused here.
   SELECT fit.*, k.cap, k.spent + k.held + sum(fit.amount) OVER (PARTITION BY fit.key_id ORDER BY fit.ord) AS key_after
   FROM fit LEFT JOIN keys k USING (key_id)
 ), ok AS (
   SELECT * FROM (
     SELECT keyed.*, bool_and(cap IS NULL OR key_after <= cap) OVER (PARTITION BY key_id ORDER BY ord) AS key_fits FROM keyed
   ) y WHERE key_fits
 ), w AS (
   UPDATE wallets SET held = wallets.held + t.amount, version = wallets.version + t.n, updated_at = now()
   FROM (SELECT user_id, sum(amount) AS amount, count(*)::int AS n FROM ok GROUP BY user_id) t
   WHERE wallets.user_id = t.user_id
 ), kh AS (
   UPDATE api_keys a SET held = k.held + t.amount, period_spent = k.spent, period_starts_at = k.starts
   FROM (SELECT key_id, sum(amount) AS amount FROM ok WHERE key_id IS NOT NULL GROUP BY key_id) t JOIN keys k USING (key_id)
   WHERE a.key_id = t.key_id
 ), h AS (
   INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at, key_id, price_snapshot)
   SELECT usage_key, user_id, feature_endpoint_id, amount, '${LIVE_HOLD_STATUS}', now() + make_interval(secs => ttl), key_id,
          NULLIF(price_snapshot, 'null'::jsonb)
   FROM ok
   RETURNING usage_key, expires_at
 )
 -- held as of each placed start (a start refused for its key's cap took nothing of the wallet).
 SELECT ok.ord, ok.balance, l.held + sum(ok.amount) OVER (PARTITION BY ok.user_id ORDER BY ok.ord) AS held, ok.amount AS hold_amount, h.expires_at
 FROM ok JOIN h USING (usage_key) JOIN locked l USING (user_id)`;

/** `settle`: the statement of every settlement, by hold or direct (see there). */
const SETTLE_CHARGES = `WITH r AS (
   SELECT u.*, m.metadata
   FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::numeric[], $6::bool[], $7::varchar[], $8::varchar[], $9::uuid[])
     WITH ORDINALITY AS u(usage_key, user_id, feature_endpoint_id, amount, direct, idempotency_key, request_hash, key_id, ord)
   JOIN jsonb_array_elements($5::jsonb) WITH ORDINALITY AS m(metadata, ord) USING (ord)
 ), old AS (
   SELECT usage_key, status, expires_at FROM holds
   WHERE usage_key IN (SELECT usage_key FROM r WHERE NOT direct)
   ORDER BY usage_key FOR UPDATE
 ), claimed AS (
   -- late: the hold was swept, or is past its expiry and not swept yet.
   UPDATE holds h SET status = '${SETTLE.to}', closed_at = now(), late = (old.status <> '${LIVE_HOLD_STATUS}' OR old.expires_at < now())
   FROM old JOIN r USING (usage_key)
   WHERE h.usage_key = old.usage_key AND NOT r.direct AND old.status IN ${sqlStatuses(SETTLE.from)}
     AND h.user_id = r.user_id AND h.feature_endpoint_id = r.feature_endpoint_id
   -- Only a live hold still counts in held: a swept one was released when it expired.
   RETURNING r.ord, CASE WHEN old.status = '${LIVE_HOLD_STATUS}' THEN -h.amount ELSE 0 END AS held_delta, h.late, h.key_id
 ), direct_wallets AS (
   -- A direct charge's hold row takes a KEY SHARE lock on its wallet (the foreign key): were that
   -- taken before the wallet's FOR UPDATE, two such statements (or one and a top-up) could each hold
   -- one and wait for the other. So the wallets are locked first — after the holds above, keeping
   -- the one lock order (holds, then wallets): the count makes \`old\` run before this.
   SELECT user_id FROM wallets
   WHERE user_id IN (SELECT user_id FROM r WHERE direct) AND (SELECT count(*) FROM old) >= 0
   ORDER BY user_id FOR UPDATE
 ), inserted AS (
   INSERT INTO holds (usage_key, user_id, feature_endpoint_id, amount, status, expires_at, idempotency_key, request_hash, direct, closed_at, key_id)
   SELECT usage_key, user_id, feature_endpoint_id, 0, '${DIRECT_CHARGE_STATUS}', now(), idempotency_key, request_hash, true, now(), key_id
   FROM r WHERE direct AND EXISTS (SELECT 1 FROM direct_wallets w WHERE w.user_id = r.user_id)
   ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
   RETURNING usage_key, 0::numeric AS held_delta, false AS late, key_id
 ), postings AS (
   -- A hold's charge is its hold's key's spend; a direct charge, its settling key's.
   SELECT r.ord, r.user_id, 'charge'::varchar AS kind, r.amount, x.held_delta, r.usage_key, NULL::varchar AS idempotency_key,
          'usage of ' || r.feature_endpoint_id AS description, r.metadata || jsonb_build_object('late', x.late) AS metadata,
          x.key_id, NULL::jsonb AS spec
   FROM (SELECT ord, held_delta, late, key_id FROM claimed
         UNION ALL SELECT r.ord, i.held_delta, i.late, i.key_id FROM inserted i JOIN r USING (usage_key)) x
   JOIN r USING (ord)
 ), ${moveMoney('postings')}, keys AS (${capturedKeys('SELECT key_id FROM chain WHERE key_id IS NOT NULL', 'moved')}
 ), kc AS (
   -- What the capped keys' charges spent this period, and what their settled live holds no longer hold.
   UPDATE api_keys a SET held = k.held + t.held_delta, period_spent = k.spent - t.amount, period_starts_at = k.starts
   FROM (SELECT key_id, sum(amount) AS amount, sum(held_delta) AS held_delta FROM chain WHERE key_id IS NOT NULL GROUP BY key_id) t
   JOIN keys k USING (key_id)
   WHERE a.key_id = t.key_id
 )
 SELECT id, usage_key, amount, balance_after, held_after, (metadata->>'late')::bool AS late FROM entries`;

interface WalletRow {
  user_id: string;
  plan: string;
  status: WalletStatus;
  balance: string;
  held: string;
  version: number;
  created_at: Date;
  updated_at: Date;
}

interface LedgerEntryRow {
  id: string;
  kind: LedgerEntryKind;
  amount: string;
  balance_after: string;
  held_after: string;
  usage_key: string | null;
  idempotency_key: string | null;
  description: string | null;
  metadata: LedgerEntry['metadata'];
  key_id: string | null;
  entry_created_at: Date;
}

function walletFromRow(row: WalletRow): Wallet {
  return Object.assign(new Wallet(), {
    userId: row.user_id,
    plan: row.plan,
    status: row.status,
    balance: Money.fromDb(row.balance),
    held: Money.fromDb(row.held),
    version: row.version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  });
}

function ledgerEntryFromRow(row: WalletRow & LedgerEntryRow): LedgerEntry {
  return Object.assign(new LedgerEntry(), {
    id: row.id,
    userId: row.user_id,
    kind: row.kind,
    amount: Money.fromDb(row.amount),
    balanceAfter: Money.fromDb(row.balance_after),
    heldAfter: Money.fromDb(row.held_after),
    usageKey: row.usage_key,
    idempotencyKey: row.idempotency_key,
    description: row.description,
    metadata: row.metadata,
    keyId: row.key_id,
    createdAt: row.entry_created_at,
  });
}
