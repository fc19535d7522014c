import amqplib from 'amqplib';
import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';
import { quiesce, seedHolds } from './seed';
import { cycleUsages, FEATURE_ID, walletId } from './workload';

/**
 * Queue drain: `messages` settlement messages published exactly as a partner following the seed
 * does (bare JSON, persistent, plain assertQueue) to credits_process_end_multimodel_queue, half
 * settling holds made beforehand (as /start leaves them), half direct charges with an
 * idempotency key. The clock runs from the first publish until every message has committed its
 * ledger entry (or been recorded as a settlement failure), as seen by polling the database.
 */

export const END_MULTIMODEL_QUEUE = 'credits_process_end_multimodel_queue';

export interface QueueDrainResult {
  messages: number;
  settled: number;
  failed: number;
  publishMs: number;
  drainMs: number;
  settlementsPerSecond: number;
  /** Charge entries beyond one per message (must be 0: exactly once). */
  duplicates: number;
  timedOut: boolean;
}

const log = (line: string) => process.stdout.write(`${line}\n`);

export async function queueDrain(
  db: pg.Pool,
  rabbitmqUrl: string,
  messages: number,
  walletCount: number,
  runTag: string,
): Promise<QueueDrainResult> {
  const withHold = Math.floor(messages / 2);
  const holds = await seedHolds(db, withHold, walletCount);
  await quiesce(db);
  const bodies: Buffer[] = [];
  for (let i = 0; i < messages; i++) {
    const hold = i % 2 === 0 ? holds[i / 2] : undefined;
    const payload = hold
      ? { user_id: hold.user_id, usage_key: hold.usage_key, feature_endpoint_id: FEATURE_ID, usages: cycleUsages() }
      : {
          user_id: walletId(1 + Math.floor(Math.random() * walletCount)),
          feature_endpoint_id: FEATURE_ID,
          idempotency_key: `${runTag}-q-${i}`,
          usages: cycleUsages(),
        };
    bodies.push(Buffer.from(JSON.stringify(payload)));
  }
  const marks = await db.query<{ ledger: string; failures: string }>(
    `SELECT (SELECT COALESCE(max(id), 0) FROM ledger_entries)::text AS ledger, (SELECT COALESCE(max(id), 0) FROM settlement_failures)::text AS failures`,
  );
  const { ledger: ledgerMark, failures: failureMark } = marks.rows[0];

  const connection = await amqplib.connect(rabbitmqUrl);
  const t0 = performance.now();
  let publishMs: number;
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(END_MULTIMODEL_QUEUE, { durable: true });
    for (const body of bodies) {
      if (!channel.sendToQueue(END_MULTIMODEL_QUEUE, body, { persistent: true })) {
        await new Promise((r) => channel.once('drain', r));
      }
    }
    await channel.waitForConfirms();
    publishMs = performance.now() - t0;
    await channel.close();
  } finally {
    await connection.close();
  }
  log(`  published ${messages} messages in ${(publishMs / 1000).toFixed(1)} s`);

  let settled = 0;
  let failed = 0;
  let lastProgress = performance.now();
  let timedOut = false;
  let lastReport = performance.now();
  for (;;) {
    const { rows } = await db.query<{ settled: string; failed: string }>(
      `SELECT (SELECT count(*) FROM ledger_entries WHERE id > $1 AND kind = 'charge')::text AS settled,
              (SELECT count(*) FROM settlement_failures WHERE id > $2)::text AS failed`,
      [ledgerMark, failureMark],
    );
    const now = performance.now();
    if (Number(rows[0].settled) + Number(rows[0].failed) > settled + failed) lastProgress = now;
    settled = Number(rows[0].settled);
    failed = Number(rows[0].failed);
    if (settled + failed >= messages) break;
    if (now - lastProgress > 60_000) {
      timedOut = true;
      break;
    }
    if (now - lastReport > 5_000) {
      log(`  … ${settled} settled, ${failed} failed`);
      lastReport = now;
    }
    await delay(50);
  }
  const drainMs = performance.now() - t0;
  const dup = await db.query<{ n: string }>(
    `SELECT (count(*) - count(DISTINCT usage_key))::text AS n FROM ledger_entries WHERE id > $1 AND kind = 'charge'`,
    [ledgerMark],
  );
  return {
    messages,
    settled,
    failed,
    publishMs,
    drainMs,
    settlementsPerSecond: (settled * 1000) / drainMs,
    duplicates: Number(dup.rows[0].n),
    timedOut,
  };
}
