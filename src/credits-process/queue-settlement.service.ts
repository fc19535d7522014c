import { createHash } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import type { Actor } from '../audit/actor';
import { DomainError, queuePolicyOf } from '../common/domain-error';
import { validateBody } from '../common/validation';
import { END_QUEUE } from '../queue/queue.constants';
import type { QueueMessageInfo } from '../queue/queue-message.context';
import { assertSettlementRules, EndMultiModelDto, EndSingleModelDto, toMultiModel } from './dto/credits-process.dto';
import { CreditsProcessService } from './credits-process.service';
import { ClaimedFailure, decodePayload, SettlementFailuresService } from './settlement-failures.service';

/**
 * What a queued settlement message means and what its failure policy is: the error table's
 * (DOMAIN_ERRORS) queue policy of the code it failed with. `record`: it can never succeed by
 * retrying (bad body, unknown model, unknown key…), so it is recorded whole as a settlement
 * failure and acked. `retry` (and anything that is not a DomainError, e.g. the database is down):
 * rethrown for the transport to retry and, in the end, dead-letter.
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
      const dto = await this.parse(info.queue, payload, info.parsed);
      const result = await this.creditsProcess.settle(
        keyed(dto, info.messageId === undefined ? undefined : messageKey(info.messageId)),
        'queue',
      );
      if (result.status === 'already_settled') {
        this.logger.log(
          {
            queue: info.queue,
            usage_key: result.usage_key,
            user_id: result.user_id,
            redelivered: info.redelivered,
            message_id: info.messageId,
          },
          'duplicate settlement message: already settled, nothing charged',
        );
      }
    } catch (error) {
      if (queuePolicyOf(error) === 'retry') throw error;
      await this.failures.record(info.queue, info.content, error as DomainError, info.messageId);
    }
  }

  /**
   * Replays a recorded failure through the same path. The failure is claimed first (one
   * conditional UPDATE), so of concurrent replays and discards only one acts; and the settlement
   * is keyed (see `replayKey`), so even a replay that takes over a crashed one charges at most
   * once. On a failure it can never fix it stays pending with the new reason.
   */
  async replay(id: string, actor: Actor) {
    const failure = await this.failures.claim(id);
    const content = decodePayload(failure);
    let payload: unknown;
    let parsed = true;
    try {
      payload = JSON.parse(content.toString('utf8'));
    } catch {
      parsed = false;
    }
    try {
      const dto = await this.parse(failure.queue, unwrapEnvelope(payload), parsed);
      const result = await this.creditsProcess.settle(keyed(dto, replayKey(failure)), 'queue');
      return { status: 'replayed' as const, settlement: result, failure: await this.failures.markReplayed(failure, { ...result }, actor) };
    } catch (error) {
      // A `record` failure charged nothing: the failure is free again. Any other may have
      // committed before it failed: the claim stays (no discard), expired for a replay at once.
      if (queuePolicyOf(error) === 'record') await this.failures.retryFailed(failure, error as DomainError);
      else await this.failures.abandon(failure);
      throw error;
    }
  }

  async discard(id: string, actor: Actor) {
    return { status: 'discarded' as const, failure: await this.failures.discard(id, actor) };
  }

  /**
   * The same DTOs and rules as the HTTP routes of the same names, the rules between fields
   * included (an increment names its own idempotency_key: a message_id never stands in for it).
   */
  private async parse(queue: string, payload: unknown, parsed: boolean): Promise<EndMultiModelDto> {
    if (!parsed)
      throw new DomainError('validation_error', 'The message body is not JSON.', { errors: [{ field: 'body', message: 'is not JSON' }] });
    const dto =
      queue === END_QUEUE ? toMultiModel(await validateBody(EndSingleModelDto, payload)) : await validateBody(EndMultiModelDto, payload);
    return assertSettlementRules(dto);
  }
}

/**
 * A direct charge (no usage_key) that names no idempotency_key is charged again each time it is
 * settled; given a key, it is settled once per key. A settlement of a hold is keyed by its
 * usage_key already, and a key the message names itself always wins.
 */
function keyed(dto: EndMultiModelDto, key: string | undefined): EndMultiModelDto {
  if (key === undefined || dto.usage_key !== undefined || dto.idempotency_key !== undefined) return dto;
  return { ...dto, idempotency_key: key };
}

/**
 * A message's AMQP message_id as an idempotency key: as is (so a producer may use one id for the
 * message and for the Idempotency-Key of an HTTP retry of the same charge), or its digest when it
 * is longer than a key may be (128; a message_id may have 255).
 */
export function messageKey(messageId: string): string {
  return messageId.length <= 128 ? messageId : `sha256:${createHash('sha256').update(messageId).digest('hex')}`;
}

/**
 * The key a replay settles under: the message's own message_id when it had one (the key its
 * deliveries used), else one derived from the failure, the same for every replay of it.
 */
function replayKey(failure: ClaimedFailure): string {
  return failure.messageId === null ? `settlement-failure:${failure.id}` : messageKey(failure.messageId);
}

function unwrapEnvelope(value: unknown): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value) && 'pattern' in value && 'data' in value)
    return (value as { data: unknown }).data;
  return value;
}
