import { DomainError } from '../common/domain-error';

export const modelNotFound = (aiModel: string) => new DomainError('model_not_found', `No price exists for ai_model "${aiModel}".`);
export const modelExists = (aiModel: string) => new DomainError('already_exists', `A price for ai_model "${aiModel}" already exists.`);
