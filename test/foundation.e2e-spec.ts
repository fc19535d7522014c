import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';

describe('foundation: auth, envelope, errors, request id', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it('answers 401 unauthorized without a key and with an unknown key', async () => {
    for (const key of [null, 'not-a-real-key']) {
      const res = await t.request('GET', '/api/wallets', { key });
      expect(res.status).toBe(401);
      expect(res.body).toEqual({ success: false, data: { status: 'unauthorized', message: expect.any(String) } });
    }
  });

  it('answers 403 forbidden for a service key on an admin route', async () => {
    const res = await t.request('GET', '/api/wallets', { key: SERVICE_KEY });
    expect(res.status).toBe(403);
    expect(res.body.data.status).toBe('forbidden');
    expect(res.body.data.message).toEqual(expect.any(String));
  });

  it('lets a service key reach a service route', async () => {
    const res = await t.request('GET', '/api/wallets/nobody', { key: SERVICE_KEY });
    expect(res.status).toBe(404);
    expect(res.body.data.status).toBe('wallet_not_found');
  });

  it('answers 400 validation_error with errors[] for a body that does not fit', async () => {
    const res = await t.request('POST', '/api/wallets', { body: { user_id: 42, initial_credits: '1.1234567' } });
    expect(res.status).toBe(400);
    expect(res.body.success).toBe(false);
    expect(res.body.data.status).toBe('validation_error');
    expect(res.body.data.message).toEqual(expect.any(String));
    const fields = res.body.data.errors.map((e: { field: string }) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['user_id', 'initial_credits']));
  });

  it('answers 400 validation_error for malformed JSON, never a 500', async () => {
    const res = await t.request('POST', '/api/wallets', { raw: '{"user_id":', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
    expect(res.body.data.status).toBe('validation_error');
  });

  it('answers 404 not_found in the envelope for an unknown route', async () => {
    const res = await t.request('GET', '/api/does-not-exist');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ success: false, data: { status: 'not_found', message: expect.any(String) } });
  });

  it('echoes x-request-id, and makes one up when absent', async () => {
    const echoed = await t.request('GET', '/health/live', { headers: { 'x-request-id': 'req-abc-123' } });
    expect(echoed.headers.get('x-request-id')).toBe('req-abc-123');
    const generated = await t.request('GET', '/health/live');
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('serves /health/live and /health/ready without a key', async () => {
    expect((await t.request('GET', '/health/live', { key: null })).status).toBe(200);
    const ready = await t.request('GET', '/health/ready', { key: null });
    expect(ready.status).toBe(200);
    expect(ready.body.data.details.database.status).toBe('up');
  });
});
