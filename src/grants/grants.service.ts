import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { createHash } from 'node:crypto';
import { DataSource, EntityManager } from 'typeorm';
import type { Actor } from '../audit/actor';
import { AuditService } from '../audit/audit.service';
import { isUniqueViolation } from '../common/database-errors';
import { DomainError, validationError } from '../common/domain-error';
import { Money } from '../common/money';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { GrantRequest, LedgerService, Posted } from '../ledger/ledger.service';
import { idempotencyKeyReused, walletNotFound } from '../wallets/wallets.errors';
import { isUuid, WalletsService } from '../wallets/wallets.service';
import { LedgerEntry } from '../wallets/ledger-entry.entity';
import { Wallet } from '../wallets/wallet.entity';
import { ledgerEntryView } from '../wallets/wallets.views';
import type { CreateGrantDto, GrantsQueryDto } from './dto/grant.dto';
import type { GrantChangeResponseDoc, GrantResponseDoc } from './dto/grant-responses.dto';
import { Grant } from './grant.entity';
import { grantExpired, grantNotFound } from './grants.errors';
import { grantView } from './grants.views';

/** A grant created, or found under its idempotency key (`created` false: answer 200, not 201). */
export interface GrantCreation {
  created: boolean;
  answer: GrantChangeResponseDoc;
}

/**
 * Grants (API.md §8): the operator's side. It decides and answers; the ledger moves the credits
 * (LedgerService.createGrant / voidGrant) and is the only writer of `grants`.
 */
@Injectable()
export class GrantsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly ledger: LedgerService,
    private readonly wallets: WalletsService,
    private readonly audit: AuditService,
  ) {}

  async create(userId: string, dto: CreateGrantDto, actor: Actor): Promise<GrantCreation> {
    const request: GrantRequest = {
      userId,
      amount: Money.parse(dto.amount),
      kind: dto.kind ?? 'paid',
      priority: dto.priority ?? 50,
      expiresAt: dto.expires_at == null ? null : new Date(dto.expires_at),
      idempotencyKey: dto.idempotency_key ?? null,
      requestHash: '',
      description: dto.description ?? null,
    };
    request.requestHash = grantRequestHash(request);
    // A repeat is answered before the expiry is checked: a retry of yesterday's grant is not "in the past".
    const previous = await this.replay(request);
    if (previous) return previous;
    if (request.expiresAt !== null && request.expiresAt.getTime() <= Date.now()) {
      throw validationError([{ field: 'expires_at', message: 'must be in the future' }]);
    }
    try {
      return await this.dataSource.transaction(async (manager) => {
        const posted = await this.ledger.createGrant(manager, request);
        if (!posted) throw walletNotFound(userId);
        const grant = await this.grantIn(manager, posted.entry.metadata.grant_id as string);
        await this.audit.append(manager, actor, 'grant.create', userId, {
          grant_id: grant.grantId,
          kind: grant.kind,
          amount: grant.amount.toString(),
          priority: grant.priority,
          expires_at: grant.expiresAt?.toISOString() ?? null,
          debt_paid: grant.debtPaid.toString(),
          idempotency_key: grant.idempotencyKey,
          description: grant.description,
          transaction_id: posted.entry.id,
        });
        return { created: true, answer: await this.answer(manager, 'applied', grant, posted) };
      });
    } catch (error) {
      if (request.idempotencyKey !== null && isUniqueViolation(error, 'grants_idempotency')) {
        const raced = await this.replay(request);
        if (raced) return raced;
      }
      throw error;
    }
  }

  /** The grant first made under this idempotency key, or 409 when it was made for another body. */
  private async replay(request: GrantRequest): Promise<GrantCreation | undefined> {
    if (request.idempotencyKey === null) return undefined;
    const grant = await this.dataSource.getRepository(Grant).findOneBy({ userId: request.userId, idempotencyKey: request.idempotencyKey });
    if (!grant) return undefined;
    if (grant.requestHash !== request.requestHash) throw idempotencyKeyReused(request.idempotencyKey);
    return { created: false, answer: await this.answer(this.dataSource.manager, 'already_applied', grant, undefined) };
  }

  /** The wallet's grants in drawing order: active ones as they would be drawn, then the rest, newest first. */
  async list(userId: string, query: GrantsQueryDto): Promise<Page<GrantResponseDoc>> {
    await this.wallets.find(userId);
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    // The cursor is the position in that order (a wallet has few grants; the order moves as they are drawn).
    if (query.cursor !== undefined && !/^\d{1,9}$/.test(query.cursor)) {
      throw new DomainError('validation_error', 'cursor is not one this service issued', {
        errors: [{ field: 'cursor', message: 'is not a valid cursor' }],
      });
    }
    const offset = query.cursor === undefined ? 0 : Number(query.cursor);
    const rows = await this.dataSource
      .getRepository(Grant)
      .createQueryBuilder('g')
      .where('g.user_id = :userId', { userId })
      .andWhere(query.status === undefined ? 'true' : 'g.status = :status', { status: query.status })
      .orderBy(`g.status <> 'active'`)
      .addOrderBy(`CASE WHEN g.status = 'active' THEN g.priority END`)
      .addOrderBy(`CASE WHEN g.status = 'active' THEN g.expires_at END`, 'ASC', 'NULLS LAST')
      .addOrderBy(`CASE WHEN g.status = 'active' THEN g.created_at END`)
      .addOrderBy('g.created_at', 'DESC')
      .addOrderBy('g.grant_id')
      .offset(offset)
      .limit(limit + 1)
      .getMany();
    let position = offset;
    return toPage(
      rows.map((g) => ({ g, at: ++position })),
      limit,
      (r) => String(r.at),
      (r) => grantView(r.g),
    );
  }

  /**
   * Removes what remains of a grant (ledger kind grant_voided). Voiding a voided grant is harmless
   * (`already_voided`); an expired grant has nothing left to void (409).
   */
  async void(userId: string, grantId: string, reason: string, actor: Actor): Promise<GrantChangeResponseDoc> {
    const before = await this.find(userId, grantId);
    if (before.status === 'voided') return this.answer(this.dataSource.manager, 'already_voided', before, undefined);
    if (before.status === 'expired') throw grantExpired(grantId);
    return this.dataSource.transaction(async (manager) => {
      const posted = await this.ledger.voidGrant(manager, userId, before.grantId, reason);
      const grant = await this.grantIn(manager, before.grantId);
      // Expired by the sweeper in between: nothing was voided.
      if (grant.status === 'expired') throw grantExpired(grantId);
      await this.audit.append(manager, actor, 'grant.void', userId, {
        grant_id: grant.grantId,
        reason,
        amount: grant.voided.toString(),
        transaction_id: posted?.entry.id ?? null,
      });
      return this.answer(manager, 'voided', grant, posted);
    });
  }

  private async find(userId: string, grantId: string): Promise<Grant> {
    await this.wallets.find(userId);
    const grant = isUuid(grantId) ? await this.dataSource.getRepository(Grant).findOneBy({ grantId: grantId.toLowerCase(), userId }) : null;
    if (!grant) throw grantNotFound(userId, grantId);
    return grant;
  }

  private async grantIn(manager: EntityManager, grantId: string): Promise<Grant> {
    return manager.getRepository(Grant).findOneByOrFail({ grantId });
  }

  private async answer(
    manager: EntityManager,
    status: GrantChangeResponseDoc['status'],
    grant: Grant,
    posted: Posted | undefined,
  ): Promise<GrantChangeResponseDoc> {
    const wallet = posted?.wallet ?? (await manager.getRepository(Wallet).findOneByOrFail({ userId: grant.userId }));
    // A repeat answers with the entry the grant was written with.
    const entry =
      posted?.entry ??
      (status === 'already_applied'
        ? await manager
            .getRepository(LedgerEntry)
            .createQueryBuilder('e')
            .where(`e.user_id = :userId AND e.kind = 'grant' AND e.metadata @> :m`, {
              userId: grant.userId,
              m: { grant_id: grant.grantId },
            })
            .getOne()
        : null);
    return {
      status,
      grant: grantView(grant),
      debt_paid: status === 'applied' || status === 'already_applied' ? grant.debtPaid.toString() : Money.ZERO.toString(),
      transaction: entry ? ledgerEntryView(entry) : null,
      wallet: await this.wallets.view(manager, wallet),
    };
  }
}

/** Fingerprint of a grant request, to refuse an idempotency key reused for another body. */
function grantRequestHash(r: GrantRequest): string {
  return createHash('sha256')
    .update(JSON.stringify([r.amount.toString(), r.kind, r.priority, r.expiresAt?.toISOString() ?? null, r.description]))
    .digest('hex');
}
