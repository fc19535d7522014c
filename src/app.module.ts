import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { ThrottlerGuard, ThrottlerModule } from '@nestjs/throttler';
import { LoggerModule } from 'nestjs-pino';
import { ApiKeyGuard, Caller } from './common/api-key.guard';
import { HttpExceptionFilter } from './common/http-exception.filter';
import { loggingParams } from './common/logging';
import { ResponseEnvelopeInterceptor } from './common/response-envelope.interceptor';
import { AppConfigModule } from './config/config.module';
import type { AppConfig } from './config/configuration';
import { CreditsProcessModule } from './credits-process/credits-process.module';
import { DatabaseModule } from './database/database.module';
import { FeaturesModule } from './features/features.module';
import { HealthModule } from './health/health.module';
import { MetricsModule } from './metrics/metrics.module';
import { PricingModule } from './pricing/pricing.module';
import { QueueModule } from './queue/queue.module';
import { WalletsModule } from './wallets/wallets.module';

@Module({})
export class AppModule {
  /** The configuration is passed in (read once by main.ts or a test), never read at import time. */
  static register(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        AppConfigModule.forRoot(config),
        LoggerModule.forRoot(loggingParams(config)),
        DatabaseModule,
        MetricsModule,
        ThrottlerModule.forRoot({
          // Per service key, per instance (API.md §1 RATE_LIMIT_PER_SECOND); admin keys are never limited.
          throttlers: [{ name: 'per-key', ttl: 1000, limit: Math.max(config.ratePerSecond, 1) }],
          errorMessage: 'Too many requests for this key; slow down and retry.',
          skipIf: (context) => {
            if (config.ratePerSecond === 0 || context.getType() !== 'http') return true;
            const caller = context.switchToHttp().getRequest<{ caller?: Caller }>().caller;
            return !caller || caller.scope === 'admin';
          },
          getTracker: (req: Record<string, any>) => (req.caller as Caller).keyId,
        }),
        QueueModule.forRoot(config),
        HealthModule,
        WalletsModule,
        FeaturesModule,
        PricingModule,
        CreditsProcessModule,
      ],
      providers: [
        // Order matters: the key guard identifies the caller that the throttler counts.
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        { provide: APP_GUARD, useClass: ThrottlerGuard },
        { provide: APP_INTERCEPTOR, useClass: ResponseEnvelopeInterceptor },
        { provide: APP_FILTER, useClass: HttpExceptionFilter },
      ],
    };
  }
}
