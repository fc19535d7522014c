import { Injectable, Logger } from '@nestjs/common';
import { DomainError } from '../common/domain-error';
import { validateBody } from '../common/validation';
import { END_QUEUE } from '../queue/queue.constants';
import type { QueueMessageInfo } from '../queue/queue-message.context';
import { EndMultiModelDto, EndSingleModelDto, toMultiModel } from './dto/credits-process.dto';
import { CreditsProcessService, SettlementResult } from './credits-process.service';
import { decodePayload, SettlementFailuresService } from './settlement-failures.service';

/**
 * What a queued settlement message means and what its failure policy is. A DomainError can never
 * succeed by retrying (bad body, unknown model, unknown key…): the message is recorded whole as a
 * settlement failure and acked. Anything else (the database is down) is rethrown for the
 * transport to retry and, in the end, dead-letter.
 */
@Injectable()
export class QueueSettlementService {
  private readonly logger = new Logger(QueueSettlementService.name);

  constructor(
    private readonly creditsProcess: CreditsProcessService,
    private readonly failures: SettlementFailuresService,
  ) {}

  /**
   * Resolves once the message's settlement committed (or its failure was recorded): then it is
   * acked. Messages that arrive together are settled together, one statement per batch (see
   * CreditsProcessService.settle).
   */
  async handle(payload: unknown, info: QueueMessageInfo): Promise<void> {
    try {
      const result = await this.settle(info.queue, payload, info.parsed);
      if (result.status === 'already_settled') {
        this.logger.log(
          { queue: info.queue, usage_key: result.usage_key, user_id: result.user_id, redelivered: info.redelivered },
          'duplicate settlement message: already settled, nothing charged',
        );
      }
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      await this.failures.record(info.queue, info.content, error);
    }
  }

  /** Replays a recorded failure through the same path; on failure it stays pending with the new reason. */
  async replay(id: string) {
    const failure = await this.failures.pending(id);
    const content = decodePayload(failure);
    let payload: unknown;
    let parsed = true;
    try {
      payload = JSON.parse(content.toString('utf8'));
    } catch {
      parsed = false;
    }
    try {
      const result = await this.settle(failure.queue, unwrapEnvelope(payload), parsed);
      return { status: 'replayed' as const, settlement: result, failure: await this.failures.resolve(failure, 'replayed', { ...result }) };
    } catch (error) {
      if (error instanceof DomainError) await this.failures.retryFailed(failure, error);
      throw error;
    }
  }

  async discard(id: string) {
    const failure = await this.failures.pending(id);
    return { status: 'discarded' as const, failure: await this.failures.resolve(failure, 'discarded', { discarded: true }) };
  }

  private async settle(queue: string, payload: unknown, parsed: boolean): Promise<SettlementResult> {
    return this.creditsProcess.settle(await this.parse(queue, payload, parsed), 'queue');
  }

  /** The same DTOs and rules as the HTTP routes of the same names. */
  private async parse(queue: string, payload: unknown, parsed: boolean): Promise<EndMultiModelDto> {
    if (!parsed)
      throw new DomainError('validation_error', 'The message body is not JSON.', { errors: [{ field: 'body', message: 'is not JSON' }] });
    return queue === END_QUEUE ? toMultiModel(await validateBody(EndSingleModelDto, payload)) : validateBody(EndMultiModelDto, payload);
  }
}

function unwrapEnvelope(value: unknown): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value) && 'pattern' in value && 'data' in value)
    return (value as { data: unknown }).data;
  return value;
}
