/**
 * What the grant and refund event triggers (migration 1764000000019) cost per statement.
 * Not part of `npm run bench`: `npm run build && node dist/bench/grant-event-triggers.js`.
 *
 * On a throwaway database with every migration and 10,000 grants over 1,000 wallets, it times
 * N single-row statements sent one after another (each its own autocommit transaction, as the
 * ledger sends them), with the trigger enabled and then disabled (`ALTER TABLE … DISABLE TRIGGER
 * <that trigger>`, nothing else), three rounds each, alternating:
 *   - expire:  UPDATE grants SET status = 'expired', expired = expired + x   (the WHEN holds: one event each)
 *   - refund:  INSERT INTO ledger_entries (kind 'refund')                    (one event each)
 *   - charge:  UPDATE grants SET remaining = remaining - x                   (the WHEN skips: what a charge pays)
 * The same loop is also run inside PostgreSQL (a DO block), which leaves out the round trip.
 */
import 'reflect-metadata';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { databaseOptions } from '../src/database/database.options';
import { Cleanup, createDatabase } from './environment';

const N = Number(process.env.N ?? 2000);
const ROUNDS = 3;
const GRANTS = 10_000;
const WALLETS = 1_000;

type Case = 'expire' | 'refund' | 'charge';
const TRIGGER: Record<Case, { table: string; trigger: string }> = {
  expire: { table: 'grants', trigger: 'grants_expired_event' },
  refund: { table: 'ledger_entries', trigger: 'ledger_entries_refunded_event' },
  charge: { table: 'grants', trigger: 'grants_expired_event' },
};
const STATEMENT: Record<Case, string> = {
  expire: `UPDATE grants SET status = 'expired', expired = expired + 0.000001 WHERE grant_id = $1`,
  refund: `INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key) VALUES ($1, 'refund', 0.5, 100, 0, gen_random_uuid())`,
  charge: `UPDATE grants SET remaining = remaining - 0.000001 WHERE grant_id = $1`,
};
/** The same statement N times inside one DO block: the server's own cost, no round trips. */
const IN_SERVER: Record<Case, string> = {
  expire: `UPDATE grants SET status = 'expired', expired = expired + 0.000001 WHERE grant_id = ids[1 + i % cardinality(ids)]`,
  refund: `INSERT INTO ledger_entries (user_id, kind, amount, balance_after, held_after, usage_key) VALUES (users[1 + i % cardinality(users)], 'refund', 0.5, 100, 0, gen_random_uuid())`,
  charge: `UPDATE grants SET remaining = remaining - 0.000001 WHERE grant_id = ids[1 + i % cardinality(ids)]`,
};

const log = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const cleanup = new Cleanup();
  const name = `credits_bench_triggers_${Date.now()}_${process.pid}`;
  const stop = () => void cleanup.run().then(() => process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const url = await createDatabase(name, cleanup);
    const migrator = new DataSource({ ...databaseOptions(url, { poolSize: 1, embedded: false }), logging: false });
    await migrator.initialize();
    await migrator.destroy();

    const c = new pg.Client({ connectionString: url });
    await c.connect();
    cleanup.add('close client', () => c.end());
    await c.query(`
      INSERT INTO wallets (user_id, plan, status, balance, held, version)
      SELECT 'tb-' || i, 'pro', 'active', 1000000, 0, 1 FROM generate_series(1, ${WALLETS}) i`);
    // Each grant has credits enough for every charge of the run (N × rounds × 2 × 0.000001 at most).
    await c.query(`
      INSERT INTO grants (user_id, kind, origin, amount, remaining, expires_at)
      SELECT 'tb-' || (1 + i % ${WALLETS}), 'promotional', 'grant', 100, 100, now() + interval '30 days'
      FROM generate_series(1, ${GRANTS}) i`);
    await c.query(`VACUUM ANALYZE`);
    const ids = (await c.query<{ grant_id: string; user_id: string }>(`SELECT grant_id, user_id FROM grants ORDER BY random() LIMIT ${N}`))
      .rows;

    const results: Record<string, { on: number[]; off: number[]; onServer: number[]; offServer: number[] }> = {};
    for (const kase of ['charge', 'expire', 'refund'] as Case[]) {
      const r: (typeof results)[string] = { on: [], off: [], onServer: [], offServer: [] };
      results[kase] = r;
      const { table, trigger } = TRIGGER[kase];
      for (let round = 0; round < ROUNDS; round++) {
        for (const enabled of round % 2 === 0 ? [true, false] : [false, true]) {
          await c.query(`ALTER TABLE ${table} ${enabled ? 'ENABLE' : 'DISABLE'} TRIGGER ${trigger}`);
          const started = performance.now();
          for (const row of ids) {
            await c.query({ name: `${kase}`, text: STATEMENT[kase], values: [kase === 'refund' ? row.user_id : row.grant_id] });
          }
          (enabled ? r.on : r.off).push(performance.now() - started);
          const inServer = performance.now();
          await c.query(`
            DO $$ DECLARE
              ids uuid[] := ARRAY(SELECT grant_id FROM grants ORDER BY grant_id LIMIT ${N});
              users varchar[] := ARRAY(SELECT user_id FROM grants ORDER BY grant_id LIMIT ${N});
            BEGIN
              FOR i IN 0..${N - 1} LOOP ${IN_SERVER[kase]}; END LOOP;
            END $$`);
          (enabled ? r.onServer : r.offServer).push(performance.now() - inServer);
        }
      }
      await c.query(`ALTER TABLE ${table} ENABLE TRIGGER ${trigger}`);
    }
    const events = (await c.query<{ type: string; n: number }>(`SELECT type, count(*)::int AS n FROM events GROUP BY type ORDER BY type`))
      .rows;

    const ms = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(' / ');
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const spread = (xs: number[]) => ((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 100;
    log(`grant event triggers: ${GRANTS} grants, ${WALLETS} wallets, N=${N} single-row statements per run, ${ROUNDS} runs each`);
    log('');
    log(
      '| statement | where | trigger on (ms, 3 runs) | off (ms, 3 runs) | µs/stmt on / off (median) | ratio on/off (median) | spread on / off |',
    );
    log('| --- | --- | --- | --- | --- | --- | --- |');
    for (const [kase, r] of Object.entries(results)) {
      for (const [where, on, off] of [
        ['client, one round trip each', r.on, r.off],
        ['inside PostgreSQL (DO loop)', r.onServer, r.offServer],
      ] as const) {
        log(
          `| ${kase} | ${where} | ${ms(on)} | ${ms(off)} | ${((median(on) * 1000) / N).toFixed(1)} / ${((median(off) * 1000) / N).toFixed(1)} | ` +
            `${(median(on) / median(off)).toFixed(2)} | ${spread(on).toFixed(0)} % / ${spread(off).toFixed(0)} % |`,
        );
      }
    }
    log('');
    log(`events written: ${events.map((e) => `${e.type} ${e.n}`).join(', ')}`);
  } finally {
    await cleanup.run();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
