import { DomainError } from '../common/domain-error';

export const grantNotFound = (userId: string, grantId: string) =>
  new DomainError('grant_not_found', `No grant "${grantId}" exists on the wallet of user "${userId}".`);
export const grantExpired = (grantId: string) =>
  new DomainError('conflict', `The grant "${grantId}" has expired: nothing remains to void.`);
