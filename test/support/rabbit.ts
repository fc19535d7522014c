import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import amqplib from 'amqplib';

const run = promisify(execFile);
const BROKER = process.env.TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export interface TestVhost {
  name: string;
  url: string;
  delete(): Promise<void>;
}

/** A RabbitMQ vhost of its own for one test file, so queues never leak between runs. */
export async function createTestVhost(): Promise<TestVhost> {
  const name = `credits_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  await run('rabbitmqctl', ['add_vhost', name]);
  await run('rabbitmqctl', ['set_permissions', '-p', name, 'guest', '.*', '.*', '.*']);
  const url = `${BROKER}/${encodeURIComponent(name)}`;
  return { name, url, delete: () => run('rabbitmqctl', ['delete_vhost', name]).then(() => undefined) };
}

/** Publishes exactly as a partner following the seed does: bare JSON, persistent, plain assertQueue. */
export async function publish(url: string, queue: string, messages: (unknown | Buffer)[]): Promise<void> {
  const connection = await amqplib.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true });
    for (const m of messages) {
      const body = Buffer.isBuffer(m) ? m : Buffer.from(JSON.stringify(m));
      channel.sendToQueue(queue, body, { persistent: true });
    }
    await channel.waitForConfirms();
    await channel.close();
  } finally {
    await connection.close();
  }
}

/** Messages currently waiting in a queue (not counting unacked deliveries). */
export async function queueDepth(url: string, queue: string): Promise<number> {
  const connection = await amqplib.connect(url);
  try {
    const channel = await connection.createChannel();
    const { messageCount } = await channel.assertQueue(queue, { durable: true });
    await channel.close();
    return messageCount;
  } finally {
    await connection.close();
  }
}

/**
 * Takes every message off the dead-letter queue and publishes it back to the queue it came from
 * (`x-original-queue`), `times` times each — what an operator does after an outage.
 */
export async function replayDeadLetters(
  url: string,
  deadLetterQueue: string,
  times = 1,
): Promise<{ queue: string; body: string; headers: Record<string, unknown> }[]> {
  const connection = await amqplib.connect(url);
  const moved: { queue: string; body: string; headers: Record<string, unknown> }[] = [];
  try {
    const channel = await connection.createConfirmChannel();
    for (;;) {
      const msg = await channel.get(deadLetterQueue, { noAck: false });
      if (!msg) break;
      const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
      const queue = String(headers['x-original-queue']);
      for (let i = 0; i < times; i++) channel.sendToQueue(queue, msg.content, { persistent: true });
      await channel.waitForConfirms();
      channel.ack(msg);
      moved.push({ queue, body: msg.content.toString('utf8'), headers });
    }
    await channel.close();
  } finally {
    await connection.close();
  }
  return moved;
}
