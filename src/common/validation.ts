import { ClassConstructor, plainToInstance } from 'class-transformer';
import { validate, ValidateIf } from 'class-validator';
import { ValidationError, ValidationPipe } from '@nestjs/common';
import { FieldError, validationError } from './domain-error';

function flatten(errors: ValidationError[], prefix = ''): FieldError[] {
  return errors.flatMap((e) => {
    const field = prefix ? `${prefix}.${e.property}` : e.property;
    const own = Object.values(e.constraints ?? {}).map((message) => ({ field, message }));
    return [...own, ...flatten(e.children ?? [], field)];
  });
}

/**
 * The global pipe: unknown fields are stripped (never stored), types are never coerced implicitly
 * (a token count of "10" is refused), and failures become `400 validation_error` with `errors[]`.
 */
export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
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
  return instance;
}

/** The field may be absent, but if sent it must be valid: unlike @IsOptional, null is refused. */
export const IsOptionalNotNull = () => ValidateIf((_object: object, value: unknown) => value !== undefined);
