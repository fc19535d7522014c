import { ClassConstructor, plainToInstance } from 'class-transformer';
import { registerDecorator, validate, ValidateIf } from 'class-validator';
import { ArgumentMetadata, ValidationError, ValidationPipe, ValidationPipeOptions } from '@nestjs/common';
import { FieldError, validationError } from './domain-error';

function flatten(errors: ValidationError[], prefix = ''): FieldError[] {
  return errors.flatMap((e) => {
    const field = prefix ? `${prefix}.${e.property}` : e.property;
    // A null where null means nothing: "must be a string, must be shorter than…" would only confuse.
    const messages = e.constraints?.[IS_NOT_NULL] ? [e.constraints[IS_NOT_NULL]] : Object.values(e.constraints ?? {});
    const own = messages.map((message) => ({ field, message }));
    return [...own, ...flatten(e.children ?? [], field)];
  });
}

/**
 * A fast check of one DTO for the hot routes, where class-validator and class-transformer cost
 * ~8–10 % of the service's CPU per request (metadata look-ups, the validation executor,
 * plainToInstance). It returns the instance the class-validator path would return (whitelisted,
 * uncoerced, same classes, same key order) ONLY when it can prove the body valid, and `undefined`
 * for anything else — the class-validator path then runs unchanged, so it alone words every error.
 * It may refuse a valid body; it must never accept one class-validator refuses. The ones in use are
 * generated from the DTO's decorators (common/fast-parse.ts) and held to that by a differential test.
 */
export type FastBodyParser<T extends object> = (body: object, cls: new () => T) => T | undefined;

/** Keyed by the exact class: a subclass adds rules of its own, so it never inherits a checker. */
const fastBodyParsers = new Map<abstract new () => object, FastBodyParser<object>>();

/** Registered next to the DTO it checks, so every place the class is used has its checker. */
export function registerFastBodyParser<T extends object>(cls: new () => T, parse: FastBodyParser<T>): void {
  fastBodyParsers.set(cls, parse as unknown as FastBodyParser<object>);
}

/** The instance the class's fast checker proves valid, or undefined (no checker, or not proven). */
export function fastParseBody<T extends object>(cls: ClassConstructor<T>, body: object): T | undefined {
  const parse = fastBodyParsers.get(cls);
  return parse === undefined ? undefined : (parse(body, cls) as T | undefined);
}

/**
 * Nest's ValidationPipe turns a `null` (or absent) body into `{}` before validating, so a body of
 * `null` passed every all-optional DTO: `PATCH /api/pricing/models/:m` with `null` wrote a new
 * price version, `PATCH /api/wallets/:id` bumped the wallet. A body must be a JSON object.
 */
class ObjectBodyValidationPipe extends ValidationPipe {
  constructor(
    options: ValidationPipeOptions,
    private readonly fastPaths: boolean,
  ) {
    super(options);
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // Only a body validated against a DTO: a queue handler's `@Payload() payload: unknown` is
    // checked by the handler itself (validateBody), which records a bad message as a failure.
    const dtoBody = metadata.type === 'body' && this.toValidate(metadata);
    if (dtoBody) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw validationError([{ field: 'body', message: 'must be a JSON object' }]);
      }
      const fast = this.fastPaths && metadata.metatype ? fastParseBody(metadata.metatype, value) : undefined;
      if (fast !== undefined) return fast;
    }
    const result: unknown = await super.transform(value, metadata);
    if (dtoBody || metadata.type === 'query' || metadata.type === 'param')
      refuseNul(result, metadata.type === 'param' ? (metadata.data ?? 'param') : '');
    return result;
  }
}

/** The first field (after unknown fields were stripped) holding a string with U+0000. */
function nulField(value: unknown, path: string, depth = 0): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? path || 'value' : undefined;
  if (value === null || typeof value !== 'object' || depth > 8) return undefined;
  for (const [key, item] of Object.entries(value)) {
    const found = nulField(item, path ? `${path}.${key}` : key, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * PostgreSQL text cannot hold U+0000: a string carrying one reached a query and failed with
 * "invalid byte sequence" — a 500 over HTTP, a "transient" retry and dead-lettering on the queue.
 * Such a value can never be stored or found, so it is refused where every input is validated.
 */
function refuseNul(value: unknown, path: string): void {
  const field = nulField(value, path);
  if (field) throw validationError([{ field, message: 'must not contain the NUL character (\\u0000)' }]);
}

/**
 * The global pipe: unknown fields are stripped (never stored), types are never coerced implicitly
 * (a token count of "10" is refused), and failures become `400 validation_error` with `errors[]`.
 */
export function createValidationPipe({ fastPaths = true }: FastPathOption = {}): ValidationPipe {
  return new ObjectBodyValidationPipe(
    {
      whitelist: true,
      transform: true,
      transformOptions: { enableImplicitConversion: false },
      validationError: { target: false, value: false },
      exceptionFactory: (errors) => validationError(flatten(errors)),
    },
    fastPaths,
  );
}

export interface FastPathOption {
  /** false = class-validator only: what the differential tests compare the fast checkers against. */
  fastPaths?: boolean;
}

/**
 * Validates a payload that did not come through HTTP (a queue message, a replayed failure) with
 * exactly the rules of the global pipe, so both transports accept and refuse the same bodies.
 */
export async function validateBody<T extends object>(
  cls: ClassConstructor<T>,
  plain: unknown,
  { fastPaths = true }: FastPathOption = {},
): Promise<T> {
  if (plain === null || typeof plain !== 'object' || Array.isArray(plain)) {
    throw validationError([{ field: 'body', message: 'must be a JSON object' }]);
  }
  if (fastPaths) {
    const fast = fastParseBody(cls, plain);
    if (fast !== undefined) return fast;
  }
  const instance = plainToInstance(cls, plain, { enableImplicitConversion: false });
  const errors = await validate(instance, { whitelist: true, forbidUnknownValues: true });
  if (errors.length > 0) throw validationError(flatten(errors));
  refuseNul(instance, '');
  return instance;
}

export const IS_NOT_NULL = 'isNotNull';

/** The condition of a field that may be absent: anything sent, null included, is validated. */
export const sentValue = (_object: object, value: unknown): boolean => value !== undefined;
/** The condition of a nullable field: null means "unset" and skips the field's rules, like absent. */
export const sentNonNullValue = (_object: object, value: unknown): boolean => value !== undefined && value !== null;

/**
 * The one way a request field is optional (class-validator's @IsOptional is not used: it skips
 * validation for null as well as undefined, so `{"initial_credits": null}` reached Money.parse and
 * answered 500). Absent = valid. null = refused with "must not be null" unless the field is
 * `nullable`, i.e. documented as taking null to mean "unset" (a feature's profit_margin…); the
 * service must then read null as that. The fast validators (common/fast-parse.ts) recognize
 * these two conditions by identity, so they derive "required" and "nullable" from this decorator.
 */
export function Optional({ nullable = false }: { nullable?: boolean } = {}): PropertyDecorator {
  return (target: object, propertyName: string | symbol) => {
    ValidateIf(nullable ? sentNonNullValue : sentValue)(target, propertyName);
    if (nullable) return;
    registerDecorator({
      name: IS_NOT_NULL,
      target: target.constructor,
      propertyName: propertyName as string,
      validator: {
        validate: (value: unknown) => value !== null,
        defaultMessage: () => `${String(propertyName)} must not be null (omit the field instead)`,
      },
    });
  };
}
