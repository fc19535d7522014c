import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { seedDemo } from './seed-demo';

/**
 * SEED_DEMO=true: seeds the demo data once the database is up and migrated, before the server
 * listens. Seeding is idempotent, so every restart with the flag on is harmless.
 */
@Injectable()
export class DemoSeeder implements OnApplicationBootstrap {
  private readonly logger = new Logger('SeedDemo');

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.seedDemo) return;
    const created = await seedDemo(this.dataSource);
    for (const line of created) this.logger.log(`created ${line}`);
    if (created.length === 0) this.logger.log('demo data already present: nothing created');
  }
}
