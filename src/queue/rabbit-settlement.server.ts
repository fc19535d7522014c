import { Logger } from '@nestjs/common';
import { CustomTransportStrategy, Server } from '@nestjs/microservices';
import amqp, { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConsumeMessage } from 'amqplib';
import { setTimeout as delay } from 'node:timers/promises';
import { lastValueFrom } from 'rxjs';
import { QueueMessageContext } from './queue-message.context';
import { DEAD_LETTER_QUEUE } from './queue.constants';

export interface RabbitSettlementServerOptions {
  url: string;
  /** Queues to consume; each message is dispatched to the @EventPattern named like its queue. */
  queues: readonly string[];
  prefetch: number;
  /** Delays before each retry of a transient failure; after the last one the message is dead-lettered. */
  retryDelaysMs: readonly number[];
}

/**
 * A Nest transport strategy for the settlement queues, built on amqp-connection-manager.
 * We use our own rather than Nest's ServerRMQ because billing needs what it does not give:
 *  - partners publish bare JSON (no `pattern`): every message is dispatched by its queue, and a
 *    Nest `{pattern, data}` envelope is unwrapped — a message can never reach another queue's handler;
 *  - a message is acked only after its handler resolved, i.e. after the settlement committed,
 *    and always on the channel it arrived on (after a reconnect a stale ack fails instead of
 *    acking a different message; the broker then redelivers and idempotency absorbs it);
 *  - a handler that throws (a transient fault) is retried in process with growing delays, then
 *    published to the dead-letter queue and acked: never dropped, never a hot requeue loop;
 *  - start never blocks HTTP on the broker, reconnects forever, and shutdown stops consuming,
 *    lets in-flight messages finish, then closes.
 * Queues are declared `{ durable: true }` with no arguments, matching a producer's plain assertQueue.
 */
export class RabbitSettlementServer extends Server implements CustomTransportStrategy {
  protected override readonly logger = new Logger(RabbitSettlementServer.name);
  private connection?: AmqpConnectionManager;
  private channel?: ChannelWrapper;
  private consumers: { channel: Channel; tags: string[] } | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private connected = false;
  private closing = false;

  constructor(private readonly options: RabbitSettlementServerOptions) {
    super();
  }

  listen(callback: () => void): void {
    this.connection = amqp.connect([this.options.url], { heartbeatIntervalInSeconds: 5, reconnectTimeInSeconds: 1 });
    this.connection.on('connect', () => {
      this.connected = true;
      this.logger.log('connected to RabbitMQ');
    });
    this.connection.on('disconnect', ({ err }) => {
      this.connected = false;
      if (!this.closing) this.logger.warn({ err: err?.message }, 'RabbitMQ connection lost; reconnecting');
    });
    this.connection.on('connectFailed', ({ err }) => {
      this.logger.warn({ err: err?.message }, 'cannot reach RabbitMQ; retrying');
    });
    this.channel = this.connection.createChannel({ json: false, confirm: true, setup: (channel: Channel) => this.setup(channel) });
    // HTTP must not wait for the broker (API.md §1): readiness reports it instead.
    callback();
  }

  private async setup(channel: Channel): Promise<void> {
    for (const queue of [...this.options.queues, DEAD_LETTER_QUEUE]) await channel.assertQueue(queue, { durable: true });
    if (this.closing) return;
    await channel.prefetch(this.options.prefetch);
    const tags: string[] = [];
    for (const queue of this.options.queues) {
      const { consumerTag } = await channel.consume(queue, (msg) => msg && this.track(this.handle(channel, queue, msg)), { noAck: false });
      tags.push(consumerTag);
    }
    this.consumers = { channel, tags };
  }

  private track(work: Promise<void>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  private async handle(channel: Channel, queue: string, msg: ConsumeMessage): Promise<void> {
    // Looked up by exact name: Nest's getHandlerByPattern first tries JSON.parse on the pattern,
    // which throws for a queue name — an exception per message (~7 % of CPU in the queue drain).
    const handler = this.messageHandlers.get(queue) ?? this.getHandlerByPattern(queue);
    const { data, parsed } = decode(msg.content);
    const messageId =
      typeof msg.properties.messageId === 'string' && msg.properties.messageId !== '' ? msg.properties.messageId : undefined;
    const context = new QueueMessageContext([{ queue, content: msg.content, redelivered: msg.fields.redelivered, parsed, messageId }]);
    const attempts = this.options.retryDelaysMs.length + 1;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        if (!handler) throw new Error(`no handler for queue ${queue}`);
        // Nest's handler proxy turns a thrown error into an erroring Observable: wait for it to
        // complete, so only a settlement that really committed is acked.
        await lastValueFrom(this.transformToObservable(await handler(data, context)), { defaultValue: undefined });
        return this.ack(channel, msg);
      } catch (error) {
        lastError = error;
        if (attempt === attempts || this.closing) break;
        const wait = this.options.retryDelaysMs[attempt - 1];
        this.logger.warn({ queue, attempt, retry_in_ms: wait, err: (error as Error).message }, 'settlement failed transiently; will retry');
        await delay(wait);
      }
    }
    if (this.closing) return; // left unacked: the broker redelivers it to the next consumer
    await this.deadLetter(channel, queue, msg, lastError, attempts);
  }

  private ack(channel: Channel, msg: ConsumeMessage): void {
    try {
      channel.ack(msg);
    } catch (error) {
      // The channel died after the commit: the broker will redeliver and idempotency absorbs it.
      this.logger.warn(
        { err: (error as Error).message },
        'ack failed after commit; the message will be redelivered and settle as already_settled',
      );
    }
  }

  private async deadLetter(channel: Channel, queue: string, msg: ConsumeMessage, error: unknown, attempts: number): Promise<void> {
    const reason = error instanceof Error ? error.message : String(error);
    this.logger.error({ queue, attempts, err: reason }, 'settlement kept failing; moving the message to the dead-letter queue');
    try {
      await this.channel!.sendToQueue(DEAD_LETTER_QUEUE, msg.content, {
        persistent: true,
        contentType: msg.properties.contentType,
        // Kept so that a dead letter republished as is still settles under the same key.
        messageId: msg.properties.messageId,
        headers: {
          ...(msg.properties.headers ?? {}),
          'x-original-queue': queue,
          'x-failure-reason': reason.slice(0, 500),
          'x-attempts': attempts,
        },
      });
      this.ack(channel, msg);
    } catch (publishError) {
      // Not confirmed by the broker: leave the original unacked so it is redelivered, never lost.
      this.logger.error({ err: (publishError as Error).message }, 'dead-lettering failed; the message stays on its queue');
    }
  }

  /** Messages waiting in each consumed queue (consumer lag), for the metrics scrape. */
  async queueDepths(): Promise<Map<string, number>> {
    const depths = new Map<string, number>();
    if (!this.connected || !this.channel) return depths;
    for (const queue of this.options.queues) {
      const { messageCount } = await this.channel.checkQueue(queue);
      depths.set(queue, messageCount);
    }
    return depths;
  }

  isConnected(): boolean {
    return this.connected;
  }

  async close(): Promise<void> {
    this.closing = true;
    const consumers = this.consumers;
    if (consumers) {
      await Promise.all(consumers.tags.map((tag) => consumers.channel.cancel(tag).catch(() => undefined)));
    }
    await Promise.allSettled([...this.inFlight]);
    await this.channel?.close().catch(() => undefined);
    await this.connection?.close().catch(() => undefined);
  }

  on(): void {
    throw new Error('RabbitSettlementServer does not support event listeners');
  }

  unwrap<T>(): T {
    return this.connection as T;
  }
}

/** Bare JSON, or a Nest `{pattern, data}` envelope (unwrapped); anything else is passed on as text. */
function decode(content: Buffer): { data: unknown; parsed: boolean } {
  let value: unknown;
  try {
    value = JSON.parse(content.toString('utf8'));
  } catch {
    return { data: undefined, parsed: false };
  }
  if (value && typeof value === 'object' && !Array.isArray(value) && 'pattern' in value && 'data' in value) {
    return { data: (value as { data: unknown }).data, parsed: true };
  }
  return { data: value, parsed: true };
}
