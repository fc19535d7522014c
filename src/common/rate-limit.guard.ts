import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import type { Caller } from './api-key.guard';
import { DomainError } from './domain-error';
import { WindowCounter } from './window-counter';

/**
 * RATE_LIMIT_PER_SECOND per service key, per instance; admin keys are never limited (API.md §1).
 * Runs after ApiKeyGuard, which identified the caller. (Hand-written rather than
 * @nestjs/throttler: that package is CommonJS requiring the ESM-only Nest 12 packages, which
 * Jest cannot load on Node 20 — and this is all the limiting the contract asks for.)
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  private readonly perSecond: number;
  private readonly counter = new WindowCounter(1000);

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.perSecond = config.ratePerSecond;
  }

  canActivate(context: ExecutionContext): boolean {
    if (this.perSecond === 0 || context.getType() !== 'http') return true;
    const request = context.switchToHttp().getRequest<FastifyRequest & { caller?: Caller }>();
    const caller = request.caller;
    if (!caller || caller.scope === 'admin') return true;
    if (this.counter.hit(caller.keyId) <= this.perSecond) return true;
    void context.switchToHttp().getResponse<FastifyReply>().header('retry-after', String(this.counter.retryAfterSeconds()));
    throw new DomainError('rate_limited', `More than ${this.perSecond} requests per second for this key; slow down and retry.`);
  }
}
