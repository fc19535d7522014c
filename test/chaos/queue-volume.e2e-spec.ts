import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
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
import { scalar, waitForSettlements } from '../support/faults';
import { createTestVhost, publish, queueDepth, TestVhost } from '../support/rabbit';
import { ServiceProcess, spawnService } from '../support/service-process';

interface Message {
  queue: string;
  body: Record<string, unknown>;
}

describe('queue settlement under volume', () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let service: ServiceProcess;

  beforeAll(async () => {
    db = await createTestDatabase();
    vhost = await createTestVhost();
    service = await spawnService({ DATABASE_URL: db.url, RABBITMQ_URL: vhost.url });
    await createCatalog(service.request);
  }, 120_000);
  afterAll(async () => {
    await service?.stop();
    await db?.drop();
    await vhost?.delete();
  }, 60_000);

  it('settles 2,000 messages (holds and direct charges, 200 duplicates) across 40 wallets to the exact micro-credit', async () => {
    const began = Date.now();
    const r = rng(20261125);
    const initialCredits = '100000';
    const wallets = await createWallets(service.request, 'vol', 40, initialCredits);
    const initial = new Map(wallets.map((w) => [w, micros(initialCredits)]));

    // 800 holds placed over HTTP, settled by queue (a quarter on the legacy single-model queue).
    const holds = Array.from({ length: 800 }, (_, i) => ({ userId: wallets[i % wallets.length], feature: r.pick(['chat', 'tool']) }));
    const usageKeys = await runPool(holds, 10, (h) => startHold(service.request, h.userId, h.feature));
    const phases: Record<string, number> = { holds_placed_s: (Date.now() - began) / 1000 };
    const expected: ExpectedUsage[] = [];
    const messages: Message[] = [];
    const toMessage = (target: Record<string, unknown>, feature: string, legacy: boolean): Message => {
      const usages = randomUsages(r, legacy ? 1 : 3);
      const body = legacy ? { ...target, feature_endpoint_id: feature, ...usages[0] } : { ...target, feature_endpoint_id: feature, usages };
      return { queue: legacy ? LEGACY_QUEUE : MULTI_QUEUE, body: { ...body, charge: expectedCharge(feature, usages) } };
    };
    holds.forEach((h, i) => {
      const m = toMessage({ user_id: h.userId, usage_key: usageKeys[i] }, h.feature, r.chance(0.25));
      messages.push(m);
      expected.push({ userId: h.userId, usageKey: usageKeys[i], charge: m.body.charge as bigint });
    });
    // 1,000 direct charges made safe to repeat by their idempotency key.
    for (let i = 0; i < 1000; i++) {
      const userId = r.pick(wallets);
      const idempotencyKey = `vol-direct-${i}`;
      const m = toMessage({ user_id: userId, idempotency_key: idempotencyKey }, r.pick(['chat', 'tool']), r.chance(0.25));
      messages.push(m);
      expected.push({ userId, idempotencyKey, charge: m.body.charge as bigint });
    }
    // 200 of them published a second time, shuffled in, so many duplicates are consumed concurrently.
    const duplicates = r.shuffle([...messages]).slice(0, 200);
    const all = r.shuffle([...messages, ...duplicates]).map((m) => {
      const { charge: _charge, ...body } = m.body;
      return { queue: m.queue, body };
    });
    expect(all).toHaveLength(2000);

    await Promise.all(
      [MULTI_QUEUE, LEGACY_QUEUE].map((queue) =>
        publish(
          vhost.url,
          queue,
          all.filter((m) => m.queue === queue).map((m) => m.body),
        ),
      ),
    );

    phases.published_s = (Date.now() - began) / 1000;
    await waitForSettlements(
      vhost.name,
      [MULTI_QUEUE, LEGACY_QUEUE],
      async () => Number(await scalar(db.url, `SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge'`)),
      expected.length,
    );
    phases.drained_s = (Date.now() - began) / 1000;
    const books = await checkBooks(db.url, initial, expected);
    expect(books).toMatchObject({ duplicates: 0, lost: 0, unexpected: 0, wrongAmount: [], walletMismatches: [], negativeHeld: 0 });
    expect(books.chargeEntries).toBe(1800);
    expect(books.holdsByStatus).toEqual({ settled: 1800 });
    for (const userId of wallets) expect((await service.request('GET', `/api/wallets/${userId}`)).body.data.held).toBe('0.000000');
    const reconciliation = await service.request('GET', '/api/reconciliation');
    expect(reconciliation.body.data).toEqual({ wallets_checked: 40, mismatches: [] });
    expect((await service.request('GET', '/api/settlement-failures')).body.data.items).toEqual([]);
    expect(await queueDepth(vhost.url, DEAD_LETTER_QUEUE)).toBe(0);

    reportFigures('queue-volume', {
      messages: all.length,
      duplicates_published: duplicates.length,
      http_requests: holds.length + wallets.length,
      usages: expected.length,
      duplicates_found: books.duplicates,
      lost: books.lost,
      ...phases,
      runtime_s: (Date.now() - began) / 1000,
    });
  }, 300_000);
});
