import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CreditsClient, CreditsError, FetchLike, isInsufficientCredits } from '../client';
import { createTestVhost, TestVhost } from './support/rabbit';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

const run = promisify(execFile);

// Starting the app and waiting out a broker reconnect can take a while on a busy machine; this file
// does not depend on where jest.config.mjs sets testTimeout (Jest ignores it inside `projects`).
jest.setTimeout(60_000);

/** Messages in a queue, ready and unacknowledged together. */
async function queueMessages(vhostName: string, queue: string): Promise<number> {
  const { stdout } = await run('rabbitmqctl', ['list_queues', '-q', '-p', vhostName, 'name', 'messages']);
  const line = stdout.split('\n').find((l) => l.split('\t')[0] === queue);
  if (!line) throw new Error(`queue ${queue} not found in vhost ${vhostName}`);
  return Number(line.split('\t')[1]);
}

/**
 * The typed client (client/) against the real service and a real RabbitMQ vhost: what a partner
 * service does, start → work → settle, through the queue and over HTTP.
 */
describe('CreditsClient against the running service', () => {
  let t: TestApp;
  let vhost: TestVhost;
  let viaQueue: CreditsClient;
  let viaHttp: CreditsClient;
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
    await t.request('POST', '/api/pricing/models', {
      body: { ai_model: 'gpt-4o-mini', input_price_per_million: '0.15', output_price_per_million: '0.6' },
    });
    viaQueue = new CreditsClient({ baseUrl: t.baseUrl, apiKey: SERVICE_KEY, rabbitmqUrl: vhost.url, publishTimeoutMs: 20_000 });
    viaHttp = new CreditsClient({ baseUrl: t.baseUrl, apiKey: SERVICE_KEY });
  });
  afterAll(async () => {
    await viaQueue?.close();
    await viaHttp?.close();
    await t?.close();
    await vhost?.delete();
  });

  async function newWallet(credits = '100') {
    const userId = `client-user-${++n}`;
    const created = await t.request('POST', '/api/wallets', { body: { user_id: userId, initial_credits: credits } });
    expect(created.status).toBe(201);
    return userId;
  }
  const charges = async (userId: string) =>
    (await t.request('GET', `/api/wallets/${userId}/transactions?limit=200`)).body.data.items.filter(
      (e: { kind: string }) => e.kind === 'charge',
    ) as {
      amount: string;
      usage_key: string;
    }[];

  /** A fetch that performs the real request, then throws as if the connection dropped before the answer arrived — `times` times. */
  function droppingAnswers(times: number) {
    const seen = { calls: 0, dropped: 0 };
    const fetchFn: FetchLike = async (url, init) => {
      seen.calls++;
      const response = await fetch(url, init);
      if (seen.dropped < times) {
        seen.dropped++;
        await response.arrayBuffer(); // the service has answered: its work is committed
        throw new TypeError('fetch failed', { cause: Object.assign(new Error('other side closed'), { code: 'ECONNRESET' }) });
      }
      return response;
    };
    return { fetch: fetchFn, seen };
  }

  async function failure(promise: Promise<unknown>): Promise<CreditsError> {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CreditsError);
    return error as CreditsError;
  }

  // gpt-4o at 2.5 / 10 USD per million: 1200 in + 300 out = 0.006 USD × 1.2 × 100 = 0.720000 credits.
  // gpt-4o-mini at 0.15 / 0.6: 1000 in + 500 out = 0.00045 USD × 1.2 × 100 = 0.054000 credits.
  const gpt4o = { aiModel: 'gpt-4o', inputTokens: 1200, outputTokens: 300 };
  const mini = { aiModel: 'gpt-4o-mini', inputTokens: 1000, outputTokens: 500 };

  it('starts, publishes the settlement to RabbitMQ with a confirm, and the wallet is charged once', async () => {
    const userId = await newWallet();
    const start = await viaQueue.startProcess(userId, 'chat');
    expect(start).toMatchObject({
      status: 'accessible',
      user_id: userId,
      feature_endpoint_id: 'chat',
      credits: '95.000000',
      balance: '100.000000',
      held: '5.000000',
      hold_amount: '5.000000',
    });
    expect(typeof start.expires_at).toBe('string');

    const queued = await viaQueue.endMultiModel({ userId, usageKey: start.usage_key, featureEndpointId: 'chat', usages: [gpt4o, mini] });
    expect(queued).toEqual({
      status: 'queued',
      queue: 'credits_process_end_multimodel_queue',
      user_id: userId,
      feature_endpoint_id: 'chat',
      usage_key: start.usage_key,
      idempotency_key: null,
    });

    const usage = await waitFor('the queued settlement to commit', async () => {
      const u = await viaQueue.getUsage(start.usage_key);
      return u.status === 'settled' && u;
    });
    expect(usage.settlement).toMatchObject({ status: 'settled', credits_charged: '0.774000' });
    expect(usage.settlement?.usages.map((u) => [u.ai_model, u.credits])).toEqual([
      ['gpt-4o', '0.720000'],
      ['gpt-4o-mini', '0.054000'],
    ]);
    expect(usage.ledger_entries.map((e) => [e.kind, e.amount])).toEqual([['charge', '-0.774000']]);
    expect(await viaQueue.getWallet(userId)).toMatchObject({ balance: '99.226000', held: '0.000000', credits: '99.226000' });
  });

  it('publishes the legacy single-model settlement to credits_process_end_queue', async () => {
    const userId = await newWallet();
    const start = await viaQueue.startProcess(userId, 'chat');
    const queued = await viaQueue.end({ userId, usageKey: start.usage_key, featureEndpointId: 'chat', ...gpt4o });
    expect(queued).toMatchObject({ status: 'queued', queue: 'credits_process_end_queue' });
    const wallet = await waitFor('the legacy settlement to commit', async () => {
      const w = await viaQueue.getWallet(userId);
      return w.held === '0.000000' && w;
    });
    expect(wallet.balance).toBe('99.280000');
  });

  it('charges a queued direct charge once, even when it is published again with the generated key', async () => {
    const userId = await newWallet();
    const first = await viaQueue.endMultiModel({ userId, featureEndpointId: 'chat', usages: [gpt4o] }, { via: 'queue' });
    expect(first.status).toBe('queued');
    expect(first.usage_key).toBeNull();
    expect(first.idempotency_key).toMatch(/^[0-9a-f-]{36}$/);
    // The same settlement again (a partner's own retry), and another direct charge with its own key.
    await viaQueue.endMultiModel({ userId, featureEndpointId: 'chat', idempotencyKey: first.idempotency_key!, usages: [gpt4o] });
    const other = await viaQueue.endMultiModel(
      { userId, featureEndpointId: 'chat', idempotencyKey: `other-${userId}`, usages: [mini] },
      { via: 'queue' },
    );
    expect(other.idempotency_key).toBe(`other-${userId}`);
    await waitFor('both charges to commit', async () => (await charges(userId)).length >= 2);
    // A message is acked only after its settlement committed: an empty queue means all three are done.
    await waitFor(
      'the queue to drain',
      async () => (await queueMessages(vhost.name, 'credits_process_end_multimodel_queue')) === 0,
      30_000,
      200,
    );
    const entries = await charges(userId);
    expect(entries.map((e) => e.amount).sort()).toEqual(['-0.054000', '-0.720000']);
    expect((await viaQueue.getWallet(userId)).balance).toBe('99.226000');
  });

  it('throws CreditsError with the contract status when start is refused', async () => {
    const missing = await failure(viaHttp.startProcess('nobody-here', 'chat'));
    expect(missing).toMatchObject({ status: 'wallet_not_found', httpStatus: 404, attempts: 1 });
    expect(missing.message.length).toBeGreaterThan(0);
    expect(missing.requestId).toMatch(/^[0-9a-f-]{36}$/);

    const poor = await newWallet('1');
    const insufficient = await failure(viaHttp.startProcess(poor, 'chat'));
    expect(insufficient).toMatchObject({
      status: 'insufficient_credits',
      httpStatus: 402,
      details: { credits: '1.000000', required: '5.000000' },
    });
    expect(isInsufficientCredits(insufficient)).toBe(true);
    expect(insufficient.message).toContain('Not enough credits');

    const unknownFeature = await failure(viaHttp.startProcess(poor, 'no-such-feature'));
    expect(unknownFeature).toMatchObject({ status: 'feature_not_found', httpStatus: 404 });

    const badKey = new CreditsClient({ baseUrl: t.baseUrl, apiKey: 'not-a-real-key' });
    await expect(badKey.getWallet(poor)).rejects.toMatchObject({ status: 'unauthorized', httpStatus: 401 });
  });

  it('retries a settlement whose answer was lost and charges once (already_settled)', async () => {
    const userId = await newWallet();
    const start = await viaHttp.startProcess(userId, 'chat');
    const flaky = droppingAnswers(1);
    const client = new CreditsClient({ baseUrl: t.baseUrl, apiKey: SERVICE_KEY, fetch: flaky.fetch, retryBaseDelayMs: 10 });
    const answer = await client.endMultiModel({ userId, usageKey: start.usage_key, featureEndpointId: 'chat', usages: [gpt4o] });
    expect(flaky.seen).toEqual({ calls: 2, dropped: 1 });
    expect(answer).toMatchObject({
      status: 'already_settled',
      usage_key: start.usage_key,
      credits_charged: '0.720000',
      balance: '99.280000',
    });
    expect((await charges(userId)).map((e) => e.amount)).toEqual(['-0.720000']);
    expect(await client.getWallet(userId)).toMatchObject({ balance: '99.280000', held: '0.000000' });
  });

  it('retries a direct charge whose answers were lost with its generated idempotency key and charges once', async () => {
    const userId = await newWallet();
    const flaky = droppingAnswers(2);
    const client = new CreditsClient({ baseUrl: t.baseUrl, apiKey: SERVICE_KEY, fetch: flaky.fetch, retryBaseDelayMs: 10 });
    const answer = await client.end({ userId, featureEndpointId: 'chat', ...gpt4o }, { via: 'http' });
    expect(flaky.seen).toEqual({ calls: 3, dropped: 2 });
    expect(answer).toMatchObject({ status: 'already_settled', credits_charged: '0.720000' });
    expect((await charges(userId)).map((e) => e.amount)).toEqual(['-0.720000']);
    const usage = await client.getUsage(answer.usage_key);
    expect(usage).toMatchObject({ status: 'settled', direct_charge: true });
    expect(usage.idempotency_key).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('does not repeat a start whose answer was lost, so no second hold is placed', async () => {
    const userId = await newWallet();
    const flaky = droppingAnswers(1);
    const client = new CreditsClient({ baseUrl: t.baseUrl, apiKey: SERVICE_KEY, fetch: flaky.fetch, retryBaseDelayMs: 10 });
    const lost = await failure(client.startProcess(userId, 'chat'));
    expect(lost).toMatchObject({ status: 'network_error', httpStatus: null });
    expect(flaky.seen.calls).toBe(1);
    expect(await viaHttp.getWallet(userId)).toMatchObject({ held: '5.000000' });
  });

  it('settles over HTTP when no broker is configured, and quotes, cancels and reads usages', async () => {
    expect(viaHttp.usesQueue).toBe(false);
    const userId = await newWallet();
    const quote = await viaHttp.quote('chat', [gpt4o, mini]);
    expect(quote).toMatchObject({ status: 'quoted', feature_endpoint_id: 'chat', credits_charged: '0.774000' });

    const start = await viaHttp.startProcess(userId, 'chat');
    const settled = await viaHttp.endMultiModel({ userId, usageKey: start.usage_key, featureEndpointId: 'chat', usages: [gpt4o, mini] });
    expect(settled).toMatchObject({
      status: 'settled',
      usage_key: start.usage_key,
      credits_charged: quote.credits_charged,
      balance: '99.226000',
      held: '0.000000',
      credits: '99.226000',
      late: false,
    });
    if (settled.status === 'queued') throw new Error('expected an HTTP settlement');
    expect(typeof settled.transaction_id).toBe('string');
    const again = await viaHttp.endMultiModel({ userId, usageKey: start.usage_key, featureEndpointId: 'chat', usages: [gpt4o, mini] });
    expect(again).toMatchObject({ status: 'already_settled', credits_charged: '0.774000', transaction_id: settled.transaction_id });

    const cancelled = await viaHttp.startProcess(userId, 'chat');
    expect(await viaHttp.cancel(cancelled.usage_key)).toEqual({
      status: 'cancelled',
      usage_key: cancelled.usage_key,
      released: '5.000000',
    });
    expect(await viaHttp.cancel(cancelled.usage_key)).toEqual({
      status: 'cancelled',
      usage_key: cancelled.usage_key,
      released: '0.000000',
    });
    expect(await viaHttp.getUsage(cancelled.usage_key)).toMatchObject({ status: 'cancelled', settlement: null, ledger_entries: [] });
    await expect(viaHttp.cancel(start.usage_key)).rejects.toMatchObject({ status: 'already_settled', httpStatus: 409 });

    // A client with a broker can still ask for the synchronous answer.
    const forced = await viaQueue.startProcess(userId, 'chat');
    const viaHttpAnswer = await viaQueue.end({ userId, usageKey: forced.usage_key, featureEndpointId: 'chat', ...mini }, { via: 'http' });
    expect(viaHttpAnswer).toMatchObject({ status: 'settled', credits_charged: '0.054000', balance: '99.172000' });
    expect(await viaHttp.getWallet(userId)).toMatchObject({ balance: '99.172000', held: '0.000000' });
  });

  it('reports a settlement the service refuses over HTTP with its status', async () => {
    const userId = await newWallet();
    const start = await viaHttp.startProcess(userId, 'chat');
    const unknown = await failure(
      viaHttp.endMultiModel({
        userId,
        usageKey: start.usage_key,
        featureEndpointId: 'chat',
        usages: [{ aiModel: 'nope', inputTokens: 1, outputTokens: 1 }],
      }),
    );
    expect(unknown).toMatchObject({ status: 'unknown_model', httpStatus: 422, details: { ai_model: 'nope' } });
    const mismatch = await failure(
      viaHttp.endMultiModel({ userId: 'someone-else', usageKey: start.usage_key, featureEndpointId: 'chat', usages: [gpt4o] }),
    );
    expect(mismatch).toMatchObject({ status: 'usage_key_mismatch', httpStatus: 409 });
  });

  it('holds a settlement published while the broker connection is down and delivers it after the reconnect', async () => {
    const events: string[] = [];
    const record = (message: string) => events.push(message);
    const client = new CreditsClient({
      baseUrl: t.baseUrl,
      apiKey: SERVICE_KEY,
      rabbitmqUrl: vhost.url,
      reconnectTimeInSeconds: 2,
      logger: { debug: record, warn: record, error: record },
    });
    try {
      const userId = await newWallet();
      const start = await client.startProcess(userId, 'chat');
      // Opens the connection: a first settlement goes through normally.
      await client.endMultiModel(
        { userId, featureEndpointId: 'chat', idempotencyKey: `warm-up-${userId}`, usages: [mini] },
        { via: 'queue' },
      );
      expect(events).toEqual(['connected to RabbitMQ']);

      // Cut every connection of the vhost (the client's and the service's consumer, which reconnects too).
      await run('rabbitmqctl', ['close_all_connections', '--vhost', vhost.name, 'client e2e: simulated broker restart']);
      await waitFor('the client to notice the lost connection', async () => events.includes('RabbitMQ connection lost; reconnecting'));
      const queued = await client.endMultiModel(
        { userId, usageKey: start.usage_key, featureEndpointId: 'chat', usages: [gpt4o] },
        { via: 'queue' },
      );
      // Confirmed only once the connection was back.
      expect(events.slice(1)).toEqual(['RabbitMQ connection lost; reconnecting', 'connected to RabbitMQ']);
      expect(queued).toMatchObject({ status: 'queued', usage_key: start.usage_key });

      const wallet = await waitFor(
        'the settlement published across the reconnect to commit',
        async () => {
          const w = await client.getWallet(userId);
          return w.held === '0.000000' && w.balance === '99.226000' && w;
        },
        30_000,
      );
      expect(wallet.credits).toBe('99.226000');
      expect((await charges(userId)).map((e) => e.amount).sort()).toEqual(['-0.054000', '-0.720000']);
    } finally {
      await client.close();
    }
  });
});
