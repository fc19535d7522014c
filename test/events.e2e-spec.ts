import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import amqplib from 'amqplib';
import { withDb } from './support/faults';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import { Receiver, startReceiver } from './support/webhook-receiver';

const MODEL = 'ev-model';
const FEATURE = 'ev-feature';
/** 10,000 input tokens at 1 USD per million, 100 credits per USD, no margin: exactly 1 credit. */
const ONE_CREDIT = { ai_model: MODEL, input_tokens: 10_000, output_tokens: 0 };

interface EventView {
  id: string;
  type: string;
  user_id: string | null;
  created_at: string;
  data: Record<string, string>;
  deliveries: { pending: number; delivered: number; failed: number };
}

describe('events out (API.md §10)', () => {
  let t: TestApp;
  let vhost: TestVhost;
  let receiver: Receiver;
  const secrets = new Map<string, string>();
  let amqp: amqplib.ChannelModel;
  const published: { routingKey: string; messageId: string; persistent: boolean; body: string }[] = [];
  let n = 0;

  const ok = async (method: string, path: string, body?: unknown, key?: string) => {
    const res = await t.request(method, path, { body, key });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.data;
  };
  const charge = (user_id: string) =>
    ok(
      'POST',
      '/api/credits-process/end-multimodel',
      { user_id, feature_endpoint_id: FEATURE, idempotency_key: `c-${++n}`, usages: [ONE_CREDIT] },
      SERVICE_KEY,
    );
  const events = async (query = ''): Promise<EventView[]> => {
    const items: EventView[] = [];
    let cursor: string | null = null;
    do {
      const page = await ok('GET', `/api/events?limit=200${query}${cursor ? `&cursor=${cursor}` : ''}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return items.reverse(); // oldest first
  };
  const webhook = async (path: string, types: string[]) => {
    const created = await ok('POST', '/api/webhooks', { url: receiver.url(path), events: types, description: path });
    secrets.set(path, created.secret);
    return created as { webhook_id: string; secret: string };
  };

  beforeAll(async () => {
    vhost = await createTestVhost();
    receiver = await startReceiver((path) => secrets.get(path));
    t = await startTestApp({
      RABBITMQ_URL: vhost.url,
      EVENT_RELAY_INTERVAL_MS: '50',
      WEBHOOK_RETRY_DELAYS_MS: '100,200,300',
      WEBHOOK_TIMEOUT_MS: '500',
    });
    await waitFor('the broker', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
    await ok('POST', '/api/pricing/models', { ai_model: MODEL, input_price_per_million: '1', output_price_per_million: '1' });
    await ok('POST', '/api/features', { feature_endpoint_id: FEATURE, name: 'Events', min_holding_credits: '1', profit_margin: '0' });
    await ok('PUT', '/api/pricing/settings', { credits_per_usd: '100', default_profit_margin: '0' });
    // A partner's binding: a queue of its own on the exchange, every wallet event.
    amqp = await amqplib.connect(vhost.url);
    const channel = await amqp.createChannel();
    await channel.assertExchange('credits.events', 'topic', { durable: true });
    const { queue } = await channel.assertQueue('partner-wallet-events', { durable: true });
    await channel.bindQueue(queue, 'credits.events', 'wallet.*');
    await channel.bindQueue(queue, 'credits.events', 'settlement_failure.recorded');
    await channel.consume(queue, (msg) => {
      if (!msg) return;
      published.push({
        routingKey: msg.fields.routingKey,
        messageId: String(msg.properties.messageId),
        persistent: msg.properties.deliveryMode === 2,
        body: msg.content.toString('utf8'),
      });
      channel.ack(msg);
    });
  }, 60_000);

  afterAll(async () => {
    await amqp?.close().catch(() => undefined);
    await t?.close();
    await receiver?.close();
    await vhost?.delete();
  }, 30_000);

  it('takes thresholds per wallet (decimal strings, at most 5) and a default from the settings, shown on the wallet', async () => {
    await ok('POST', '/api/wallets', { user_id: 'th-1', initial_credits: '50' });
    expect((await ok('GET', '/api/wallets/th-1')).low_balance_thresholds).toEqual([]);
    const settings = await ok('PUT', '/api/pricing/settings', { default_low_balance_thresholds: ['5', '20.5'] });
    expect(settings.default_low_balance_thresholds).toEqual(['20.500000', '5.000000']);
    expect((await ok('GET', '/api/wallets/th-1')).low_balance_thresholds).toEqual(['20.500000', '5.000000']);
    const patched = await ok('PATCH', '/api/wallets/th-1', { low_balance_thresholds: ['1', '10'] });
    expect(patched.low_balance_thresholds).toEqual(['10.000000', '1.000000']);
    expect((await ok('PATCH', '/api/wallets/th-1', { low_balance_thresholds: null })).low_balance_thresholds).toEqual([
      '20.500000',
      '5.000000',
    ]);
    for (const bad of [['1', '2', '3', '4', '5', '6'], ['-1'], ['0'], ['abc'], ['1', '1'], [null], '10']) {
      const res = await t.request('PATCH', '/api/wallets/th-1', { body: { low_balance_thresholds: bad } });
      expect([res.status, res.body.data.status]).toEqual([400, 'validation_error']);
    }
    await ok('PUT', '/api/pricing/settings', { default_low_balance_thresholds: [] });
  });

  it('sends low_balance once per threshold crossed, depleted at zero, recovered above the highest fallen (re-arming them)', async () => {
    await ok('POST', '/api/wallets', { user_id: 'th-2', initial_credits: '12' });
    await ok('PATCH', '/api/wallets/th-2', { low_balance_thresholds: ['10', '5'] });
    await charge('th-2'); // 11: nothing
    await charge('th-2'); // 10: not strictly below
    expect(await events('&user_id=th-2')).toEqual([]);
    await charge('th-2'); // 9: below 10
    await ok('POST', '/api/wallets/th-2/adjust', { amount: '-5', reason: 'test' }); // 4: below 5
    await ok('POST', '/api/wallets/th-2/top-up', { amount: '2' }); // 6: above 5 but not above 10: no recovery
    await ok('POST', '/api/wallets/th-2/adjust', { amount: '-2', reason: 'test' }); // 4: 5 is still fallen: nothing
    await ok('POST', '/api/wallets/th-2/adjust', { amount: '-10', reason: 'test' }); // -6: depleted
    await ok('POST', '/api/wallets/th-2/top-up', { amount: '16.5' }); // 10.5: recovered
    await charge('th-2'); // 9.5: below 10 again (re-armed)
    const got = (await events('&user_id=th-2')).map((e) => [e.type, e.data.threshold ?? null, e.data.credits, e.data.balance]);
    expect(got).toEqual([
      ['wallet.low_balance', '10.000000', '9.000000', '9.000000'],
      ['wallet.low_balance', '5.000000', '4.000000', '4.000000'],
      ['wallet.depleted', null, '-6.000000', '-6.000000'],
      ['wallet.recovered', null, '10.500000', '10.500000'],
      ['wallet.low_balance', '10.000000', '9.500000', '9.500000'],
    ]);
    for (const e of await events('&user_id=th-2')) expect(e.data.user_id).toBe('th-2');
  });

  it('counts a hold: available credits, not the balance', async () => {
    await ok('POST', '/api/wallets', { user_id: 'th-3', initial_credits: '10.5' });
    await ok('PATCH', '/api/wallets/th-3', { low_balance_thresholds: ['10'] });
    await ok('POST', '/api/credits-process/start', { user_id: 'th-3', feature_endpoint_id: FEATURE }, SERVICE_KEY);
    const [e] = await events('&user_id=th-3');
    expect([e.type, e.data.credits, e.data.balance]).toEqual(['wallet.low_balance', '9.500000', '10.500000']);
  });

  it('writes one event when 200 concurrent settlements cross one threshold (batched statements included)', async () => {
    await ok('POST', '/api/wallets', { user_id: 'burst', initial_credits: '250' });
    await ok('PATCH', '/api/wallets/burst', { low_balance_thresholds: ['100'] });
    const results = await Promise.all(Array.from({ length: 200 }, () => charge('burst')));
    expect(results.every((r: { status: string }) => r.status === 'settled')).toBe(true);
    expect((await ok('GET', '/api/wallets/burst')).credits).toBe('50.000000');
    const batches = await withDb(
      t.db.url,
      async (c) => (await c.query(`SELECT count(DISTINCT created_at)::int AS n FROM ledger_entries WHERE user_id = 'burst'`)).rows[0].n,
    );
    const got = await events('&user_id=burst');
    expect(got.map((e) => [e.type, e.data.threshold])).toEqual([['wallet.low_balance', '100.000000']]);
    process.stderr.write(`[figures] events burst ${JSON.stringify({ settlements: 200, statements: batches, events: got.length })}\n`);
  }, 60_000);

  it('records a queued settlement kept as a failure as settlement_failure.recorded', async () => {
    await publish(vhost.url, 'credits_process_end_multimodel_queue', [{ user_id: 'nobody', feature_endpoint_id: FEATURE }]);
    const e = await waitFor('the failure event', async () => (await events('&type=settlement_failure.recorded'))[0]);
    expect(e.user_id).toBeNull();
    expect(Object.keys(e.data).sort()).toEqual(['id', 'queue', 'reason']);
    expect(e.data.queue).toBe('credits_process_end_multimodel_queue');
    const failures = (await ok('GET', '/api/settlement-failures')).items as { id: string }[];
    expect(failures.map((f) => f.id)).toContain(e.data.id);
  });

  it('delivers every event to matching webhooks, signed, in order per wallet, and to credits.events with message_id = id', async () => {
    await webhook('/all', ['*']);
    await webhook('/wallet', ['wallet.low_balance', 'wallet.recovered']);
    await ok('POST', '/api/wallets', { user_id: 'dv-1', initial_credits: '3' });
    await ok('PATCH', '/api/wallets/dv-1', { low_balance_thresholds: ['2.5', '1.5', '0.5'] });
    for (let i = 0; i < 3; i++) await charge('dv-1');
    await ok('POST', '/api/wallets/dv-1/top-up', { amount: '5' });
    const mine = await events('&user_id=dv-1');
    expect(mine.map((e) => e.type)).toEqual([
      'wallet.low_balance',
      'wallet.low_balance',
      'wallet.low_balance',
      'wallet.depleted',
      'wallet.recovered',
    ]);
    await waitFor('delivery to /all and /wallet', async () => {
      const all = receiver.at('/all').filter((r) => r.body.data.user_id === 'dv-1');
      const wallet = receiver.at('/wallet').filter((r) => r.body.data.user_id === 'dv-1');
      return all.length >= 5 && wallet.length >= 4;
    });
    const all = receiver.at('/all').filter((r) => r.body.data.user_id === 'dv-1');
    expect(all.map((r) => r.id)).toEqual(mine.map((e) => e.id)); // in order
    expect(
      receiver
        .at('/wallet')
        .filter((r) => r.body.data.user_id === 'dv-1')
        .map((r) => r.type),
    ).toEqual(['wallet.low_balance', 'wallet.low_balance', 'wallet.low_balance', 'wallet.recovered']);
    for (const r of all) {
      expect(r.verified).toBe(true);
      expect(r.type).toBe(r.body.type);
      const e = mine.find((m) => m.id === r.id)!;
      expect(r.body).toEqual({ id: e.id, type: e.type, created_at: e.created_at, data: e.data });
    }
    await waitFor('the exchange', async () => mine.every((e) => published.some((p) => p.messageId === e.id)));
    for (const e of mine) {
      const copies = published.filter((p) => p.messageId === e.id);
      expect(copies).toHaveLength(1);
      expect(copies[0].routingKey).toBe(e.type);
      expect(copies[0].persistent).toBe(true);
      expect(JSON.parse(copies[0].body)).toEqual({ id: e.id, type: e.type, created_at: e.created_at, data: e.data });
    }
    // Every request any endpoint got in this file is correctly signed.
    expect(receiver.received.filter((r) => !r.verified)).toEqual([]);
    await waitFor('the counts', async () => (await ok('GET', `/api/events/${mine[0].id}`)).deliveries.delivered === 3);
  }, 30_000);

  it('retries a failing, a timing-out and a slow endpoint, records each attempt, and does not hold the others up', async () => {
    const failing = await webhook('/fail', ['wallet.depleted']);
    const hanging = await webhook('/hang', ['wallet.depleted']);
    const flaky = await webhook('/flaky', ['wallet.depleted']);
    await webhook('/fast', ['wallet.depleted']);
    receiver.on('/fail', (_req, res) => res.writeHead(500).end('x'.repeat(100_000)));
    receiver.on('/hang', receiver.hang);
    receiver.on('/flaky', (_req, res, attempt) => setTimeout(() => res.writeHead(attempt < 3 ? 503 : 204).end(), 200));
    const wallets = ['rt-1', 'rt-2', 'rt-3'];
    for (const w of wallets) {
      await ok('POST', '/api/wallets', { user_id: w, initial_credits: '1' });
      await charge(w);
    }
    const depleted = (await events('&type=wallet.depleted')).filter((e) => wallets.includes(e.data.user_id));
    expect(depleted).toHaveLength(3);
    // The fast endpoint has them all while the hanging one is still on its first attempts.
    const fast = await waitFor('the fast endpoint', async () => {
      const got = receiver.at('/fast').filter((r) => wallets.includes(r.body.data.user_id));
      return got.length === 3 && got;
    });
    const firstHang = receiver.at('/hang')[0]?.at ?? Infinity;
    expect(Math.max(...fast.map((r) => r.at))).toBeLessThan(firstHang + 500);

    // 1 + 3 retries each (WEBHOOK_RETRY_DELAYS_MS=100,200,300), then failed.
    const attemptsOf = async (id: string) => {
      const page = await ok('GET', `/api/webhooks/${id}/deliveries?limit=200`);
      return page.items as {
        event_id: string;
        attempt: number;
        status_code: number | null;
        error: string | null;
        outcome: string;
        duration_ms: number;
        next_attempt_at: string | null;
      }[];
    };
    const failed = await waitFor(
      'the failing endpoint to give up',
      async () => {
        const items = await attemptsOf(failing.webhook_id);
        return items.filter((i) => i.outcome === 'failed').length === 3 && items;
      },
      30_000,
    );
    expect(failed).toHaveLength(12);
    for (const e of depleted) {
      const mine = failed.filter((i) => i.event_id === e.id);
      expect(mine.map((i) => i.outcome)).toEqual(['failed', 'retrying', 'retrying', 'retrying']); // newest first
      expect(mine.map((i) => i.attempt)).toEqual([4, 3, 2, 1]);
      expect(mine.every((i) => i.status_code === 500 && /^answered 500: x+$/.test(i.error!) && i.error!.length < 300)).toBe(true);
      expect(mine[0].next_attempt_at).toBeNull();
      expect(mine[1].next_attempt_at).not.toBeNull();
    }
    const hung = await waitFor(
      'the hanging endpoint to give up',
      async () => {
        const items = await attemptsOf(hanging.webhook_id);
        return items.filter((i) => i.outcome === 'failed').length === 3 && items;
      },
      30_000,
    );
    for (const i of hung) {
      expect(i.status_code).toBeNull();
      expect(i.error).toBe('no answer within 500 ms');
      expect(i.duration_ms).toBeGreaterThanOrEqual(450);
    }
    const slow = await waitFor(
      'the flaky endpoint to succeed',
      async () => {
        const items = await attemptsOf(flaky.webhook_id);
        return items.filter((i) => i.outcome === 'delivered').length === 3 && items;
      },
      30_000,
    );
    expect(slow.filter((i) => i.outcome === 'retrying').every((i) => i.status_code === 503)).toBe(true);
    expect(slow.filter((i) => i.outcome === 'delivered').every((i) => i.status_code === 204 && i.error === null)).toBe(true);

    // On demand: redelivered to every matching active webhook and the exchange.
    receiver.on('/fail', (_req, res) => res.writeHead(200).end());
    const before = published.filter((p) => p.messageId === depleted[0].id).length;
    const again = await ok('POST', `/api/events/${depleted[0].id}/redeliver`);
    expect(again).toEqual({ status: 'queued', event_id: depleted[0].id, deliveries: 6 }); // /all, 4 here, exchange
    await waitFor('the redelivery', async () => (await attemptsOf(failing.webhook_id)).some((i) => i.outcome === 'delivered'));
    await waitFor('the republish', async () => published.filter((p) => p.messageId === depleted[0].id).length === before + 1);
    expect((await t.request('POST', '/api/events/3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b/redeliver')).body.data.status).toBe(
      'event_not_found',
    );
    expect(receiver.received.filter((r) => !r.verified)).toEqual([]);
  }, 90_000);

  it('manages webhooks: secret shown once, list, patch, delete, audited without the secret', async () => {
    const created = await webhook('/managed', ['wallet.depleted']);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    const listed = (await ok('GET', '/api/webhooks?limit=200')).items as Record<string, unknown>[];
    const mine = listed.find((w) => w.webhook_id === created.webhook_id)!;
    expect(mine).not.toHaveProperty('secret');
    expect(await ok('GET', `/api/webhooks/${created.webhook_id}`)).not.toHaveProperty('secret');
    const patched = await ok('PATCH', `/api/webhooks/${created.webhook_id}`, { active: false, events: ['*'] });
    expect([patched.active, patched.events]).toEqual([false, ['*']]);
    expect(await ok('DELETE', `/api/webhooks/${created.webhook_id}`)).toMatchObject({ webhook_id: created.webhook_id });
    expect((await t.request('GET', `/api/webhooks/${created.webhook_id}`)).body.data.status).toBe('webhook_not_found');
    expect((await t.request('DELETE', `/api/webhooks/${created.webhook_id}`)).status).toBe(404);
    const audit = (await ok('GET', `/api/audit-log?target=${created.webhook_id}`)).items as { action: string; changes: unknown }[];
    expect(audit.map((a) => a.action)).toEqual(['webhook.delete', 'webhook.update', 'webhook.create']);
    expect(JSON.stringify(audit)).not.toContain(created.secret);
    expect(audit[1].changes).toEqual({ active: { from: true, to: false }, events: { from: ['wallet.depleted'], to: ['*'] } });
    for (const bad of [
      { url: 'ftp://example.com/x', events: ['*'] },
      { url: 'not a url', events: ['*'] },
      { url: 'https://example.com/x', events: [] },
      { url: 'https://example.com/x', events: ['wallet.unknown'] },
      { url: 'https://example.com/x', events: ['*'], description: null },
    ]) {
      const res = await t.request('POST', '/api/webhooks', { body: bad });
      expect([res.status, res.body.data.status]).toEqual([400, 'validation_error']);
    }
  });

  it('exposes events written, delivered, failed and the outbox lag on /metrics', async () => {
    const text = (await t.request('GET', '/metrics', { key: null })).body as string;
    expect(text).toMatch(/credits_events_total\{type="wallet.low_balance"\} \d+/);
    expect(text).toMatch(/credits_event_deliveries_total\{target="webhook",outcome="delivered"\} \d+/);
    expect(text).toMatch(/credits_event_deliveries_total\{target="webhook",outcome="failed"\} \d+/);
    expect(text).toMatch(/credits_event_deliveries_total\{target="exchange",outcome="delivered"\} \d+/);
    expect(text).toMatch(/credits_outbox_lag_seconds \d/);
  });
});

describe('webhook URLs in production (SSRF)', () => {
  it('refuses loopback, private and link-local targets unless WEBHOOK_ALLOW_PRIVATE_NETWORKS=true', async () => {
    const t = await startTestApp({ NODE_ENV: 'production', EVENT_RELAY_INTERVAL_MS: '0' });
    try {
      for (const url of [
        'http://127.0.0.1:9/x',
        'http://localhost/x',
        'http://10.0.0.1/x',
        'http://169.254.169.254/latest',
        'http://[::1]/x',
        'http://[fe80::1]/x',
      ]) {
        const res = await t.request('POST', '/api/webhooks', { body: { url, events: ['*'] } });
        expect([url, res.status, res.body.data.status]).toEqual([url, 400, 'validation_error']);
        expect(res.body.data.errors[0].field).toBe('url');
      }
      expect((await t.request('GET', '/api/webhooks')).body.data.items).toEqual([]);
    } finally {
      await t.close();
    }
    const allowed = await startTestApp({ NODE_ENV: 'production', EVENT_RELAY_INTERVAL_MS: '0', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' });
    try {
      expect((await allowed.request('POST', '/api/webhooks', { body: { url: 'http://127.0.0.1:9/x', events: ['*'] } })).status).toBe(201);
    } finally {
      await allowed.close();
    }
  });
});
