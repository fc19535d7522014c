import { _, Ajv, type KeywordCxt, type SchemaObject, type ValidateFunction } from 'ajv';
import { defaultMetadataStorage } from 'class-transformer/cjs/storage.js';
import { TransformationType } from 'class-transformer';
import { getMetadataStorage, ValidationTypes } from 'class-validator';
import { IS_NOT_NULL, sentNonNullValue, type FastBodyParser } from './validation';

/*
 * The fast validator of a DTO, generated from the DTO's own class-validator decorators: one rule
 * set, written once, in the DTO. At boot each decorator becomes a JSON Schema (one `allOf` member
 * per decorator, so two rules never overwrite each other), ajv compiles the schema of the class,
 * and a builder made from the same metadata copies the known fields into a new instance, as
 * plainToInstance + the whitelist would. The contract is FastBodyParser's (common/validation.ts):
 * accept only what class-validator accepts, build the identical instance, and leave everything
 * else to class-validator, which words the errors.
 *
 * Why not class-validator-jsonschema: it merges the schemas of a property's decorators with
 * lodash.merge, so the last one wins a shared key — `@Min(0) @IsInt()` gave `type: "number"`
 * (1.5 accepted) — and a decorator it does not know becomes `{}` (accept anything). Here an
 * unknown decorator becomes `false` (the fast path never accepts that field) and the translation
 * below is small enough to check by reading: stricter where JSON Schema cannot say the same thing.
 *
 * Exact or stricter, decorator by decorator:
 *  - @IsString → type string (a String object, which class-validator takes, is left to it);
 *  - @Length/@MinLength/@MaxLength → maxUnits/minUnits, lengths in UTF-16 code units (see below):
 *    stricter for the max, exact for a min of 0 or 1, not generated for a larger min;
 *  - @Matches(re) → pattern, only for a RegExp whose flags are exactly "u" (ajv compiles with "u");
 *  - @IsInt/@Min/@Max/@IsBoolean/@IsIn(primitives) → integer/minimum/maximum/boolean/enum;
 *  - @IsArray/@ArrayMinSize/@ArrayMaxSize → array/minItems/maxItems; `each: true` → items;
 *  - @ValidateNested + @Type(() => C) → the schema of C (objects only, real arrays only);
 *  - Optional() (validation.ts) → not required; nullable → null also allowed. Any other condition
 *    (ValidateIf, mapped types' "if defined") → not required, its rules always applied;
 *  - groups, `always`, custom decorators (IsMoney…), class-transformer rules other than @Type on a
 *    nested class: not generated — the field is `false`, so the class-validator path decides.
 * The builder is stricter still: plain objects and real arrays only; a value that is undefined,
 * a string holding U+0000 (refused by the pipe after class-validator), a field holding an object
 * that is not a nested DTO, or a `__proto__`/`constructor`/`prototype` key: left to class-validator.
 *
 * src/credits-process/dto/credits-process.fast-parse.spec.ts holds the generated parsers of the hot
 * bodies to that contract on 7,500 seeded bodies.
 */

type Cls = new () => object;
type ValidationMetadata = ReturnType<ReturnType<typeof getMetadataStorage>['getTargetValidationMetadatas']>[number];
type Json = SchemaObject | boolean;

interface FieldPlan {
  /** A nested DTO (@ValidateNested + @Type): built as an instance of it. */
  nested?: ClassPlan;
  /** The nested DTO sits in an array (the property also has @IsArray). */
  array: boolean;
}

interface ClassPlan {
  cls: Cls;
  /** A Map, not an object: a body key such as "toString" must not find Object.prototype's. */
  fields: Map<string, FieldPlan>;
}

const storage = getMetadataStorage();
// messages: false — a refused body goes to class-validator, which words the error: ajv's words are never read.
const ajv = new Ajv({
  strict: true,
  allowUnionTypes: true,
  allErrors: false,
  messages: false,
  coerceTypes: false,
  useDefaults: false,
  removeAdditional: false,
});

/*
 * String lengths in UTF-16 code units (`value.length`), by two keywords of ours. JSON Schema's
 * minLength/maxLength count code points, in a loop over the string, which cost more than the rest of
 * the schema together; validator's isLength counts code points less variation selectors. For every
 * string, units ≥ isLength's count, so "units ≤ max" is stricter than @Length's max, and a
 * non-empty string has an isLength of at least 1, so "units ≥ 1" is exactly @Length's min of 1 (a
 * min above 1 is not generated). The differential test and an exhaustive check in its spec hold this.
 */
ajv.addKeyword({
  keyword: 'maxUnits',
  type: 'string',
  schemaType: 'number',
  code: (cxt: KeywordCxt) => cxt.fail(_`${cxt.data}.length > ${cxt.schema as number}`),
});
ajv.addKeyword({
  keyword: 'minUnits',
  type: 'string',
  schemaType: 'number',
  code: (cxt: KeywordCxt) => cxt.fail(_`${cxt.data}.length < ${cxt.schema as number}`),
});
/** Any JSON value but null. */
const NOT_NULL: SchemaObject = { type: ['string', 'number', 'boolean', 'array', 'object'] };
const JS_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function constraintName(meta: ValidationMetadata): string {
  if (meta.type !== ValidationTypes.CUSTOM_VALIDATION) return meta.type;
  return storage.getTargetValidatorConstraints(meta.constraintCls)[0]?.name ?? '';
}

const isPrimitive = (value: unknown) => value === null || ['string', 'number', 'boolean'].includes(typeof value);

/** One decorator's rule as JSON Schema, exactly or stricter; `false` when it cannot be said. */
function ruleSchema(meta: ValidationMetadata, name: string, definitions: Record<string, Json>, hasArray: boolean): Json {
  const c = meta.constraints ?? [];
  const lengths = (min: unknown, max: unknown): Json => {
    if (min !== undefined && (typeof min !== 'number' || min > 1)) return false;
    if (max !== undefined && typeof max !== 'number') return false;
    return { type: 'string', ...(min === 1 ? { minUnits: 1 } : {}), ...(max === undefined ? {} : { maxUnits: max }) };
  };
  // (a @Matches and a @Length on one field are two allOf members: two `pattern`s would never collide)
  switch (name) {
    case 'isString':
      return { type: 'string' };
    case 'isLength':
      return lengths(c[0] === 0 ? undefined : c[0], c[1]);
    case 'minLength':
      return lengths(c[0] === 0 ? undefined : c[0], undefined);
    case 'maxLength':
      return lengths(undefined, c[0]);
    case 'matches': {
      const [pattern, modifiers] = c as [unknown, unknown];
      return pattern instanceof RegExp && pattern.flags === 'u' && modifiers === undefined
        ? { type: 'string', pattern: pattern.source }
        : false;
    }
    case 'isInt':
      return { type: 'integer' };
    case 'min':
      return typeof c[0] === 'number' ? { type: 'number', minimum: c[0] } : false;
    case 'max':
      return typeof c[0] === 'number' ? { type: 'number', maximum: c[0] } : false;
    case 'isBoolean':
      return { type: 'boolean' };
    case 'isIn':
      return Array.isArray(c[0]) && c[0].every((v) => isPrimitive(v) && v !== null) ? { enum: c[0] as unknown[] } : false;
    case 'isArray':
      return { type: 'array' };
    case 'arrayMinSize':
      return typeof c[0] === 'number' ? { type: 'array', minItems: c[0] } : false;
    case 'arrayMaxSize':
      return typeof c[0] === 'number' ? { type: 'array', maxItems: c[0] } : false;
    case IS_NOT_NULL:
      return NOT_NULL;
    case ValidationTypes.WHITELIST: // @Allow: anything
      return true;
    case ValidationTypes.NESTED_VALIDATION: {
      const nested = nestedClass(meta);
      if (!nested) return false;
      const ref = { $ref: `#/definitions/${definitionOf(nested, definitions)}` };
      return hasArray ? { type: 'array', items: ref } : ref;
    }
    default:
      return false;
  }
}

function nestedClass(meta: ValidationMetadata): Cls | undefined {
  const type = defaultMetadataStorage.findTypeMetadata(meta.target as Cls, meta.propertyName);
  const cls = type?.typeFunction() as Cls | undefined;
  return typeof cls === 'function' && cls !== Object && cls !== Array ? cls : undefined;
}

function metadatasOf(cls: Cls): ValidationMetadata[] {
  return storage.getTargetValidationMetadatas(cls, '', true, false);
}

/** class-transformer rules other than @Type on a nested DTO make plainToInstance build something else (e.g. @Type(() => Number)). */
function transformsOtherwise(cls: Cls, property: string, nested: boolean): boolean {
  return (
    defaultMetadataStorage.getStrategy(cls) !== 'none' ||
    defaultMetadataStorage.findExcludeMetadata(cls, property) !== undefined ||
    defaultMetadataStorage.getExposedMetadatas(cls).length > 0 ||
    defaultMetadataStorage.findTransformMetadatas(cls, property, TransformationType.PLAIN_TO_CLASS).length > 0 ||
    (!nested && defaultMetadataStorage.findTypeMetadata(cls, property) !== undefined)
  );
}

const definitionNames = new Map<Cls, string>();

/** Adds the class's schema to `definitions` (once) and returns its name there. */
function definitionOf(cls: Cls, definitions: Record<string, Json>): string {
  let name = definitionNames.get(cls);
  if (name === undefined) {
    const taken = new Set(definitionNames.values());
    name = cls.name;
    for (let n = 2; taken.has(name); n++) name = `${cls.name}_${n}`; // two classes may share a name
    definitionNames.set(cls, name);
  }
  if (!(name in definitions)) {
    definitions[name] = true; // a placeholder first: a class that nests itself ends here
    definitions[name] = classSchema(cls, definitions);
  }
  return name;
}

function byProperty(cls: Cls): Map<string, ValidationMetadata[]> {
  const groups = new Map<string, ValidationMetadata[]>();
  for (const meta of metadatasOf(cls)) groups.set(meta.propertyName, [...(groups.get(meta.propertyName) ?? []), meta]);
  return groups;
}

function classSchema(cls: Cls, definitions: Record<string, Json>): SchemaObject {
  const properties: Record<string, Json> = {};
  const required: string[] = [];
  for (const [property, metas] of byProperty(cls)) {
    const conditions = metas.filter((m) => m.type === ValidationTypes.CONDITIONAL_VALIDATION).map((m) => m.constraints[0] as unknown);
    const rules = metas.filter((m) => m.type !== ValidationTypes.CONDITIONAL_VALIDATION);
    const names = rules.map(constraintName);
    const hasArray = names.includes('isArray');
    const transformed = transformsOtherwise(cls, property, names.includes(ValidationTypes.NESTED_VALIDATION));
    let schema: Json = {
      allOf: rules.map((meta, i): Json => {
        if (meta.groups?.length || meta.always || transformed) return false;
        const rule = ruleSchema(meta, names[i], definitions, hasArray);
        // `each` validates the items of an array (or a Set, a Map: those are not JSON).
        return meta.each && rule !== false && names[i] !== ValidationTypes.NESTED_VALIDATION ? { type: 'array', items: rule } : rule;
      }),
    };
    // A condition that answers false skips every rule of the field. For absent they all do (so not
    // required); for null only the nullable Optional() does (validation.spec pins that no other
    // condition skips null). Any other condition (ValidateIf…) is ignored: its rules always apply.
    if (conditions.length === 0 && rules.length > 0) required.push(property);
    else if (conditions.includes(sentNonNullValue)) schema = { anyOf: [{ type: 'null' }, schema] };
    properties[property] = schema;
  }
  return { type: 'object', properties, ...(required.length ? { required } : {}) };
}

function classPlan(cls: Cls, plans = new Map<Cls, ClassPlan>()): ClassPlan {
  const known = plans.get(cls);
  if (known) return known;
  const plan: ClassPlan = { cls, fields: new Map() };
  plans.set(cls, plan);
  for (const [property, metas] of byProperty(cls)) {
    const nestedMeta = metas.find((m) => m.type === ValidationTypes.NESTED_VALIDATION);
    const nested = nestedMeta && nestedClass(nestedMeta);
    plan.fields.set(property, {
      nested: nested ? classPlan(nested, plans) : undefined,
      array: metas.some((m) => constraintName(m) === 'isArray'),
    });
  }
  return plan;
}

/** The JSON Schema the fast parser of `cls` checks: exported so a test can show it, and people read it. */
export function fastSchemaOf(cls: Cls): SchemaObject {
  const definitions: Record<string, Json> = {};
  const root = definitionOf(cls, definitions);
  return { $ref: `#/definitions/${root}`, definitions };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

/** The instance plainToInstance + whitelist would build, for a body ajv accepted; undefined = let class-validator decide. */
function build(plan: ClassPlan, body: Record<string, unknown>): object | undefined {
  const dto = new plan.cls() as Record<string, unknown>;
  for (const key in body) {
    const field = plan.fields.get(key);
    if (field === undefined) {
      if (JS_KEYS.has(key)) return undefined;
      continue; // the whitelist strips it
    }
    const value = body[key];
    if (field.nested) {
      if (field.array) {
        if (!Array.isArray(value) || Object.getPrototypeOf(value) !== Array.prototype) return undefined;
        const items: object[] = new Array<object>(value.length);
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          const built = isPlainObject(item) ? build(field.nested, item) : undefined;
          if (built === undefined) return undefined;
          items[i] = built;
        }
        dto[key] = items;
      } else {
        const built = isPlainObject(value) ? build(field.nested, value) : undefined;
        if (built === undefined) return undefined;
        dto[key] = built;
      }
    } else if (typeof value === 'string') {
      if (value.indexOf('\u0000') !== -1) return undefined;
      dto[key] = value;
    } else if (value === null || typeof value === 'number' || typeof value === 'boolean') dto[key] = value;
    else return undefined;
  }
  return dto;
}

/**
 * Generates the fast parser of a DTO from its decorators; compiled once, when the DTO module loads.
 * Measured by bench/validation.ts (node 20, a shared 2-core machine): see the figures in
 * credits-process.dto.ts, where the hot bodies register theirs.
 */
export function compileFastParser<T extends object>(cls: new () => T): FastBodyParser<T> {
  const validate: ValidateFunction = ajv.compile(fastSchemaOf(cls));
  const plan = classPlan(cls);
  return (body, target) => {
    if (target !== cls || !isPlainObject(body) || !validate(body)) return undefined;
    return build(plan, body) as T | undefined;
  };
}
