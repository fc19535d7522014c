import { MAX_TOKENS, MAX_USAGES, UsageDto } from '../../pricing/dto/usage.dto';
// Types only: credits-process.dto.ts imports this file to register the checkers, and passes its
// classes in, so there is no import cycle at run time.
import type { EndMultiModelDto, EndSingleModelDto, StartProcessDto } from './credits-process.dto';

/*
 * Fast checkers for the bodies of the hot routes (/start, /end-multimodel, /end and their queues);
 * see FastBodyParser in common/validation.ts for the contract. Each accepts only a subset of what
 * the decorators in credits-process.dto.ts and usage.dto.ts accept, chosen so that validity is
 * obvious without reading them closely:
 *  - strings: printable ASCII only (first character 0x21–0x7E, the rest 0x20–0x7E), length within
 *    the field's @Length — which satisfies ID_PATTERN (no \s first, no \p{C}) and the NUL rule by
 *    construction, and whose length is the same for validator's isLength (no surrogate pairs, no
 *    variation selectors);
 *  - token counts: Number.isInteger within [0, MAX_TOKENS] (@IsInt @Min @Max);
 *  - usages: a real array of 1..MAX_USAGES plain objects, each a valid UsageDto;
 *  - optional fields: absent, or a valid value. null (which @IsOptional lets through as null) and
 *    undefined are left to class-validator;
 *  - objects: plain ones only (Object.prototype), without __proto__/constructor/prototype keys
 *    (Fastify refuses the first two, the pipe deletes all three in place): too rare to be worth
 *    mirroring how each entry point treats them.
 * Known keys are copied in the body's order, as plainToInstance does; unknown keys are skipped,
 * as the pipe's whitelist deletes them. A change to those decorators must be mirrored here (the
 * differential test in credits-process.fast-parse.spec.ts fails when they disagree on a body).
 */

/** The longest string each field's @Length allows. */
const ID_MAX = 128;
const USAGE_KEY_MAX = 64;

/** One bit per known field, so required fields are checked with one comparison at the end. */
const USER_ID = 1;
const FEATURE_ENDPOINT_ID = 2;
const USAGE_KEY = 4;
const IDEMPOTENCY_KEY = 8;
const AI_MODEL = 16;
const INPUT_TOKENS = 32;
const OUTPUT_TOKENS = 64;
const CACHED_INPUT_TOKENS = 128;
const USAGES = 256;
/** Returned by a field copier: the value is not provably valid, so class-validator decides. */
const REFUSE = -1;
/** Returned by a field copier: not one of its keys. */
const UNKNOWN = 0;

const START_REQUIRED = USER_ID | FEATURE_ENDPOINT_ID;
const USAGE_REQUIRED = AI_MODEL | INPUT_TOKENS | OUTPUT_TOKENS;
const MULTI_REQUIRED = USER_ID | FEATURE_ENDPOINT_ID | USAGES;
const SINGLE_REQUIRED = USER_ID | FEATURE_ENDPOINT_ID | USAGE_REQUIRED;

type Fields = Record<string, unknown>;
type TargetFields = Pick<EndMultiModelDto, 'user_id' | 'feature_endpoint_id' | 'usage_key' | 'idempotency_key'>;

function isPlainObject(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

/** Printable ASCII, not starting with a space, 1..max characters. */
function isPrintable(value: unknown, max: number): value is string {
  if (typeof value !== 'string') return false;
  const length = value.length;
  if (length < 1 || length > max) return false;
  let code = value.charCodeAt(0);
  if (code < 0x21 || code > 0x7e) return false;
  for (let i = 1; i < length; i++) {
    code = value.charCodeAt(i);
    if (code < 0x20 || code > 0x7e) return false;
  }
  return true;
}

function isTokenCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_TOKENS;
}

/** An unknown key is skipped (the whitelist deletes it), except those with a meaning to JavaScript. */
function unknownKey(key: string): number {
  return key === '__proto__' || key === 'constructor' || key === 'prototype' ? REFUSE : UNKNOWN;
}

/** user_id and feature_endpoint_id, in every hot DTO. */
function copyIdField(dto: Pick<StartProcessDto, 'user_id' | 'feature_endpoint_id'>, key: string, value: unknown): number {
  switch (key) {
    case 'user_id':
      if (!isPrintable(value, ID_MAX)) return REFUSE;
      dto.user_id = value;
      return USER_ID;
    case 'feature_endpoint_id':
      if (!isPrintable(value, ID_MAX)) return REFUSE;
      dto.feature_endpoint_id = value;
      return FEATURE_ENDPOINT_ID;
    default:
      return UNKNOWN;
  }
}

/** The fields of SettlementTarget (credits-process.dto.ts). */
function copyTargetField(dto: TargetFields, key: string, value: unknown): number {
  switch (key) {
    case 'usage_key':
      if (!isPrintable(value, USAGE_KEY_MAX)) return REFUSE;
      dto.usage_key = value;
      return USAGE_KEY;
    case 'idempotency_key':
      if (!isPrintable(value, ID_MAX)) return REFUSE;
      dto.idempotency_key = value;
      return IDEMPOTENCY_KEY;
    default:
      return copyIdField(dto, key, value);
  }
}

/** The fields of UsageDto, nested (usages[]) or flat (EndSingleModelDto). */
function copyUsageField(dto: UsageDto, key: string, value: unknown): number {
  switch (key) {
    case 'ai_model':
      if (!isPrintable(value, ID_MAX)) return REFUSE;
      dto.ai_model = value;
      return AI_MODEL;
    case 'input_tokens':
      if (!isTokenCount(value)) return REFUSE;
      dto.input_tokens = value;
      return INPUT_TOKENS;
    case 'output_tokens':
      if (!isTokenCount(value)) return REFUSE;
      dto.output_tokens = value;
      return OUTPUT_TOKENS;
    case 'cached_input_tokens':
      if (!isTokenCount(value)) return REFUSE;
      dto.cached_input_tokens = value;
      return CACHED_INPUT_TOKENS;
    default:
      return UNKNOWN;
  }
}

function parseUsage(value: unknown): UsageDto | undefined {
  if (!isPlainObject(value)) return undefined;
  const usage = new UsageDto();
  let seen = 0;
  for (const key in value) {
    let bit = copyUsageField(usage, key, value[key]);
    if (bit === UNKNOWN) bit = unknownKey(key);
    if (bit === REFUSE) return undefined;
    seen |= bit;
  }
  return (seen & USAGE_REQUIRED) === USAGE_REQUIRED ? usage : undefined;
}

/** As plainToInstance builds `usages` (@Type(() => UsageDto) on an Array): a new array of UsageDto. */
function parseUsages(value: unknown): UsageDto[] | undefined {
  if (!Array.isArray(value) || Object.getPrototypeOf(value) !== Array.prototype) return undefined;
  const length = value.length;
  if (length < 1 || length > MAX_USAGES) return undefined;
  const usages: UsageDto[] = [];
  for (let i = 0; i < length; i++) {
    const usage = parseUsage(value[i]);
    if (usage === undefined) return undefined;
    usages.push(usage);
  }
  return usages;
}

export function fastStartProcess(body: object, cls: new () => StartProcessDto): StartProcessDto | undefined {
  if (!isPlainObject(body)) return undefined;
  const dto = new cls();
  let seen = 0;
  for (const key in body) {
    let bit = copyIdField(dto, key, body[key]);
    if (bit === UNKNOWN) bit = unknownKey(key);
    if (bit === REFUSE) return undefined;
    seen |= bit;
  }
  return seen === START_REQUIRED ? dto : undefined;
}

export function fastEndMultiModel(body: object, cls: new () => EndMultiModelDto): EndMultiModelDto | undefined {
  if (!isPlainObject(body)) return undefined;
  const dto = new cls();
  let seen = 0;
  for (const key in body) {
    let bit: number;
    if (key === 'usages') {
      const usages = parseUsages(body[key]);
      if (usages === undefined) return undefined;
      dto.usages = usages;
      bit = USAGES;
    } else {
      bit = copyTargetField(dto, key, body[key]);
      if (bit === UNKNOWN) bit = unknownKey(key);
      if (bit === REFUSE) return undefined;
    }
    seen |= bit;
  }
  return (seen & MULTI_REQUIRED) === MULTI_REQUIRED ? dto : undefined;
}

export function fastEndSingleModel(body: object, cls: new () => EndSingleModelDto): EndSingleModelDto | undefined {
  if (!isPlainObject(body)) return undefined;
  const dto = new cls();
  let seen = 0;
  for (const key in body) {
    const value = body[key];
    let bit = copyTargetField(dto, key, value);
    if (bit === UNKNOWN) bit = copyUsageField(dto, key, value);
    if (bit === UNKNOWN) bit = unknownKey(key);
    if (bit === REFUSE) return undefined;
    seen |= bit;
  }
  return (seen & SINGLE_REQUIRED) === SINGLE_REQUIRED ? dto : undefined;
}
