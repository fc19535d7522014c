import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { queryRows } from '../database/sql';

/** Grants noticed per statement; a full batch means there may be more, swept at once. */
const NOTICE_BATCH = 500;

/**
 * `grant.expiring` (API.md §10): an active grant with credits left that expires within
 * GRANT_EXPIRY_NOTICE_SECONDS gets a grant_notices row and its event, in one statement run every
 * GRANT_SWEEP_INTERVAL_MS.
 * Safe with several instances: the grant_notices primary key decides (ON CONFLICT DO NOTHING
 * waits for a concurrent insert of the same grant, then skips it), and only the rows this
 * statement inserted get an event, so each grant is noticed once however many sweeps see it.
 * A grant created already inside the window is noticed at the next sweep.
 */
const NOTICE_EXPIRING_GRANTS = `
  WITH due AS (
    SELECT g.grant_id, g.user_id, g.remaining, g.expires_at FROM grants g
    WHERE g.status = 'active' AND g.remaining > 0 AND g.expires_at IS NOT NULL
      AND g.expires_at > now() AND g.expires_at <= now() + make_interval(secs => $1)
      AND NOT EXISTS (SELECT 1 FROM grant_notices n WHERE n.grant_id = g.grant_id)
    ORDER BY g.expires_at, g.grant_id
    LIMIT $2
  ), noticed AS (
    INSERT INTO grant_notices (grant_id) SELECT grant_id FROM due
    ON CONFLICT (grant_id) DO NOTHING
    RETURNING grant_id
  ), written AS (
    INSERT INTO events (type, user_id, data)
    SELECT 'grant.expiring', due.user_id,
           jsonb_build_object('user_id', due.user_id, 'grant_id', due.grant_id::text,
             'remaining', due.remaining::numeric(38,6)::text,
             'expires_at', to_char(due.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
    FROM due JOIN noticed USING (grant_id)
    ORDER BY due.expires_at, due.grant_id
    RETURNING 1
  )
  SELECT count(*)::int AS n FROM written`;

@Injectable()
export class GrantExpiryNotices implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(GrantExpiryNotices.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.grantSweepIntervalMs === 0) return;
    this.timer = setInterval(() => {
      this.running ??= this.tick().finally(() => (this.running = undefined));
    }, this.config.grantSweepIntervalMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** Notices every grant now in the window; returns how many this call noticed. */
  async sweep(): Promise<number> {
    let total = 0;
    let n: number;
    do {
      const [row] = await queryRows<{ n: number }>(this.dataSource.manager, NOTICE_EXPIRING_GRANTS, [
        this.config.grantExpiryNoticeSeconds,
        NOTICE_BATCH,
      ]);
      n = row?.n ?? 0;
      total += n;
    } while (n >= NOTICE_BATCH);
    return total;
  }

  private async tick(): Promise<void> {
    try {
      const noticed = await this.sweep();
      if (noticed > 0) this.logger.log({ noticed }, 'grant.expiring written');
    } catch (error) {
      this.logger.warn({ err: (error as Error).message }, 'grant expiry notice sweep failed; retrying on the next tick');
    }
  }
}
