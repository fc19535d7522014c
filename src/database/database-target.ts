import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { EmbeddedPostgres, startEmbeddedPostgres } from './embedded-postgres';

/** Where the database is: the configured server, or embedded PGlite started on demand. */
@Injectable()
export class DatabaseTarget implements OnApplicationShutdown {
  private readonly logger = new Logger('Database');
  private embedded?: EmbeddedPostgres;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly moduleRef: ModuleRef,
  ) {}

  async url(): Promise<string> {
    if (this.config.databaseUrl) return this.config.databaseUrl;
    this.embedded ??= await startEmbeddedPostgres(this.config.embeddedDataDir);
    this.logger.log(`DATABASE_URL is not set: using embedded PostgreSQL (PGlite) in ${this.config.embeddedDataDir}`);
    return this.embedded.url;
  }

  get isEmbedded(): boolean {
    return !this.config.databaseUrl;
  }

  /** An embedded database whose schema this start's migrations created (see EmbeddedPostgres.isNew). */
  get isNewEmbedded(): boolean {
    return this.embedded?.isNew === true;
  }

  /** The pool must close before the embedded server it talks to. */
  async onApplicationShutdown(): Promise<void> {
    if (!this.embedded) return;
    const dataSource = this.moduleRef.get(DataSource, { strict: false });
    if (dataSource.isInitialized) await dataSource.destroy();
    await this.embedded.close();
  }
}
