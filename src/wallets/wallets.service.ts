import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { And, DataSource, EntityManager, FindOptionsWhere, LessThan, Like, MoreThan } from 'typeorm';
import type { Actor } from '../audit/actor';
import { AuditService } from '../audit/audit.service';
import { isUniqueViolation } from '../common/database-errors';
import { queryRows } from '../database/sql';
import { DomainError } from '../common/domain-error';
import { Money } from '../common/money';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { LedgerService, Posting } from '../ledger/ledger.service';
import { AdjustDto, CreateWalletDto, TopUpDto, TransactionsQueryDto, UpdateWalletDto } from './dto/wallet.dto';
import type { WalletChangeResponseDoc, WalletCreatedResponseDoc } from './dto/wallet-responses.dto';
import { LedgerEntry } from './ledger-entry.entity';
import { Wallet } from './wallet.entity';
import { idempotencyKeyReused, walletExists, walletNotFound } from './wallets.errors';
import { LedgerEntryView, ledgerEntryView, NO_FIGURES, WalletFigures, WalletView, walletView } from './wallets.views';

export const DEFAULT_PLAN = 'free';

/** A top-up or an adjustment: the change, and the wallet after it. */
export type TopUpResult = WalletChangeResponseDoc;

@Injectable()
export class WalletsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly ledger: LedgerService,
    private readonly audit: AuditService,
  ) {}

  /** Credits or debits the wallet with its ledger entry (the ledger's `post`); a missing wallet is 404. */
  private async post(manager: EntityManager, p: Posting): Promise<{ wallet: Wallet; entry: LedgerEntry }> {
    const posted = await this.ledger.post(manager, p);
    if (!posted) throw walletNotFound(p.userId);
    return posted;
  }

  /**
   * Every admin write below appends its audit row (API.md §12) with the same EntityManager as the
   * ledger's statements: the row commits with the change, or neither does (a 404/409 writes none).
   */
  async create(dto: CreateWalletDto, actor: Actor): Promise<WalletCreatedResponseDoc> {
    const initial = dto.initial_credits === undefined ? Money.ZERO : Money.parse(dto.initial_credits);
    try {
      return await this.dataSource.transaction(async (manager) => {
        const created = (await this.ledger.createWallet(manager, { userId: dto.user_id, plan: dto.plan ?? DEFAULT_PLAN }))!;
        let wallet = created;
        let transactionId: string | null = null;
        let grantId: string | null = null;
        if (!initial.isZero()) {
          const posted = await this.post(manager, {
            userId: dto.user_id,
            kind: 'initial',
            amount: initial,
            description: 'initial credits',
          });
          wallet = posted.wallet;
          transactionId = posted.entry.id;
          grantId = grantOf(posted.entry).grant_id;
        }
        await this.audit.append(manager, actor, 'wallet.create', dto.user_id, {
          plan: wallet.plan,
          status: wallet.status,
          initial_credits: initial.toString(),
          transaction_id: transactionId,
          grant_id: grantId,
        });
        return { ...(await this.view(manager, wallet)), grant_id: grantId };
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
    const figures = await this.figures(
      this.dataSource.manager,
      rows.map((w) => w.userId),
    );
    return toPage(
      rows,
      limit,
      (w) => w.userId,
      (w) => walletView(w, figures.get(w.userId) ?? NO_FIGURES),
    );
  }

  async get(userId: string): Promise<WalletView> {
    return this.view(this.dataSource.manager, await this.find(userId));
  }

  /** The wallet as the API shows it, with its thresholds and grant figures read in `manager`. */
  async view(manager: EntityManager, wallet: Wallet): Promise<WalletView> {
    const figures = await this.figures(manager, [wallet.userId]);
    return walletView(wallet, figures.get(wallet.userId) ?? NO_FIGURES);
  }

  /**
   * Per wallet, in one query: the low-balance thresholds in force, highest first — its own
   * (wallet_alerts) or the settings' default, as the events trigger reads them — and what its
   * active grants hold by kind, with the soonest expiry (API.md §8).
   */
  private async figures(manager: EntityManager, userIds: string[]): Promise<Map<string, WalletFigures>> {
    if (userIds.length === 0) return new Map();
    const rows = await queryRows<{
      user_id: string;
      thresholds: string[];
      paid: string;
      promotional: string;
      next_at: Date | null;
      next_amount: string | null;
    }>(
      manager,
      `SELECT u.user_id, ARRAY(SELECT v.x::text FROM unnest(COALESCE(a.thresholds, s.default_low_balance_thresholds)) AS v(x) ORDER BY v.x DESC) AS thresholds,
              g.paid, g.promotional, nx.at AS next_at, nx.amount AS next_amount
       FROM unnest($1::varchar[]) AS u(user_id)
       LEFT JOIN wallet_alerts a ON a.user_id = u.user_id
       CROSS JOIN pricing_settings s
       CROSS JOIN LATERAL (
         SELECT COALESCE(sum(t.remaining) FILTER (WHERE t.kind = 'paid'), 0)::numeric(38,6)::text AS paid,
                COALESCE(sum(t.remaining) FILTER (WHERE t.kind = 'promotional'), 0)::numeric(38,6)::text AS promotional
         FROM grants t WHERE t.user_id = u.user_id AND t.status = 'active') g
       LEFT JOIN LATERAL (
         SELECT t.expires_at AS at, sum(t.remaining)::text AS amount FROM grants t
         WHERE t.user_id = u.user_id AND t.status = 'active' AND t.remaining > 0 AND t.expires_at IS NOT NULL
         GROUP BY t.expires_at ORDER BY t.expires_at LIMIT 1) nx ON true
       WHERE s.id = 1`,
      [userIds],
    );
    return new Map(
      rows.map((r) => [
        r.user_id,
        {
          thresholds: r.thresholds,
          grants: { paid: r.paid, promotional: r.promotional },
          nextExpiry: r.next_at === null ? null : { at: r.next_at.toISOString(), amount: r.next_amount! },
        },
      ]),
    );
  }

  /** The low-balance thresholds in force of one wallet (see `figures`). */
  private async thresholds(manager: EntityManager, userId: string): Promise<string[]> {
    return (await this.figures(manager, [userId])).get(userId)?.thresholds ?? [];
  }

  async find(userId: string): Promise<Wallet> {
    const wallet = await this.dataSource.getRepository(Wallet).findOneBy({ userId });
    if (!wallet) throw walletNotFound(userId);
    return wallet;
  }

  async update(userId: string, dto: UpdateWalletDto, actor: Actor): Promise<WalletView> {
    return this.dataSource.transaction(async (manager) => {
      // Read (and locked: the ledger's update takes the same row lock next) for the audit row's `before`;
      // the thresholds change under that lock, the one the events trigger runs under.
      const before = await manager.getRepository(Wallet).findOne({ where: { userId }, lock: { mode: 'pessimistic_write' } });
      if (!before) throw walletNotFound(userId);
      const thresholdsBefore = dto.low_balance_thresholds !== undefined ? await this.thresholds(manager, userId) : undefined;
      const wallet = await this.ledger.updateWalletPlanStatus(manager, userId, { plan: dto.plan ?? null, status: dto.status ?? null });
      if (!wallet) throw walletNotFound(userId);
      if (dto.low_balance_thresholds !== undefined) await this.setThresholds(manager, userId, dto.low_balance_thresholds);
      const view = await this.view(manager, wallet);
      const thresholdsChanged =
        thresholdsBefore !== undefined && JSON.stringify(thresholdsBefore) !== JSON.stringify(view.low_balance_thresholds);
      if (wallet.plan !== before.plan || wallet.status !== before.status || thresholdsChanged) {
        await this.audit.append(manager, actor, 'wallet.update', userId, {
          before: { plan: before.plan, status: before.status, ...(thresholdsChanged && { low_balance_thresholds: thresholdsBefore }) },
          after: {
            plan: wallet.plan,
            status: wallet.status,
            ...(thresholdsChanged && { low_balance_thresholds: view.low_balance_thresholds }),
          },
        });
      }
      return view;
    });
  }

  /**
   * A wallet's own thresholds (null = the default again). The thresholds it had fallen below and
   * that are still in force stay fallen (no second low_balance before a recovery); a new threshold
   * already above the wallet's credits is armed for the next crossing.
   */
  private async setThresholds(manager: EntityManager, userId: string, thresholds: (string | number)[] | null): Promise<void> {
    const values = thresholds === null ? null : thresholds.map((t) => Money.parse(t).toString());
    await manager.query(
      `INSERT INTO wallet_alerts (user_id, thresholds) VALUES ($1, $2::numeric(38,6)[])
       ON CONFLICT (user_id) DO UPDATE SET thresholds = EXCLUDED.thresholds,
         fallen = ARRAY(SELECT x FROM unnest(wallet_alerts.fallen) AS x
                        WHERE x = ANY (COALESCE(EXCLUDED.thresholds, (SELECT default_low_balance_thresholds FROM pricing_settings WHERE id = 1))))`,
      [userId, values],
    );
  }

  /**
   * Adds credits. With an idempotency key, a repeat (even a concurrent one) adds nothing and
   * answers with the first entry: the unique index decides, and a violation means "already done".
   */
  async topUp(userId: string, dto: TopUpDto, actor: Actor): Promise<TopUpResult> {
    const amount = Money.parse(dto.amount);
    const key = dto.idempotency_key ?? null;
    if (key) {
      const previous = await this.replayTopUp(userId, key, amount);
      if (previous) return previous;
    }
    try {
      return await this.dataSource.transaction(async (manager) => {
        const { wallet, entry } = await this.post(manager, {
          userId,
          kind: 'top_up',
          amount,
          idempotencyKey: key,
          description: dto.description ?? null,
        });
        await this.audit.append(manager, actor, 'wallet.top_up', userId, {
          amount: entry.amount.toString(),
          transaction_id: entry.id,
          idempotency_key: key,
          description: entry.description,
          balance_before: wallet.balance.minus(entry.amount).toString(),
          balance_after: wallet.balance.toString(),
        });
        return { status: 'applied' as const, ...changeView(entry), wallet: await this.view(manager, wallet) };
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
    return { status: 'already_applied', ...changeView(entry), wallet: await this.get(userId) };
  }

  /** An operator's signed correction; it may take the balance below zero. */
  async adjust(userId: string, dto: AdjustDto, actor: Actor): Promise<WalletChangeResponseDoc> {
    const amount = Money.parse(dto.amount, true);
    return this.dataSource.transaction(async (manager) => {
      const { wallet, entry } = await this.post(manager, {
        userId,
        kind: 'adjustment',
        amount,
        description: dto.reason,
        metadata: { reason: dto.reason },
      });
      await this.audit.append(manager, actor, 'wallet.adjust', userId, {
        amount: entry.amount.toString(),
        reason: dto.reason,
        transaction_id: entry.id,
        balance_before: wallet.balance.minus(entry.amount).toString(),
        balance_after: wallet.balance.toString(),
      });
      return { status: 'applied' as const, ...changeView(entry), wallet: await this.view(manager, wallet) };
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

/** The grant a crediting entry created and the debt it paid (ledger_apply's metadata), if any. */
export function grantOf(entry: LedgerEntry): { grant_id: string | null; debt_paid: string } {
  const m = entry.metadata as { grant_id?: string; debt_paid?: string };
  return { grant_id: m.grant_id ?? null, debt_paid: m.debt_paid ?? Money.ZERO.toString() };
}

/** A top-up's or adjustment's answer, less its status and wallet. */
function changeView(entry: LedgerEntry): Pick<WalletChangeResponseDoc, 'transaction' | 'grant_id' | 'debt_paid'> {
  return { transaction: ledgerEntryView(entry), ...grantOf(entry) };
}

export function isUuid(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
