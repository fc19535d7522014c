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
