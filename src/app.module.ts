import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { ApiKeyGuard } from './common/api-key.guard';
import { RateLimitGuard } from './common/rate-limit.guard';
import { HttpExceptionFilter } from './common/http-exception.filter';
import { AppConfigModule } from './config/config.module';
import type { AppConfig } from './config/configuration';
import { CreditsProcessModule } from './credits-process/credits-process.module';
import { DatabaseModule } from './database/database.module';
import { FeaturesModule } from './features/features.module';
import { HealthModule } from './health/health.module';
import { LedgerModule } from './ledger/ledger.module';
import { MetricsModule } from './metrics/metrics.module';
import { PricingModule } from './pricing/pricing.module';
import { QueueModule } from './queue/queue.module';
import { WalletsModule } from './wallets/wallets.module';
import { AuditModule } from './audit/audit.module';
import { KeysModule } from './keys/keys.module';
import { EventsModule } from './events/events.module';
import { GrantsModule } from './grants/grants.module';

@Module({})
export class AppModule {
  /** The configuration is passed in (read once by main.ts or a test), never read at import time. */
  static register(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        AppConfigModule.forRoot(config),
        DatabaseModule,
        MetricsModule,
        QueueModule.forRoot(config),
        HealthModule,
        LedgerModule,
        AuditModule,
        KeysModule,
        WalletsModule,
        GrantsModule,
        FeaturesModule,
        PricingModule,
        CreditsProcessModule,
        EventsModule,
      ],
      providers: [
        // Order matters: the key guard identifies the caller that the rate limit counts.
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        { provide: APP_GUARD, useClass: RateLimitGuard },
        { provide: APP_FILTER, useClass: HttpExceptionFilter },
      ],
    };
  }
}
