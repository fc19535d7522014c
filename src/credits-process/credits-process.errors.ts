import { DomainError } from '../common/domain-error';
import { Money } from '../common/money';

export const usageKeyNotFound = (usageKey: string) =>
  new DomainError('usage_key_not_found', `No authorization exists for usage_key "${usageKey}".`);
export const usageKeyMismatch = (usageKey: string) =>
  new DomainError('usage_key_mismatch', `The usage_key "${usageKey}" belongs to another user or feature.`);
export const holdCancelled = (usageKey: string) =>
  new DomainError('conflict', `The hold "${usageKey}" was cancelled; start a new process to charge for new work.`);
export const alreadySettled = (usageKey: string) => new DomainError('already_settled', `The usage_key "${usageKey}" is already settled.`);
export const idempotencyConflict = (key: string) =>
  new DomainError('conflict', `The idempotency key "${key}" was already used for a different settlement.`);
export const walletSuspended = (userId: string) => new DomainError('wallet_suspended', `The wallet of user "${userId}" is suspended.`);
export const featureInactive = (id: string) => new DomainError('feature_inactive', `The feature "${id}" is not active.`);
export const featureNotPermitted = (id: string, plan: string) =>
  new DomainError('feature_not_permitted', `The plan "${plan}" may not use the feature "${id}".`);
export const insufficientCredits = (available: Money, required: Money) =>
  new DomainError('insufficient_credits', `Not enough credits: ${available} available, ${required} required.`, {
    credits: available.toString(),
    required: required.toString(),
  });
export const holdExpired = (usageKey: string) =>
  new DomainError('hold_expired', `The hold "${usageKey}" has expired; it can still be settled (late), but not extended.`);
export const incrementAfterFinal = (usageKey: string) =>
  new DomainError('already_settled', `The usage_key "${usageKey}" was settled with final; start a new process for more work.`);
export const extendSettled = (usageKey: string) =>
  new DomainError('already_settled', `The usage_key "${usageKey}" is already settled; there is no hold left to extend.`);
export const extendCancelled = (usageKey: string) =>
  new DomainError('conflict', `The hold "${usageKey}" was cancelled; start a new process instead of extending it.`);

export const notSettled = (usageKey: string, status: string) =>
  new DomainError('not_settled', `The usage "${usageKey}" has no charge to refund (it is ${status}).`, { usage_status: status });
export const refundExceedsCharge = (usageKey: string, left: Money, requested: Money | null) =>
  new DomainError(
    'refund_exceeds_charge',
    requested === null
      ? `Nothing of usage "${usageKey}" is left to refund.`
      : `Only ${left.toString()} credits of usage "${usageKey}" are left to refund; ${requested.toString()} asked.`,
    { refundable: left.toString(), ...(requested && { requested: requested.toString() }) },
  );

/** API.md §11: the key's spend this UTC period (settled charges + live holds) would pass its cap. */
export const spendCapExceeded = (spent: Money, cap: Money, asked: Money, resetsAt: Date, period: string) =>
  new DomainError(
    'spend_cap_exceeded',
    `This key's spend cap of ${cap.toString()} credits per ${period} would be passed: ${spent.toString()} spent, ${asked.toString()} more asked.`,
    { spent: spent.toString(), cap: cap.toString(), resets_at: resetsAt.toISOString() },
  );
