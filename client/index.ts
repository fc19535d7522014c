/**
 * The credits service's TypeScript client: `import { CreditsClient, CreditsError } from '<repo>/client'`.
 * No Nest dependency: node built-ins, amqp-connection-manager and amqplib only. See client/README.md.
 */
export { CreditsClient } from './credits.client';
export type { CreditsClientOptions } from './credits.client';
export { CreditsError, isCreditsError, isFeatureNotAllowedForKey, isInsufficientCredits, isSpendCapExceeded } from './credits.errors';
export { CreditsSession } from './session';
export type { SessionOptions, SessionTimer } from './session';
export type { CreditsErrorInit } from './credits.errors';
export * from './credits.types';
export type { CreditsLogger, FetchLike } from './http-transport';
export { backoffDelay, classifyNetworkError, decideRetry, DEFAULT_RETRY_POLICY, parseRetryAfter } from './retry-policy';
export type { AttemptFailure, RetryDecision, RetryPolicy } from './retry-policy';
export { endBody, endMultiModelBody, MAX_TOKENS, MAX_USAGES } from './request-bodies';
export { CREDITS_EVENT_TYPES, CREDITS_EVENTS_EXCHANGE, DEFAULT_SIGNATURE_TOLERANCE_SECONDS, verifyWebhookSignature } from './events';
export type { CreditsEvent, CreditsEventData, CreditsEventType } from './events';
