import { Inject, Injectable, Logger } from '@nestjs/common';
import { drain, PeriodicSweep } from '../common/periodic-sweep';
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
export class GrantExpiryNotices extends PeriodicSweep {
  protected readonly logger = new Logger(GrantExpiryNotices.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super();
  }

  protected get intervalMs(): number {
    return this.config.grantSweepIntervalMs;
  }

  /** Notices every grant now in the window; returns how many this call noticed. */
  async sweep(): Promise<number> {
    return drain(NOTICE_BATCH, async () => {
      const [row] = await queryRows<{ n: number }>(this.dataSource.manager, NOTICE_EXPIRING_GRANTS, [
        this.config.grantExpiryNoticeSeconds,
        NOTICE_BATCH,
      ]);
      return row?.n ?? 0;
    });
  }

  protected async run() {
    const noticed = await this.sweep();
    return noticed > 0 ? { message: 'grant.expiring written', fields: { noticed } } : undefined;
  }
}
