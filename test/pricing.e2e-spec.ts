import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SERVICE_KEY, startTestApp, TestApp } from './support/test-app';

/** Every error answer of the contract: the envelope, a word and a sentence. */
function expectFailure(res: { status: number; body: any }, httpStatus: number, word: string) {
  expect(res.status).toBe(httpStatus);
  expect(res.body.success).toBe(false);
  expect(res.body.data.status).toBe(word);
  expect(res.body.data.message).toEqual(expect.any(String));
}

describe('features and pricing: admin routes, quote, price history', () => {
  let t: TestApp;
  beforeAll(async () => {
    // A non-default TTL proves the feature view reads HOLD_TTL_SECONDS.
    t = await startTestApp({ HOLD_TTL_SECONDS: '1234' });
  }, 60_000);
  afterAll(async () => {
    await t.close();
  });

  describe('features', () => {
    it('creates a feature (201) with defaults for what was not sent', async () => {
      const res = await t.request('POST', '/api/features', {
        body: { feature_endpoint_id: 'ai_chat_v1', name: 'AI chat', min_holding_credits: '5', profit_margin: '0.2', ignored_field: 'x' },
      });
      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        success: true,
        data: {
          feature_endpoint_id: 'ai_chat_v1',
          name: 'AI chat',
          min_holding_credits: '5.000000',
          hold_ttl_seconds: 1234,
          hold_ttl_is_default: true,
          profit_margin: '0.200000',
          fixed_cost: null,
          allowed_plans: [],
          active: true,
          price_lock: false,
          created_at: expect.any(String),
          updated_at: expect.any(String),
        },
      });
    });

    it('stores every field that was sent', async () => {
      const res = await t.request('POST', '/api/features', {
        body: {
          feature_endpoint_id: 'image_gen_v1',
          name: 'Images',
          min_holding_credits: 20,
          hold_ttl_seconds: 604800,
          fixed_cost: '2.000001',
          allowed_plans: ['pro', 'team'],
          active: false,
          price_lock: true,
        },
      });
      expect(res.status).toBe(201);
      expect(res.body.data).toMatchObject({
        price_lock: true,
        min_holding_credits: '20.000000',
        hold_ttl_seconds: 604800,
        hold_ttl_is_default: false,
        profit_margin: null,
        fixed_cost: '2.000001',
        allowed_plans: ['pro', 'team'],
        active: false,
      });
    });

    it('answers 409 already_exists for a second feature with the same id, changing nothing', async () => {
      const res = await t.request('POST', '/api/features', {
        body: { feature_endpoint_id: 'ai_chat_v1', name: 'Other', min_holding_credits: '1' },
      });
      expectFailure(res, 409, 'already_exists');
      const after = await t.request('GET', '/api/features/ai_chat_v1');
      expect(after.body.data).toMatchObject({ name: 'AI chat', min_holding_credits: '5.000000' });
    });

    it.each([
      ['a 7-decimal min_holding_credits', { min_holding_credits: '1.1234567' }, 'min_holding_credits'],
      ['hold_ttl_seconds 0', { hold_ttl_seconds: 0 }, 'hold_ttl_seconds'],
      ['hold_ttl_seconds 604801', { hold_ttl_seconds: 604801 }, 'hold_ttl_seconds'],
      ['hold_ttl_seconds 1.5', { hold_ttl_seconds: 1.5 }, 'hold_ttl_seconds'],
      ['hold_ttl_seconds "60"', { hold_ttl_seconds: '60' }, 'hold_ttl_seconds'],
      ['a negative fixed_cost', { fixed_cost: '-1' }, 'fixed_cost'],
      ['a negative profit_margin', { profit_margin: '-0.1' }, 'profit_margin'],
      ['a missing name', { name: undefined }, 'name'],
    ])('answers 400 validation_error for %s', async (_label, override, field) => {
      const body = { feature_endpoint_id: 'bad_feature', name: 'Bad', min_holding_credits: '1', ...override };
      const res = await t.request('POST', '/api/features', { body });
      expectFailure(res, 400, 'validation_error');
      expect(res.body.data.errors.map((e: { field: string }) => e.field)).toContain(field);
      expectFailure(await t.request('GET', '/api/features/bad_feature'), 404, 'feature_not_found');
    });

    it('lists features in pages that follow next_cursor to the end', async () => {
      for (const id of ['list_a', 'list_b', 'list_c']) {
        expect(
          (await t.request('POST', '/api/features', { body: { feature_endpoint_id: id, name: id, min_holding_credits: '0' } })).status,
        ).toBe(201);
      }
      const all = await t.request('GET', '/api/features?limit=200');
      expect(all.body.data.next_cursor).toBeNull();
      const allIds: string[] = all.body.data.items.map((f: { feature_endpoint_id: string }) => f.feature_endpoint_id);
      expect(allIds).toEqual([...allIds].sort());
      expect(allIds).toEqual(expect.arrayContaining(['ai_chat_v1', 'image_gen_v1', 'list_a', 'list_b', 'list_c']));

      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
        const page = await t.request('GET', `/api/features?limit=2${query}`);
        expect(page.status).toBe(200);
        expect(page.body.data.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.body.data.items.map((f: { feature_endpoint_id: string }) => f.feature_endpoint_id));
        cursor = page.body.data.next_cursor;
        pages += 1;
      } while (cursor !== null && pages < 20);
      expect(seen).toEqual(allIds);
      expect(pages).toBe(Math.ceil(allIds.length / 2));
    });

    it('answers 400 for a page size out of range', async () => {
      expectFailure(await t.request('GET', '/api/features?limit=0'), 400, 'validation_error');
      expectFailure(await t.request('GET', '/api/features?limit=201'), 400, 'validation_error');
    });

    it('gets one feature, and 404 feature_not_found for an unknown one', async () => {
      const res = await t.request('GET', '/api/features/ai_chat_v1');
      expect(res.status).toBe(200);
      expect(res.body.data.feature_endpoint_id).toBe('ai_chat_v1');
      const missing = await t.request('GET', '/api/features/nope');
      expectFailure(missing, 404, 'feature_not_found');
      expect(missing.body.data.message).toContain('nope');
    });

    it('patches fields, clears profit_margin and hold_ttl_seconds with null, and leaves the rest alone', async () => {
      const set = await t.request('PATCH', '/api/features/ai_chat_v1', {
        body: { name: 'AI chat v1', hold_ttl_seconds: 60, fixed_cost: '0.5', allowed_plans: ['pro'], price_lock: true },
      });
      expect(set.status).toBe(200);
      expect(set.body.data).toMatchObject({
        price_lock: true,
        name: 'AI chat v1',
        min_holding_credits: '5.000000',
        hold_ttl_seconds: 60,
        hold_ttl_is_default: false,
        profit_margin: '0.200000',
        fixed_cost: '0.500000',
        allowed_plans: ['pro'],
        active: true,
      });

      const cleared = await t.request('PATCH', '/api/features/ai_chat_v1', {
        body: { profit_margin: null, hold_ttl_seconds: null, fixed_cost: null, allowed_plans: [] },
      });
      expect(cleared.status).toBe(200);
      expect(cleared.body.data).toMatchObject({
        name: 'AI chat v1',
        hold_ttl_seconds: 1234, // back to HOLD_TTL_SECONDS
        hold_ttl_is_default: true,
        profit_margin: null,
        fixed_cost: null,
        allowed_plans: [],
        price_lock: true, // absent: left alone
      });
      expect((await t.request('GET', '/api/features/ai_chat_v1')).body.data).toEqual(cleared.body.data);
      expectFailure(await t.request('PATCH', '/api/features/ai_chat_v1', { body: { price_lock: null } }), 400, 'validation_error');
      expectFailure(await t.request('PATCH', '/api/features/ai_chat_v1', { body: { price_lock: 'yes' } }), 400, 'validation_error');
    });

    it('refuses a bad patch and a patch of an unknown feature', async () => {
      expectFailure(await t.request('PATCH', '/api/features/ai_chat_v1', { body: { hold_ttl_seconds: 0 } }), 400, 'validation_error');
      expectFailure(
        await t.request('PATCH', '/api/features/ai_chat_v1', { body: { min_holding_credits: '0.0000001' } }),
        400,
        'validation_error',
      );
      expectFailure(await t.request('PATCH', '/api/features/nope', { body: { name: 'x' } }), 404, 'feature_not_found');
    });
  });

  describe('models', () => {
    it('creates a model price (201) as version 1', async () => {
      const res = await t.request('POST', '/api/pricing/models', {
        body: { ai_model: 'gpt-4o', input_price_per_million: '2.5', output_price_per_million: 10, cached_input_price_per_million: '1.25' },
      });
      expect(res.status).toBe(201);
      expect(res.body.data).toMatchObject({
        ai_model: 'gpt-4o',
        version: 1,
        input_price_per_million: '2.500000',
        output_price_per_million: '10.000000',
        cached_input_price_per_million: '1.250000',
        profit_margin: null,
      });
      expect(res.body.data.history).toHaveLength(1);
    });

    it('answers 409 already_exists for a second price of the same model', async () => {
      const res = await t.request('POST', '/api/pricing/models', {
        body: { ai_model: 'gpt-4o', input_price_per_million: '1', output_price_per_million: '1' },
      });
      expectFailure(res, 409, 'already_exists');
    });

    it.each([
      ['a 7-decimal price', { input_price_per_million: '0.0000001' }, 'input_price_per_million'],
      ['a negative price', { output_price_per_million: '-1' }, 'output_price_per_million'],
      ['a missing price', { output_price_per_million: undefined }, 'output_price_per_million'],
      ['a price over 1,000,000', { input_price_per_million: '1000000.000001' }, 'input_price_per_million'],
    ])('answers 400 validation_error for %s', async (_label, override, field) => {
      const body = { ai_model: 'bad-model', input_price_per_million: '1', output_price_per_million: '1', ...override };
      const res = await t.request('POST', '/api/pricing/models', { body });
      expectFailure(res, 400, 'validation_error');
      expect(res.body.data.errors.map((e: { field: string }) => e.field)).toContain(field);
    });

    it('lists models in pages', async () => {
      for (const [ai_model, input, output] of [
        ['claude-sonnet-4', '3', '15'],
        ['gpt-4o-mini', '0.15', '0.6'],
      ]) {
        const res = await t.request('POST', '/api/pricing/models', {
          body: { ai_model, input_price_per_million: input, output_price_per_million: output },
        });
        expect(res.status).toBe(201);
      }
      const first = await t.request('GET', '/api/pricing/models?limit=2');
      expect(first.body.data.items.map((m: { ai_model: string }) => m.ai_model)).toEqual(['claude-sonnet-4', 'gpt-4o']);
      expect(first.body.data.next_cursor).toEqual(expect.any(String));
      const second = await t.request('GET', `/api/pricing/models?limit=2&cursor=${encodeURIComponent(first.body.data.next_cursor)}`);
      expect(second.body.data.items.map((m: { ai_model: string }) => m.ai_model)).toEqual(['gpt-4o-mini']);
      expect(second.body.data.next_cursor).toBeNull();
    });

    it('gets a model, and 404 model_not_found for an unknown one', async () => {
      expect((await t.request('GET', '/api/pricing/models/gpt-4o')).body.data.ai_model).toBe('gpt-4o');
      expectFailure(await t.request('GET', '/api/pricing/models/gpt-9'), 404, 'model_not_found');
      expectFailure(
        await t.request('PATCH', '/api/pricing/models/gpt-9', { body: { input_price_per_million: '1' } }),
        404,
        'model_not_found',
      );
    });

    it('makes a price change a new version and keeps the old one in the history', async () => {
      const res = await t.request('PATCH', '/api/pricing/models/gpt-4o-mini', {
        body: { output_price_per_million: '0.75', profit_margin: '0.1' },
      });
      expect(res.status).toBe(200);
      expect(res.body.data).toMatchObject({
        ai_model: 'gpt-4o-mini',
        version: 2,
        input_price_per_million: '0.150000',
        output_price_per_million: '0.750000',
        profit_margin: '0.100000',
      });
      const got = await t.request('GET', '/api/pricing/models/gpt-4o-mini');
      expect(got.body.data.version).toBe(2);
      expect(got.body.data.history).toEqual([
        expect.objectContaining({
          version: 2,
          input_price_per_million: '0.150000',
          output_price_per_million: '0.750000',
          profit_margin: '0.100000',
          valid_from: expect.any(String),
        }),
        expect.objectContaining({
          version: 1,
          input_price_per_million: '0.150000',
          output_price_per_million: '0.600000',
          profit_margin: null,
          valid_from: expect.any(String),
        }),
      ]);

      // null removes the model's own margin (the default applies again), as a third version
      const cleared = await t.request('PATCH', '/api/pricing/models/gpt-4o-mini', { body: { profit_margin: null } });
      expect(cleared.body.data).toMatchObject({ version: 3, profit_margin: null, output_price_per_million: '0.750000' });
      expect(cleared.body.data.history.map((v: { version: number }) => v.version)).toEqual([3, 2, 1]);
    });
  });

  describe('null in a patch', () => {
    it('clears a nullable field but is refused for a required one, writing nothing', async () => {
      await t.request('POST', '/api/pricing/models', {
        body: { ai_model: 'null-probe', input_price_per_million: '1', output_price_per_million: '2', profit_margin: '0.1' },
      });
      for (const body of [{ input_price_per_million: null }, { output_price_per_million: null }]) {
        expectFailure(await t.request('PATCH', '/api/pricing/models/null-probe', { body }), 400, 'validation_error');
      }
      expectFailure(await t.request('PUT', '/api/pricing/settings', { body: { credits_per_usd: null } }), 400, 'validation_error');
      await t.request('POST', '/api/features', { body: { feature_endpoint_id: 'null-probe', name: 'N', min_holding_credits: '1' } });
      for (const body of [{ name: null }, { min_holding_credits: null }, { allowed_plans: null }, { active: null }]) {
        expectFailure(await t.request('PATCH', '/api/features/null-probe', { body }), 400, 'validation_error');
      }
      const cleared = await t.request('PATCH', '/api/pricing/models/null-probe', { body: { profit_margin: null } });
      expect(cleared.status).toBe(200);
      expect(cleared.body.data).toMatchObject({ version: 2, input_price_per_million: '1.000000', profit_margin: null });
    });

    it('makes no new version for a patch that changes nothing', async () => {
      await t.request('POST', '/api/pricing/models', {
        body: { ai_model: 'same-probe', input_price_per_million: '1', output_price_per_million: '2' },
      });
      for (const body of [{}, { input_price_per_million: '1.000000', output_price_per_million: 2 }]) {
        const res = await t.request('PATCH', '/api/pricing/models/same-probe', { body });
        expect(res.status).toBe(200);
        expect(res.body.data.version).toBe(1);
        expect(res.body.data.history).toHaveLength(1);
      }
    });
  });

  describe('settings', () => {
    it('starts at 100 credits per USD and a 0 default margin', async () => {
      const res = await t.request('GET', '/api/pricing/settings');
      expect(res.status).toBe(200);
      expect(res.body.data).toEqual({
        credits_per_usd: '100.000000',
        default_profit_margin: '0.000000',
        default_low_balance_thresholds: [],
        updated_at: expect.any(String),
      });
    });

    it('changes with PUT, field by field, and refuses a zero rate', async () => {
      const put = await t.request('PUT', '/api/pricing/settings', { body: { credits_per_usd: '1000', default_profit_margin: 0.25 } });
      expect(put.status).toBe(200);
      expect(put.body.data).toMatchObject({ credits_per_usd: '1000.000000', default_profit_margin: '0.250000' });
      const partial = await t.request('PUT', '/api/pricing/settings', { body: { default_profit_margin: '0' } });
      expect(partial.body.data).toMatchObject({ credits_per_usd: '1000.000000', default_profit_margin: '0.000000' });
      expectFailure(await t.request('PUT', '/api/pricing/settings', { body: { credits_per_usd: '0' } }), 400, 'validation_error');
      expectFailure(
        await t.request('PUT', '/api/pricing/settings', { body: { default_profit_margin: '0.1234567' } }),
        400,
        'validation_error',
      );
      const back = await t.request('PUT', '/api/pricing/settings', { body: { credits_per_usd: '100' } });
      expect(back.body.data).toMatchObject({ credits_per_usd: '100.000000', default_profit_margin: '0.000000' });
    });
  });

  describe('quote', () => {
    beforeAll(async () => {
      const res = await t.request('POST', '/api/features', {
        body: {
          feature_endpoint_id: 'quote_feature',
          name: 'Quote',
          min_holding_credits: '1',
          profit_margin: '0.2',
          fixed_cost: '0.000001',
        },
      });
      expect(res.status).toBe(201);
    });

    it('answers what a settlement would charge, exactly, with a service key', async () => {
      const res = await t.request('POST', '/api/pricing/quote', {
        key: SERVICE_KEY,
        body: {
          feature_endpoint_id: 'quote_feature',
          usages: [
            { ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 },
            { ai_model: 'gpt-4o', input_tokens: 1000, output_tokens: 0, cached_input_tokens: 1000 },
            { ai_model: 'claude-sonnet-4', input_tokens: 1, output_tokens: 0 },
          ],
        },
      });
      // gpt-4o:  (1200·2.5 + 300·10)/1e6 = 0.006 USD · 1.2 · 100 = 0.72
      // gpt-4o:  (0·2.5 + 1000·1.25)/1e6 = 0.00125 USD · 120 = 0.15
      // claude:  1·3/1e6 = 0.000003 USD · 120 = 0.00036
      // total:   0.72 + 0.15 + 0.00036 + 0.000001 fixed = 0.870361
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        success: true,
        data: {
          status: 'quoted',
          feature_endpoint_id: 'quote_feature',
          credits_charged: '0.870361',
          usages: [
            {
              ai_model: 'gpt-4o',
              input_tokens: 1200,
              output_tokens: 300,
              cached_input_tokens: 0,
              cost_usd: '0.006000',
              credits: '0.720000',
            },
            {
              ai_model: 'gpt-4o',
              input_tokens: 1000,
              output_tokens: 0,
              cached_input_tokens: 1000,
              cost_usd: '0.001250',
              credits: '0.150000',
            },
            {
              ai_model: 'claude-sonnet-4',
              input_tokens: 1,
              output_tokens: 0,
              cached_input_tokens: 0,
              cost_usd: '0.000003',
              credits: '0.000360',
            },
          ],
        },
      });
    });

    it('prices 1e9-token usages exactly', async () => {
      const res = await t.request('POST', '/api/pricing/quote', {
        key: SERVICE_KEY,
        body: {
          feature_endpoint_id: 'quote_feature',
          usages: [{ ai_model: 'claude-sonnet-4', input_tokens: 1_000_000_000, output_tokens: 1_000_000_000, cached_input_tokens: 1 }],
        },
      });
      // (999,999,999·3 + 1·3 + 1e9·15)/1e6 = 3000 + 15000 = 18000 USD · 1.2 · 100 = 2,160,000 + 0.000001
      expect(res.body.data.credits_charged).toBe('2160000.000001');
    });

    it('answers 422 unknown_model naming the model', async () => {
      const res = await t.request('POST', '/api/pricing/quote', {
        key: SERVICE_KEY,
        body: {
          feature_endpoint_id: 'quote_feature',
          usages: [
            { ai_model: 'gpt-4o', input_tokens: 1, output_tokens: 1 },
            { ai_model: 'gpt-9', input_tokens: 1, output_tokens: 1 },
          ],
        },
      });
      expectFailure(res, 422, 'unknown_model');
      expect(res.body.data.ai_model).toBe('gpt-9');
      expect(res.body.data.message).toContain('gpt-9');
    });

    it('answers 400 validation_error when cached_input_tokens exceed input_tokens', async () => {
      const res = await t.request('POST', '/api/pricing/quote', {
        key: SERVICE_KEY,
        body: {
          feature_endpoint_id: 'quote_feature',
          usages: [{ ai_model: 'gpt-4o', input_tokens: 10, output_tokens: 0, cached_input_tokens: 11 }],
        },
      });
      expectFailure(res, 400, 'validation_error');
      expect(res.body.data.errors).toEqual([{ field: 'usages.0.cached_input_tokens', message: expect.any(String) }]);
    });

    it.each([
      ['a token count sent as a string', [{ ai_model: 'gpt-4o', input_tokens: '10', output_tokens: 0 }]],
      ['a negative token count', [{ ai_model: 'gpt-4o', input_tokens: -1, output_tokens: 0 }]],
      ['a fractional token count', [{ ai_model: 'gpt-4o', input_tokens: 1.5, output_tokens: 0 }]],
      ['a token count over 1,000,000,000', [{ ai_model: 'gpt-4o', input_tokens: 1_000_000_001, output_tokens: 0 }]],
      ['no usages', []],
    ])('answers 400 validation_error for %s', async (_label, usages) => {
      const res = await t.request('POST', '/api/pricing/quote', {
        key: SERVICE_KEY,
        body: { feature_endpoint_id: 'quote_feature', usages },
      });
      expectFailure(res, 400, 'validation_error');
    });

    it('answers 404 feature_not_found for an unknown feature', async () => {
      const res = await t.request('POST', '/api/pricing/quote', {
        key: SERVICE_KEY,
        body: { feature_endpoint_id: 'nope', usages: [{ ai_model: 'gpt-4o', input_tokens: 1, output_tokens: 1 }] },
      });
      expectFailure(res, 404, 'feature_not_found');
    });
  });

  describe('scopes', () => {
    it.each([
      ['POST', '/api/features', { feature_endpoint_id: 'svc', name: 'svc', min_holding_credits: '1' }],
      ['GET', '/api/features', undefined],
      ['GET', '/api/features/ai_chat_v1', undefined],
      ['PATCH', '/api/features/ai_chat_v1', { name: 'hijacked' }],
      ['POST', '/api/pricing/models', { ai_model: 'svc', input_price_per_million: '0', output_price_per_million: '0' }],
      ['GET', '/api/pricing/models', undefined],
      ['GET', '/api/pricing/models/gpt-4o', undefined],
      ['PATCH', '/api/pricing/models/gpt-4o', { input_price_per_million: '0' }],
      ['GET', '/api/pricing/settings', undefined],
      ['PUT', '/api/pricing/settings', { credits_per_usd: '1' }],
    ])('answers 403 forbidden to a service key on %s %s', async (method, path, body) => {
      const res = await t.request(method, path, { key: SERVICE_KEY, body });
      expectFailure(res, 403, 'forbidden');
    });

    it('changed nothing through those refused calls', async () => {
      expect((await t.request('GET', '/api/features/ai_chat_v1')).body.data.name).toBe('AI chat v1');
      expect((await t.request('GET', '/api/pricing/models/gpt-4o')).body.data.input_price_per_million).toBe('2.500000');
      expect((await t.request('GET', '/api/pricing/settings')).body.data.credits_per_usd).toBe('100.000000');
      expectFailure(await t.request('GET', '/api/pricing/models/svc'), 404, 'model_not_found');
    });

    it('answers 401 without a key on the quote', async () => {
      const res = await t.request('POST', '/api/pricing/quote', { key: null, body: { feature_endpoint_id: 'quote_feature', usages: [] } });
      expectFailure(res, 401, 'unauthorized');
    });
  });

  describe('a price change never rewrites a past charge', () => {
    it('keeps the old prices in the old ledger entry and uses the new ones for the next settlement', async () => {
      expect(
        (
          await t.request('POST', '/api/pricing/models', {
            body: { ai_model: 'snap-model', input_price_per_million: '2', output_price_per_million: '8' },
          })
        ).status,
      ).toBe(201);
      expect(
        (
          await t.request('POST', '/api/features', {
            body: { feature_endpoint_id: 'snap_feature', name: 'Snap', min_holding_credits: '1', profit_margin: '0.5' },
          })
        ).status,
      ).toBe(201);
      expect((await t.request('POST', '/api/wallets', { body: { user_id: 'snap-user', initial_credits: '100' } })).status).toBe(201);

      const settle = async () => {
        const start = await t.request('POST', '/api/credits-process/start', {
          key: SERVICE_KEY,
          body: { user_id: 'snap-user', feature_endpoint_id: 'snap_feature' },
        });
        expect(start.status).toBe(200);
        const end = await t.request('POST', '/api/credits-process/end-multimodel', {
          key: SERVICE_KEY,
          body: {
            user_id: 'snap-user',
            feature_endpoint_id: 'snap_feature',
            usage_key: start.body.data.usage_key,
            usages: [{ ai_model: 'snap-model', input_tokens: 1000, output_tokens: 1000 }],
          },
        });
        expect(end.status).toBe(200);
        expect(end.body.data.status).toBe('settled');
        return end.body.data as { usage_key: string; credits_charged: string; transaction_id: string };
      };
      const ledgerEntry = async (usageKey: string) => {
        const res = await t.request('GET', `/api/wallets/snap-user/transactions?usage_key=${usageKey}`);
        expect(res.body.data.items).toHaveLength(1);
        return res.body.data.items[0];
      };

      // before: (1000·2 + 1000·8)/1e6 = 0.01 USD · 1.5 · 100 = 1.5 credits
      const before = await settle();
      expect(before.credits_charged).toBe('1.500000');

      const patched = await t.request('PATCH', '/api/pricing/models/snap-model', {
        body: { input_price_per_million: '4', output_price_per_million: '16' },
      });
      expect(patched.body.data.version).toBe(2);

      // after: (1000·4 + 1000·16)/1e6 = 0.02 USD · 1.5 · 100 = 3 credits
      const after = await settle();
      expect(after.credits_charged).toBe('3.000000');

      const oldEntry = await ledgerEntry(before.usage_key);
      expect(oldEntry).toMatchObject({ kind: 'charge', amount: '-1.500000', id: before.transaction_id });
      expect(oldEntry.metadata.pricing).toEqual({
        credits_per_usd: '100.000000',
        default_profit_margin: '0.000000',
        feature: { feature_endpoint_id: 'snap_feature', profit_margin: '0.500000', fixed_cost: '0.000000' },
        models: {
          'snap-model': {
            version: 1,
            input_price_per_million: '2.000000',
            output_price_per_million: '8.000000',
            cached_input_price_per_million: '2.000000',
            profit_margin: '0.500000',
            margin_source: 'feature',
          },
        },
      });
      expect(oldEntry.metadata.usages).toEqual([
        expect.objectContaining({ ai_model: 'snap-model', cost_usd: '0.010000', credits: '1.500000' }),
      ]);

      const newEntry = await ledgerEntry(after.usage_key);
      expect(newEntry).toMatchObject({ kind: 'charge', amount: '-3.000000' });
      expect(newEntry.metadata.pricing.models['snap-model']).toMatchObject({
        version: 2,
        input_price_per_million: '4.000000',
        output_price_per_million: '16.000000',
      });

      // the old version the old entry names is still in the model's history
      const history = (await t.request('GET', '/api/pricing/models/snap-model')).body.data.history;
      expect(history.find((v: { version: number }) => v.version === 1)).toMatchObject({
        input_price_per_million: '2.000000',
        output_price_per_million: '8.000000',
      });

      // 100 − 1.5 − 3 = 95.5, no hold left
      const wallet = await t.request('GET', '/api/wallets/snap-user');
      expect(wallet.body.data).toMatchObject({ balance: '95.500000', held: '0.000000', credits: '95.500000' });
    });
  });
});
