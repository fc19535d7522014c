import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { DatabaseTarget } from './database-target';
import { databaseOptions } from './database.options';
import { DemoSeeder } from './demo-seeder';

// In a file of its own so that DemoSeeder can inject it without a circular import.
export { DatabaseTarget };

@Global()
@Module({ providers: [DatabaseTarget], exports: [DatabaseTarget] })
class DatabaseTargetModule {}

@Module({
  imports: [
    DatabaseTargetModule,
    TypeOrmModule.forRootAsync({
      inject: [APP_CONFIG, DatabaseTarget],
      useFactory: async (config: AppConfig, target: DatabaseTarget) => ({
        ...databaseOptions(await target.url(), { poolSize: config.databasePoolSize, embedded: target.isEmbedded }),
        // Fail fast at boot (API.md §1: a dead database ends the process with one line, no hang).
        retryAttempts: 2,
        retryDelay: 1000,
      }),
    }),
  ],
  providers: [DemoSeeder],
})
export class DatabaseModule {}
