import { CanActivate, createParamDecorator, ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { DomainError } from './domain-error';
import { WindowCounter } from './window-counter';
import type { Money } from './money';
import { KeysService } from '../keys/keys.service';

export type KeyScope = 'service' | 'admin';

const ACCESS = 'credits:access';
type Access = 'public' | 'service';

/** No key needed (health, metrics). */
export const Public = () => SetMetadata(ACCESS, 'public' satisfies Access);
/** Open to `service` keys as well as `admin` keys. Routes without a marker are admin-only. */
export const ServiceScope = () => SetMetadata(ACCESS, 'service' satisfies Access);

export const API_KEY_HEADER = 'x-server-api-key';

/** What the guard leaves on the request for rate limiting, scopes, caps and logs (never the key itself). */
export interface Caller {
  scope: KeyScope;
  /** Short, non-reversible fingerprint of an environment key, or a key record's id: safe to log and to rate-limit by. */
  keyId: string;
  /** The key record (API.md §11); null for SERVER_API_KEYS / ADMIN_API_KEYS, which are unrestricted. */
  recordId: string | null;
  /** For the audit log: the record's name, or `env key <fingerprint>`. */
  name: string;
  /** Empty = every feature. */
  allowedFeatures: string[];
  spendCap: { amount: Money; period: 'day' | 'month' } | null;
}

/** The request's caller, as a controller parameter (undefined only on public routes). */
export const CurrentCaller = createParamDecorator(
  (_: unknown, context: ExecutionContext) => context.switchToHttp().getRequest<{ caller?: Caller }>().caller,
);

/** Whether a caller is scoped to some features (a key record with allowed_features): only then is anything checked. */
export function isFeatureScoped(caller: Caller | undefined): caller is Caller {
  return caller !== undefined && caller.allowedFeatures.length > 0;
}

/**
 * A key record's feature scope (API.md §11): 403 before anything is written. An unrestricted
 * caller (environment keys, records without allowed_features, the queue's `undefined`) costs one
 * length check; a scoped one a search of its short list. Never a round trip.
 */
export function assertFeatureAllowed(caller: Caller | undefined, featureEndpointId: string): void {
  if (!isFeatureScoped(caller) || caller.allowedFeatures.includes(featureEndpointId)) return;
  throw new DomainError('feature_not_allowed_for_key', `This API key may not use the feature "${featureEndpointId}".`, {
    feature_endpoint_id: featureEndpointId,
  });
}

const digest = (key: string) => createHash('sha256').update(key).digest();

@Injectable()
export class ApiKeyGuard implements CanActivate {
  private readonly keys: { digest: Buffer; caller: Caller }[];
  /** Failed key checks per client address per minute: past the limit keys are not even compared. */
  private readonly authFailures = new WindowCounter(60_000);
  private readonly authFailureLimit: number;

  constructor(
    private readonly reflector: Reflector,
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly records: KeysService,
  ) {
    const entry = (key: string, scope: KeyScope) => {
      const hash = digest(key);
      const keyId = hash.toString('hex').slice(0, 12);
      const caller: Caller = { scope, keyId, recordId: null, name: `env key ${keyId}`, allowedFeatures: [], spendCap: null };
      return { digest: hash, caller };
    };
    this.keys = [...config.adminApiKeys.map((k) => entry(k, 'admin')), ...config.serverApiKeys.map((k) => entry(k, 'service'))];
    this.authFailureLimit = config.authFailuresPerMinute;
  }

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const access = this.reflector.getAllAndOverride<Access | undefined>(ACCESS, [context.getHandler(), context.getClass()]);
    if (access === 'public') return true;

    const request = context.switchToHttp().getRequest<FastifyRequest & { caller?: Caller }>();
    if (this.authFailures.count(request.ip) >= this.authFailureLimit) {
      void context.switchToHttp().getResponse<FastifyReply>().header('retry-after', String(this.authFailures.retryAfterSeconds()));
      throw new DomainError('rate_limited', 'Too many requests with a missing or unknown key; retry in a minute.');
    }
    const presented = request.headers[API_KEY_HEADER];
    if (typeof presented !== 'string' || presented.length === 0) {
      this.authFailures.hit(request.ip);
      throw new DomainError('unauthorized', `The ${API_KEY_HEADER} header is missing.`);
    }
    // The environment's keys are checked first, in memory; only another secret is looked up.
    const caller = this.identify(presented);
    if (caller) return this.admit(caller, access, request);
    return this.records.authenticate(presented).then((record) => {
      if (!record) {
        this.authFailures.hit(request.ip);
        throw new DomainError('unauthorized', `The ${API_KEY_HEADER} header does not hold a known key.`);
      }
      return this.admit(record, access, request);
    });
  }

  private admit(caller: Caller, access: Access | undefined, request: { caller?: Caller }): boolean {
    if (caller.scope !== 'admin' && access !== 'service') {
      throw new DomainError('forbidden', 'This route needs an admin key.');
    }
    request.caller = caller;
    return true;
  }

  /**
   * Compares the presented key with every configured key in constant time: both sides are
   * hashed to 32 bytes first (so lengths never differ) and the loop never exits early.
   */
  private identify(presented: string): Caller | undefined {
    const candidate = digest(presented);
    let found: Caller | undefined;
    for (const key of this.keys) {
      if (timingSafeEqual(key.digest, candidate) && !found) found = key.caller;
    }
    return found;
  }
}
