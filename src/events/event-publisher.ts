import { Logger } from '@nestjs/common';
import amqp, { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { Channel } from 'amqplib';
import { EVENTS_EXCHANGE } from './event-types';

/**
 * Publishes events to the durable topic exchange `credits.events` (API.md §10): persistent, with
 * publisher confirms, routing key = type, message_id = the event id, the body the event JSON.
 * Its own connection (amqp-connection-manager: reconnects forever); while it is down the relay
 * leaves the exchange's deliveries in the outbox.
 */
export class EventPublisher {
  private readonly logger = new Logger(EventPublisher.name);
  private readonly connection: AmqpConnectionManager;
  private readonly channel: ChannelWrapper;
  private closing = false;

  constructor(url: string) {
    this.connection = amqp.connect([url], { heartbeatIntervalInSeconds: 5, reconnectTimeInSeconds: 1 });
    this.connection.on('disconnect', ({ err }) => {
      if (!this.closing) this.logger.warn({ err: err?.message }, 'event publisher lost RabbitMQ; events wait in the outbox');
    });
    this.connection.on('connectFailed', ({ err }) => {
      if (!this.closing) this.logger.warn({ err: err?.message }, 'event publisher cannot reach RabbitMQ; retrying');
    });
    this.channel = this.connection.createChannel({
      json: false,
      confirm: true,
      setup: (channel: Channel) => channel.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true }),
    });
  }

  isConnected(): boolean {
    return this.connection.isConnected();
  }

  /** Resolves once the broker confirmed the message; rejects on a nack, a lost channel or after timeoutMs. */
  async publish(event: { id: string; type: string; created_at: string }, body: string, timeoutMs: number): Promise<void> {
    await this.channel.publish(EVENTS_EXCHANGE, event.type, Buffer.from(body), {
      persistent: true,
      messageId: event.id,
      type: event.type,
      contentType: 'application/json',
      timestamp: Math.floor(new Date(event.created_at).getTime() / 1000),
      timeout: timeoutMs,
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.channel.close().catch(() => undefined);
    await this.connection.close().catch(() => undefined);
  }
}
