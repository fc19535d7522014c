import { describe, expect, it } from '@jest/globals';
import { getMetadataStorage, IsString, ValidationTypes } from 'class-validator';
import { AppModule } from '../app.module';
import { DomainError } from './domain-error';
import { createValidationPipe, Optional, registerFastBodyParser, sentNonNullValue, validateBody } from './validation';

/*
 * The wiring of fast checkers into both entry points. A probe class gets a checker that answers a
 * marker for one body and declines every other, so each test shows which path produced the value.
 */
class Probe {
  @IsString()
  name!: string;
}

/** A subclass of a class with a checker: it must not inherit it. */
class ProbeChild extends Probe {}

const MARKER = Object.assign(new Probe(), { name: 'from the fast checker' });
registerFastBodyParser(Probe, (body) => ('fast' in body ? MARKER : undefined));

describe('fast body checkers', () => {
  const body = { type: 'body' as const, metatype: Probe, data: undefined };

  it('the global pipe returns what the checker accepts, without class-validator', async () => {
    // `fast: 1` has no name: class-validator would refuse it, so only the checker can answer.
    await expect(createValidationPipe().transform({ fast: 1 }, body)).resolves.toBe(MARKER);
  });

  it('the global pipe runs class-validator when the checker declines, or with fast paths off', async () => {
    await expect(createValidationPipe().transform({ name: 'n', extra: 1 }, body)).resolves.toEqual(
      Object.assign(new Probe(), { name: 'n' }),
    );
    await expect(createValidationPipe().transform({ name: 1 }, body)).rejects.toBeInstanceOf(DomainError);
    await expect(createValidationPipe({ fastPaths: false }).transform({ fast: 1 }, body)).rejects.toBeInstanceOf(DomainError);
  });

  it('the global pipe still refuses a body that is not an object before any checker', async () => {
    await expect(createValidationPipe().transform(null, body)).rejects.toMatchObject({
      details: { errors: [{ field: 'body', message: 'must be a JSON object' }] },
    });
    await expect(createValidationPipe().transform([{ fast: 1 }], body)).rejects.toBeInstanceOf(DomainError);
  });

  it('the global pipe uses checkers for bodies only, and never for a subclass', async () => {
    await expect(createValidationPipe().transform({ fast: 1 }, { ...body, type: 'query' })).rejects.toBeInstanceOf(DomainError);
    await expect(createValidationPipe().transform({ fast: 1 }, { ...body, metatype: ProbeChild })).rejects.toBeInstanceOf(DomainError);
  });

  it('validateBody returns what the checker accepts, and runs class-validator otherwise', async () => {
    await expect(validateBody(Probe, { fast: 1 })).resolves.toBe(MARKER);
    await expect(validateBody(Probe, { fast: 1 }, { fastPaths: false })).rejects.toBeInstanceOf(DomainError);
    await expect(validateBody(Probe, { name: 1 })).rejects.toBeInstanceOf(DomainError);
    await expect(validateBody(ProbeChild, { fast: 1 })).rejects.toBeInstanceOf(DomainError);
    await expect(validateBody(Probe, null)).rejects.toBeInstanceOf(DomainError);
  });
});

type ValidationMetadata = ReturnType<ReturnType<typeof getMetadataStorage>['getTargetValidationMetadatas']>[number];

class OptionalProbe {
  @Optional()
  @IsString()
  plain?: string;

  @Optional({ nullable: true })
  @IsString()
  clearable?: string | null;
}

describe('Optional()', () => {
  it('accepts an absent field, and null only where the field is nullable', async () => {
    await expect(validateBody(OptionalProbe, {})).resolves.toEqual(new OptionalProbe());
    await expect(validateBody(OptionalProbe, { clearable: null })).resolves.toEqual(
      Object.assign(new OptionalProbe(), { clearable: null }),
    );
    await expect(validateBody(OptionalProbe, { plain: 'x', clearable: 'y' })).resolves.toMatchObject({ plain: 'x', clearable: 'y' });
  });

  it('refuses null in a field that is not nullable, with one message that says so', async () => {
    await expect(validateBody(OptionalProbe, { plain: null })).rejects.toMatchObject({
      code: 'validation_error',
      details: { errors: [{ field: 'plain', message: 'plain must not be null (omit the field instead)' }] },
    });
    await expect(validateBody(OptionalProbe, { clearable: 1 })).rejects.toBeInstanceOf(DomainError);
  });

  it('is the only optional marker on every request DTO: @IsOptional (null skips the rules) is nowhere', () => {
    expect(AppModule).toBeDefined(); // imported for its controllers: every DTO class is registered
    const registry = getMetadataStorage() as unknown as { validationMetadatas: Map<unknown, ValidationMetadata[]> };
    const metadatas = [...registry.validationMetadatas.values()].flat();
    expect(metadatas.length).toBeGreaterThan(100);
    const conditionals = metadatas.filter((m) => m.type === ValidationTypes.CONDITIONAL_VALIDATION);
    const isOptional = conditionals
      .filter((m) => m.name === 'isOptional')
      .map((m) => `${(m.target as { name: string }).name}.${m.propertyName}`);
    expect(isOptional).toEqual([]);
    // A condition that skips null must be the nullable one: anything else lets null reach a service unvalidated.
    const skipsNull = conditionals.filter(
      (m) => !(m.constraints[0] as (o: object, v: unknown) => boolean)({ [m.propertyName]: null }, null),
    );
    const unexpected = skipsNull
      .filter((m) => m.constraints[0] !== sentNonNullValue)
      .map((m) => `${(m.target as { name: string }).name}.${m.propertyName}`);
    expect(unexpected).toEqual([]);
    // Mapped types (Partial…, Omit…, Intersection…) copy their source's rules: the sources are listed.
    const nullable = [...new Set(skipsNull.map((m) => `${(m.target as { name: string }).name}.${m.propertyName}`))]
      .filter((name) => !/^(Partial|Omit|Pick|Intersection)|^OptionalProbe\./.test(name))
      .sort();
    // The fields API.md and the OpenAPI document call nullable, and nothing else.
    expect(nullable).toEqual([
      'CreateFeatureDto.fixed_cost',
      'CreateFeatureDto.hold_ttl_seconds',
      'CreateFeatureDto.profit_margin',
      // null = a grant that never expires (API.md §8)
      'CreateGrantDto.expires_at',
      'CreateModelPriceDto.cached_input_price_per_million',
      'CreateModelPriceDto.profit_margin',
      // API.md §11: `spend_cap: null` means "no cap" (on create, and to remove one on PATCH).
      'KeyLimitsDto.spend_cap',
      // API.md §10: `low_balance_thresholds: null` = the settings' default again.
      'UpdateWalletDto.low_balance_thresholds',
      'UsageDto.cached_input_tokens',
    ]);
  });
});
