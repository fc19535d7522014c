import { DomainError } from '../common/domain-error';

export const featureNotFound = (id: string) => new DomainError('feature_not_found', `No feature "${id}" exists.`);
export const featureExists = (id: string) => new DomainError('already_exists', `A feature "${id}" already exists.`);
