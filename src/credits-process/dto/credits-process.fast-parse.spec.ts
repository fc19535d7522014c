import { describe, expect, it } from '@jest/globals';
import type { ArgumentMetadata } from '@nestjs/common';
import { createValidationPipe, fastParseBody, Optional, validateBody } from '../../common/validation';
import { DomainError } from '../../common/domain-error';
import { MAX_TOKENS, MAX_USAGES, UsageDto } from '../../pricing/dto/usage.dto';
import { length, Matches } from 'class-validator';
import { fastSchemaOf } from '../../common/fast-parse';
import { IsMoney } from '../../common/money.validator';
import { ID_PATTERN } from '../../wallets/dto/wallet.dto';
import { assertSettlementRules, EndMultiModelDto, EndSingleModelDto, EstimateDto, StartProcessDto } from './credits-process.dto';

/*
 * Differential test of the fast parsers generated from the DTOs' decorators (common/fast-parse.ts)
 * against class-validator: many bodies — valid ones and mutations of them — go through the fast
 * parser, the global pipe and validateBody with and without their fast paths. For every body: when
 * the fast parser accepts, class-validator accepts too and builds a deeply equal instance (same
 * classes, same keys in the same order); and with or without fast paths, both entry points answer
 * the same value or the same error. The PRNG is seeded, so a failure repeats; its message holds the
 * body. (It held the hand-written checkers that came before to the same contract.)
 */

type Dto = StartProcessDto | EndMultiModelDto | EndSingleModelDto;
type DtoClass = new () => Dto;

/** mulberry32: small, fast, and good enough to pick mutations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  constructor(private readonly random: () => number) {}

  int(min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.random() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  /** Printable ASCII, first character not a space: valid for every id field. */
  printable(min: number, max: number): string {
    const length = this.chance(0.2) ? this.pick([min, max]) : this.int(min, Math.min(max, 40));
    let text = String.fromCharCode(this.int(0x21, 0x7e));
    while (text.length < length) text += String.fromCharCode(this.int(0x20, 0x7e));
    return text;
  }

  /** A string near a field's rules: at and around its length bounds, or with a character outside printable ASCII. */
  hostileString(max: number): string {
    const a = 'a';
    return this.pick([
      '',
      ' ',
      ' a',
      'a ',
      'a b',
      a.repeat(max - 1),
      a.repeat(max),
      a.repeat(max + 1),
      ' ' + a.repeat(max - 1),
      'é',
      'Zürich',
      '日本語',
      '😀',
      '😀'.repeat(max / 2),
      '😀'.repeat(max / 2 + 1),
      a.repeat(max - 1) + '😀',
      'x\ufe0f',
      'a'.repeat(max) + '\ufe0f',
      'a\u0000b',
      '\u0000',
      'a\u0000',
      'a\tb',
      '\tab',
      'a\nb',
      '\r',
      'a\u007f',
      '\u007fa',
      'a\u0085',
      '\u00a0a',
      'a\u200b',
      '\u2028',
      '\ud800',
      'a\udc00',
      '\ufeffa',
      this.printable(1, max) + String.fromCharCode(this.int(0, 0x1f)),
      this.printable(1, max) + String.fromCharCode(this.int(0x7f, 0xffff)),
      String.fromCharCode(this.int(0, 0xffff)) + this.printable(1, max - 1),
    ]);
  }

  validCount(): number {
    return this.chance(0.3) ? this.pick([0, 1, MAX_TOKENS, MAX_TOKENS - 1]) : this.int(0, 100_000);
  }

  /** Values near a token count's rules; -0 is an integer ≥ 0, so it is valid. */
  hostileCount(): unknown {
    return this.pick([
      -1,
      -0,
      0.5,
      1.5,
      MAX_TOKENS + 1,
      MAX_TOKENS + 0.5,
      2 ** 31,
      2 ** 53,
      2 ** 53 + 2,
      1e21,
      1e300,
      -1e21,
      Number.MAX_VALUE,
      Number.MIN_VALUE,
      1e-7,
      NaN,
      Infinity,
      -Infinity,
      '10',
      '0',
      '',
      '1e3',
      true,
      false,
      [],
      [1],
      {},
      { value: 1 },
    ]);
  }

  /** Anything at all where a field's value goes. */
  junk(depth = 0): unknown {
    const flat = [null, undefined, true, false, 0, -1, 1.5, NaN, '', 'x', ' ', '\u0000', [], {}, [null], new Date(0), Object.create(null)];
    if (depth > 2 || this.chance(0.6)) return this.pick(flat);
    return this.chance(0.5) ? [this.junk(depth + 1), this.junk(depth + 1)] : { a: this.junk(depth + 1), usages: this.junk(depth + 1) };
  }
}

const KEY_MAX: Record<string, number> = { user_id: 128, feature_endpoint_id: 128, usage_key: 64, idempotency_key: 128, ai_model: 128 };
const COUNT_KEYS = ['input_tokens', 'output_tokens', 'cached_input_tokens'];
/** Unknown keys, ordinary ones and those with a special meaning to JavaScript or the pipe. */
const EXTRA_KEYS = [
  'extra',
  'id',
  'usage',
  'Usages',
  'USER_ID',
  'user_id ',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '0',
  '__proto__',
  'constructor',
  'prototype',
];

function validUsage(g: Gen): Record<string, unknown> {
  const usage: Record<string, unknown> = { ai_model: g.printable(1, 128), input_tokens: g.validCount(), output_tokens: g.validCount() };
  if (g.chance(0.5)) usage.cached_input_tokens = g.validCount();
  return usage;
}

function validTarget(g: Gen): Record<string, unknown> {
  const target: Record<string, unknown> = { user_id: g.printable(1, 128), feature_endpoint_id: g.printable(1, 128) };
  if (g.chance(0.5)) target.usage_key = g.chance(0.5) ? '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10' : g.printable(1, 64);
  if (g.chance(0.3)) target.idempotency_key = g.printable(1, 128);
  if (g.chance(0.3)) target.final = g.chance(0.5);
  return target;
}

function validStart(g: Gen): Record<string, unknown> {
  const start: Record<string, unknown> = { user_id: g.printable(1, 128), feature_endpoint_id: g.printable(1, 128) };
  if (g.chance(0.3)) start.estimate = { usages: Array.from({ length: g.int(1, 3) }, () => validUsage(g)) };
  return start;
}

const VALID: Record<string, (g: Gen) => Record<string, unknown>> = {
  StartProcessDto: validStart,
  EndMultiModelDto: (g) => ({
    ...validTarget(g),
    usages: Array.from({ length: g.chance(0.1) ? g.pick([1, MAX_USAGES]) : g.int(1, 4) }, () => validUsage(g)),
  }),
  EndSingleModelDto: (g) => ({ ...validTarget(g), ...validUsage(g) }),
};

/** Same keys in a random order: the instance must keep the body's order, as plainToInstance does. */
function reorder(g: Gen, body: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(g.shuffle(Object.entries(body)));
}

/** Sets a key as JSON.parse would: `__proto__` becomes an own property, not the prototype. */
function setOwn(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function mutateValue(g: Gen, key: string, value: unknown): unknown {
  if (key === 'final') return g.pick([null, 0, 1, 'false', 'true', [], {}, g.junk()]);
  if (key === 'estimate') {
    if (g.chance(0.3)) return g.junk();
    const estimate = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
    return g.chance(0.5) ? { ...estimate, usages: mutateValue(g, 'usages', estimate.usages) } : mutate(g, estimate);
  }
  if (key === 'usages') {
    const usages = Array.isArray(value) ? [...(value as unknown[])] : [];
    switch (g.int(0, 8)) {
      case 0:
        return [];
      case 1:
        return Array.from({ length: MAX_USAGES + 1 }, () => ({ ai_model: 'm', input_tokens: 1, output_tokens: 1 }));
      case 2:
        return Array.from({ length: MAX_USAGES }, () => ({ ai_model: 'm', input_tokens: 1, output_tokens: 1 }));
      case 3:
        if (usages.length > 0) usages[g.int(0, usages.length - 1)] = g.junk();
        return usages;
      case 4:
        if (usages.length > 0)
          usages[g.int(0, usages.length - 1)] = mutate(g, usages[g.int(0, usages.length - 1)] as Record<string, unknown>);
        return usages;
      case 5:
        return { 0: usages[0] ?? {}, length: 1 };
      case 6: {
        // A sparse array: the pipe closes the gap, validateBody does not.
        const sparse: unknown[] = [];
        sparse[1] = usages[0] ?? {};
        return sparse;
      }
      case 7:
        return usages.map((u) => [u]);
      default:
        return g.junk();
    }
  }
  if (key in KEY_MAX) return g.chance(0.8) ? g.hostileString(KEY_MAX[key]) : g.junk();
  if (COUNT_KEYS.includes(key)) return g.chance(0.8) ? g.hostileCount() : g.junk();
  return g.junk();
}

/** One to three mutations: a field dropped, set to null, to a value near its rules, to junk; a key added. */
function mutate(g: Gen, body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (body === null || typeof body !== 'object') return { junk: body }; // a nested value already mutated away
  for (const [key, value] of Object.entries(body)) setOwn(out, key, value);
  for (let n = g.int(1, 3); n > 0; n--) {
    const keys = Object.keys(out);
    const key =
      keys.length > 0 && g.chance(0.85)
        ? g.pick(keys)
        : g.pick([...EXTRA_KEYS, ...Object.keys(KEY_MAX), ...COUNT_KEYS, 'usages', 'final', 'estimate']);
    switch (g.int(0, 5)) {
      case 0:
        delete out[key];
        break;
      case 1:
        setOwn(out, key, g.chance(0.5) ? null : undefined);
        break;
      case 2:
        setOwn(out, g.pick(EXTRA_KEYS), g.chance(0.5) ? 'x' : g.junk());
        break;
      default:
        setOwn(out, key, mutateValue(g, key, out[key]));
    }
  }
  return out;
}

/** A copy for each entry point: the pipe closes array gaps and strips prototype keys in place. */
function clone(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || value instanceof Date) return value;
  const copy: object = Array.isArray(value)
    ? new Array<unknown>(value.length)
    : Object.create(Object.getPrototypeOf(value) as object | null);
  for (const key of Object.keys(value)) setOwn(copy, key, clone((value as Record<string, unknown>)[key]));
  return copy;
}

interface Case {
  body: unknown;
  /** Generated valid and left unmutated: the fast checker must accept it. */
  valid: boolean;
}

function cases(cls: DtoClass, seed: number, count: number): Case[] {
  const g = new Gen(prng(seed));
  const out: Case[] = [];
  for (let i = 0; i < count; i++) {
    let body: unknown = reorder(g, VALID[cls.name](g));
    const valid = g.chance(0.25);
    if (!valid) body = mutate(g, body as Record<string, unknown>);
    else if (g.chance(0.2)) setOwn(body as object, g.pick(EXTRA_KEYS.slice(0, 9)), g.junk()); // unknown keys are stripped, not refused
    // Most bodies arrive as JSON (HTTP, the queue): undefined, NaN, Infinity and prototypes do not survive it.
    if (g.chance(0.6)) body = JSON.parse(JSON.stringify(body)) as unknown;
    if (!valid && g.chance(0.02)) body = Object.assign(Object.create(null) as object, body);
    out.push({ body, valid });
  }
  return out;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

async function outcome(run: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: true, value: await run() };
  } catch (error) {
    if (error instanceof DomainError) return { ok: false, error: { code: error.code, message: error.message, details: error.details } };
    return { ok: false, error: { type: (error as Error).constructor.name, message: (error as Error).message } };
  }
}

function describeBody(body: unknown): string {
  return JSON.stringify(body, (_key, value: unknown) =>
    value === undefined ? '<undefined>' : typeof value === 'number' && !Number.isFinite(value) ? String(value) : value,
  );
}

/** Deep equality that also sees the key order, the classes and absent vs undefined properties. */
function expectSame(actual: unknown, expected: unknown, context: string): void {
  expect({ context, value: actual }).toStrictEqual({ context, value: expected });
  expect({ context, json: JSON.stringify(actual) }).toEqual({ context, json: JSON.stringify(expected) });
  expect({ context, keys: Object.keys(actual as object) }).toEqual({ context, keys: Object.keys(expected as object) });
}

const classicPipe = createValidationPipe({ fastPaths: false });
const pipe = createValidationPipe();

describe.each([
  [StartProcessDto, 1],
  [EndMultiModelDto, 2],
  [EndSingleModelDto, 3],
] as const)('fast checker of %p', (cls, seed) => {
  const metadata: ArgumentMetadata = { type: 'body', metatype: cls, data: undefined };

  it('never accepts a body class-validator refuses, and builds the same instance', async () => {
    const stats = { fast: 0, classicOnly: 0, refused: 0 };
    for (const { body, valid } of cases(cls, seed, 2500)) {
      const context = describeBody(body);
      const fast = fastParseBody(cls as DtoClass, clone(body) as object);
      const classic = await outcome(() => classicPipe.transform(clone(body), metadata));
      const classicQueue = await outcome(() => validateBody(cls as DtoClass, clone(body), { fastPaths: false }));

      if (valid) expect({ context, accepted: fast !== undefined }).toEqual({ context, accepted: true });
      if (fast !== undefined) {
        stats.fast++;
        expect({ context, ok: classic.ok, queueOk: classicQueue.ok }).toEqual({ context, ok: true, queueOk: true });
        expectSame(fast, (classic as { value: unknown }).value, context);
        expectSame(fast, (classicQueue as { value: unknown }).value, context);
        const usages = (fast as Partial<EndMultiModelDto>).usages;
        if (usages) for (const usage of usages) expect(usage).toBeInstanceOf(UsageDto);
      } else if (classic.ok) stats.classicOnly++;
      else stats.refused++;

      // Both entry points, fast paths on: the same value or the very same error as class-validator alone.
      const viaPipe = await outcome(() => pipe.transform(clone(body), metadata));
      const viaQueue = await outcome(() => validateBody(cls as DtoClass, clone(body)));
      expect({ context, ok: viaPipe.ok, queueOk: viaQueue.ok }).toEqual({ context, ok: classic.ok, queueOk: classicQueue.ok });
      if (viaPipe.ok) expectSame((viaPipe as { value: unknown }).value, (classic as { value: unknown }).value, context);
      else
        expect({ context, error: (viaPipe as { error: unknown }).error }).toEqual({
          context,
          error: (classic as { error: unknown }).error,
        });
      if (viaQueue.ok) expectSame((viaQueue as { value: unknown }).value, (classicQueue as { value: unknown }).value, context);
      else
        expect({ context, error: (viaQueue as { error: unknown }).error }).toEqual({
          context,
          error: (classicQueue as { error: unknown }).error,
        });
    }
    // The mutations reach every side: bodies the fast checker takes, bodies only class-validator
    // takes (e.g. unicode ids, null optional fields), and bodies both refuse.
    process.stderr.write(`[figures] fast-parse ${cls.name} ${JSON.stringify(stats)}\n`);
    expect(stats.fast).toBeGreaterThan(500);
    expect(stats.classicOnly).toBeGreaterThan(50);
    expect(stats.refused).toBeGreaterThan(600);
  });
});

describe('fast checkers on typical bodies', () => {
  const usage = { ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 };

  it.each([
    [StartProcessDto, { user_id: 'u1', feature_endpoint_id: 'ai_chat_v1' }],
    [
      EndMultiModelDto,
      {
        user_id: 'u1',
        feature_endpoint_id: 'ai_chat_v1',
        usage_key: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10',
        usages: [usage, { ...usage, ai_model: 'claude', cached_input_tokens: 0 }],
      },
    ],
    [EndMultiModelDto, { user_id: 'u1', feature_endpoint_id: 'ai_chat_v1', idempotency_key: 'job-42', usages: [usage] }],
    [
      EndMultiModelDto,
      {
        user_id: 'u1',
        feature_endpoint_id: 'ai_chat_v1',
        usage_key: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10',
        idempotency_key: 'step-7',
        final: false,
        usages: [usage],
      },
    ],
    [StartProcessDto, { user_id: 'u1', feature_endpoint_id: 'ai_chat_v1', estimate: { usages: [usage] } }],
    [
      EndSingleModelDto,
      {
        user_id: 'u1',
        feature_endpoint_id: 'ai_chat_v1',
        usage_key: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10',
        ...usage,
        cached_input_tokens: 100,
      },
    ],
  ] as const)('%p accepts a typical body and strips unknown fields', (cls, body) => {
    const dto = fastParseBody(cls as DtoClass, { ...body, extra: 'dropped' });
    expect(dto).toBeInstanceOf(cls);
    expect(dto).toEqual(body);
    expect(dto).not.toHaveProperty('extra');
  });

  it('leaves an optional field absent when the body omits it', () => {
    const dto = fastParseBody(EndSingleModelDto, { user_id: 'u1', feature_endpoint_id: 'f', ...usage });
    expect(dto && Object.keys(dto)).toEqual(['user_id', 'feature_endpoint_id', 'ai_model', 'input_tokens', 'output_tokens']);
  });

  it.each([
    ['a null optional field that is not nullable', { user_id: 'u1', feature_endpoint_id: 'f', usage_key: null, usages: [usage] }],
    ['a count as a string', { user_id: 'u1', feature_endpoint_id: 'f', usages: [{ ...usage, input_tokens: '10' }] }],
    ['a usage that is not a plain object', { user_id: 'u1', feature_endpoint_id: 'f', usages: [Object.assign(new UsageDto(), usage)] }],
    ['a string holding U+0000', { user_id: 'u\u0000', feature_endpoint_id: 'f', usages: [usage] }],
    // Valid (isLength counts 64), but 128 code units: the generated length rule is stricter.
    ['a usage_key of 64 astral characters', { user_id: 'u1', feature_endpoint_id: 'f', usage_key: '😀'.repeat(64), usages: [usage] }],
    ['a String object', { user_id: new String('u1'), feature_endpoint_id: 'f', usages: [usage] }],
    ['an undefined optional field', { user_id: 'u1', feature_endpoint_id: 'f', usage_key: undefined, usages: [usage] }],
    [
      'a __proto__ key',
      JSON.parse(
        '{"user_id":"u1","feature_endpoint_id":"f","usages":[{"ai_model":"m","input_tokens":1,"output_tokens":1}],"__proto__":{}}',
      ) as object,
    ],
  ])('leaves %s to class-validator', (_name, body) => {
    expect(fastParseBody(EndMultiModelDto, body)).toBeUndefined();
  });

  it('accepts what the decorators accept beyond printable ASCII (settlement ids have no ID_PATTERN), and null where nullable', () => {
    const body = { user_id: ' Zoë', feature_endpoint_id: '日本', usages: [{ ...usage, cached_input_tokens: null }] };
    expect(fastParseBody(EndMultiModelDto, body)).toEqual(body);
    expect(fastParseBody(StartProcessDto, { user_id: 'Zoë', feature_endpoint_id: 'f' })).toEqual({
      user_id: 'Zoë',
      feature_endpoint_id: 'f',
    });
    // /start's ids carry ID_PATTERN: a leading space is refused by both.
    expect(fastParseBody(StartProcessDto, { user_id: ' u1', feature_endpoint_id: 'f' })).toBeUndefined();
  });
});

describe('the §13 fields on the fast path', () => {
  const usage = { ai_model: 'gpt-4o', input_tokens: 1200, output_tokens: 300 };
  const increment = {
    user_id: 'u1',
    feature_endpoint_id: 'ai_chat_v1',
    usage_key: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10',
    idempotency_key: 'step-1',
    final: false,
  };

  it('builds the estimate as nested DTOs, as plainToInstance does', () => {
    const dto = fastParseBody(StartProcessDto, { user_id: 'u1', feature_endpoint_id: 'f', estimate: { usages: [usage], extra: 1 } });
    expect(dto?.estimate).toBeInstanceOf(EstimateDto);
    expect(dto?.estimate?.usages[0]).toBeInstanceOf(UsageDto);
    expect(dto?.estimate).toEqual({ usages: [usage] });
  });

  it.each([
    ['multi-model', EndMultiModelDto, { ...increment, usages: [usage] }],
    ['single-model', EndSingleModelDto, { ...increment, ...usage }],
  ] as const)('keeps a %s increment on the fast path', (_name, cls, body) => {
    expect(fastParseBody(cls as DtoClass, body)).toEqual(body);
  });

  it.each([true, false])(
    'refuses final: false without idempotency_key or usage_key after either parser (fast paths: %p)',
    async (fastPaths) => {
      const { idempotency_key: _k, ...noKey } = { ...increment, usages: [usage] };
      const { usage_key: _u, ...noHold } = { ...increment, usages: [usage] };
      const parse = async (body: object) => assertSettlementRules(await validateBody(EndMultiModelDto, body, { fastPaths }));
      await expect(parse(noKey)).rejects.toMatchObject({
        code: 'validation_error',
        details: { errors: [{ field: 'idempotency_key', message: expect.stringContaining('final is false') as unknown }] },
      });
      await expect(parse(noHold)).rejects.toMatchObject({ code: 'validation_error', details: { errors: [{ field: 'usage_key' }] } });
      // final absent or true needs neither (v1 bodies are unchanged).
      await expect(parse({ ...noKey, final: true })).resolves.toMatchObject({ final: true });
      const { final: _f, ...v1 } = noKey;
      await expect(parse(v1)).resolves.not.toHaveProperty('final');
      await expect(parse({ ...increment, usages: [usage] })).resolves.toMatchObject({ final: false, idempotency_key: 'step-1' });
    },
  );
});

describe('the generated schema', () => {
  const NOT_NULL = { type: ['string', 'number', 'boolean', 'array', 'object'] };
  const lengths = (min: number, max: number) => ({ type: 'string', minUnits: min, maxUnits: max });
  const count = { allOf: [{ type: 'number', maximum: MAX_TOKENS }, { type: 'number', minimum: 0 }, { type: 'integer' }] };

  it('says what the decorators say, one allOf member per decorator (so a changed rule shows up here)', () => {
    const id = { allOf: [{ type: 'string', pattern: ID_PATTERN.source }, lengths(1, 128), { type: 'string' }] };
    expect(fastSchemaOf(StartProcessDto)).toEqual({
      $ref: '#/definitions/StartProcessDto',
      definitions: {
        StartProcessDto: {
          type: 'object',
          properties: { user_id: id, feature_endpoint_id: id, estimate: { allOf: [{ $ref: '#/definitions/EstimateDto' }, NOT_NULL] } },
          required: ['user_id', 'feature_endpoint_id'],
        },
        EstimateDto: {
          type: 'object',
          properties: {
            usages: {
              allOf: [
                { type: 'array', items: { $ref: '#/definitions/UsageDto' } },
                { type: 'array', maxItems: MAX_USAGES },
                { type: 'array', minItems: 1 },
                { type: 'array' },
              ],
            },
          },
          required: ['usages'],
        },
        UsageDto: expect.objectContaining({ required: ['ai_model', 'input_tokens', 'output_tokens'] }) as unknown,
      },
    });
  });

  it('makes optional fields not required, refuses null unless the field is nullable, and nests usages by reference', () => {
    const { definitions } = fastSchemaOf(EndMultiModelDto) as {
      definitions: Record<string, { properties: Record<string, unknown>; required: string[] }>;
    };
    const root = definitions.EndMultiModelDto;
    expect(root.required).toEqual(['user_id', 'feature_endpoint_id', 'usages']);
    expect(root.properties.usage_key).toEqual({ allOf: [lengths(1, 64), { type: 'string' }, NOT_NULL] });
    expect(root.properties.usages).toEqual({
      allOf: [
        { type: 'array', items: { $ref: '#/definitions/UsageDto' } },
        { type: 'array', maxItems: MAX_USAGES },
        { type: 'array', minItems: 1 },
        { type: 'array' },
      ],
    });
    expect(definitions.UsageDto.required).toEqual(['ai_model', 'input_tokens', 'output_tokens']);
    expect(definitions.UsageDto.properties.input_tokens).toEqual(count);
    expect(definitions.UsageDto.properties.cached_input_tokens).toEqual({ anyOf: [{ type: 'null' }, count] });
  });

  it('counts lengths in code units, never laxer than @Length (exhaustive over surrogates and variation selectors)', () => {
    const alphabet = ['a', ' ', '\ufe0f', '\ufe0e', '\ud83d', '\ude00'];
    let strings = [''];
    let checked = 0;
    for (let size = 1; size <= 6; size++) {
      strings = strings.flatMap((prefix) => alphabet.map((c) => prefix + c));
      for (const text of strings)
        for (const max of [1, 2, 3, 4]) {
          checked++;
          // minUnits 1 + maxUnits max (what @Length(1, max) generates) accepts ⇒ class-validator accepts.
          if (text.length >= 1 && text.length <= max) expect({ text, max, ok: length(text, 1, max) }).toEqual({ text, max, ok: true });
        }
    }
    expect(checked).toBeGreaterThan(200_000);
  });

  it('turns a decorator it cannot translate exactly into false: the class-validator path decides', () => {
    class Custom {
      @Optional()
      @IsMoney()
      amount?: string;

      @Matches(/^a/i)
      name!: string;
    }
    const { definitions } = fastSchemaOf(Custom) as { definitions: Record<string, { properties: Record<string, unknown> }> };
    expect(definitions.Custom.properties).toEqual({ amount: { allOf: [false, NOT_NULL] }, name: { allOf: [false] } });
  });
});
