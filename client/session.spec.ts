import { describe, expect, it } from '@jest/globals';
import { CreditsClient } from './credits.client';
import { CreditsError } from './credits.errors';
import { CreditsSession, SessionTimer } from './session';

/*
 * The session helper's retry logic against a fake transport (a scripted fetch). The end-to-end
 * test against the service comes with the ledger part of issue 18.
 */

interface Call {
  path: string;
  body: Record<string, unknown>;
}

type Answer = { status: number; data: Record<string, unknown>; success?: boolean } | { throws: unknown };

const USAGE_KEY = '7a0e2c1e-7f43-4d8e-9d1e-2f6f4c1b9a10';
const usage = { aiModel: 'gpt-4o', inputTokens: 100, outputTokens: 20 };
const accessible = {
  status: 'accessible',
  usage_key: USAGE_KEY,
  user_id: 'u1',
  feature_endpoint_id: 'agent_v1',
  credits: '95.000000',
  balance: '100.000000',
  held: '5.000000',
  hold_amount: '5.000000',
  expires_at: '2026-11-02T10:15:00.000Z',
};
const settled = (final: boolean) => ({ status: 'settled', usage_key: USAGE_KEY, final, credits_charged: '0.100000' });
const extended = { status: 'extended', usage_key: USAGE_KEY, expires_at: '2026-11-02T10:20:00.000Z' };
const unavailable: Answer = { status: 503, success: false, data: { status: 'unavailable', message: 'down' } };
const dropped: Answer = { throws: new TypeError('fetch failed', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }) };

/** A client whose fetch answers by route from `script` (a queue of answers per path), recording calls. */
function fake(script: Record<string, Answer[]>, retries = 2) {
  const calls: Call[] = [];
  const client = new CreditsClient({
    baseUrl: 'http://credits.test',
    apiKey: 'k',
    retries,
    sleep: async () => undefined,
    fetch: async (url, init) => {
      const path = new URL(url).pathname;
      calls.push({ path, body: JSON.parse(String(init.body)) as Record<string, unknown> });
      const answer = script[path]?.shift();
      if (!answer) throw new Error(`no answer left for ${path}`);
      if ('throws' in answer) throw answer.throws;
      return new Response(JSON.stringify({ success: answer.success ?? answer.status < 400, data: answer.data }), {
        status: answer.status,
        headers: { 'content-type': 'application/json' },
      });
    },
  });
  return { client, calls };
}

const ok = (data: Record<string, unknown>): Answer => ({ status: 200, data });

/** A timer the test ticks by hand. */
function manualTimer(): SessionTimer & { tick(): void; stopped: boolean; ms?: number } {
  let fn: (() => void) | undefined;
  const timer = {
    stopped: false,
    ms: undefined as number | undefined,
    every(ms: number, tick: () => void) {
      timer.ms = ms;
      fn = tick;
      return { stop: () => (timer.stopped = true) };
    },
    tick: () => fn?.(),
  };
  return timer;
}

const START = '/api/credits-process/start';
const END = '/api/credits-process/end-multimodel';
const EXTEND = '/api/credits-process/extend';
const CANCEL = '/api/credits-process/cancel';

describe('CreditsSession', () => {
  it('starts with the estimate, sends increments final:false with a key each, then the final settlement', async () => {
    const { client, calls } = fake({ [START]: [ok(accessible)], [END]: [ok(settled(false)), ok(settled(false)), ok(settled(true))] });
    const session = await CreditsSession.start(client, { userId: 'u1', featureEndpointId: 'agent_v1', estimate: [usage], heartbeatMs: 0 });
    await session.increment([usage]);
    await session.increment([usage]);
    await session.finish([usage]);
    expect(calls[0].body).toEqual({
      user_id: 'u1',
      feature_endpoint_id: 'agent_v1',
      estimate: { usages: [{ ai_model: 'gpt-4o', input_tokens: 100, output_tokens: 20 }] },
    });
    expect(calls.slice(1).map((c) => [c.body.idempotency_key, c.body.final, c.body.usage_key])).toEqual([
      [`${USAGE_KEY}:1`, false, USAGE_KEY],
      [`${USAGE_KEY}:2`, false, USAGE_KEY],
      [undefined, undefined, USAGE_KEY],
    ]);
    expect(session.status).toBe('finished');
    await expect(session.increment([usage])).rejects.toMatchObject({ status: 'session_closed' });
  });

  it('retries an increment under the same key, and resends one that failed for good before the final settlement', async () => {
    const { client, calls } = fake(
      {
        [START]: [ok(accessible)],
        // increment 1: 503 then ok (the client's retry); increment 2: dropped 3 times (retries exhausted)
        [END]: [unavailable, ok(settled(false)), dropped, dropped, dropped, ok(settled(false)), ok(settled(true))],
      },
      2,
    );
    const session = await CreditsSession.start(client, { userId: 'u1', featureEndpointId: 'agent_v1', heartbeatMs: 0 });
    await session.increment([usage]);
    await expect(session.increment([{ ...usage, inputTokens: 7 }])).rejects.toBeInstanceOf(CreditsError);
    expect(session.unconfirmed).toBe(1);
    await session.finish([usage]);
    const sent = calls.filter((c) => c.path === END).map((c) => c.body.idempotency_key ?? 'final');
    expect(sent).toEqual([
      `${USAGE_KEY}:1`,
      `${USAGE_KEY}:1`,
      `${USAGE_KEY}:2`,
      `${USAGE_KEY}:2`,
      `${USAGE_KEY}:2`,
      `${USAGE_KEY}:2`,
      'final',
    ]);
    // The resent increment is the same body: same key, same usages.
    const second = calls.filter((c) => c.body.idempotency_key === `${USAGE_KEY}:2`).map((c) => JSON.stringify(c.body));
    expect(new Set(second).size).toBe(1);
    expect(session.unconfirmed).toBe(0);
  });

  it('extends on every heartbeat, and stops beating once the hold cannot be extended', async () => {
    const timer = manualTimer();
    const errors: unknown[] = [];
    const { client, calls } = fake({
      [START]: [ok(accessible)],
      [EXTEND]: [ok(extended), { status: 409, data: { status: 'hold_expired', message: 'expired' } }],
    });
    const session = await CreditsSession.start(client, {
      userId: 'u1',
      featureEndpointId: 'agent_v1',
      ttlSeconds: 600,
      timer,
      onHeartbeatError: (e) => errors.push(e),
    });
    expect(timer.ms).toBe(200_000); // a third of the ttl
    await session.beat();
    expect(session.expiresAt).toBe(extended.expires_at);
    expect(calls.at(-1)).toEqual({ path: EXTEND, body: { usage_key: USAGE_KEY, ttl_seconds: 600 } });
    await session.beat();
    expect(errors).toEqual([expect.objectContaining({ status: 'hold_expired' })]);
    expect(timer.stopped).toBe(true);
  });

  it('cancels on close when not finished, once, and treats an already settled hold as done', async () => {
    const { client, calls } = fake({
      [START]: [ok(accessible), ok(accessible)],
      [CANCEL]: [ok({ status: 'cancelled' }), { status: 409, data: { status: 'already_settled', message: 'settled' } }],
    });
    const first = await CreditsSession.start(client, { userId: 'u1', featureEndpointId: 'agent_v1', heartbeatMs: 0 });
    await first.close();
    await first.close();
    expect(calls.filter((c) => c.path === CANCEL)).toHaveLength(1);
    expect(first.status).toBe('cancelled');
    const second = await CreditsSession.start(client, { userId: 'u1', featureEndpointId: 'agent_v1', heartbeatMs: 0 });
    await expect(second.close()).resolves.toBeUndefined();
  });

  it('cancels the hold and stops the heartbeat when its signal aborts', async () => {
    const timer = manualTimer();
    const controller = new AbortController();
    let cancelled: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (cancelled = resolve));
    const { client } = fake({ [START]: [ok(accessible)] });
    client.cancel = async (key: string) => {
      cancelled();
      return { status: 'cancelled', usage_key: key, released: '5.000000' } as Awaited<ReturnType<CreditsClient['cancel']>>;
    };
    const session = await CreditsSession.start(client, { userId: 'u1', featureEndpointId: 'agent_v1', timer, signal: controller.signal });
    controller.abort();
    await done;
    expect(timer.stopped).toBe(true);
    expect(session.status).toBe('cancelled');
  });

  it('refuses an increment without its key or hold before sending (the service rule, checked in the client)', async () => {
    const { client, calls } = fake({});
    await expect(
      client.endMultiModel({ userId: 'u1', featureEndpointId: 'f', usageKey: USAGE_KEY, final: false, usages: [usage] }, { via: 'http' }),
    ).rejects.toMatchObject({ status: 'validation_error' });
    await expect(client.extend(USAGE_KEY, { ttlSeconds: 604_801 })).rejects.toMatchObject({ status: 'validation_error' });
    expect(calls).toHaveLength(0);
  });
});
