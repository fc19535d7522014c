import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

const MULTI = 'credits_process_end_multimodel_queue';
const LEGACY = 'credits_process_end_queue';

describe('queue settlement over RabbitMQ', () => {
  let t: TestApp;
  let vhost: TestVhost;
  let n = 0;

  beforeAll(async () => {
    vhost = await createTestVhost();
    t = await startTestApp({ RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: '100,200' });
    await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
    await t.request('POST', '/api/features', {
      body: { feature_endpoint_id: 'chat', name: 'Chat', min_holding_credits: '5', profit_margin: '0.2' },
    });
    await t.request('POST', '/api/pricing/models', {
      body: { ai_model: 'gpt-4o', input_price_per_million: '2.5', output_price_per_million: '10' },
    });
  });
  afterAll(async () => {
    await t?.close();
    await vhost?.delete();
  });

  async function walletWithHold(credits = '100') {
    const userId = `q-user-${++n}`;
    await t.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: credits } });
    const start = await t.request('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: { user_id: userId, feature_endpoint_id: 'chat' },
    });
    expect(start.status).toBe(200);
    return { userId, usageKey: start.body.data.usage_key as string };
  }

  const wallet = async (userId: string) => (await t.request('GET', `/api/wallets/${userId}`)).body.data;
  const charges = async (userId: string) =>
    (await t.request('GET', `/api/wallets/${userId}/transactions?limit=200`)).body.data.items.filter(
      (e: { kind: string }) => e.kind === 'charge',
    );
  const failures = async () =>
    (await t.request('GET', '/api/settlement-failures?limit=200')).body.data.items as {
      id: string;
      queue: string;
      payload: string;
      error_status: string;
      status: string;
    }[];

  // gpt-4o at 2.5 / 10 USD per million: 1200 in + 300 out = 0.003 + 0.003 = 0.006 USD
  // × (1 + 0.2) × 100 credits/USD = 0.72 credits.
  const usage = { ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 };

  it('settles a bare JSON message published exactly as the seed does, and charges once when it is published 3 times', async () => {
    const { userId, usageKey } = await walletWithHold();
    const message = { user_id: userId, usage_key: usageKey, feature_endpoint_id: 'chat', usages: [usage] };
    await publish(vhost.url, MULTI, [message, message, message]);
    const w = await waitFor('the settlement to commit', async () => {
      const v = await wallet(userId);
      return v.held === '0.000000' && v;
    });
    expect(w.balance).toBe('99.280000');
    const usageView = await waitFor('the usage to be settled', async () => {
      const u = (await t.request('GET', `/api/credits-process/usages/${usageKey}`)).body.data;
      return u.status === 'settled' && u;
    });
    expect(usageView.settlement.credits_charged).toBe('0.720000');
    expect(usageView.settlement.status).toBe('settled');
    // The two duplicates must have been consumed (acked) without charging: publish a marker after
    // them on the same queue and wait for it, so the duplicates are known to be processed.
    const marker = await walletWithHold();
    await publish(vhost.url, MULTI, [{ user_id: marker.userId, usage_key: marker.usageKey, feature_endpoint_id: 'chat', usages: [usage] }]);
    await waitFor('the marker to settle', async () => (await wallet(marker.userId)).held === '0.000000');
    expect(await charges(userId)).toHaveLength(1);
    expect((await wallet(userId)).balance).toBe('99.280000');
  });

  it('settles the legacy single-model queue and a Nest {pattern, data} envelope', async () => {
    const legacy = await walletWithHold();
    const enveloped = await walletWithHold();
    await publish(vhost.url, LEGACY, [{ user_id: legacy.userId, usage_key: legacy.usageKey, feature_endpoint_id: 'chat', ...usage }]);
    await publish(vhost.url, MULTI, [
      {
        pattern: 'anything',
        data: { user_id: enveloped.userId, usage_key: enveloped.usageKey, feature_endpoint_id: 'chat', usages: [usage] },
      },
    ]);
    for (const userId of [legacy.userId, enveloped.userId]) {
      const w = await waitFor(`${userId} to be settled`, async () => {
        const v = await wallet(userId);
        return v.held === '0.000000' && v;
      });
      expect(w.balance).toBe('99.280000');
    }
  });

  it('records poison messages whole as settlement failures, keeps consuming, and replays one after its model gets a price', async () => {
    const before = (await failures()).length;
    const unknownModel = await walletWithHold();
    const good = await walletWithHold();
    const garbage = Buffer.from([0xff, 0x00, 0xfe, 0x41]);
    const unknownModelMessage = {
      user_id: unknownModel.userId,
      usage_key: unknownModel.usageKey,
      feature_endpoint_id: 'chat',
      usages: [{ ai_model: 'brand-new-model', input_tokens: 1000, output_tokens: 1000 }],
    };
    await publish(vhost.url, MULTI, [
      garbage,
      Buffer.from('{"user_id": "x", '),
      { user_id: 'x', feature_endpoint_id: 'chat', usages: [{ ai_model: 'gpt-4o', input_tokens: '10', output_tokens: 1 }] },
      unknownModelMessage,
      { user_id: good.userId, usage_key: '00000000-0000-4000-8000-000000000000', feature_endpoint_id: 'chat', usages: [usage] },
      { user_id: good.userId, usage_key: good.usageKey, feature_endpoint_id: 'chat', usages: [usage] },
    ]);
    // The last (good) message settles even though five poison ones came before it.
    await waitFor('the good message to settle', async () => (await wallet(good.userId)).held === '0.000000');
    const recorded = await waitFor('five failures', async () => {
      const all = await failures();
      return all.length - before >= 5 && all.slice(before);
    });
    expect(recorded.map((f) => f.error_status).sort()).toEqual([
      'unknown_model',
      'usage_key_not_found',
      'validation_error',
      'validation_error',
      'validation_error',
    ]);
    expect(recorded.every((f) => f.queue === MULTI && f.status === 'pending')).toBe(true);
    const garbageRow = recorded.find((f) => f.payload === garbage.toString('base64'));
    expect(garbageRow).toBeDefined();
    // Nothing was charged for the unknown model; its hold is still live.
    expect((await wallet(unknownModel.userId)).held).toBe('5.000000');

    const unknown = recorded.find((f) => f.error_status === 'unknown_model')!;
    expect(JSON.parse(unknown.payload)).toEqual(unknownModelMessage);
    const tooEarly = await t.request('POST', `/api/settlement-failures/${unknown.id}/replay`);
    expect(tooEarly.status).toBe(422);
    await t.request('POST', '/api/pricing/models', {
      body: { ai_model: 'brand-new-model', input_price_per_million: '1', output_price_per_million: '2' },
    });
    const replayed = await t.request('POST', `/api/settlement-failures/${unknown.id}/replay`);
    expect(replayed.status).toBe(200);
    // 1000 × 1 + 1000 × 2 = 3000 micro-USD = 0.003 USD × 1.2 × 100 = 0.36 credits
    expect(replayed.body.data.settlement.credits_charged).toBe('0.360000');
    expect(replayed.body.data.failure.status).toBe('replayed');
    expect(await wallet(unknownModel.userId)).toMatchObject({ balance: '99.640000', held: '0.000000' });
    const again = await t.request('POST', `/api/settlement-failures/${unknown.id}/replay`);
    expect(again.status).toBe(409);

    const discard = await t.request('POST', `/api/settlement-failures/${garbageRow!.id}/discard`);
    expect(discard.status).toBe(200);
    expect(discard.body.data.failure.status).toBe('discarded');
  });

  it('reports the broker in /health/ready and keeps the books reconciled', async () => {
    const ready = await t.request('GET', '/health/ready', { key: null });
    expect(ready.body.data.details.broker.status).toBe('up');
    const rec = await t.request('GET', '/api/reconciliation');
    expect(rec.body.data.mismatches).toEqual([]);
  });
});
