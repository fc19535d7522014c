import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { setTimeout as delay } from 'node:timers/promises';
import { checkBooks, ExpectedUsage, reportFigures } from '../support/books';
import {
  createCatalog,
  createWallets,
  DEAD_LETTER_QUEUE,
  expectedCharge,
  LEGACY_QUEUE,
  micros,
  MULTI_QUEUE,
  randomUsages,
  Rng,
  rng,
  runPool,
  startHold,
} from '../support/catalog';
import { createTestDatabase, TestDatabase } from '../support/database';
import { closeVhostConnections, databaseDown, databaseUp, queueTotals, scalar, waitForSettlements } from '../support/faults';
import { SERVICE_KEY } from '../support/http';
import { createTestVhost, publish, queueDepth, replayDeadLetters, TestVhost } from '../support/rabbit';
import { ServiceProcess, spawnService } from '../support/service-process';
import { waitFor } from '../support/wait';

/** Retry budget of (a) and (b): 200+400+…+6400 = 12.6 s, far longer than the outage injected. */
const LONG_RETRY = '200,400,800,1600,3200,6400';

interface Plan {
  byQueue: Record<string, Record<string, unknown>[]>;
  expected: ExpectedUsage[];
}

/** Queue messages for holds (placed now over HTTP) and direct charges, with their exact expected charges. */
async function plan(service: ServiceProcess, r: Rng, wallets: string[], holds: number, directs: number, tag: string): Promise<Plan> {
  const features = Array.from({ length: holds }, () => r.pick(['chat', 'tool']));
  const keys = await runPool(features, 10, (feature, i) => startHold(service.request, wallets[i % wallets.length], feature));
  const result: Plan = { byQueue: { [MULTI_QUEUE]: [], [LEGACY_QUEUE]: [] }, expected: [] };
  const add = (userId: string, feature: string, target: Record<string, unknown>, ref: Partial<ExpectedUsage>) => {
    const legacy = r.chance(0.3);
    const usages = randomUsages(r, legacy ? 1 : 3);
    result.byQueue[legacy ? LEGACY_QUEUE : MULTI_QUEUE].push(
      legacy
        ? { user_id: userId, feature_endpoint_id: feature, ...target, ...usages[0] }
        : { user_id: userId, feature_endpoint_id: feature, ...target, usages },
    );
    result.expected.push({ userId, ...ref, charge: expectedCharge(feature, usages) });
  };
  features.forEach((feature, i) => add(wallets[i % wallets.length], feature, { usage_key: keys[i] }, { usageKey: keys[i] }));
  for (let i = 0; i < directs; i++) {
    const key = `${tag}-direct-${i}`;
    add(r.pick(wallets), r.pick(['chat', 'tool']), { idempotency_key: key }, { idempotencyKey: key });
  }
  return result;
}

/** Splits a plan's messages into `parts` slices (per queue), in order. */
function slices(p: Plan, parts: number): Record<string, Record<string, unknown>[]>[] {
  return Array.from({ length: parts }, (_, k) =>
    Object.fromEntries(Object.entries(p.byQueue).map(([q, list]) => [q, list.filter((_, i) => i % parts === k)])),
  );
}

/** Publishes; when the broker cuts the publisher too, publishes the whole batch again (duplicates are harmless by design). */
async function publishAll(url: string, byQueue: Record<string, Record<string, unknown>[]>): Promise<number> {
  let attempts = 0;
  for (const [queue, bodies] of Object.entries(byQueue)) {
    await waitFor(
      `publishing to ${queue}`,
      async () => {
        attempts++;
        await publish(url, queue, bodies);
        return true;
      },
      60_000,
      200,
    );
  }
  return attempts;
}

interface ReadinessSample {
  status: number | 'no_answer';
  database?: string;
  broker?: string;
  pid: number;
}

/** Polls /health/ready in the background and keeps every answer. */
function watchReadiness(service: ServiceProcess) {
  const samples: ReadinessSample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const res = await service.request('GET', '/health/ready', { key: null });
        const details = res.body?.data?.details ?? {};
        samples.push({ status: res.status, database: details.database?.status, broker: details.broker?.status, pid: service.pid });
      } catch {
        samples.push({ status: 'no_answer', pid: service.pid });
      }
      await delay(50); // polling interval, not synchronization
    }
  })();
  return {
    samples,
    async stop() {
      running = false;
      await loop;
    },
  };
}

describe('outages: the broker and the database go away while settlements flow', () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let service: ServiceProcess;
  const env = (retryDelays: string) => ({ DATABASE_URL: db.url, RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: retryDelays });
  // A fresh connection per probe: the outage tests terminate every connection to this database.
  const charges = async (prefix: string) =>
    Number(await scalar(db.url, `SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge' AND user_id LIKE $1`, [`${prefix}-%`]));
  const settled = (prefix: string, expected: number) =>
    waitForSettlements(vhost.name, [MULTI_QUEUE, LEGACY_QUEUE], () => charges(prefix), expected);

  beforeAll(async () => {
    db = await createTestDatabase();
    vhost = await createTestVhost();
    service = await spawnService(env(LONG_RETRY));
    await createCatalog(service.request);
  }, 120_000);
  afterAll(async () => {
    await databaseUp(db.name).catch(() => undefined);
    await service?.stop();
    await db?.drop();
    await vhost?.delete();
  }, 60_000);

  it('(a) the broker closes the service connection server-side: /health/ready says so, consuming resumes, every message settles once', async () => {
    const began = Date.now();
    const r = rng(31);
    const wallets = await createWallets(service.request, 'br', 10, '50000');
    const initial = new Map(wallets.map((w) => [w, micros('50000')]));
    const p = await plan(service, r, wallets, 300, 600, 'br');
    const [before, during, after] = slices(p, 3);
    const readiness = watchReadiness(service);

    let publishes = 0;
    try {
      publishes += await publishAll(vhost.url, before);
      await waitFor('consumption to be under way', async () => (await charges('br')) >= 30, 120_000, 25);
      // Cut every connection of the vhost while the second third is being published.
      const [, published] = await Promise.all([closeVhostConnections(vhost.name), publishAll(vhost.url, during)]);
      publishes += published;
      await waitFor(
        'readiness to report the broker down',
        async () => readiness.samples.some((s) => s.status === 503 && s.broker === 'down'),
        30_000,
      );
      await waitFor(
        'readiness to report the broker up again',
        async () => {
          const down = readiness.samples.findIndex((s) => s.broker === 'down');
          return readiness.samples.slice(down).some((s) => s.status === 200 && s.broker === 'up');
        },
        60_000,
      );
    } finally {
      await readiness.stop();
    }
    // Consuming resumed on the new connection: the last third, published after, settles too.
    publishes += await publishAll(vhost.url, after);
    await settled('br', p.expected.length);

    expect(service.lines.some((l) => l.includes('RabbitMQ connection lost'))).toBe(true);
    expect(readiness.samples.every((s) => s.status !== 500 && s.pid === service.pid)).toBe(true);
    const books = await checkBooks(db.url, initial, p.expected);
    expect(books).toMatchObject({ duplicates: 0, lost: 0, unexpected: 0, wrongAmount: [], walletMismatches: [], negativeHeld: 0 });
    expect(books.chargeEntries).toBe(900);
    expect(await queueDepth(vhost.url, DEAD_LETTER_QUEUE)).toBe(0);

    reportFigures('outages/broker', {
      messages: 900,
      publish_batches: publishes,
      faults: 'rabbitmqctl close_all_connections ×1',
      readiness_down_samples: readiness.samples.filter((s) => s.broker === 'down').length,
      duplicates_found: books.duplicates,
      lost: books.lost,
      runtime_s: (Date.now() - began) / 1000,
    });
  }, 300_000);

  it('(b) a database outage shorter than the retry budget: queued settlements are retried and applied once, HTTP answers 503 unavailable and writes nothing, readiness recovers without a restart', async () => {
    const began = Date.now();
    const r = rng(32);
    const wallets = await createWallets(service.request, 'do', 10, '50000');
    const [http] = await createWallets(service.request, 'dx', 1, '1000');
    const initial = new Map(wallets.map((w) => [w, micros('50000')]));
    const p = await plan(service, r, wallets, 300, 300, 'do');
    // Two live holds for requests made during the outage.
    const toCancel = await startHold(service.request, http, 'chat');
    const toSettle = await startHold(service.request, http, 'tool');
    const settleUsages = randomUsages(r);
    const directUsages = randomUsages(r);
    const outageRequests: [string, Record<string, unknown>][] = [
      ['/api/credits-process/start', { user_id: http, feature_endpoint_id: 'chat' }],
      ['/api/credits-process/end-multimodel', { user_id: http, feature_endpoint_id: 'tool', usage_key: toSettle, usages: settleUsages }],
      [
        '/api/credits-process/end-multimodel',
        { user_id: http, feature_endpoint_id: 'chat', idempotency_key: 'outage-direct', usages: directUsages },
      ],
      ['/api/credits-process/cancel', { usage_key: toCancel }],
      [`/api/wallets/${http}/top-up`, { amount: '25.5', idempotency_key: 'outage-top-up' }],
    ];
    const pid = service.pid;

    // Half before the outage, half during it: the consumer meets the outage however fast it
    // drains (batched, it can finish 300 messages before the database is down).
    const [beforeOutage, duringOutage] = slices(p, 2);
    await publishAll(vhost.url, beforeOutage);
    await waitFor('consumption to be under way', async () => (await charges('do')) >= 30, 120_000, 25);
    const down = Date.now();
    await databaseDown(db.name);
    let outageAnswers: { status: number; body: any }[];
    try {
      await publishAll(vhost.url, duringOutage);
      const ready = await waitFor('readiness to report the database down', async () => {
        const res = await service.request('GET', '/health/ready', { key: null });
        return res.status !== 200 && res;
      });
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({
        success: false,
        data: { status: 'unavailable', message: expect.any(String), details: { database: { status: 'down' } } },
      });
      outageAnswers = await Promise.all([
        ...outageRequests.map(([path, body]) =>
          service.request('POST', path, { key: path.startsWith('/api/wallets') ? undefined : SERVICE_KEY, body }),
        ),
        service.request('GET', `/api/wallets/${http}`),
        service.request('GET', `/api/credits-process/usages/${toSettle}`),
      ]);
      // The consumer met the outage too (and is retrying, not acking or dropping).
      await waitFor(
        'a queued settlement to be retried',
        async () => service.lines.some((l) => l.includes('settlement failed transiently')),
        10_000,
      );
    } finally {
      await databaseUp(db.name);
    }
    const outageMs = Date.now() - down;
    for (const answer of outageAnswers) {
      expect(answer.status).toBe(503);
      expect(answer.body).toEqual({ success: false, data: { status: 'unavailable', message: expect.any(String) } });
    }
    expect(outageMs).toBeLessThan(12_600); // shorter than the retry budget, or dead-lettering would be right

    await waitFor(
      'readiness to recover',
      async () => (await service.request('GET', '/health/ready', { key: null })).status === 200,
      30_000,
    );
    expect(service.pid).toBe(pid);
    await settled('do', p.expected.length);
    expect(await queueDepth(vhost.url, DEAD_LETTER_QUEUE)).toBe(0);
    expect((await service.request('GET', '/api/settlement-failures')).body.data.items).toEqual([]);
    const books = await checkBooks(db.url, initial, p.expected);
    expect(books).toMatchObject({ duplicates: 0, lost: 0, unexpected: 0, wrongAmount: [], walletMismatches: [], negativeHeld: 0 });
    const retried = service.lines.filter((l) => l.includes('settlement failed transiently')).length;

    // Nothing the 503 answers were about was written: same balance, same two live holds, no new hold.
    const dxInitial = new Map([[http, micros('1000')]]);
    const untouched = await checkBooks(db.url, dxInitial, []);
    expect(untouched).toMatchObject({ chargeEntries: 0, walletMismatches: [], holdsByStatus: { held: 2 } });
    expect((await service.request('GET', `/api/wallets/${http}/transactions`)).body.data.items).toHaveLength(1);
    // …and each of them, retried now, applies once.
    for (const [path, body] of outageRequests) {
      const res = await service.request('POST', path, { key: path.startsWith('/api/wallets') ? undefined : SERVICE_KEY, body });
      expect(res.status).toBe(200);
    }
    const retriedBooks = await checkBooks(db.url, new Map([[http, micros('1025.5')]]), [
      { userId: http, usageKey: toSettle, charge: expectedCharge('tool', settleUsages) },
      { userId: http, idempotencyKey: 'outage-direct', charge: expectedCharge('chat', directUsages) },
    ]);
    expect(retriedBooks).toMatchObject({
      duplicates: 0,
      lost: 0,
      unexpected: 0,
      wrongAmount: [],
      walletMismatches: [],
      holdsByStatus: { held: 1, settled: 2, cancelled: 1 },
    });
    expect((await service.request('GET', '/api/reconciliation')).body.data.mismatches).toEqual([]);

    reportFigures('outages/database', {
      messages: p.expected.length,
      http_requests_during_outage: outageAnswers.length,
      outage_ms: outageMs,
      queued_retries_logged: retried,
      faults: 'ALLOW_CONNECTIONS false + pg_terminate_backend ×1',
      duplicates_found: books.duplicates,
      lost: books.lost,
      runtime_s: (Date.now() - began) / 1000,
    });
  }, 300_000);

  it('(c) an outage longer than the retry budget moves messages to the dead-letter queue, never drops them; published back after recovery they settle once', async () => {
    const began = Date.now();
    // A second process with a short retry budget (100 + 200 ms) on the same database and vhost.
    await service.stop();
    service = await spawnService(env('100,200'));
    const r = rng(33);
    const wallets = await createWallets(service.request, 'dl', 4, '1000');
    const initial = new Map(wallets.map((w) => [w, micros('1000')]));
    const p = await plan(service, r, wallets, 6, 4, 'dl');

    await databaseDown(db.name);
    try {
      await publishAll(vhost.url, p.byQueue);
      await waitFor('all 10 messages to be dead-lettered', async () => (await queueDepth(vhost.url, DEAD_LETTER_QUEUE)) >= 10, 60_000, 100);
      const totals = await queueTotals(vhost.name);
      for (const q of [MULTI_QUEUE, LEGACY_QUEUE]) expect(totals[q]).toEqual({ ready: 0, unacked: 0 });
    } finally {
      await databaseUp(db.name);
    }
    await service.ready();
    expect(await charges('dl')).toBe(0);

    // Publish each dead letter back twice: it settles, once.
    const moved = await replayDeadLetters(vhost.url, DEAD_LETTER_QUEUE, 2);
    expect(moved).toHaveLength(10);
    for (const m of moved) {
      expect([MULTI_QUEUE, LEGACY_QUEUE]).toContain(m.queue);
      expect(String(m.headers['x-failure-reason'])).not.toBe('');
    }
    await settled('dl', 10);
    expect(await queueDepth(vhost.url, DEAD_LETTER_QUEUE)).toBe(0);
    const books = await checkBooks(db.url, initial, p.expected);
    expect(books).toMatchObject({
      duplicates: 0,
      lost: 0,
      unexpected: 0,
      wrongAmount: [],
      walletMismatches: [],
      holdsByStatus: { settled: 10 },
    });
    expect((await service.request('GET', '/api/reconciliation')).body.data.mismatches).toEqual([]);

    reportFigures('outages/dead-letter', {
      messages: 10,
      republished: moved.length * 2,
      faults: 'database outage past the retry budget ×1',
      duplicates_found: books.duplicates,
      lost: books.lost,
      runtime_s: (Date.now() - began) / 1000,
    });
  }, 300_000);
});
