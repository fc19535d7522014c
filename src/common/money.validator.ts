import { registerDecorator, ValidationOptions } from 'class-validator';
import { parseScaled } from './decimal';
import { MAX_REQUEST_CREDITS } from './money';

export interface MoneyRule {
  allowNegative?: boolean;
  /** Refuse zero. */
  nonZero?: boolean;
  /** Upper bound in micro-units (defaults to MAX_REQUEST_CREDITS). */
  max?: bigint;
}

/**
 * A credit amount or price: a decimal string or JSON number, ≤ 6 fraction digits, no exponent,
 * within bounds. The value stays as sent; services turn it into Money / scaled bigint.
 */
export function IsMoney(rule: MoneyRule = {}, options?: ValidationOptions): PropertyDecorator {
  return (target: object, propertyName: string | symbol) => {
    let reason = '';
    registerDecorator({
      name: 'isMoney',
      target: target.constructor,
      propertyName: propertyName as string,
      options,
      validator: {
        validate(value: unknown) {
          const r = parseScaled(value, { max: rule.max ?? MAX_REQUEST_CREDITS, allowNegative: rule.allowNegative });
          if (!r.ok) reason = r.reason;
          else if (rule.nonZero && r.value === 0n) reason = 'must not be zero';
          else return true;
          return false;
        },
        defaultMessage: () => reason || 'must be a decimal amount',
      },
    });
  };
}
