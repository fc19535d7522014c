import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, FindOptionsWhere, MoreThan } from 'typeorm';
import { DomainError } from '../common/domain-error';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { jsonb } from '../database/sql';
import { MetricsService } from '../metrics/metrics.service';
import type { SettlementFailureResponseDoc } from './dto/credits-process-responses.dto';
import { SettlementFailure, SettlementFailureStatus } from './settlement-failure.entity';

const notFound = (id: string) => new DomainError('settlement_failure_not_found', `No settlement failure ${id} exists.`);
const alreadyResolved = (f: SettlementFailure) => new DomainError('conflict', `Settlement failure ${f.id} is already ${f.status}.`);

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
  ) {}

  async record(queue: string, content: Buffer, error: DomainError): Promise<SettlementFailure> {
    const repo = this.dataSource.getRepository(SettlementFailure);
    const failure = repo.create({
      queue,
      ...encodePayload(content),
      errorStatus: error.code,
      reason: error.message,
      status: 'pending',
      attempts: 1,
    });
    await repo.insert(failure);
    this.metrics.settlementFailures.inc({ status: error.code });
    this.logger.warn(
      { queue, failure_id: failure.id, error_status: error.code, reason: error.message, ...identify(content) },
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
      if (!/^\d{1,19}$/.test(cursor))
        throw new DomainError('validation_error', 'cursor is not one this service issued', {
          errors: [{ field: 'cursor', message: 'is not a valid cursor' }],
        });
      where.id = MoreThan(cursor);
    }
    const rows = await this.dataSource.getRepository(SettlementFailure).find({ where, order: { id: 'ASC' }, take: limit + 1 });
    return toPage(rows, limit, (f) => f.id, failureView);
  }

  async pending(id: string): Promise<SettlementFailure> {
    const failure = /^\d{1,19}$/.test(id) ? await this.dataSource.getRepository(SettlementFailure).findOneBy({ id }) : null;
    if (!failure) throw notFound(id);
    if (failure.status !== 'pending') throw alreadyResolved(failure);
    return failure;
  }

  /** Marks a failure resolved; the status condition makes two concurrent resolutions impossible. */
  async resolve(failure: SettlementFailure, status: 'replayed' | 'discarded', resolution: Record<string, unknown>) {
    const result = await this.dataSource
      .getRepository(SettlementFailure)
      .update({ id: failure.id, status: 'pending' }, { status, resolution: jsonb(resolution), resolvedAt: new Date() });
    if (!result.affected) throw alreadyResolved({ ...failure, status } as SettlementFailure);
    return failureView(await this.dataSource.getRepository(SettlementFailure).findOneByOrFail({ id: failure.id }));
  }

  async retryFailed(failure: SettlementFailure, error: DomainError): Promise<void> {
    await this.dataSource
      .getRepository(SettlementFailure)
      .update({ id: failure.id }, { attempts: failure.attempts + 1, errorStatus: error.code, reason: error.message });
  }
}
