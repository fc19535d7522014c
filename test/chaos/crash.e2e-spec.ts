import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
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
  rng,
  runPool,
  startHold,
} from '../support/catalog';
import { createTestDatabase, TestDatabase } from '../support/database';
import { waitForSettlements } from '../support/faults';
import { SERVICE_KEY } from '../support/http';
import { createTestVhost, publish, queueDepth, TestVhost } from '../support/rabbit';
import { ServiceProcess, spawnService } from '../support/service-process';
import { startTcpProxy, TcpProxy } from '../support/tcp-proxy';
import { waitFor } from '../support/wait';

describe('crash: the service is SIGKILLed mid-work and started again', () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let service: ServiceProcess | undefined;
  let counter: pg.Client;
  // The service reaches RabbitMQ through a proxy the test can freeze (see the queue test).
  let proxy: TcpProxy;
  const env = (extra: Record<string, string> = {}) => ({ DATABASE_URL: db.url, RABBITMQ_URL: proxy.via(vhost.url), ...extra });
  const charges = async (prefix: string) =>
    Number(
      (await counter.query(`SELECT COUNT(*) AS n FROM ledger_entries WHERE kind = 'charge' AND user_id LIKE $1`, [`${prefix}-%`])).rows[0]
        .n,
    );

  beforeAll(async () => {
    db = await createTestDatabase();
    vhost = await createTestVhost();
    proxy = await startTcpProxy(vhost.url);
    service = await spawnService(env());
    await createCatalog(service.request);
    counter = new pg.Client({ connectionString: db.url });
    await counter.connect();
  }, 120_000);
  afterAll(async () => {
    await counter?.end();
    await service?.stop();
    await proxy?.close();
    await db?.drop();
    await vhost?.delete();
  }, 60_000);

  it('SIGKILL while 1,000 queued settlements are being consumed: after a restart each is charged exactly once, none lost', async () => {
    const began = Date.now();
    const r = rng(1001);
    const wallets = await createWallets(service!.request, 'qc', 20, '50000');
    const initial = new Map(wallets.map((w) => [w, micros('50000')]));
    const holds = Array.from({ length: 600 }, (_, i) => ({ userId: wallets[i % wallets.length], feature: r.pick(['chat', 'tool']) }));
    const usageKeys = await runPool(holds, 10, (h) => startHold(service!.request, h.userId, h.feature));

    const expected: ExpectedUsage[] = [];
    const byQueue: Record<string, unknown[]> = { [MULTI_QUEUE]: [], [LEGACY_QUEUE]: [] };
    const add = (target: Record<string, unknown>, userId: string, feature: string, ref: Partial<ExpectedUsage>) => {
      const legacy = r.chance(0.3);
      const usages = randomUsages(r, legacy ? 1 : 3);
      byQueue[legacy ? LEGACY_QUEUE : MULTI_QUEUE].push(
        legacy ? { ...target, feature_endpoint_id: feature, ...usages[0] } : { ...target, feature_endpoint_id: feature, usages },
      );
      expected.push({ userId, ...ref, charge: expectedCharge(feature, usages) });
    };
    holds.forEach((h, i) => add({ user_id: h.userId, usage_key: usageKeys[i] }, h.userId, h.feature, { usageKey: usageKeys[i] }));
    for (let i = 0; i < 400; i++) {
      const userId = r.pick(wallets);
      add({ user_id: userId, idempotency_key: `qc-direct-${i}` }, userId, r.pick(['chat', 'tool']), { idempotencyKey: `qc-direct-${i}` });
    }
    expect(expected).toHaveLength(1000);

    await Promise.all(Object.entries(byQueue).map(([queue, bodies]) => publish(vhost.url, queue, bodies)));
    await waitFor('the first settlements to commit', async () => (await charges('qc')) >= 30, 120_000, 20);
    // Kill it with settlements committed but not acked, for sure: from here on nothing the service
    // sends reaches the broker (its acks are held by the proxy) while deliveries still reach it, so
    // every settlement that commits now is one the broker will deliver again.
    proxy.freeze();
    const settledAtFreeze = await charges('qc');
    await waitFor('settlements to commit while their acks are held', async () => (await charges('qc')) >= settledAtFreeze + 20, 8_000, 10);
    expect(await service!.kill('SIGKILL')).toBe('SIGKILL');
    // Only now drop the connection (the held acks are never forwarded): the broker requeues every
    // unacked message, marked redelivered.
    proxy.cut();
    proxy.thaw();
    const settledBeforeKill = await charges('qc');
    const committedUnacked = settledBeforeKill - settledAtFreeze;
    expect(committedUnacked).toBeGreaterThanOrEqual(20);
    expect(settledBeforeKill).toBeLessThan(1000);

    // The same database and vhost: the broker gives the unacked messages to the new process.
    service = await spawnService(env({ LOG_LEVEL: 'info' }));
    await waitForSettlements(vhost.name, [MULTI_QUEUE, LEGACY_QUEUE], () => charges('qc'), 1000);

    const books = await checkBooks(db.url, initial, expected);
    expect(books).toMatchObject({ duplicates: 0, lost: 0, unexpected: 0, wrongAmount: [], walletMismatches: [] });
    expect(books.chargeEntries).toBe(1000);
    expect(books.holdsByStatus).toEqual({ settled: 1000 });
    expect((await service.request('GET', '/api/reconciliation')).body.data.mismatches).toEqual([]);
    expect((await service.request('GET', '/api/settlement-failures')).body.data.items).toEqual([]);
    expect(await queueDepth(vhost.url, DEAD_LETTER_QUEUE)).toBe(0);
    // The path this test is about: each message whose settlement had committed when the process
    // died came back redelivered and was absorbed — answered already_settled, nothing charged.
    const absorbed = service.lines
      .filter((l) => l.includes('"msg":"duplicate settlement message') && l.includes('"redelivered":true'))
      .map((l) => JSON.parse(l).usage_key as string);
    expect(absorbed.length).toBeGreaterThanOrEqual(committedUnacked);
    expect(new Set(absorbed).size).toBe(absorbed.length);
    const chargesOfAbsorbed = (
      await counter.query(
        `SELECT usage_key::text, count(*)::int AS n FROM ledger_entries WHERE kind = 'charge' AND usage_key = ANY($1::uuid[]) GROUP BY 1`,
        [absorbed],
      )
    ).rows;
    expect(chargesOfAbsorbed.filter((r) => r.n !== 1)).toEqual([]);
    expect(chargesOfAbsorbed).toHaveLength(absorbed.length);

    reportFigures('crash/queue', {
      messages: 1000,
      http_requests: holds.length + wallets.length,
      faults: 'SIGKILL ×1',
      settled_before_kill: settledBeforeKill,
      committed_unacked_at_kill: committedUnacked,
      redelivered_already_settled: absorbed.length,
      duplicates_found: books.duplicates,
      lost: books.lost,
      runtime_s: (Date.now() - began) / 1000,
    });
  }, 300_000);

  it('SIGKILL during HTTP load: every answered settlement is in the ledger once, every unanswered one retries to exactly one charge', async () => {
    const began = Date.now();
    const r = rng(2002);
    const wallets = await createWallets(service!.request, 'hc', 10, '100000');
    const initial = new Map(wallets.map((w) => [w, micros('100000')]));
    const request = service!.request;

    type Outcome = { status: number; body: any } | { status: 'no_answer' };
    interface Settlement {
      userId: string;
      feature: string;
      path: string;
      body: Record<string, unknown>;
      charge: bigint;
      usageKey?: string;
      idempotencyKey?: string;
      outcome: Outcome;
    }
    const starts: { userId: string; outcome: Outcome }[] = [];
    const settlements: Settlement[] = [];
    const cancels: { usageKey: string; outcome: Outcome }[] = [];
    let requests = 0;
    let answeredSettlements = 0;
    let dead = false;

    const call = async (path: string, body: Record<string, unknown>): Promise<Outcome> => {
      requests++;
      try {
        const res = await request('POST', path, { key: SERVICE_KEY, body });
        return { status: res.status, body: res.body };
      } catch {
        return { status: 'no_answer' };
      }
    };
    const settlementOf = (userId: string, feature: string, target: Record<string, unknown>): Omit<Settlement, 'outcome'> => {
      const legacy = r.chance(0.3);
      const usages = randomUsages(r, legacy ? 1 : 3);
      return {
        userId,
        feature,
        path: legacy ? '/api/credits-process/end' : '/api/credits-process/end-multimodel',
        body: legacy
          ? { user_id: userId, feature_endpoint_id: feature, ...target, ...usages[0] }
          : { user_id: userId, feature_endpoint_id: feature, ...target, usages },
        charge: expectedCharge(feature, usages),
        usageKey: target.usage_key as string | undefined,
        idempotencyKey: target.idempotency_key as string | undefined,
      };
    };

    let directs = 0;
    const worker = async () => {
      while (!dead) {
        const userId = r.pick(wallets);
        const feature = r.pick(['chat', 'tool']);
        const roll = r.next();
        if (roll < 0.25) {
          const s = settlementOf(userId, feature, { idempotency_key: `hc-direct-${directs++}` });
          const record: Settlement = { ...s, outcome: { status: 'no_answer' } };
          settlements.push(record);
          record.outcome = await call(s.path, s.body);
          if (record.outcome.status === 200) answeredSettlements++;
          continue;
        }
        const start = { userId, outcome: await call('/api/credits-process/start', { user_id: userId, feature_endpoint_id: feature }) };
        starts.push(start);
        if (start.outcome.status !== 200) continue;
        const usageKey = (start.outcome as { body: any }).body.data.usage_key as string;
        if (roll < 0.4) {
          const cancel = { usageKey, outcome: await call('/api/credits-process/cancel', { usage_key: usageKey }) };
          cancels.push(cancel);
          continue;
        }
        const s = settlementOf(userId, feature, { usage_key: usageKey });
        const record: Settlement = { ...s, outcome: { status: 'no_answer' } };
        settlements.push(record);
        record.outcome = await call(s.path, s.body);
        if (record.outcome.status === 200) answeredSettlements++;
      }
    };

    const workers = Array.from({ length: 16 }, () => worker());
    try {
      await waitFor('150 settlements to be answered', async () => answeredSettlements >= 150, 120_000, 10);
    } finally {
      dead = true; // no new flows; the ones in flight run into the kill
    }
    expect(await service!.kill('SIGKILL')).toBe('SIGKILL');
    await Promise.all(workers);

    const all = [...starts.map((s) => s.outcome), ...settlements.map((s) => s.outcome), ...cancels.map((c) => c.outcome)];
    // Before the kill every request was answered, and never with a 5xx.
    expect(all.filter((o) => o.status !== 'no_answer' && o.status !== 200)).toEqual([]);
    const unanswered = settlements.filter((s) => s.outcome.status === 'no_answer');

    service = await spawnService(env());
    const after = service.request;
    // Retry every settlement and cancel that got no answer, twice: each charges at most once.
    let retries = 0;
    for (const round of [1, 2]) {
      await runPool(unanswered, 8, async (s) => {
        retries++;
        const res = await after('POST', s.path, { key: SERVICE_KEY, body: s.body });
        expect(res.status).toBe(200);
        expect(['settled', 'already_settled']).toContain(res.body.data.status);
        if (round === 2) expect(res.body.data.status).toBe('already_settled');
        expect(micros(res.body.data.credits_charged)).toBe(s.charge);
      });
    }
    for (const c of cancels.filter((x) => x.outcome.status === 'no_answer')) {
      retries++;
      const res = await after('POST', '/api/credits-process/cancel', { key: SERVICE_KEY, body: { usage_key: c.usageKey } });
      expect(res.status).toBe(200);
      expect(res.body.data.status).toBe('cancelled');
    }

    // Every answered settlement: its figures are the ledger's, charged exactly once.
    for (const s of settlements.filter((x) => x.outcome.status === 200)) {
      const answer = (s.outcome as { body: any }).body.data;
      expect(micros(answer.credits_charged)).toBe(s.charge);
      const entries = (await after('GET', `/api/wallets/${s.userId}/transactions?usage_key=${answer.usage_key}`)).body.data.items;
      expect(entries).toHaveLength(1);
      expect(entries[0].id).toBe(answer.transaction_id);
      expect(micros(entries[0].amount)).toBe(-s.charge);
    }
    // Every hold /start answered is live, settled, cancelled or expired — and the books add up.
    const startedKeys = starts
      .filter((s) => s.outcome.status === 200)
      .map((s) => (s.outcome as { body: any }).body.data.usage_key as string);
    for (const key of startedKeys) {
      const usage = await after('GET', `/api/credits-process/usages/${key}`, { key: SERVICE_KEY });
      expect(usage.status).toBe(200);
      expect(['held', 'settled', 'cancelled', 'expired']).toContain(usage.body.data.status);
    }
    const expected: ExpectedUsage[] = settlements.map((s) => ({
      userId: s.userId,
      usageKey: s.usageKey,
      idempotencyKey: s.idempotencyKey,
      charge: s.charge,
    }));
    const books = await checkBooks(db.url, initial, expected);
    expect(books).toMatchObject({ duplicates: 0, lost: 0, unexpected: 0, wrongAmount: [], walletMismatches: [] });
    expect((await after('GET', '/api/reconciliation')).body.data.mismatches).toEqual([]);

    reportFigures('crash/http', {
      http_requests: requests + retries,
      settlements: settlements.length,
      answered_before_kill: settlements.length - unanswered.length,
      unanswered_settlements: unanswered.length,
      unanswered_starts: starts.filter((s) => s.outcome.status === 'no_answer').length,
      retries,
      faults: 'SIGKILL ×1',
      holds_by_status: books.holdsByStatus,
      duplicates_found: books.duplicates,
      lost: books.lost,
      runtime_s: (Date.now() - began) / 1000,
    });
  }, 300_000);
});
