/**
 * The bare-SQL baseline load process: the same closed loop as the HTTP load generator, but each
 * cycle is the two hand-written statements of baseline-statements.ts issued straight through a
 * `pg` Pool sized like the concurrency. No framework, no HTTP: the fastest this machine's
 * PostgreSQL can do the same work with the same guarantees.
 */
import pg from 'pg';
import { baselineSettle, baselineStart } from './baseline-statements';
import { closedLoop, cycleUsages, FEATURE, FEATURE_ID, LoadOptions, runLoadProcess } from './workload';

interface BaselineOptions extends LoadOptions {
  databaseUrl: string;
}

runLoadProcess(async (options, send) => {
  const { databaseUrl } = options as BaselineOptions;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: options.concurrency, application_name: 'credits-bench-baseline' });
  // Open every connection before the clock starts, as the service's pool is already warm.
  const clients = await Promise.all(Array.from({ length: options.concurrency }, () => pool.connect()));
  clients.forEach((c) => c.release());
  try {
    return await closedLoop(options, send, async (userId, record, fail) => {
      const t0 = performance.now();
      let usageKey: string;
      try {
        const started = await baselineStart(pool, userId, FEATURE_ID, FEATURE.hold_ttl_seconds);
        if (!started) return fail(await whyNoHold(pool, userId));
        usageKey = started.usageKey;
        record('start', performance.now() - t0);
      } catch (error) {
        return fail(`start ${(error as Error).message}`);
      }
      const t1 = performance.now();
      try {
        const settled = await baselineSettle(pool, userId, FEATURE_ID, usageKey, cycleUsages());
        if (!settled) return fail('settle claimed nothing');
        record('end', performance.now() - t1);
      } catch (error) {
        return fail(`settle ${(error as Error).message}`);
      }
    });
  } finally {
    await pool.end();
  }
});

/** The rare path, as the service has it: a read to name why no hold was placed. */
async function whyNoHold(pool: pg.Pool, userId: string): Promise<string> {
  const { rows } = await pool.query<{ enough: boolean }>(`SELECT balance - held >= $2::numeric AS enough FROM wallets WHERE user_id = $1`, [
    userId,
    FEATURE.min_holding_credits,
  ]);
  if (rows.length === 0) return 'start wallet_not_found';
  return rows[0].enough ? 'start placed no hold (unexplained)' : 'start insufficient_credits';
}
