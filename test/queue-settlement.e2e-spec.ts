import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import amqplib from 'amqplib';
import pg from 'pg';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

const MULTI = 'credits_process_end_multimodel_queue';
const LEGACY = 'credits_process_end_queue';

/** The user_id a stored payload names (undefined for the poison bodies that are not JSON). */
function payloadUser(payload: string): string | undefined {
  try {
    return JSON.parse(payload)?.user_id;
  } catch {
    return undefined;
  }
}

/** Publishes as a producer that sets AMQP properties (a message_id) on each message. */
async function publishWith(url: string, queue: string, messages: { body: unknown; messageId?: string }[]): Promise<void> {
  const connection = await amqplib.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true });
    for (const m of messages)
      channel.sendToQueue(queue, Buffer.from(JSON.stringify(m.body)), {
        persistent: true,
        ...(m.messageId === undefined ? {} : { messageId: m.messageId }),
      });
    await channel.waitForConfirms();
    await channel.close();
  } finally {
    await connection.close();
  }
}

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
      attempts: number;
    }[];
  /** The failure recorded for the one message naming `userId`, once it is there. */
  const failureOf = (userId: string) =>
    waitFor(`the failure of ${userId}`, async () => (await failures()).find((f) => payloadUser(f.payload) === userId));
  /** Queue settlements counted by outcome (settled, already_settled, failed) in /metrics. */
  const queueOutcome = async (outcome: string) => {
    const text = (await t.request('GET', '/metrics', { key: null })).body as string;
    const line = text
      .split('\n')
      .find((l) => l.startsWith('credits_settlements_total{') && l.includes('channel="queue"') && l.includes(`outcome="${outcome}"`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const sql = async <T = Record<string, unknown>>(text: string, params: unknown[] = []) => {
    const client = new pg.Client({ connectionString: t.db.url });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  };
  /** A direct charge (no usage_key, no idempotency_key) for a user with no wallet yet: recorded as wallet_not_found. */
  async function recordedDirectCharge(messageId?: string) {
    const userId = `ghost-${++n}`;
    await publishWith(vhost.url, MULTI, [{ body: { user_id: userId, feature_endpoint_id: 'chat', usages: [usage] }, messageId }]);
    const failure = await failureOf(userId);
    expect(failure).toMatchObject({ error_status: 'wallet_not_found', status: 'pending' });
    await t.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: '100' } });
    return { userId, failure };
  }

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

  async function newWallet() {
    const userId = `q-user-${++n}`;
    await t.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: '100' } });
    return userId;
  }

  it('charges a direct charge without idempotency_key once per AMQP message_id, however often it is delivered', async () => {
    const userId = await newWallet();
    const body = { user_id: userId, feature_endpoint_id: 'chat', usages: [usage] };
    const duplicatesBefore = await queueOutcome('already_settled');
    await publishWith(vhost.url, MULTI, [
      { body, messageId: 'order-1' },
      { body, messageId: 'order-1' },
    ]);
    // A message_id longer than an idempotency key may be (128) keys by its digest, the same way.
    const long = `m-${'x'.repeat(250)}`;
    await publishWith(vhost.url, LEGACY, [
      { body: { user_id: userId, feature_endpoint_id: 'chat', ...usage }, messageId: long },
      { body: { user_id: userId, feature_endpoint_id: 'chat', ...usage }, messageId: long },
    ]);
    await waitFor('both duplicates to be answered', async () => (await queueOutcome('already_settled')) - duplicatesBefore >= 2);
    expect(await charges(userId)).toHaveLength(2);
    expect((await wallet(userId)).balance).toBe('98.560000');
    // The message_id is the charge's idempotency key: an HTTP retry under it is the same charge.
    const http = await t.request('POST', '/api/credits-process/end-multimodel', {
      key: SERVICE_KEY,
      body: body,
      headers: { 'idempotency-key': 'order-1' },
    });
    expect(http.body.data.status).toBe('already_settled');
    // A key the message names itself wins over its message_id.
    await publishWith(vhost.url, MULTI, [
      { body: { ...body, idempotency_key: 'own-key' }, messageId: 'order-2' },
      { body: { ...body, idempotency_key: 'own-key' }, messageId: 'order-3' },
    ]);
    await waitFor('the third duplicate to be answered', async () => (await queueOutcome('already_settled')) - duplicatesBefore >= 3);
    expect(await charges(userId)).toHaveLength(3);
    expect((await wallet(userId)).balance).toBe('97.840000');
  });

  it('charges each delivery of a direct charge with neither message_id nor idempotency_key (what remains, documented)', async () => {
    const userId = await newWallet();
    const body = { user_id: userId, feature_endpoint_id: 'chat', usages: [usage] };
    await publishWith(vhost.url, MULTI, [{ body }, { body }]);
    await waitFor('both deliveries to charge', async () => (await charges(userId)).length === 2);
    expect((await wallet(userId)).balance).toBe('98.560000');
  });

  it('charges a stored direct charge once when ten replays race', async () => {
    const { userId, failure } = await recordedDirectCharge();
    const answers = await Promise.all(Array.from({ length: 10 }, () => t.request('POST', `/api/settlement-failures/${failure.id}/replay`)));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    expect(answers.filter((a) => a.status === 409).every((a) => a.body.data.status === 'conflict')).toBe(true);
    expect(await charges(userId)).toHaveLength(1);
    expect((await wallet(userId)).balance).toBe('99.280000');
    expect((await failureOf(userId)).status).toBe('replayed');
  });

  it('charges nothing more when a replay takes over one that crashed after charging, and refuses to discard it meanwhile', async () => {
    const { userId, failure } = await recordedDirectCharge();
    expect((await t.request('POST', `/api/settlement-failures/${failure.id}/replay`)).status).toBe(200);
    expect(await charges(userId)).toHaveLength(1);
    // As if that replay had crashed after its settlement committed and before it marked the failure.
    const crashed = (age: string) =>
      sql(
        `UPDATE settlement_failures SET status = 'pending', resolution = NULL, resolved_at = NULL, claimed_at = now() - $2::interval WHERE id = $1`,
        [failure.id, age],
      );
    await crashed('1 second');
    // Still within its claim: nothing else may act on it.
    expect((await t.request('POST', `/api/settlement-failures/${failure.id}/replay`)).status).toBe(409);
    const busy = await t.request('POST', `/api/settlement-failures/${failure.id}/discard`);
    expect({ status: busy.status, word: busy.body.data.status }).toEqual({ status: 409, word: 'conflict' });
    await crashed('2 minutes');
    // The claim is stale, but the replay may have charged: discarding would hide a charge.
    const discard = await t.request('POST', `/api/settlement-failures/${failure.id}/discard`);
    expect(discard.status).toBe(409);
    expect(discard.body.data.message).toMatch(/may have charged/);
    const answers = await Promise.all(Array.from({ length: 10 }, () => t.request('POST', `/api/settlement-failures/${failure.id}/replay`)));
    const ok = answers.filter((a) => a.status === 200);
    expect(ok).toHaveLength(1);
    // Settled under the same key as the first replay: the first charge's answer, nothing charged.
    expect(ok[0].body.data.settlement.status).toBe('already_settled');
    expect(ok[0].body.data.failure.status).toBe('replayed');
    expect(await charges(userId)).toHaveLength(1);
    expect((await wallet(userId)).balance).toBe('99.280000');
  });

  it('never leaves a failure discarded with its wallet charged when replays and discards race', async () => {
    const stored = [];
    for (let i = 0; i < 6; i++) stored.push(await recordedDirectCharge());
    const answers = await Promise.all(
      stored.map(({ failure }, i) => {
        const order = i % 2 === 0 ? (['replay', 'discard'] as const) : (['discard', 'replay'] as const);
        return Promise.all(
          Array.from({ length: 8 }, (_, j) => order[j % 2]).map(async (action) => ({
            action,
            status: (await t.request('POST', `/api/settlement-failures/${failure.id}/${action}`)).status,
          })),
        );
      }),
    );
    for (const [i, { userId }] of stored.entries()) {
      const won = answers[i].filter((a) => a.status === 200);
      expect(won).toHaveLength(1);
      expect(answers[i].every((a) => a.status === 200 || a.status === 409)).toBe(true);
      const final = await failureOf(userId);
      expect(final.status).toBe(won[0].action === 'replay' ? 'replayed' : 'discarded');
      expect({ userId, charges: (await charges(userId)).length, balance: (await wallet(userId)).balance }).toEqual(
        won[0].action === 'replay' ? { userId, charges: 1, balance: '99.280000' } : { userId, charges: 0, balance: '100.000000' },
      );
    }
  });

  it('replays a stored direct charge under its message_id: a producer that republished it is charged once', async () => {
    const { userId, failure } = await recordedDirectCharge('invoice-77');
    // The producer, seeing no charge, publishes the same message again; now its wallet exists.
    await publishWith(vhost.url, MULTI, [
      { body: { user_id: userId, feature_endpoint_id: 'chat', usages: [usage] }, messageId: 'invoice-77' },
    ]);
    await waitFor('the republished message to charge', async () => (await charges(userId)).length === 1);
    const replayed = await t.request('POST', `/api/settlement-failures/${failure.id}/replay`);
    expect(replayed.status).toBe(200);
    expect(replayed.body.data.settlement.status).toBe('already_settled');
    expect(await charges(userId)).toHaveLength(1);
    expect((await wallet(userId)).balance).toBe('99.280000');
  });

  it('frees a failure whose replay failed for good: attempts counted, and it can then be discarded', async () => {
    const userId = `ghost-${++n}`;
    await publishWith(vhost.url, MULTI, [{ body: { user_id: userId, feature_endpoint_id: 'chat', usages: [usage] } }]);
    const failure = await failureOf(userId);
    const answers = await Promise.all(Array.from({ length: 5 }, () => t.request('POST', `/api/settlement-failures/${failure.id}/replay`)));
    // Still no wallet: the one replay that claimed it answers 404 and frees it.
    expect(answers.map((a) => a.status).filter((s) => s !== 409).length).toBeGreaterThanOrEqual(1);
    expect(answers.every((a) => a.status === 404 || a.status === 409)).toBe(true);
    const after = await failureOf(userId);
    expect(after).toMatchObject({ status: 'pending', error_status: 'wallet_not_found' });
    expect(after.attempts).toBe(1 + answers.filter((a) => a.status === 404).length);
    const discard = await t.request('POST', `/api/settlement-failures/${failure.id}/discard`);
    expect(discard.status).toBe(200);
    expect(discard.body.data.failure.status).toBe('discarded');
  });

  it('answers 404 for a failure id that is no bigint, never a 500', async () => {
    for (const id of ['9223372036854775808', '99999999999999999999', 'abc']) {
      for (const action of ['replay', 'discard']) {
        const res = await t.request('POST', `/api/settlement-failures/${id}/${action}`);
        expect({ id, action, status: res.status, word: res.body.data.status }).toEqual({
          id,
          action,
          status: 404,
          word: 'settlement_failure_not_found',
        });
      }
    }
    const page = await t.request('GET', '/api/settlement-failures?cursor=9223372036854775808');
    expect(page.status).toBe(400);
  });

  it('reports the broker in /health/ready and keeps the books reconciled', async () => {
    const ready = await t.request('GET', '/health/ready', { key: null });
    expect(ready.body.data.details.broker.status).toBe('up');
    const rec = await t.request('GET', '/api/reconciliation');
    expect(rec.body.data.mismatches).toEqual([]);
  });
});
