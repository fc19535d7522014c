import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, FindOptionsWhere, MoreThan } from 'typeorm';
import type { Actor } from '../audit/actor';
import { AuditService } from '../audit/audit.service';
import { DomainError } from '../common/domain-error';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { queryRows } from '../database/sql';
import { MetricsService } from '../metrics/metrics.service';
import type { SettlementFailureResponseDoc } from './dto/credits-process-responses.dto';
import { SettlementFailure, SettlementFailureStatus } from './settlement-failure.entity';

const notFound = (id: string) => new DomainError('settlement_failure_not_found', `No settlement failure ${id} exists.`);
const alreadyResolved = (f: Pick<SettlementFailure, 'id' | 'status'>) =>
  new DomainError('conflict', `Settlement failure ${f.id} is already ${f.status}.`);
const beingReplayed = (id: string) => new DomainError('conflict', `Settlement failure ${id} is being replayed.`);
const replayUnfinished = (id: string) =>
  new DomainError(
    'conflict',
    `A replay of settlement failure ${id} did not finish and may have charged; replay it again (it charges at most once), then discard it if it still fails.`,
  );

/**
 * How long a replay's claim keeps every other replay away. A replay takes well under a second
 * (the statement timeout is 15 s), so a claim this old belongs to a replay that crashed or lost
 * its connection: another replay may take over, and the settlement's key makes it charge at most
 * once even if the first one is still running after all.
 */
export const REPLAY_CLAIM_TIMEOUT_SECONDS = 60;

/** A failure a replay has taken: `claimedAt` is the claim's token for the writes that follow. */
export type ClaimedFailure = SettlementFailure & { claimedAt: Date };

export function failureView(f: SettlementFailure): SettlementFailureResponseDoc {
  return {
    id: f.id,
    queue: f.queue,
    payload: f.payload,
    payload_encoding: f.payloadEncoding,
    error_status: f.errorStatus,
    reason: f.reason,
    status: f.status,
    attempts: f.attempts,
    resolution: f.resolution,
    created_at: f.createdAt.toISOString(),
    resolved_at: f.resolvedAt?.toISOString() ?? null,
  };
}

/** Encodes a message body for a text column: as is when it is clean UTF-8, base64 otherwise. */
function encodePayload(content: Buffer): Pick<SettlementFailure, 'payload' | 'payloadEncoding'> {
  const text = content.toString('utf8');
  const clean = Buffer.from(text, 'utf8').equals(content) && !text.includes('\u0000');
  return clean ? { payload: text, payloadEncoding: 'utf8' } : { payload: content.toString('base64'), payloadEncoding: 'base64' };
}

/** user_id and usage_key of a message, when it is JSON that names them (for the log line). */
function identify(content: Buffer): { user_id?: string; usage_key?: string } {
  try {
    const body = JSON.parse(content.toString('utf8')) as Record<string, unknown>;
    const data = (body && typeof body.data === 'object' && 'pattern' in body ? body.data : body) as Record<string, unknown>;
    const pick = (v: unknown) => (typeof v === 'string' ? v.slice(0, 128) : undefined);
    return { user_id: pick(data?.user_id), usage_key: pick(data?.usage_key) };
  } catch {
    return {};
  }
}

export function decodePayload(f: SettlementFailure): Buffer {
  return Buffer.from(f.payload, f.payloadEncoding === 'base64' ? 'base64' : 'utf8');
}

/** Queue settlements that could not be applied, kept whole until an operator replays or discards them. */
@Injectable()
export class SettlementFailuresService {
  private readonly logger = new Logger(SettlementFailuresService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly metrics: MetricsService,
    private readonly audit: AuditService,
  ) {}

  async record(queue: string, content: Buffer, error: DomainError, messageId?: string): Promise<SettlementFailure> {
    const repo = this.dataSource.getRepository(SettlementFailure);
    const failure = repo.create({
      queue,
      ...encodePayload(content),
      messageId: messageId ?? null,
      errorStatus: error.code,
      reason: error.message,
      status: 'pending',
      attempts: 1,
    });
    await repo.insert(failure);
    this.metrics.settlementFailures.inc({ status: error.code });
    this.logger.warn(
      { queue, failure_id: failure.id, error_status: error.code, reason: error.message, message_id: messageId, ...identify(content) },
      'queued settlement recorded as a settlement failure',
    );
    return failure;
  }

  async list(
    status: SettlementFailureStatus | undefined,
    cursor: string | undefined,
    limit = DEFAULT_PAGE_SIZE,
  ): Promise<Page<SettlementFailureResponseDoc>> {
    const where: FindOptionsWhere<SettlementFailure> = {};
    if (status) where.status = status;
    if (cursor !== undefined) {
      if (!validId(cursor))
        throw new DomainError('validation_error', 'cursor is not one this service issued', {
          errors: [{ field: 'cursor', message: 'is not a valid cursor' }],
        });
      where.id = MoreThan(cursor);
    }
    const rows = await this.dataSource.getRepository(SettlementFailure).find({ where, order: { id: 'ASC' }, take: limit + 1 });
    return toPage(rows, limit, (f) => f.id, failureView);
  }

  /**
   * Takes a pending failure for one replay, in one conditional UPDATE: of any number of concurrent
   * replays and discards exactly one gets it. A claim older than REPLAY_CLAIM_TIMEOUT_SECONDS may
   * be taken over (its replay crashed). The claim is stamped to the millisecond so the JS Date
   * handed back is an exact token for the writes that end the claim.
   */
  async claim(id: string): Promise<ClaimedFailure> {
    const [row] = validId(id)
      ? await queryRows<{ id: string }>(
          this.dataSource.manager,
          `UPDATE settlement_failures SET claimed_at = date_trunc('milliseconds', now())
           WHERE id = $1 AND status = 'pending'
             AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $2))
           RETURNING id`,
          [id, REPLAY_CLAIM_TIMEOUT_SECONDS],
        )
      : [];
    if (row) return (await this.find(id)) as ClaimedFailure;
    throw await this.whyNotFree(id, beingReplayed);
  }

  /**
   * Marks the failure replayed by the replay holding `claimed`. One whose claim was taken over
   * after the timeout matches nothing: the replay that took it over resolves it (and, keyed the
   * same, charged nothing more).
   */
  async markReplayed(claimed: ClaimedFailure, resolution: Record<string, unknown>, actor: Actor) {
    return this.close(claimed.id, 'replayed', resolution, claimed.claimedAt, beingReplayed, actor);
  }

  /**
   * Discards a failure no replay has touched since its last known outcome. A claimed one may have
   * been charged (its replay is running, or stopped without an answer), so it cannot be discarded:
   * the same conditional UPDATE that claims for a replay decides, so a discard racing a replay
   * either wins before it (and the replay charges nothing) or is refused.
   */
  async discard(id: string, actor: Actor) {
    return this.close(id, 'discarded', { discarded: true }, null, discardRefused, actor);
  }

  private async close(
    id: string,
    status: 'replayed' | 'discarded',
    resolution: Record<string, unknown>,
    claimedAt: Date | null,
    claimedError: (id: string, failure: SettlementFailure) => DomainError,
    actor: Actor,
  ) {
    // The status change and its audit row (API.md §12) commit together; a refused close writes neither.
    const closed = validId(id)
      ? await this.dataSource.transaction(async (manager) => {
          const [row] = await queryRows<{ id: string; error_status: string }>(
            manager,
            `UPDATE settlement_failures SET status = $2, resolution = $3::jsonb, resolved_at = now(), claimed_at = NULL
             WHERE id = $1 AND status = 'pending' AND claimed_at IS NOT DISTINCT FROM $4::timestamptz
             RETURNING id, error_status`,
            [id, status, JSON.stringify(resolution), claimedAt],
          );
          if (!row) return false;
          await this.audit.append(manager, actor, status === 'replayed' ? 'settlement_failure.replay' : 'settlement_failure.discard', id, {
            before: { status: 'pending' },
            after: { status, resolution },
            error_status: row.error_status,
          });
          return true;
        })
      : false;
    if (closed) return failureView(await this.find(id));
    throw await this.whyNotFree(id, claimedError);
  }

  /**
   * The replay holding `claimed` failed for a reason retrying cannot fix, so it charged nothing:
   * the failure is free again (a discard is safe), with the new reason.
   */
  async retryFailed(claimed: ClaimedFailure, error: DomainError): Promise<void> {
    await this.dataSource.query(
      `UPDATE settlement_failures SET attempts = attempts + 1, error_status = $3, reason = $4, claimed_at = NULL
       WHERE id = $1 AND claimed_at = $2`,
      [claimed.id, claimed.claimedAt, error.code, error.message],
    );
  }

  /**
   * The replay holding `claimed` failed transiently (the database went away…): it may or may not
   * have charged. The claim is kept, so no discard can hide a charge, but expired at once, so the
   * operator can replay again right away (the settlement's key makes that charge at most once).
   */
  async abandon(claimed: ClaimedFailure): Promise<void> {
    await this.dataSource.query(
      `UPDATE settlement_failures SET claimed_at = claimed_at - make_interval(secs => $3) WHERE id = $1 AND claimed_at = $2`,
      [claimed.id, claimed.claimedAt, REPLAY_CLAIM_TIMEOUT_SECONDS],
    );
  }

  private async find(id: string): Promise<SettlementFailure> {
    return this.dataSource.getRepository(SettlementFailure).findOneByOrFail({ id });
  }

  /** Why a conditional update of failure `id` matched nothing. */
  private async whyNotFree(id: string, claimed: (id: string, failure: SettlementFailure) => DomainError): Promise<DomainError> {
    const failure = validId(id) ? await this.dataSource.getRepository(SettlementFailure).findOneBy({ id }) : null;
    if (!failure) return notFound(id);
    if (failure.status !== 'pending') return alreadyResolved(failure);
    return claimed(id, failure);
  }
}

/** Ids are bigint identities: anything else names no failure (and must not reach the query). */
function validId(id: string): boolean {
  return /^\d{1,19}$/.test(id) && BigInt(id) <= 9223372036854775807n;
}

/** A discard of a claimed failure: a replay is running, or one stopped without an outcome. */
function discardRefused(id: string, failure: SettlementFailure): DomainError {
  const age = Date.now() - failure.claimedAt!.getTime();
  return age < REPLAY_CLAIM_TIMEOUT_SECONDS * 1000 ? beingReplayed(id) : replayUnfinished(id);
}
