import { DomainError } from '../common/domain-error';

export const walletNotFound = (userId: string) => new DomainError('wallet_not_found', `No wallet exists for user "${userId}".`);
export const walletExists = (userId: string) => new DomainError('already_exists', `A wallet already exists for user "${userId}".`);
export const idempotencyKeyReused = (key: string) =>
  new DomainError('conflict', `The idempotency key "${key}" was already used for a different request.`);
