import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { And, DataSource, EntityManager, FindOptionsWhere, LessThan, Like, MoreThan } from 'typeorm';
import { isUniqueViolation } from '../common/database-errors';
import { DomainError } from '../common/domain-error';
import { Money } from '../common/money';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { queryRows } from '../database/sql';
import { AdjustDto, CreateWalletDto, TopUpDto, TransactionsQueryDto, UpdateWalletDto } from './dto/wallet.dto';
import { LedgerEntry, LedgerEntryKind } from './ledger-entry.entity';
import { Wallet } from './wallet.entity';
import { idempotencyKeyReused, walletExists, walletNotFound } from './wallets.errors';
import { LedgerEntryView, ledgerEntryView, WalletView, walletView } from './wallets.views';

export const DEFAULT_PLAN = 'free';

export interface Posting {
  userId: string;
  kind: LedgerEntryKind;
  /** Signed change of the balance. */
  amount: Money;
  /** Signed change of `held` made in the same statement (ignored with a guard: the guard says it). */
  heldDelta?: Money;
  usageKey?: string | null;
  idempotencyKey?: string | null;
  description?: string | null;
  metadata?: Record<string, unknown>;
  /**
   * A condition that must hold for the posting to happen, checked in the same statement: SQL for a
   * CTE (placeholders $1…$n bound to `params`) yielding one row with `held_delta numeric` (added
   * to held) and `meta jsonb` (merged into the entry's metadata), or no row — then nothing is
   * written and post() returns undefined. Settlement uses it to claim its hold.
   */
  guard?: { sql: string; params: unknown[] };
}

interface WalletRow {
  user_id: string;
  plan: string;
  status: Wallet['status'];
  balance: string;
  held: string;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export const WALLET_COLUMNS = 'user_id, plan, status, balance, held, version, created_at, updated_at';

interface LedgerEntryRow {
  id: string;
  user_id: string;
  kind: LedgerEntry['kind'];
  amount: string;
  balance_after: string;
  held_after: string;
  usage_key: string | null;
  idempotency_key: string | null;
  description: string | null;
  metadata: LedgerEntry['metadata'];
  entry_created_at: Date;
}

function ledgerEntryFromRow(row: LedgerEntryRow): LedgerEntry {
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
    createdAt: row.entry_created_at,
  });
}

export function walletFromRow(row: WalletRow): Wallet {
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

export interface TopUpResult {
  status: 'applied' | 'already_applied';
  transaction: LedgerEntryView;
  wallet: WalletView;
}

@Injectable()
export class WalletsService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /**
   * The one place a balance changes: ONE statement that updates the wallet row (taking its row
   * lock until commit, which serializes concurrent postings) and appends the ledger entry carrying
   * the resulting balance and held — optionally only if `guard` yields a row. One statement is one
   * round trip and atomic on its own; callers pass their transaction's manager when it must commit
   * with other writes. (Plain SQL rather than repository.insert(): the wallet update and the entry
   * must be one statement for the settlement hot path — see bench/README.md.) Returns undefined
   * when the guard yielded nothing or the wallet does not exist.
   */
  async post(manager: EntityManager, p: Posting): Promise<{ wallet: Wallet; entry: LedgerEntry } | undefined> {
    const guard = p.guard;
    const params: unknown[] = [...(guard?.params ?? [])];
    const bind = (value: unknown) => `$${params.push(value)}`;
    const userId = bind(p.userId);
    const amount = `${bind(p.amount.toString())}::numeric`;
    const heldDelta = guard ? 'guard.held_delta' : `${bind((p.heldDelta ?? Money.ZERO).toString())}::numeric`;
    const [row] = await queryRows<WalletRow & LedgerEntryRow>(
      manager,
      `WITH ${guard ? `guard AS (${guard.sql}),` : ''}
       w AS (
         UPDATE wallets SET balance = balance + ${amount}, held = held + ${heldDelta}, version = version + 1, updated_at = now()
         ${guard ? 'FROM guard' : ''}
         WHERE wallets.user_id = ${userId}
         RETURNING ${WALLET_COLUMNS.split(', ')
           .map((c) => `wallets.${c}`)
           .join(', ')}, ${guard ? 'guard.meta' : `'{}'::jsonb AS meta`}
       ), e AS (
         INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key, idempotency_key, description, metadata)
         SELECT w.user_id, ${bind(p.kind)}, ${amount}, w.balance, w.held, ${bind(p.usageKey ?? null)}::uuid, ${bind(p.idempotencyKey ?? null)}::varchar,
                ${bind(p.description ?? null)}::varchar, ${bind(JSON.stringify(p.metadata ?? {}))}::jsonb || w.meta
         FROM w
         RETURNING id, kind, amount, balance_after, held_after, usage_key, idempotency_key, description, metadata, created_at AS entry_created_at
       )
       SELECT w.user_id, w.plan, w.status, w.balance, w.held, w.version, w.created_at, w.updated_at, e.* FROM w, e`,
      params,
      { prepared: true },
    );
    return row && { wallet: walletFromRow(row), entry: ledgerEntryFromRow(row) };
  }

  /** post() for callers with no guard: a missing wallet is the only way nothing is written. */
  async postOrThrow(manager: EntityManager, p: Omit<Posting, 'guard'>): Promise<{ wallet: Wallet; entry: LedgerEntry }> {
    const posted = await this.post(manager, p);
    if (!posted) throw walletNotFound(p.userId);
    return posted;
  }

  async create(dto: CreateWalletDto): Promise<WalletView> {
    const initial = dto.initial_credits === undefined ? Money.ZERO : Money.parse(dto.initial_credits);
    try {
      return await this.dataSource.transaction(async (manager) => {
        await manager.getRepository(Wallet).insert({
          userId: dto.user_id,
          plan: dto.plan ?? DEFAULT_PLAN,
          status: 'active',
          balance: Money.ZERO,
          held: Money.ZERO,
        });
        if (initial.isZero()) return walletView(await manager.getRepository(Wallet).findOneByOrFail({ userId: dto.user_id }));
        const { wallet } = await this.postOrThrow(manager, {
          userId: dto.user_id,
          kind: 'initial',
          amount: initial,
          description: 'initial credits',
        });
        return walletView(wallet);
      });
    } catch (error) {
      if (isUniqueViolation(error, 'wallets_pkey')) throw walletExists(dto.user_id);
      throw error;
    }
  }

  async list(cursor: string | undefined, limit = DEFAULT_PAGE_SIZE, prefix?: string): Promise<Page<WalletView>> {
    // LIKE's wildcards in the prefix are matched literally (backslash is PostgreSQL's LIKE escape).
    const startsWith = prefix === undefined ? undefined : Like(`${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    const rows = await this.dataSource.getRepository(Wallet).find({
      where:
        cursor && startsWith
          ? { userId: And(MoreThan(cursor), startsWith) }
          : cursor
            ? { userId: MoreThan(cursor) }
            : startsWith
              ? { userId: startsWith }
              : {},
      order: { userId: 'ASC' },
      take: limit + 1,
    });
    return toPage(rows, limit, (w) => w.userId, walletView);
  }

  async get(userId: string): Promise<WalletView> {
    return walletView(await this.find(userId));
  }

  async find(userId: string): Promise<Wallet> {
    const wallet = await this.dataSource.getRepository(Wallet).findOneBy({ userId });
    if (!wallet) throw walletNotFound(userId);
    return wallet;
  }

  async update(userId: string, dto: UpdateWalletDto): Promise<WalletView> {
    return this.dataSource.transaction(async (manager) => {
      const [row] = await queryRows<WalletRow>(
        manager,
        `UPDATE wallets SET plan = COALESCE($2, plan), status = COALESCE($3, status), version = version + 1, updated_at = now()
         WHERE user_id = $1 RETURNING ${WALLET_COLUMNS}`,
        [userId, dto.plan ?? null, dto.status ?? null],
      );
      if (!row) throw walletNotFound(userId);
      return walletView(walletFromRow(row));
    });
  }

  /**
   * Adds credits. With an idempotency key, a repeat (even a concurrent one) adds nothing and
   * answers with the first entry: the unique index decides, and a violation means "already done".
   */
  async topUp(userId: string, dto: TopUpDto): Promise<TopUpResult> {
    const amount = Money.parse(dto.amount);
    const key = dto.idempotency_key ?? null;
    if (key) {
      const previous = await this.replayTopUp(userId, key, amount);
      if (previous) return previous;
    }
    try {
      return await this.dataSource.transaction(async (manager) => {
        const { wallet, entry } = await this.postOrThrow(manager, {
          userId,
          kind: 'top_up',
          amount,
          idempotencyKey: key,
          description: dto.description ?? null,
        });
        return { status: 'applied' as const, transaction: ledgerEntryView(entry), wallet: walletView(wallet) };
      });
    } catch (error) {
      if (key && isUniqueViolation(error, 'ledger_entries_idempotency')) {
        const previous = await this.replayTopUp(userId, key, amount);
        if (previous) return previous;
      }
      throw error;
    }
  }

  private async replayTopUp(userId: string, key: string, amount: Money): Promise<TopUpResult | undefined> {
    const entry = await this.dataSource.getRepository(LedgerEntry).findOneBy({ userId, idempotencyKey: key });
    if (!entry) return undefined;
    if (entry.kind !== 'top_up' || !entry.amount.equals(amount)) throw idempotencyKeyReused(key);
    return { status: 'already_applied', transaction: ledgerEntryView(entry), wallet: await this.get(userId) };
  }

  /** An operator's signed correction; it may take the balance below zero. */
  async adjust(userId: string, dto: AdjustDto) {
    const amount = Money.parse(dto.amount, true);
    return this.dataSource.transaction(async (manager) => {
      const { wallet, entry } = await this.postOrThrow(manager, {
        userId,
        kind: 'adjustment',
        amount,
        description: dto.reason,
        metadata: { reason: dto.reason },
      });
      return { status: 'applied' as const, transaction: ledgerEntryView(entry), wallet: walletView(wallet) };
    });
  }

  /** The wallet's ledger, newest first. The cursor is the last seen entry id. */
  async transactions(userId: string, query: TransactionsQueryDto): Promise<Page<LedgerEntryView>> {
    await this.find(userId);
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const where: FindOptionsWhere<LedgerEntry> = { userId };
    if (query.cursor !== undefined) {
      if (!/^\d{1,19}$/.test(query.cursor)) {
        throw new DomainError('validation_error', 'cursor is not one this service issued', {
          errors: [{ field: 'cursor', message: 'is not a valid cursor' }],
        });
      }
      where.id = LessThan(query.cursor);
    }
    if (query.usage_key !== undefined) where.usageKey = query.usage_key;
    const rows =
      query.usage_key !== undefined && !isUuid(query.usage_key)
        ? []
        : await this.dataSource.getRepository(LedgerEntry).find({ where, order: { id: 'DESC' }, take: limit + 1 });
    return toPage(rows, limit, (e) => e.id, ledgerEntryView);
  }
}

export function isUuid(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
