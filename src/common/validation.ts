import { ClassConstructor, plainToInstance } from 'class-transformer';
import { validate, ValidateIf } from 'class-validator';
import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { FieldError, validationError } from './domain-error';

function flatten(errors: ValidationError[], prefix = ''): FieldError[] {
  return errors.flatMap((e) => {
    const field = prefix ? `${prefix}.${e.property}` : e.property;
    const own = Object.values(e.constraints ?? {}).map((message) => ({ field, message }));
    return [...own, ...flatten(e.children ?? [], field)];
  });
}

/**
 * Nest's ValidationPipe turns a `null` (or absent) body into `{}` before validating, so a body of
 * `null` passed every all-optional DTO: `PATCH /api/pricing/models/:m` with `null` wrote a new
 * price version, `PATCH /api/wallets/:id` bumped the wallet. A body must be a JSON object.
 */
class ObjectBodyValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // Only a body validated against a DTO: a queue handler's `@Payload() payload: unknown` is
    // checked by the handler itself (validateBody), which records a bad message as a failure.
    const dtoBody = metadata.type === 'body' && this.toValidate(metadata);
    if (dtoBody && (value === null || typeof value !== 'object' || Array.isArray(value))) {
      throw validationError([{ field: 'body', message: 'must be a JSON object' }]);
    }
    const result: unknown = await super.transform(value, metadata);
    if (dtoBody || metadata.type === 'query' || metadata.type === 'param') refuseNul(result, metadata.type === 'param' ? (metadata.data ?? 'param') : '');
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
export function createValidationPipe(): ValidationPipe {
  return new ObjectBodyValidationPipe({
    whitelist: true,
    transform: true,
    transformOptions: { enableImplicitConversion: false },
    validationError: { target: false, value: false },
    exceptionFactory: (errors) => validationError(flatten(errors)),
  });
}

/**
 * Validates a payload that did not come through HTTP (a queue message, a replayed failure) with
 * exactly the rules of the global pipe, so both transports accept and refuse the same bodies.
 */
export async function validateBody<T extends object>(cls: ClassConstructor<T>, plain: unknown): Promise<T> {
  if (plain === null || typeof plain !== 'object' || Array.isArray(plain)) {
    throw validationError([{ field: 'body', message: 'must be a JSON object' }]);
  }
  const instance = plainToInstance(cls, plain, { enableImplicitConversion: false });
  const errors = await validate(instance, { whitelist: true, forbidUnknownValues: true });
  if (errors.length > 0) throw validationError(flatten(errors));
  refuseNul(instance, '');
  return instance;
}

/** The field may be absent, but if sent it must be valid: unlike @IsOptional, null is refused. */
export const IsOptionalNotNull = () => ValidateIf((_object: object, value: unknown) => value !== undefined);
