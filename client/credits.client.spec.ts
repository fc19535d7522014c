import { describe, expect, it } from '@jest/globals';
import { CreditsClient, CreditsClientOptions } from './credits.client';
import { CreditsError, isFeatureNotAllowedForKey, isInsufficientCredits, isSpendCapExceeded } from './credits.errors';
import type { AccessibleAnswer, SettlementAnswer } from './credits.types';

/** One scripted answer of the fake fetch: a response, or an error to throw. */
type Step = { status: number; body: unknown; headers?: Record<string, string> } | { throws: unknown };

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

/** A client on a fake fetch that plays `steps` in order and records every call and every wait. */
function scripted(steps: Step[], options: Partial<CreditsClientOptions> = {}) {
  const calls: Call[] = [];
  const waits: number[] = [];
  const client = new CreditsClient({
    baseUrl: 'http://credits.test/',
    apiKey: 'partner-key-123',
    fetch: async (url, init) => {
      calls.push({
        url,
        method: String(init.method),
        headers: init.headers as Record<string, string>,
        body: init.body === undefined ? undefined : JSON.parse(String(init.body)),
      });
      const step = steps.shift();
      if (!step) throw new Error('the fake fetch has no answer left');
      if ('throws' in step) throw step.throws;
      const text = typeof step.body === 'string' ? step.body : JSON.stringify(step.body);
      return new Response(text, { status: step.status, headers: { 'content-type': 'application/json', ...(step.headers ?? {}) } });
    },
    sleep: async (ms) => {
      waits.push(ms);
    },
    ...options,
  });
  return { client, calls, waits };
}

const ok = (data: unknown): Step => ({ status: 200, body: { success: true, data } });
const fail = (status: number, data: Record<string, unknown>, headers?: Record<string, string>): Step => ({
  status,
  body: { success: false, data },
  headers,
});
const unavailable = fail(503, { status: 'unavailable', message: 'The database is unavailable; nothing was written. Retry shortly.' });
const dropped = (code = 'ECONNRESET'): Step => ({
  throws: new TypeError('fetch failed', { cause: Object.assign(new Error('socket hang up'), { code }) }),
});

const accessible: AccessibleAnswer = {
  status: 'accessible',
  usage_key: '7a0e2c1e-7f43-4d8e-9d1e-2f6f4c1b9a10',
  user_id: 'u1',
  feature_endpoint_id: 'ai_chat_v1',
  credits: '95.000000',
  balance: '100.000000',
  held: '5.000000',
  hold_amount: '5.000000',
  expires_at: '2026-11-02T10:15:00.000Z',
};

const settled: SettlementAnswer = {
  status: 'settled',
  usage_key: accessible.usage_key,
  transaction_id: '42',
  user_id: 'u1',
  feature_endpoint_id: 'ai_chat_v1',
  credits_charged: '0.720000',
  credits: '99.280000',
  balance: '99.280000',
  held: '0.000000',
  late: false,
  final: true,
  credits_charged_total: '0.720000',
  usages: [],
};

const usage = { aiModel: 'gpt-4o', inputTokens: 1200, outputTokens: 300 };

async function rejection(promise: Promise<unknown>): Promise<CreditsError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CreditsError);
  return error as CreditsError;
}

describe('CreditsClient over a fake fetch', () => {
  it('sends the contract body with the API key and returns the typed answer', async () => {
    const { client, calls } = scripted([ok(accessible)]);
    await expect(client.startProcess('u1', 'ai_chat_v1')).resolves.toEqual(accessible);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      url: 'http://credits.test/api/credits-process/start',
      method: 'POST',
      body: { user_id: 'u1', feature_endpoint_id: 'ai_chat_v1' },
    });
    expect(calls[0]!.headers['x-server-api-key']).toBe('partner-key-123');
    expect(calls[0]!.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('throws a CreditsError with the contract status, message and details, and never retries a 4xx', async () => {
    const { client, calls, waits } = scripted([
      fail(402, {
        status: 'insufficient_credits',
        message: 'Not enough credits: 1.000000 available, 5.000000 required.',
        credits: '1.000000',
        required: '5.000000',
      }),
    ]);
    const error = await rejection(client.startProcess('u1', 'ai_chat_v1'));
    expect(error).toMatchObject({
      status: 'insufficient_credits',
      httpStatus: 402,
      message: 'Not enough credits: 1.000000 available, 5.000000 required.',
      details: { credits: '1.000000', required: '5.000000' },
      attempts: 1,
    });
    expect(isInsufficientCredits(error)).toBe(true);
    expect(calls).toHaveLength(1);
    expect(waits).toEqual([]);
  });

  it("a scoped key's refusals: feature_not_allowed_for_key and spend_cap_exceeded, with their details, not retried", async () => {
    const { client, calls } = scripted([
      fail(403, {
        status: 'feature_not_allowed_for_key',
        message: 'This API key may not use the feature "image_gen_v1".',
        feature_endpoint_id: 'image_gen_v1',
      }),
      fail(402, {
        status: 'spend_cap_exceeded',
        message: 'This API key has spent its cap for the day.',
        spent: '198.000000',
        cap: '200.000000',
        resets_at: '2026-12-03T00:00:00.000Z',
      }),
    ]);
    const scope = await rejection(client.startProcess('u1', 'image_gen_v1'));
    expect(isFeatureNotAllowedForKey(scope) && scope.details.feature_endpoint_id).toBe('image_gen_v1');
    expect(isSpendCapExceeded(scope)).toBe(false);
    const cap = await rejection(client.startProcess('u1', 'ai_chat_v1'));
    expect(isSpendCapExceeded(cap) && [cap.httpStatus, cap.details.spent, cap.details.cap, cap.details.resets_at]).toEqual([
      402,
      '198.000000',
      '200.000000',
      '2026-12-03T00:00:00.000Z',
    ]);
    expect(calls).toHaveLength(2);
  });

  it('retries a 503 with growing waits under one request id, then answers', async () => {
    const { client, calls, waits } = scripted([unavailable, unavailable, ok(settled)], { retryBaseDelayMs: 100, retryMaxDelayMs: 10_000 });
    await expect(
      client.endMultiModel({ userId: 'u1', usageKey: accessible.usage_key, featureEndpointId: 'ai_chat_v1', usages: [usage] }),
    ).resolves.toEqual(settled);
    expect(calls).toHaveLength(3);
    expect(new Set(calls.map((c) => c.headers['x-request-id'])).size).toBe(1);
    expect(waits).toHaveLength(2);
    expect(waits[0]).toBeGreaterThanOrEqual(50);
    expect(waits[0]).toBeLessThanOrEqual(100);
    expect(waits[1]).toBeGreaterThanOrEqual(100);
    expect(waits[1]).toBeLessThanOrEqual(200);
  });

  it('gives up after `retries` retries with the last answer', async () => {
    const { client, calls, waits } = scripted([unavailable, unavailable, unavailable], { retries: 2 });
    const error = await rejection(client.getWallet('u1'));
    expect(error).toMatchObject({ status: 'unavailable', httpStatus: 503, attempts: 3 });
    expect(calls).toHaveLength(3);
    expect(waits).toHaveLength(2);
  });

  it('makes one attempt with retries: 0', async () => {
    const { client, calls } = scripted([unavailable], { retries: 0 });
    await rejection(client.getWallet('u1'));
    expect(calls).toHaveLength(1);
  });

  it('waits what Retry-After says on a 429, and fails at once when it is too long', async () => {
    const limited = (seconds: string) => fail(429, { status: 'rate_limited', message: 'Too many requests.' }, { 'retry-after': seconds });
    const first = scripted([limited('2'), ok(accessible)]);
    await first.client.startProcess('u1', 'ai_chat_v1');
    expect(first.waits).toEqual([2_000]);

    const second = scripted([limited('120')], { maxRetryAfterMs: 30_000 });
    const error = await rejection(second.client.startProcess('u1', 'ai_chat_v1'));
    expect(error).toMatchObject({ status: 'rate_limited', httpStatus: 429 });
    expect(second.calls).toHaveLength(1);
  });

  it('retries a dropped connection of a direct charge with the same generated idempotency key', async () => {
    const { client, calls } = scripted([dropped(), dropped('UND_ERR_SOCKET'), ok({ ...settled, status: 'already_settled' })]);
    const answer = await client.endMultiModel({ userId: 'u1', featureEndpointId: 'ai_chat_v1', usages: [usage] }, { via: 'http' });
    expect(answer.status).toBe('already_settled');
    expect(calls).toHaveLength(3);
    const keys = calls.map((c) => (c.body as { idempotency_key?: string }).idempotency_key);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(keys)).toEqual(new Set([keys[0]]));
    expect(calls[0]!.body).toEqual({
      user_id: 'u1',
      feature_endpoint_id: 'ai_chat_v1',
      idempotency_key: keys[0],
      usages: [{ ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 }],
    });
  });

  it('keeps a caller idempotency key and adds none to a settlement by usage_key', async () => {
    const { client, calls } = scripted([ok(settled), ok(settled)]);
    await client.end({ userId: 'u1', featureEndpointId: 'ai_chat_v1', idempotencyKey: 'order-17', ...usage, cachedInputTokens: 200 });
    await client.end({ userId: 'u1', usageKey: accessible.usage_key, featureEndpointId: 'ai_chat_v1', ...usage });
    expect(calls[0]).toMatchObject({
      url: 'http://credits.test/api/credits-process/end',
      body: {
        user_id: 'u1',
        feature_endpoint_id: 'ai_chat_v1',
        idempotency_key: 'order-17',
        ai_model: 'gpt-4o',
        input_tokens: 1200,
        output_tokens: 300,
        cached_input_tokens: 200,
      },
    });
    expect(calls[1]!.body).toEqual({
      user_id: 'u1',
      feature_endpoint_id: 'ai_chat_v1',
      usage_key: accessible.usage_key,
      ai_model: 'gpt-4o',
      input_tokens: 1200,
      output_tokens: 300,
    });
  });

  it('does not repeat a start whose answer was lost, but repeats one whose connection never opened', async () => {
    const lost = scripted([dropped('ECONNRESET'), ok(accessible)]);
    const error = await rejection(lost.client.startProcess('u1', 'ai_chat_v1'));
    expect(error).toMatchObject({ status: 'network_error', httpStatus: null, attempts: 1 });
    expect(lost.calls).toHaveLength(1);

    const refused = scripted([dropped('ECONNREFUSED'), ok(accessible)]);
    await expect(refused.client.startProcess('u1', 'ai_chat_v1')).resolves.toEqual(accessible);
    expect(refused.calls).toHaveLength(2);

    const serverError = scripted([fail(500, { status: 'internal_error', message: 'An internal error occurred.' })]);
    await rejection(serverError.client.startProcess('u1', 'ai_chat_v1'));
    expect(serverError.calls).toHaveLength(1);
  });

  it('retries a 500 and a non-JSON gateway page of an idempotent request', async () => {
    const { client, calls } = scripted(
      [fail(500, { status: 'internal_error', message: 'An internal error occurred.' }), { status: 502, body: '<html>Bad Gateway</html>' }],
      { retries: 1 },
    );
    const error = await rejection(client.cancel(accessible.usage_key));
    expect(error).toMatchObject({ status: 'invalid_response', httpStatus: 502, attempts: 2 });
    expect(calls).toHaveLength(2);
  });

  it('times out an attempt that gets no answer', async () => {
    const client = new CreditsClient({
      baseUrl: 'http://credits.test',
      apiKey: 'partner-key-123',
      timeoutMs: 20,
      retries: 0,
      fetch: (_url, init) =>
        new Promise<Response>((_resolve, reject) => {
          init.signal?.addEventListener('abort', () => reject(init.signal?.reason));
        }),
    });
    const error = await rejection(client.getUsage(accessible.usage_key));
    expect(error).toMatchObject({ status: 'timeout', httpStatus: null });
  });

  it('refuses an invalid settlement before sending it', async () => {
    const { client, calls } = scripted([]);
    const error = await rejection(
      client.endMultiModel({
        userId: 'u1',
        featureEndpointId: 'ai_chat_v1',
        usages: [{ aiModel: 'gpt-4o', inputTokens: 10.5, outputTokens: 1, cachedInputTokens: 20 }],
      }),
    );
    expect(error.status).toBe('validation_error');
    expect(error.fieldErrors.map((e) => e.field)).toEqual(['usages.0.input_tokens', 'usages.0.cached_input_tokens']);
    const empty = await rejection(client.endMultiModel({ userId: 'u1', featureEndpointId: 'ai_chat_v1', usages: [] }));
    expect(empty.fieldErrors).toEqual([{ field: 'usages', message: 'must hold 1 to 100 usages' }]);
    const tooMany = await rejection(
      client.end({ userId: 'u1', featureEndpointId: 'ai_chat_v1', aiModel: 'm', inputTokens: 1_000_000_001, outputTokens: -1 }),
    );
    expect(tooMany.fieldErrors.map((e) => e.field)).toEqual(['input_tokens', 'output_tokens']);
    expect(calls).toHaveLength(0);
  });

  it('quotes with contract-shaped usages and encodes path parameters', async () => {
    const { client, calls } = scripted([
      ok({ status: 'quoted', feature_endpoint_id: 'f', credits_charged: '0.720000', usages: [] }),
      ok({}),
      ok({}),
    ]);
    await client.quote('f', [usage]);
    await client.getWallet('user/with space');
    await client.getUsage('a?b');
    expect(calls.map((c) => c.url)).toEqual([
      'http://credits.test/api/pricing/quote',
      'http://credits.test/api/wallets/user%2Fwith%20space',
      'http://credits.test/api/credits-process/usages/a%3Fb',
    ]);
    expect(calls[0]!.body).toEqual({ feature_endpoint_id: 'f', usages: [{ ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 }] });
  });

  it('checks its options and refuses calls once closed', async () => {
    expect(() => new CreditsClient({ baseUrl: 'localhost:3000', apiKey: 'k' })).toThrow(TypeError);
    expect(() => new CreditsClient({ baseUrl: 'http://x', apiKey: '' })).toThrow(TypeError);
    expect(() => new CreditsClient({ baseUrl: 'http://x', apiKey: 'k', retries: -1 })).toThrow(RangeError);
    const { client, calls } = scripted([]);
    await expect(client.endMultiModel({ userId: 'u1', featureEndpointId: 'f', usages: [usage] }, { via: 'queue' })).rejects.toThrow(
      TypeError,
    );
    await client.close();
    const error = await rejection(client.getWallet('u1'));
    expect(error.status).toBe('client_closed');
    expect(calls).toHaveLength(0);
  });
});
