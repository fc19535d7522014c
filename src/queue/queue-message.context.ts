import { BaseRpcContext } from '@nestjs/microservices';

export interface QueueMessageInfo {
  queue: string;
  /** The body exactly as received. */
  content: Buffer;
  /** True when the broker delivers it again (after a crash or a lost ack). */
  redelivered: boolean;
  /** False when the body was not JSON at all (the handler records it as a failure). */
  parsed: boolean;
  /**
   * The AMQP `message_id` property, when the producer set one (a non-empty string): the same on
   * every delivery and every republish of the message, so it can key a charge that names none.
   */
  messageId?: string;
}

/** What an @EventPattern handler of the settlement queues receives besides the payload. */
export class QueueMessageContext extends BaseRpcContext<[QueueMessageInfo]> {
  get info(): QueueMessageInfo {
    return this.args[0];
  }
}
