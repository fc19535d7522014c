import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { withDb } from './support/faults';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { ADMIN_KEY, SERVICE_KEY, startTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/**
 * A fast-check fuzz of every route of API.md §4–§6. Every request that could write is invalid by
 * construction (at least one field poisoned, or the whole body bad), while the rest of it names
 * things that really exist — so if validation ever let one through, it would write, and the
 * snapshot comparison at the end would catch it. Properties: never a 5xx, every failure in the
 * contract's envelope, no write route answers 2xx, and the books are byte-for-byte unchanged.
 */

const WALLET = 'fuzz-wallet';
const FEATURE = 'fuzz-feature';
const MODEL = 'fuzz-model';
const BODY_LIMIT = 262_144;

/** A JSON token written as is (1e400, 123…890): JSON.stringify cannot produce these. */
class Raw {
  constructor(readonly text: string) {}
}
const raw = (text: string) => new Raw(text);

function toJson(value: unknown): string {
  const tokens: string[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Raw) {
      tokens.push(v.text);
      return `\u0001RAW${tokens.length - 1}\u0001`;
    }
    return typeof v === 'bigint' ? v.toString() : v;
  });
  return (text ?? 'null').replace(/"\\u0001RAW(\d+)\\u0001"/g, (_m, i: string) => tokens[Number(i)]);
}

/** Lone surrogates replaced, so a value can go into a URL (JSON bodies keep them: they are hostile input too). */
const wellFormed = (s: string) => s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');

// ---- values -------------------------------------------------------------------------------------

const unicode = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.constantFrom('a\u0000b', '\u0000', 'ok\u0000', '\u202e\u200b', 'e\u0301', '\ud83d'),
);
const tenKb = fc.constantFrom('x'.repeat(10_240), 'é'.repeat(10_240), '\u{1F4B8}'.repeat(2_600));
const wrongType = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }),
);
const anyJson = fc.jsonValue({ maxDepth: 3 });

/** Always refused for a required string of 1..max characters. */
const badRequiredString = (max: number) =>
  fc.oneof(fc.constant(''), fc.constant('x'.repeat(max + 1)), tenKb, wrongType, fc.constant(undefined));
/** Always refused for an optional string of 1..max characters (absent is allowed; null is not: it means nothing there). */
const badOptionalString = (max: number) =>
  fc.oneof(
    fc.constant(''),
    fc.constant('y'.repeat(max + 1)),
    tenKb,
    fc.integer(),
    fc.boolean(),
    fc.array(fc.string(), { maxLength: 2 }),
    fc.constant(null),
  );
/** Always refused for a token count (a JSON integer 0..1e9; note JSON's 1e3 IS the integer 1000). */
const badTokens = fc.oneof(
  fc.constantFrom(
    -1,
    1.5,
    0.000001,
    1_000_000_001,
    '10',
    '1e3',
    raw('1e400'),
    raw('-1e400'),
    raw('1e10'),
    raw('1.5e0'),
    raw('123456789012345678901234567890'),
    raw('-0.5'),
  ),
  fc.integer({ min: -2_000_000_000, max: -1 }),
  fc.double({ noInteger: true, noNaN: true }),
  fc.string(),
  fc.boolean(),
);
const badRequiredTokens = fc.oneof(badTokens, fc.constant(null), fc.constant(undefined));
/** Always refused for an amount (decimal string or JSON number, ≤ 6 decimals, no exponent). */
const badAmount = (opts: { negativeAllowed?: boolean; nullable?: boolean } = {}) =>
  fc.oneof(
    ...(opts.nullable ? [] : [fc.constant(null)]),
    fc.constantFrom(
      '1.1234567',
      1.1234567,
      '0.0000001',
      '1e3',
      '1E3',
      raw('1e400'),
      raw('1e21'),
      raw('2e-7'),
      'NaN',
      'Infinity',
      '1,5',
      '1.2.3',
      '',
      ' ',
      '0x10',
      '١٢',
      '10000000000000.000001',
    ),
    fc.constantFrom(raw('123456789012345678901234567890.5'), '99999999999999999999999999999999'),
    ...(opts.negativeAllowed ? [] : [fc.constantFrom('-5', -5, '-0.000001')]),
    fc.boolean(),
    fc.array(fc.integer(), { maxLength: 2 }),
    fc.dictionary(fc.string(), fc.integer(), { maxKeys: 2 }),
  );
const badRequiredAmount = (opts: { negativeAllowed?: boolean } = {}) => fc.oneof(badAmount(opts), fc.constant(undefined));

const goodUsage = fc.record({
  ai_model: fc.oneof(fc.constant(MODEL), unicode),
  input_tokens: fc.integer({ min: 0, max: 1_000_000_000 }),
  output_tokens: fc.integer({ min: 0, max: 1_000_000_000 }),
});
const badUsage = fc.oneof(
  goodUsage.chain((u) =>
    fc.record({ k: fc.constantFrom('input_tokens', 'output_tokens'), v: badRequiredTokens }).map(({ k, v }) => ({ ...u, [k]: v })),
  ),
  goodUsage.chain((u) => badTokens.map((v) => ({ ...u, cached_input_tokens: v }))), // null is allowed there (= 0)
  goodUsage.chain((u) => badRequiredString(128).map((v) => ({ ...u, ai_model: v }))),
  fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 })),
);
const badUsages = fc.oneof(
  fc.constant([]),
  fc.constant(undefined),
  fc.constant(Array.from({ length: 101 }, () => ({ ai_model: MODEL, input_tokens: 1, output_tokens: 1 }))),
  fc.tuple(fc.array(goodUsage, { maxLength: 3 }), badUsage, fc.array(goodUsage, { maxLength: 3 })).map(([a, bad, b]) => [...a, bad, ...b]),
  wrongType.filter((v) => !Array.isArray(v)),
);

// ---- routes -------------------------------------------------------------------------------------

interface Field {
  /** A value the route accepts (what the rest of a poisoned body holds). */
  ok: fc.Arbitrary<unknown>;
  /** Values the route always refuses for this field, whatever the other fields hold. */
  bad: fc.Arbitrary<unknown>;
}
interface Route {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT';
  /** Path with `:param` placeholders, each filled from `params`. */
  path: string;
  params?: Record<string, fc.Arbitrary<string>>;
  /** Fields of the body, for routes that take one. */
  fields?: Record<string, Field>;
  /** False for routes that read only (GET, quote): any body is fine, valid ones too. */
  writes: boolean;
  key?: string;
}

const existingOrRandom = (existing: string) => fc.oneof(fc.constant(existing), unicode, tenKb, fc.constantFrom('..', '%', '0', ' '));
const settlementTarget = (hold: () => string): Record<string, Field> => ({
  user_id: { ok: fc.constant(WALLET), bad: badRequiredString(128) },
  feature_endpoint_id: { ok: fc.constant(FEATURE), bad: badRequiredString(128) },
  usage_key: { ok: fc.oneof(fc.constant(undefined), fc.constant(hold())), bad: badOptionalString(64) },
  idempotency_key: {
    ok: fc.oneof(
      fc.constant(undefined),
      unicode.map((s) => s.slice(0, 128)),
    ),
    bad: badOptionalString(128),
  },
});

function routes(hold: () => string): Route[] {
  const id = (max: number) => ({
    ok: fc.string({ minLength: 1, maxLength: 10 }).map((s) => `new-${s.replace(/\s|\p{C}/gu, '')}`.slice(0, max)),
    bad: badRequiredString(max),
  });
  return [
    // §4 — service scope
    {
      method: 'POST',
      path: '/api/credits-process/start',
      writes: true,
      key: SERVICE_KEY,
      fields: {
        user_id: { ok: fc.constant(WALLET), bad: badRequiredString(128) },
        feature_endpoint_id: { ok: fc.constant(FEATURE), bad: badRequiredString(128) },
      },
    },
    {
      method: 'POST',
      path: '/api/credits-process/end-multimodel',
      writes: true,
      key: SERVICE_KEY,
      fields: {
        ...settlementTarget(hold),
        usages: {
          ok: fc.array(
            goodUsage.map((u) => ({ ...u, ai_model: MODEL })),
            { minLength: 1, maxLength: 3 },
          ),
          bad: badUsages,
        },
      },
    },
    {
      method: 'POST',
      path: '/api/credits-process/end',
      writes: true,
      key: SERVICE_KEY,
      fields: {
        ...settlementTarget(hold),
        ai_model: { ok: fc.constant(MODEL), bad: badRequiredString(128) },
        input_tokens: { ok: fc.integer({ min: 0, max: 1000 }), bad: badRequiredTokens },
        output_tokens: { ok: fc.integer({ min: 0, max: 1000 }), bad: badRequiredTokens },
        cached_input_tokens: { ok: fc.constant(undefined), bad: badTokens },
      },
    },
    {
      method: 'POST',
      path: '/api/credits-process/cancel',
      writes: true,
      key: SERVICE_KEY,
      fields: { usage_key: { ok: fc.constant(hold()), bad: badRequiredString(64) } },
    },
    { method: 'GET', path: '/api/credits-process/usages/:key', writes: false, key: SERVICE_KEY, params: { key: existingOrRandom(hold()) } },
    // §5 — pricing
    {
      method: 'POST',
      path: '/api/pricing/models',
      writes: true,
      fields: {
        ai_model: id(128),
        input_price_per_million: { ok: fc.constant('1.5'), bad: badRequiredAmount() },
        output_price_per_million: { ok: fc.constant(2), bad: badRequiredAmount() },
        cached_input_price_per_million: { ok: fc.constantFrom(undefined, null), bad: badAmount({ nullable: true }) },
        profit_margin: { ok: fc.constantFrom('0.1', null), bad: badAmount({ nullable: true }) },
      },
    },
    { method: 'GET', path: '/api/pricing/models', writes: false },
    { method: 'GET', path: '/api/pricing/models/:model', writes: false, params: { model: existingOrRandom(MODEL) } },
    {
      method: 'PATCH',
      path: '/api/pricing/models/:model',
      writes: true,
      params: { model: fc.constant(MODEL) },
      fields: {
        input_price_per_million: { ok: fc.constant('3'), bad: badAmount() },
        output_price_per_million: { ok: fc.constant(undefined), bad: badAmount() },
        profit_margin: { ok: fc.constant(null), bad: badAmount({ nullable: true }) },
      },
    },
    { method: 'GET', path: '/api/pricing/settings', writes: false },
    {
      method: 'PUT',
      path: '/api/pricing/settings',
      writes: true,
      fields: {
        credits_per_usd: { ok: fc.constant('250'), bad: fc.oneof(badAmount(), fc.constant('0')) },
        default_profit_margin: { ok: fc.constant('0.5'), bad: badAmount() },
      },
    },
    {
      method: 'POST',
      path: '/api/pricing/quote',
      writes: false,
      key: SERVICE_KEY,
      fields: {
        feature_endpoint_id: { ok: fc.constant(FEATURE), bad: badRequiredString(128) },
        usages: { ok: fc.array(goodUsage, { minLength: 1, maxLength: 3 }), bad: badUsages },
      },
    },
    // §6 — wallets, features, failures, reconciliation
    {
      method: 'POST',
      path: '/api/wallets',
      writes: true,
      fields: {
        user_id: id(128),
        plan: { ok: fc.constant('pro'), bad: fc.oneof(badOptionalString(64), fc.constant(' leading-space'), fc.constant('a\u0000b')) },
        initial_credits: { ok: fc.constant('10.5'), bad: badAmount() },
      },
    },
    { method: 'GET', path: '/api/wallets', writes: false },
    { method: 'GET', path: '/api/wallets/:user', writes: false, key: SERVICE_KEY, params: { user: existingOrRandom(WALLET) } },
    {
      method: 'PATCH',
      path: '/api/wallets/:user',
      writes: true,
      params: { user: fc.constant(WALLET) },
      fields: {
        plan: { ok: fc.constant('pro'), bad: badOptionalString(64) },
        status: {
          ok: fc.constant('suspended'),
          bad: fc.oneof(fc.constantFrom('deleted', 'ACTIVE', '', null), fc.integer(), fc.boolean()),
        },
      },
    },
    {
      method: 'POST',
      path: '/api/wallets/:user/top-up',
      writes: true,
      params: { user: fc.constant(WALLET) },
      fields: {
        amount: { ok: fc.constant('5'), bad: fc.oneof(badRequiredAmount(), fc.constantFrom('0', 0, '0.000000')) },
        idempotency_key: { ok: fc.constant(undefined), bad: badOptionalString(128) },
        description: { ok: fc.constant('fuzz'), bad: badOptionalString(500) },
      },
    },
    {
      method: 'POST',
      path: '/api/wallets/:user/adjust',
      writes: true,
      params: { user: fc.constant(WALLET) },
      fields: {
        amount: { ok: fc.constant('-5'), bad: badRequiredAmount({ negativeAllowed: true }) },
        reason: { ok: fc.constant('fuzz'), bad: badRequiredString(500) },
      },
    },
    { method: 'GET', path: '/api/wallets/:user/transactions', writes: false, params: { user: existingOrRandom(WALLET) } },
    {
      method: 'POST',
      path: '/api/features',
      writes: true,
      fields: {
        feature_endpoint_id: id(128),
        name: { ok: fc.constant('Fuzz'), bad: badRequiredString(200) },
        min_holding_credits: { ok: fc.constant('1'), bad: badRequiredAmount() },
        hold_ttl_seconds: {
          ok: fc.constantFrom(60, null),
          bad: fc.constantFrom(0, 604_801, 1.5, '60', '1e3', raw('1e400'), raw('1e6'), true),
        },
        profit_margin: { ok: fc.constantFrom(undefined, null), bad: fc.oneof(badAmount({ nullable: true }), fc.constant('100.000001')) },
        fixed_cost: { ok: fc.constantFrom(undefined, null), bad: badAmount({ nullable: true }) },
        allowed_plans: {
          ok: fc.constant([]),
          bad: fc.oneof(
            fc.constant('free'),
            fc.constant(null),
            fc.constant([null]),
            fc.constant([1]),
            fc.constant(['']),
            fc.constant(Array.from({ length: 101 }, (_, i) => `p${i}`)),
          ),
        },
        active: { ok: fc.constant(true), bad: fc.constantFrom('true', 1, 'yes', null) },
      },
    },
    { method: 'GET', path: '/api/features', writes: false },
    { method: 'GET', path: '/api/features/:feature', writes: false, params: { feature: existingOrRandom(FEATURE) } },
    {
      method: 'PATCH',
      path: '/api/features/:feature',
      writes: true,
      params: { feature: fc.constant(FEATURE) },
      fields: {
        name: { ok: fc.constant('Renamed'), bad: badOptionalString(200) },
        min_holding_credits: { ok: fc.constant('3'), bad: badAmount() },
        active: { ok: fc.constant(false), bad: fc.constantFrom('false', 0, null) },
      },
    },
    { method: 'GET', path: '/api/settlement-failures', writes: false },
    {
      method: 'POST',
      path: '/api/settlement-failures/:id/replay',
      writes: true,
      params: { id: fc.oneof(fc.constant('1'), fc.bigInt({ min: 0n, max: 10n ** 25n }).map(String), unicode) },
    },
    {
      method: 'POST',
      path: '/api/settlement-failures/:id/discard',
      writes: true,
      params: { id: fc.oneof(fc.constant('1'), fc.bigInt({ min: 0n, max: 10n ** 25n }).map(String), unicode) },
    },
    { method: 'GET', path: '/api/reconciliation', writes: false },
  ];
}

interface Fuzzed {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  what: string;
}

const query = fc.dictionary(
  fc.constantFrom('limit', 'cursor', 'usage_key', 'status', 'x'),
  fc.oneof(fc.constantFrom('0', '-1', '201', '1.5', '1e3', '', 'NaN', '99999999999999999999999', 'held'), unicode, tenKb),
  { maxKeys: 3 },
);

/** One hostile request for a route. */
function request(route: Route): fc.Arbitrary<Fuzzed> {
  const params = fc.record(route.params ?? {}) as fc.Arbitrary<Record<string, string>>;
  const extra = fc.dictionary(
    fc.string({ maxLength: 12 }).filter((k) => !(k in (route.fields ?? {})) && k !== '__proto__'),
    anyJson,
    { maxKeys: 3 },
  );
  const fields = route.fields ?? {};
  const names = Object.keys(fields);
  const poisonedObject: fc.Arbitrary<Record<string, unknown>> =
    names.length === 0
      ? fc.dictionary(fc.string({ maxLength: 12 }), anyJson, { maxKeys: 4 })
      : fc
          .tuple(fc.subarray(names, { minLength: 1 }), extra)
          .chain(([poisoned, extras]) =>
            fc
              .record(Object.fromEntries(names.map((n) => [n, poisoned.includes(n) ? fields[n].bad : fields[n].ok])))
              .map((known) => ({ ...extras, ...known })),
          );
  const valid = fc.record(Object.fromEntries(names.map((n) => [n, fields[n].ok])));
  type Body = { body?: string | Uint8Array; contentType?: string; what: string };
  const bodies: fc.Arbitrary<Body>[] = [
    poisonedObject.map((o) => ({ body: toJson(o), contentType: 'application/json', what: 'poisoned field' })),
    fc
      .oneof(anyJson, fc.json())
      .filter((v) => v === null || typeof v !== 'object' || Array.isArray(v))
      .map((v) => ({ body: toJson(v), contentType: 'application/json', what: 'not an object' })),
    valid.map((o) => ({ body: toJson([o]), contentType: 'application/json', what: 'array instead of object' })),
    fc
      .constantFrom('{', '{"user_id":', '{"a":1,}', "{'a':1}", 'undefined', '{"a":1}{"b":2}', '\u0000', '[1,2', '{"amount": 01}')
      .map((t) => ({ body: t, contentType: 'application/json', what: 'malformed JSON' })),
    valid.map((o) => ({ body: toJson(o), contentType: 'text/plain', what: 'text/plain' })),
    valid.map((o) => ({ body: new TextEncoder().encode(toJson(o)), what: 'no content type' })),
    fc.constantFrom('application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml').chain((ct) =>
      valid.map((o) => ({
        body: ct.includes('form-urlencoded')
          ? new URLSearchParams(
              Object.entries(o).map(([k, v]): [string, string] => [k, typeof v === 'object' ? toJson(v) : String(v)]),
            ).toString()
          : toJson(o),
        contentType: ct,
        what: `content type ${ct}`,
      })),
    ),
    valid.map((o) => ({
      body: toJson({ ...o, padding: 'p'.repeat(BODY_LIMIT + 10) }),
      contentType: 'application/json',
      what: 'body over the limit',
    })),
    fc.constant({ body: '', contentType: 'application/json', what: 'empty body' }),
  ];
  // A route without a body still gets some, and a GET none (fetch refuses a GET body).
  const body: fc.Arbitrary<Body> =
    route.method === 'GET' ? fc.constant({ what: 'GET' }) : fc.oneof({ weight: 4, arbitrary: bodies[0] }, ...bodies.slice(1));
  return fc.tuple(params, body, route.method === 'GET' ? query : fc.constant({})).map(([p, b, q]) => {
    let path = route.path.replace(/:(\w+)/g, (_m, name: string) => encodeURIComponent(wellFormed(p[name])));
    const qs = new URLSearchParams(Object.entries(q).map(([k, v]): [string, string] => [k, wellFormed(String(v))])).toString();
    if (qs) path += `?${qs}`;
    const headers: Record<string, string> = { 'x-server-api-key': route.key ?? ADMIN_KEY };
    if (b.contentType) headers['content-type'] = b.contentType;
    return { method: route.method, path, headers, body: b.body, what: b.what };
  });
}

/** Every table's row count and a digest of its whole content: any write changes it. */
async function snapshot(url: string): Promise<Record<string, string>> {
  return withDb(url, async (c) => {
    const tables = (
      await c.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
    ).rows.map((r) => r.tablename);
    const result: Record<string, string> = {};
    for (const t of tables) {
      const { rows } = await c.query(
        `SELECT COUNT(*)::text AS n, COALESCE(md5(string_agg(x::text, '|' ORDER BY x::text)), '') AS digest FROM ${t} x`,
      );
      result[t] = `${rows[0].n} rows, ${rows[0].digest}`;
    }
    const sums = await c.query(
      `SELECT (SELECT SUM(balance)::text FROM wallets) AS balance, (SELECT SUM(held)::text FROM wallets) AS held, (SELECT SUM(amount)::text FROM ledger_entries) AS ledger`,
    );
    result.sums = JSON.stringify(sums.rows[0]);
    return result;
  });
}

describe('hostile input: a fuzz of every route', () => {
  let t: TestApp;
  let holdKey = '';

  beforeAll(async () => {
    t = await startTestApp();
    const ok = async (method: string, path: string, body: unknown, key?: string) => {
      const res = await t.request(method, path, { body, key });
      if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.data;
    };
    await ok('POST', '/api/pricing/models', { ai_model: MODEL, input_price_per_million: '2.5', output_price_per_million: '10' });
    await ok('POST', '/api/features', { feature_endpoint_id: FEATURE, name: 'Fuzz', min_holding_credits: '5' });
    await ok('POST', '/api/wallets', { user_id: WALLET, initial_credits: '100' });
    holdKey = (await ok('POST', '/api/credits-process/start', { user_id: WALLET, feature_endpoint_id: FEATURE }, SERVICE_KEY)).usage_key;
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  }, 30_000);

  it('reaches ids of the maximum length (128 characters, unicode too) in paths: never 414', async () => {
    for (const userId of ['m'.repeat(128), 'ü€'.repeat(64)]) {
      expect((await t.request('POST', '/api/wallets', { body: { user_id: userId } })).status).toBe(201);
      const res = await t.request('GET', `/api/wallets/${encodeURIComponent(userId)}`, { key: SERVICE_KEY });
      expect(res.status).toBe(200);
      expect(res.body.data.user_id).toBe(userId);
      expect((await t.request('GET', `/api/wallets/${encodeURIComponent(userId)}/transactions`)).status).toBe(200);
    }
    const tooLong = await t.request('GET', `/api/wallets/${'z'.repeat(3000)}`);
    expect(tooLong.status).toBe(414);
    expect(tooLong.body).toEqual({ success: false, data: { status: 'uri_too_long', message: expect.any(String) } });
    const badUrl = await t.request('GET', '/api/wallets/%E0%A4%A');
    expect(badUrl.status).toBe(400);
    expect(badUrl.body.data).toMatchObject({ status: 'validation_error', message: expect.any(String) });
  }, 30_000);

  it('never answers 5xx, always answers failures in the envelope, and writes nothing', async () => {
    const before = await snapshot(t.db.url);
    let requests = 0;
    const seen: Record<number, number> = {};
    for (const route of routes(() => holdKey)) {
      await fc
        .assert(
          fc.asyncProperty(request(route), async (req) => {
            requests++;
            const res = await fetch(`${t.baseUrl}${req.path}`, { method: req.method, headers: req.headers, body: req.body });
            const text = await res.text();
            seen[res.status] = (seen[res.status] ?? 0) + 1;
            const context = `${req.method} ${req.path.slice(0, 120)} (${req.what}) → ${res.status} ${text.slice(0, 300)}`;
            if (res.status >= 500) throw new Error(`5xx: ${context}`);
            if (route.writes && res.status < 400) throw new Error(`a write route accepted a hostile request: ${context}`);
            if (res.status >= 400) {
              let body: any;
              try {
                body = JSON.parse(text);
              } catch {
                throw new Error(`a failure that is not JSON: ${context}`);
              }
              if (
                body?.success !== false ||
                typeof body?.data?.status !== 'string' ||
                !/^[a-z_]+$/.test(body.data.status) ||
                typeof body?.data?.message !== 'string' ||
                body.data.message === ''
              ) {
                throw new Error(`a failure outside the envelope: ${context}`);
              }
              if (body.data.status === 'validation_error' && !Array.isArray(body.data.errors))
                throw new Error(`validation_error without errors[]: ${context}`);
            }
          }),
          { numRuns: route.writes ? 80 : 30, endOnFailure: true },
        )
        .catch((error: Error) => {
          // The counterexample may hold 10 kB strings: keep the report readable.
          throw new Error(error.message.replace(/(.{400}).{200,}?(?=\n|$)/g, '$1…'));
        });
    }
    expect(await snapshot(t.db.url)).toEqual(before);
    process.stderr.write(`[figures] hostile-input ${JSON.stringify({ requests, statuses: seen })}\n`);
  }, 60_000);
});

// ---- null in every field, and every limit ---------------------------------------------------------

interface SchemaNode {
  $ref?: string;
  allOf?: SchemaNode[];
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  required?: string[];
  nullable?: boolean;
  type?: string;
}
interface BodyField {
  /** As validation_error names it: `usage_key`, `usages.0.cached_input_tokens`. */
  path: string;
  nullable: boolean;
}

/** The body's fields as the OpenAPI document declares them (DTOs are its source), nested usages included. */
function bodyFields(doc: { components: { schemas: Record<string, SchemaNode> } }, node: SchemaNode, prefix = ''): BodyField[] {
  const resolve = (n: SchemaNode): SchemaNode => {
    if (n.$ref) return resolve(doc.components.schemas[n.$ref.split('/').pop()!]);
    if (n.allOf) return n.allOf.map(resolve).reduce((a, b) => ({ ...a, ...b, properties: { ...a.properties, ...b.properties } }), {});
    return n;
  };
  const schema = resolve(node);
  return Object.entries(schema.properties ?? {}).flatMap(([name, raw]) => {
    const property = { ...resolve(raw), nullable: raw.nullable ?? resolve(raw).nullable };
    const path = `${prefix}${name}`;
    const own = { path, nullable: property.nullable === true };
    const items = property.type === 'array' && property.items ? resolve(property.items) : undefined;
    return items?.properties ? [own, ...bodyFields(doc, items, `${path}.0.`)] : [own];
  });
}

/** Sets `path` (dotted, numeric parts index arrays) to value in a deep copy. */
function withValue(body: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(body)) as Record<string, unknown>;
  const parts = path.split('.');
  let at: any = copy;
  for (const part of parts.slice(0, -1)) at = at[part];
  at[parts[parts.length - 1]] = value;
  return copy;
}

describe('hostile input: null in every field of every route and queue, and values at every limit', () => {
  const MULTI = 'credits_process_end_multimodel_queue';
  const LEGACY = 'credits_process_end_queue';
  let t: TestApp;
  let vhost: TestVhost;
  let holdKey = '';
  let n = 0;
  const usage = { ai_model: MODEL, input_tokens: 10, output_tokens: 5, cached_input_tokens: 2 };
  const settlement = () => ({ user_id: WALLET, feature_endpoint_id: FEATURE, usage_key: holdKey, idempotency_key: `k-${++n}` });

  /** A valid body per route, every optional field present: null in any one of them is the only fault. */
  const VALID: Record<string, () => Record<string, unknown>> = {
    'POST /api/credits-process/start': () => ({ user_id: WALLET, feature_endpoint_id: FEATURE }),
    'POST /api/credits-process/end-multimodel': () => ({ ...settlement(), usages: [usage] }),
    'POST /api/credits-process/end': () => ({ ...settlement(), ...usage }),
    'POST /api/credits-process/cancel': () => ({ usage_key: holdKey }),
    'POST /api/credits-process/extend': () => ({ usage_key: holdKey, ttl_seconds: 600, additional_hold: '1' }),
    'POST /api/pricing/models': () => ({
      ai_model: `null-model-${++n}`,
      input_price_per_million: '1',
      output_price_per_million: '2',
      cached_input_price_per_million: '0.5',
      profit_margin: '0.1',
    }),
    'PATCH /api/pricing/models/{ai_model}': () => ({
      input_price_per_million: '1',
      output_price_per_million: '2',
      cached_input_price_per_million: '0.5',
      profit_margin: '0.1',
    }),
    'PUT /api/pricing/settings': () => ({ credits_per_usd: '100', default_profit_margin: '0', default_low_balance_thresholds: ['5'] }),
    'POST /api/webhooks': () => ({ url: 'https://partner.example.com/hook', events: ['wallet.low_balance'], description: 'd' }),
    'PATCH /api/webhooks/{id}': () => ({ url: 'https://partner.example.com/hook', events: ['*'], active: true, description: 'd' }),
    'POST /api/pricing/quote': () => ({ feature_endpoint_id: FEATURE, usages: [usage] }),
    'POST /api/wallets': () => ({ user_id: `null-wallet-${++n}`, plan: 'pro', initial_credits: '10' }),
    'PATCH /api/wallets/{user_id}': () => ({ plan: 'pro', status: 'active', low_balance_thresholds: ['10', '1'] }),
    'POST /api/wallets/{user_id}/top-up': () => ({ amount: '1', idempotency_key: `t-${++n}`, description: 'd' }),
    'POST /api/wallets/{user_id}/adjust': () => ({ amount: '-1', reason: 'r' }),
    'POST /api/wallets/{user_id}/grants': () => ({
      amount: '1',
      kind: 'promotional',
      priority: 10,
      expires_at: new Date(Date.now() + 86_400_000).toISOString(),
      idempotency_key: `g-${++n}`,
      description: 'd',
    }),
    'POST /api/wallets/{user_id}/grants/{grant_id}/void': () => ({ reason: 'r' }),
    'POST /api/credits-process/usages/{usage_key}/refund': () => ({ amount: '0.1', reason: 'r', idempotency_key: `r-${++n}` }),
    'POST /api/features': () => ({
      feature_endpoint_id: `null-feature-${++n}`,
      name: 'N',
      min_holding_credits: '1',
      hold_ttl_seconds: 60,
      profit_margin: '0.1',
      fixed_cost: '0.01',
      allowed_plans: ['free', 'pro'],
      active: true,
    }),
    'POST /api/keys': () => ({
      name: 'K',
      scope: 'service',
      allowed_features: [FEATURE],
      spend_cap: { amount: '10', period: 'day' },
      expires_at: new Date(Date.now() + 86_400_000).toISOString(),
    }),
    'PATCH /api/keys/{key_id}': () => ({ name: 'K', allowed_features: [FEATURE], spend_cap: { amount: '10', period: 'month' } }),
    'POST /api/keys/{key_id}/rotate': () => ({ grace_seconds: 0 }),
    'PATCH /api/features/{feature_endpoint_id}': () => ({
      name: 'N',
      min_holding_credits: '1',
      hold_ttl_seconds: 60,
      profit_margin: '0.1',
      fixed_cost: '0.01',
      allowed_plans: ['free', 'pro'],
      active: true,
    }),
  };
  const PARAMS: Record<string, string> = {
    ai_model: MODEL,
    user_id: WALLET,
    feature_endpoint_id: FEATURE,
    key_id: '',
    id: '',
    grant_id: '',
    usage_key: '',
  };
  const SERVICE_ROUTES = new Set(['start', 'end-multimodel', 'end', 'cancel', 'quote', 'refund', 'extend'].map((r) => r));
  const keyFor = (path: string) => (SERVICE_ROUTES.has(path.split('/').pop()!) ? SERVICE_KEY : ADMIN_KEY);

  let doc: { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: SchemaNode }> } }>> } & {
    components: { schemas: Record<string, SchemaNode> };
  };
  const fieldsOf = (route: string): BodyField[] => {
    const [method, path] = route.split(' ');
    return bodyFields(doc, doc.paths[path][method.toLowerCase()].requestBody!.content['application/json'].schema);
  };

  beforeAll(async () => {
    vhost = await createTestVhost();
    // No relay: the webhook registered below points at a host nobody should be sent requests.
    t = await startTestApp({ RABBITMQ_URL: vhost.url, RABBITMQ_RETRY_DELAYS_MS: '100,200', EVENT_RELAY_INTERVAL_MS: '0' });
    await waitFor('the broker to be ready', async () => (await t.request('GET', '/health/ready', { key: null })).status === 200);
    const ok = async (method: string, path: string, body: unknown, key?: string) => {
      const res = await t.request(method, path, { body, key });
      if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.data;
    };
    await ok('POST', '/api/pricing/models', { ai_model: MODEL, input_price_per_million: '2.5', output_price_per_million: '10' });
    await ok('POST', '/api/features', { feature_endpoint_id: FEATURE, name: 'Fuzz', min_holding_credits: '5' });
    await ok('POST', '/api/wallets', { user_id: WALLET, initial_credits: '100' });
    holdKey = (await ok('POST', '/api/credits-process/start', { user_id: WALLET, feature_endpoint_id: FEATURE }, SERVICE_KEY)).usage_key;
    PARAMS.key_id = (await ok('POST', '/api/keys', { name: 'fuzz', scope: 'service' })).key_id;
    PARAMS.id = (await ok('POST', '/api/webhooks', { url: 'https://partner.example.com/hook', events: ['*'] })).webhook_id;
    PARAMS.grant_id = (await ok('POST', `/api/wallets/${WALLET}/grants`, { amount: '1' })).grant.grant_id;
    PARAMS.usage_key = (
      await ok(
        'POST',
        '/api/credits-process/end-multimodel',
        { user_id: WALLET, feature_endpoint_id: FEATURE, usages: [{ ai_model: MODEL, input_tokens: 1000, output_tokens: 10 }] },
        SERVICE_KEY,
      )
    ).usage_key;
    doc = (await t.request('GET', '/docs-json', { key: null })).body as unknown as typeof doc;
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await vhost?.delete();
  }, 30_000);

  it('covers every route that takes a body, as the OpenAPI document lists them', () => {
    const withBody = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => op.requestBody)
        .map(([method]) => `${method.toUpperCase()} ${path}`),
    );
    expect(withBody.sort()).toEqual(Object.keys(VALID).sort());
    // The fields the contract documents as taking null, and no other (validation.spec pins the DTO side).
    const nullable = Object.keys(VALID).flatMap((route) =>
      fieldsOf(route)
        .filter((f) => f.nullable)
        .map((f) => `${route} ${f.path}`),
    );
    expect(nullable.sort()).toEqual(
      [
        'POST /api/credits-process/end cached_input_tokens',
        'POST /api/credits-process/end-multimodel usages.0.cached_input_tokens',
        'POST /api/pricing/quote usages.0.cached_input_tokens',
        'POST /api/pricing/models cached_input_price_per_million',
        'POST /api/pricing/models profit_margin',
        'PATCH /api/pricing/models/{ai_model} cached_input_price_per_million',
        'PATCH /api/pricing/models/{ai_model} profit_margin',
        'POST /api/features hold_ttl_seconds',
        'POST /api/features profit_margin',
        'POST /api/features fixed_cost',
        'PATCH /api/features/{feature_endpoint_id} hold_ttl_seconds',
        'PATCH /api/features/{feature_endpoint_id} profit_margin',
        'PATCH /api/features/{feature_endpoint_id} fixed_cost',
        // null = no spend cap (API.md §11)
        'POST /api/keys spend_cap',
        'PATCH /api/keys/{key_id} spend_cap',
        // null = the settings' default thresholds (API.md §10)
        'PATCH /api/wallets/{user_id} low_balance_thresholds',
        // null = a grant that never expires (API.md §8)
        'POST /api/wallets/{user_id}/grants expires_at',
      ].sort(),
    );
  });

  it('refuses null in every field that is not nullable, on HTTP and on both queues: 400 / a settlement failure, nothing written', async () => {
    const before = await snapshot(t.db.url);
    const wrong: string[] = [];
    let sent = 0;
    for (const route of Object.keys(VALID)) {
      const [method, template] = route.split(' ');
      const path = template.replace(/\{(\w+)\}/g, (_m, name: string) => encodeURIComponent(PARAMS[name]));
      for (const field of fieldsOf(route).filter((f) => !f.nullable)) {
        sent++;
        const res = await t.request(method, path, { body: withValue(VALID[route](), field.path, null), key: keyFor(path) });
        const named = (res.body.data?.errors ?? []).some((e: { field: string }) => e.field === field.path);
        if (res.status !== 400 || res.body.data?.status !== 'validation_error' || !named)
          wrong.push(`${route} ${field.path}=null → ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(sent).toBeGreaterThan(40);
    expect(await snapshot(t.db.url)).toEqual(before);

    // The queues: the same bodies, each null recorded whole as a validation failure, and acknowledged.
    const messages = [
      ...fieldsOf('POST /api/credits-process/end-multimodel')
        .filter((f) => !f.nullable)
        .map((f) => ({ queue: MULTI, field: f.path, body: withValue(VALID['POST /api/credits-process/end-multimodel'](), f.path, null) })),
      ...fieldsOf('POST /api/credits-process/end')
        .filter((f) => !f.nullable)
        .map((f) => ({ queue: LEGACY, field: f.path, body: withValue(VALID['POST /api/credits-process/end'](), f.path, null) })),
    ];
    for (const m of messages) await publish(vhost.url, m.queue, [m.body]);
    const failures = await waitFor('every null message to be recorded', async () => {
      const items = (await t.request('GET', '/api/settlement-failures?limit=200')).body.data.items as {
        queue: string;
        payload: string;
        error_status: string;
      }[];
      return items.length >= messages.length && items;
    });
    expect(failures).toHaveLength(messages.length);
    for (const m of messages) {
      const failure = failures.find((f) => f.queue === m.queue && JSON.stringify(JSON.parse(f.payload)) === JSON.stringify(m.body));
      expect({ field: m.field, queue: m.queue, error_status: failure?.error_status }).toEqual({
        field: m.field,
        queue: m.queue,
        error_status: 'validation_error',
      });
    }
    const after = await snapshot(t.db.url);
    // Each recorded failure also wrote its settlement_failure.recorded event (API.md §10).
    expect({ ...after, settlement_failures: '', events: '' }).toEqual({ ...before, settlement_failures: '', events: '' });
  }, 60_000);

  it('takes every value at its limit and refuses the next one: lengths, amounts, 6 vs 7 decimals, tokens, usages, TTL, page size', async () => {
    const id = () => `limit-${++n}`;
    const wallet = async () => {
      const userId = id();
      expect((await t.request('POST', '/api/wallets', { body: { user_id: userId, plan: 'free', initial_credits: '100' } })).status).toBe(
        201,
      );
      return userId;
    };
    const w = await wallet();
    const m = (k: number) => Array.from({ length: k }, () => ({ ai_model: MODEL, input_tokens: 1, output_tokens: 1 }));
    const MAX = '1000000000000'; // MAX_REQUEST_CREDITS
    // [method, path, body, accepted?]
    const cases: [string, string, unknown, boolean][] = [
      ['POST', '/api/wallets', { user_id: 'u'.repeat(128), plan: 'p'.repeat(64), initial_credits: `${MAX}.000000` }, true],
      ['POST', '/api/wallets', { user_id: 'u'.repeat(129) }, false],
      ['POST', '/api/wallets', { user_id: id(), plan: 'p'.repeat(65) }, false],
      ['POST', '/api/wallets', { user_id: id(), initial_credits: `${MAX}.000001` }, false],
      ['POST', '/api/wallets', { user_id: id(), initial_credits: '0.000001' }, true],
      ['POST', '/api/wallets', { user_id: id(), initial_credits: 0.000001 }, true],
      ['POST', '/api/wallets', { user_id: id(), initial_credits: '0.0000001' }, false],
      ['POST', '/api/wallets', { user_id: id(), initial_credits: 0.0000001 }, false],
      ['POST', `/api/wallets/${w}/top-up`, { amount: MAX, idempotency_key: 'k'.repeat(128), description: 'd'.repeat(500) }, true],
      ['POST', `/api/wallets/${w}/top-up`, { amount: `${MAX}.000001` }, false],
      ['POST', `/api/wallets/${w}/top-up`, { amount: '1', idempotency_key: 'k'.repeat(129) }, false],
      ['POST', `/api/wallets/${w}/top-up`, { amount: '1', description: 'd'.repeat(501) }, false],
      ['POST', `/api/wallets/${w}/adjust`, { amount: `-${MAX}`, reason: 'r'.repeat(500) }, true],
      ['POST', `/api/wallets/${w}/adjust`, { amount: `-${MAX}.000001`, reason: 'r' }, false],
      ['POST', `/api/wallets/${w}/adjust`, { amount: '-0.0000001', reason: 'r' }, false],
      ['POST', `/api/wallets/${w}/adjust`, { amount: '1', reason: 'r'.repeat(501) }, false],
      [
        'POST',
        '/api/pricing/models',
        {
          ai_model: 'm'.repeat(128),
          input_price_per_million: '1000000',
          output_price_per_million: '1000000.000000',
          cached_input_price_per_million: '1000000',
          profit_margin: '100',
        },
        true,
      ],
      ['POST', '/api/pricing/models', { ai_model: id(), input_price_per_million: '1000000.000001', output_price_per_million: '1' }, false],
      [
        'POST',
        '/api/pricing/models',
        { ai_model: id(), input_price_per_million: '1', output_price_per_million: '1', profit_margin: '100.000001' },
        false,
      ],
      ['POST', '/api/pricing/models', { ai_model: id(), input_price_per_million: '1.1234567', output_price_per_million: '1' }, false],
      [
        'POST',
        '/api/features',
        {
          feature_endpoint_id: 'f'.repeat(128),
          name: 'n'.repeat(200),
          min_holding_credits: MAX,
          hold_ttl_seconds: 604_800,
          profit_margin: '100',
          fixed_cost: MAX,
          allowed_plans: Array.from({ length: 100 }, (_, i) => `${i}`.padEnd(64, 'p')),
        },
        true,
      ],
      ['POST', '/api/features', { feature_endpoint_id: id(), name: 'n'.repeat(201), min_holding_credits: '1' }, false],
      ['POST', '/api/features', { feature_endpoint_id: id(), name: 'n', min_holding_credits: '1', hold_ttl_seconds: 604_801 }, false],
      ['POST', '/api/features', { feature_endpoint_id: id(), name: 'n', min_holding_credits: '1', allowed_plans: ['p'.repeat(65)] }, false],
      [
        'POST',
        '/api/features',
        { feature_endpoint_id: id(), name: 'n', min_holding_credits: '1', allowed_plans: m(101).map((_, i) => `p${i}`) },
        false,
      ],
      ['POST', '/api/features', { feature_endpoint_id: id(), name: 'n', min_holding_credits: '1', fixed_cost: '0.0000001' }, false],
      ['PUT', '/api/pricing/settings', { credits_per_usd: '1000000000', default_profit_margin: '100' }, true],
      ['PUT', '/api/pricing/settings', { credits_per_usd: '1000000000.000001' }, false],
      ['PUT', '/api/pricing/settings', { credits_per_usd: '100', default_profit_margin: '0' }, true],
      [
        'POST',
        '/api/credits-process/end-multimodel',
        {
          user_id: w,
          feature_endpoint_id: FEATURE,
          idempotency_key: 'i'.repeat(128),
          usages: [{ ai_model: MODEL, input_tokens: 1_000_000_000, output_tokens: 1_000_000_000, cached_input_tokens: 1_000_000_000 }],
        },
        true,
      ],
      ['POST', '/api/credits-process/end-multimodel', { user_id: w, feature_endpoint_id: FEATURE, usages: m(100) }, true],
      ['POST', '/api/credits-process/end-multimodel', { user_id: w, feature_endpoint_id: FEATURE, usages: m(101) }, false],
      [
        'POST',
        '/api/credits-process/end-multimodel',
        { user_id: w, feature_endpoint_id: FEATURE, idempotency_key: 'i'.repeat(129), usages: m(1) },
        false,
      ],
      [
        'POST',
        '/api/credits-process/end-multimodel',
        { user_id: w, feature_endpoint_id: FEATURE, usage_key: 'k'.repeat(65), usages: m(1) },
        false,
      ],
      [
        'POST',
        '/api/credits-process/end',
        { user_id: w, feature_endpoint_id: FEATURE, ai_model: MODEL, input_tokens: 1_000_000_001, output_tokens: 0 },
        false,
      ],
      [
        'POST',
        '/api/credits-process/end',
        { user_id: w, feature_endpoint_id: FEATURE, ai_model: MODEL, input_tokens: 0, output_tokens: 1_000_000_000 },
        true,
      ],
      [
        'POST',
        '/api/pricing/quote',
        { feature_endpoint_id: FEATURE, usages: [{ ai_model: MODEL, input_tokens: 1_000_000_000, output_tokens: 1_000_000_000 }] },
        true,
      ],
      ['GET', `/api/wallets/${w}/transactions?limit=200&usage_key=${'k'.repeat(64)}`, undefined, true],
      ['GET', `/api/wallets/${w}/transactions?limit=201`, undefined, false],
      ['GET', `/api/wallets/${w}/transactions?usage_key=${'k'.repeat(65)}`, undefined, false],
      ['GET', `/api/wallets?cursor=${'1'.repeat(201)}`, undefined, false],
    ];
    const wrong: string[] = [];
    for (const [method, path, body, accepted] of cases) {
      const res = await t.request(method, path, { body, key: keyFor(path) });
      const ok = accepted ? res.status < 300 : res.status === 400 && res.body.data?.status === 'validation_error';
      if (!ok)
        wrong.push(
          `${method} ${path.slice(0, 80)} ${JSON.stringify(body)?.slice(0, 160)} → ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`,
        );
    }
    expect(wrong).toEqual([]);
  }, 60_000);

  async function newHold(): Promise<string> {
    const res = await t.request('POST', '/api/credits-process/start', {
      key: SERVICE_KEY,
      body: VALID['POST /api/credits-process/start'](),
    });
    expect(res.status).toBe(200);
    return res.body.data.usage_key as string;
  }

  it('accepts null where it means "unset", on HTTP and on the queue', async () => {
    const accepted: string[] = [];
    for (const route of Object.keys(VALID)) {
      const [method, template] = route.split(' ');
      const path = template.replace(/\{(\w+)\}/g, (_m, name: string) => encodeURIComponent(PARAMS[name]));
      for (const field of fieldsOf(route).filter((f) => f.nullable)) {
        if (route.includes('/end')) holdKey = await newHold();
        const res = await t.request(method, path, { body: withValue(VALID[route](), field.path, null), key: keyFor(path) });
        if (res.status >= 300) accepted.push(`${route} ${field.path}=null → ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
      }
    }
    expect(accepted).toEqual([]);
    // A nullable field really unsets: the feature's margin and fixed cost are gone, its TTL is the default.
    const cleared = await t.request('PATCH', `/api/features/${FEATURE}`, {
      body: { hold_ttl_seconds: null, profit_margin: null, fixed_cost: null },
    });
    expect(cleared.status).toBe(200);
    expect(cleared.body.data).toMatchObject({ profit_margin: null, fixed_cost: null, hold_ttl_is_default: true });
    // And on the queue: a usage with cached_input_tokens null settles as 0 cached tokens.
    holdKey = await newHold();
    await publish(vhost.url, MULTI, [
      { user_id: WALLET, feature_endpoint_id: FEATURE, usage_key: holdKey, usages: [{ ...usage, cached_input_tokens: null }] },
    ]);
    const settled = await waitFor('the queued settlement', async () => {
      const u = (await t.request('GET', `/api/credits-process/usages/${holdKey}`)).body.data;
      return u.status === 'settled' && u;
    });
    expect(settled.settlement.usages[0].cached_input_tokens).toBe(0);
  }, 60_000);
});
