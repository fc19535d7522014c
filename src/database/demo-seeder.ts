import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { DatabaseTarget } from './database-target';
import { seedDemo, summariseSeeded } from './seed-demo';

/**
 * Loads the demo data once the database is up and migrated, before the server listens, so that a
 * newcomer's `npm start` can be tried with curl at once:
 * - SEED_DEMO unset: only when this start created the embedded database (no DATABASE_URL) and
 *   NODE_ENV is not production. A real database, or an embedded one an operator emptied, is
 *   never filled behind anyone's back.
 * - SEED_DEMO=true: at every start, on any database (idempotent: what exists is left alone).
 * - SEED_DEMO=false: never.
 * Whatever it does, it says so in one log line.
 */
@Injectable()
export class DemoSeeder implements OnApplicationBootstrap {
  private readonly logger = new Logger('SeedDemo');

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly target: DatabaseTarget,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const reason = this.reason();
    if (!reason) return;
    const created = await seedDemo(this.dataSource, { demoKey: this.config.nodeEnv !== 'production' });
    this.logger.log(
      created.length > 0
        ? `${reason}: loaded the demo data (${summariseSeeded(created)}); try it with docs/demo.md`
        : `${reason}: demo data already present, nothing created`,
    );
  }

  /** Why this start seeds, as the log line's opening words; undefined when it does not. */
  private reason(): string | undefined {
    if (this.config.seedDemo === 'on') return 'SEED_DEMO=true';
    if (this.config.seedDemo === 'off') return undefined;
    if (this.config.nodeEnv === 'production' || !this.target.isNewEmbedded) return undefined;
    return 'new embedded database (SEED_DEMO=false turns this off)';
  }
}
