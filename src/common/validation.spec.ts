import { describe, expect, it } from '@jest/globals';
import { IsString } from 'class-validator';
import { DomainError } from './domain-error';
import { createValidationPipe, registerFastBodyParser, validateBody } from './validation';

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
