import amqp, { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { ConfirmChannel } from 'amqplib';
import { CreditsError } from './credits.errors';
import { END_MULTIMODEL_QUEUE, END_QUEUE, SettlementQueue, SettlementTargetBody } from './credits.types';
import type { CreditsLogger } from './http-transport';

export interface SettlementPublisherOptions {
  url: string;
  /** How long a message may wait for the broker's confirm (including while reconnecting). */
  publishTimeoutMs: number;
  /** Seconds between reconnection attempts. */
  reconnectTimeInSeconds: number;
  sleep: (ms: number) => Promise<void>;
  logger?: CreditsLogger;
}

/**
 * Publishes settlements to the service's queues the way API.md §7 expects: the bare JSON body,
 * persistent, on a confirm channel. amqp-connection-manager keeps the connection: a message
 * published while it is down waits in memory and goes out after the reconnect, and one whose
 * confirm was lost with the connection is sent again (the service charges a settlement once, by
 * usage_key or idempotency_key, so a duplicate is harmless). The connection opens on first use.
 */
export class SettlementPublisher {
  private connection?: AmqpConnectionManager;
  private channel?: ChannelWrapper;
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly options: SettlementPublisherOptions) {}

  /**
   * Resolves once the broker has confirmed the message; rejects with a `publish_failed` CreditsError
   * when it could not be confirmed within `publishTimeoutMs`.
   */
  async publish(queue: SettlementQueue, body: SettlementTargetBody): Promise<void> {
    if (this.closed) throw closedError();
    const keys = { usage_key: body.usage_key ?? null, idempotency_key: body.idempotency_key ?? null };
    const work = this.publishUntilConfirmed(queue, Buffer.from(JSON.stringify(body)), keys);
    this.pending.add(work);
    try {
      await work;
    } finally {
      this.pending.delete(work);
    }
  }

  private async publishUntilConfirmed(queue: SettlementQueue, content: Buffer, keys: Record<string, string | null>): Promise<void> {
    const deadline = Date.now() + this.options.publishTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.open().sendToQueue(queue, content, {
          persistent: true,
          contentType: 'application/json',
          timeout: Math.max(1, deadline - Date.now()),
        });
        return;
      } catch (cause) {
        const reason = cause instanceof Error ? cause.message : String(cause);
        // A message whose confirm was lost when the connection dropped ("channel closed") may or
        // may not be on the queue: send it again after the reconnect. The service settles a
        // usage_key / idempotency_key once, so a duplicate charges nothing.
        if (!this.closed && reason !== 'timeout' && Date.now() < deadline) {
          this.options.logger?.debug?.('settlement not confirmed by RabbitMQ; publishing it again', { queue, attempt, reason });
          await this.options.sleep(Math.min(1_000, 50 * 2 ** Math.min(attempt, 5)));
          continue;
        }
        throw new CreditsError({
          status: this.closed ? 'client_closed' : 'publish_failed',
          message:
            reason === 'timeout'
              ? `RabbitMQ did not confirm the settlement within ${this.options.publishTimeoutMs} ms; it may not be queued (settling again with the same keys is safe).`
              : `RabbitMQ did not confirm the settlement: ${reason}.`,
          // The keys make a later retry (by queue or HTTP) charge at most once.
          details: { queue, ...keys },
          attempts: attempt,
          cause,
        });
      }
    }
  }

  /** Waits for messages being published, then closes the channel and the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.pending]);
    await this.channel?.close().catch(() => undefined);
    await this.connection?.close().catch(() => undefined);
  }

  private open(): ChannelWrapper {
    if (this.channel) return this.channel;
    const { logger } = this.options;
    const broker = describeBroker(this.options.url);
    this.connection = amqp.connect([this.options.url], {
      heartbeatIntervalInSeconds: 5,
      reconnectTimeInSeconds: this.options.reconnectTimeInSeconds,
      // Names the connection in the broker's management UI and `rabbitmqctl list_connections`.
      connectionOptions: { clientProperties: { connection_name: 'credits-client' } },
    });
    this.connection.on('connect', () => logger?.debug?.('connected to RabbitMQ', { broker }));
    this.connection.on('disconnect', ({ err }) => {
      if (!this.closed) logger?.warn?.('RabbitMQ connection lost; reconnecting', { broker, reason: err?.message });
    });
    this.connection.on('connectFailed', ({ err }) => logger?.warn?.('cannot reach RabbitMQ; retrying', { broker, reason: err?.message }));
    this.channel = this.connection.createChannel({
      name: 'credits-client-settlements',
      confirm: true,
      json: false,
      // Run again on every reconnect. The same declaration as the service's (durable, no
      // arguments): anything else would be refused with PRECONDITION_FAILED.
      setup: async (channel: ConfirmChannel) => {
        await channel.assertQueue(END_MULTIMODEL_QUEUE, { durable: true });
        await channel.assertQueue(END_QUEUE, { durable: true });
      },
    });
    // Without a listener an 'error' event (e.g. a refused queue declaration) would crash the process.
    this.channel.on('error', (err: Error) => logger?.error?.('RabbitMQ channel error', { broker, reason: err.message }));
    return this.channel;
  }
}

function closedError(): CreditsError {
  return new CreditsError({ status: 'client_closed', message: 'The credits client is closed.' });
}

/** host:port/vhost of an AMQP URL, never its credentials. */
function describeBroker(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5672'}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return 'rabbitmq';
  }
}
