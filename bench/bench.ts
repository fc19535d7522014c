/**
 * `npm run bench`: the service against the fastest hand-written version of the same work, on the
 * same machine, in the same run (issue 10). See bench/README.md for what each figure means.
 *
 * Creates a throwaway database and RabbitMQ vhost, starts the built service as a child process,
 * seeds it, runs the load processes, writes bench/RESULTS.md, and always undoes what it created —
 * on success, on failure, and on Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { baselineSettle, baselineStart } from './baseline-statements';
import { summarizeProfile } from './cpu-profile';
import {
  Cleanup,
  createDatabase,
  createVhost,
  REPO_ROOT,
  runWorker,
  ServiceProcess,
  serviceNodeFlags,
  startService,
  stopWorkers,
  WORK_DIR,
} from './environment';
import { BenchOptions, parseOptions, USAGE } from './options';
import { queueDrain } from './queue-drain';
import { measureRoundTrips } from './round-trips';
import { BenchResults, find, PointKind, PointResult, renderMarkdown, targets } from './report';
import {
  checkWallet,
  issueServiceKey,
  quiesce,
  quote,
  reconcile,
  seedCatalogue,
  seedScale,
  seedSpanWallets,
  seedSpecialWallets,
  seedWallets,
} from './seed';
import { cpuWindow, CpuWindow, memoryMiB, rssSampler, uptimeLine } from './system';
import {
  cycleUsages,
  FEATURE,
  FEATURE_ID,
  HOT_WALLET,
  K_ATTEMPTS,
  K_HOLDS,
  K_WALLET,
  PARITY_WALLET,
  SPAN_WALLET_PREFIX,
  SPAN_WALLETS,
  SERVICE_KEY,
  WalletChoice,
} from './workload';

const out = (line = '') => process.stdout.write(`${line}\n`);

/** Service settings worth recording when set in the environment (they pass through to the service). */
const SERVICE_TUNING_VARS = [
  'DATABASE_POOL_SIZE',
  'RABBITMQ_PREFETCH',
  'BATCH_MAX_SIZE',
  'BATCH_CONCURRENCY',
  'PRICING_CACHE_TTL_MS',
  'RABBITMQ_RETRY_DELAYS_MS',
  'HOLD_TTL_SECONDS',
  'HOLD_SWEEP_INTERVAL_MS',
  'RATE_LIMIT_PER_SECOND',
  'BODY_LIMIT_BYTES',
  'UV_THREADPOOL_SIZE',
  'NODE_OPTIONS',
  'BENCH_LOG_LEVEL',
];

function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    return dirty ? `${sha} (src/ modified)` : sha;
  } catch {
    return 'unknown';
  }
}

async function main(options: BenchOptions): Promise<number> {
  const cleanup = new Cleanup();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${signal}: cleaning up…\n`);
    void stopWorkers()
      .then(() => cleanup.run())
      .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
  const dbName = `credits_bench_${stamp}_${process.pid}`;
  const results: BenchResults = {
    info: {
      date: new Date().toISOString(),
      cores: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGiB: os.totalmem() / 2 ** 30,
      uptimeAtStart: uptimeLine(),
      postgres: '',
      postgresSettings: '',
      node: process.version,
      commit: gitCommit(),
      mode: `${options.quick ? '--quick' : 'full'}: ${options.durationMs / 1000} s per point after ${options.warmupMs / 1000} s warm-up, concurrency ${options.concurrency.join(', ')}, ${options.wallets.toLocaleString('en-US')} wallets, ${options.messages.toLocaleString('en-US')} queue messages${options.scale ? `, --scale ${options.scaleWallets.toLocaleString('en-US')} wallets × ${options.scaleEntriesPerWallet} entries` : ''}${options.phases.size < 5 ? `, --only ${[...options.phases].join(',')}` : ''}${options.cpuProf ? ', --cpu-prof (the profiled points ran under the sampler)' : ''}`,
      serviceEnv: `node ${serviceNodeFlags().join(' ')}; ${
        SERVICE_TUNING_VARS.filter((v) => process.env[v] !== undefined)
          .map((v) => `${v}=${process.env[v]}`)
          .join(', ') || 'defaults (LOG_LEVEL=warn, NODE_ENV=production)'
      }`,
    },
    points: [],
    profiles: [],
    failures: [],
  };
  out(`credits-service benchmark — ${results.info.mode}`);
  out(`machine: ${results.info.cores} cores; ${results.info.uptimeAtStart}`);

  let db: pg.Pool | undefined;
  let service: ServiceProcess | undefined;
  const profileDir = options.cpuProf ? join(WORK_DIR, `profile-${stamp}`) : undefined;
  try {
    const databaseUrl = await createDatabase(dbName, cleanup);
    const rabbitmqUrl = await createVhost(dbName, cleanup);
    out(`database and vhost: ${dbName}`);
    db = new pg.Pool({ connectionString: databaseUrl, max: 4, application_name: 'credits-bench' });
    const pool = db;
    cleanup.add('close the bench pool', () => pool.end());

    if (profileDir) mkdirSync(profileDir, { recursive: true });
    service = await startService({ databaseUrl, rabbitmqUrl, cpuProfile: options.cpuProf }, cleanup);
    out(`service ready at ${service.origin} (pid ${service.pid}, log ${service.logFile})`);

    const version = await db.query<{ server_version: string }>('SHOW server_version');
    const settings = await db.query<{ name: string; setting: string; unit: string | null }>(
      `SELECT name, setting, unit FROM pg_settings WHERE name IN ('max_connections', 'shared_buffers', 'synchronous_commit', 'fsync', 'wal_level') ORDER BY name`,
    );
    results.info.postgres = version.rows[0].server_version;
    results.info.postgresSettings = settings.rows.map((s) => `${s.name}=${s.setting}${s.unit ?? ''}`).join(', ');

    // --- seed ---------------------------------------------------------------------------
    let t = performance.now();
    await seedCatalogue(service.origin);
    await seedWallets(db, 1, options.wallets);
    await seedSpecialWallets(db);
    // The span wallets' small grants: 40 % of what one cycle charges (in micro-credits, exactly).
    const cycleCost = BigInt((await quote(service.origin, cycleUsages())).replace('.', ''));
    const small = (cycleCost * 4n) / 10n;
    await seedSpanWallets(db, `${small / 1_000_000n}.${String(small % 1_000_000n).padStart(6, '0')}`);
    await db.query('ANALYZE');
    const apiKey = options.dbKey ? await issueServiceKey(service.origin) : undefined;
    if (apiKey) out('the HTTP load authenticates with a key issued by POST /api/keys (--db-key)');
    out(
      `seeded ${options.wallets.toLocaleString('en-US')} wallets, 1 feature, ${(await db.query('SELECT 1 FROM ai_models')).rowCount} models in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );

    results.parity = await pricingParity(db, service.origin);
    out(
      `pricing parity (baseline SQL vs service quote): ${results.parity.checked - results.parity.mismatches.length}/${results.parity.checked}`,
    );
    if (results.parity.mismatches.length)
      throw new Error(`the baseline prices differently from the service: ${results.parity.mismatches.join('; ')}`);

    if (options.phases.has('roundtrips')) {
      results.roundTrips = await measureRoundTrips(databaseUrl, cleanup);
      for (const r of results.roundTrips)
        out(`round trips: ${r.request}: ${r.roundTrips.toFixed(1)} round trips, ${r.statements.toFixed(1)} statements`);
    }

    const runPoint = pointRunner(options, service, db, databaseUrl, results, profileDir, apiKey);
    const top = Math.max(...options.concurrency);
    const random: WalletChoice = { kind: 'random', count: options.wallets };

    // --- warm-up -------------------------------------------------------------------------
    // Once, unmeasured: the service's JIT, pools and caches. Without it the first point (c=8)
    // ran ~40 % slower than the same point repeated minutes later (bench/README.md).
    if (options.phases.has('http') || options.phases.has('hot')) {
      const warmupMs = options.warmupMs * 3;
      out(`warm-up: ${(warmupMs / 1000).toFixed(0)} s of HTTP cycles at c=${top}, not measured`);
      await runWorker(
        'http-load.worker.js',
        { concurrency: top, warmupMs, durationMs: 1000, wallets: random, origin: service.origin, databaseUrl, apiKey },
        () => undefined,
      );
    }

    // --- HTTP cycle and its baseline, side by side per concurrency ------------------------
    for (const c of options.concurrency) {
      if (options.phases.has('http')) await runPoint('http', c, random, options.cpuProf && c === top);
      if (options.phases.has('baseline')) await runPoint('baseline', c, random);
      printRatio(results, 'http', 'baseline', c);
      // The same cycle on wallets whose every charge draws from two or three grants (API.md §8).
      if (options.phases.has('http')) {
        await runPoint('span-http', c, { kind: 'random', count: SPAN_WALLETS, prefix: SPAN_WALLET_PREFIX });
        printRatio(results, 'span-http', 'baseline', c);
      }
    }

    // --- hot wallet ---------------------------------------------------------------------
    if (options.phases.has('hot')) {
      results.exactK = await exactK(db, service.origin);
      const k = results.exactK;
      out(
        `exactly-K: ${k.attempts} parallel starts, room for ${k.room} → ${k.accessible} accessible, ${k.refused} refused, ${k.other} other; wallet ${k.check.ok ? 'ok' : 'FAILED'}`,
      );
      for (const c of options.concurrency) {
        await runPoint('hot-http', c, { kind: 'one', userId: HOT_WALLET });
        await runPoint('hot-baseline', c, { kind: 'one', userId: HOT_WALLET });
        printRatio(results, 'hot-http', 'hot-baseline', c);
      }
      results.hotCheck = await checkWallet(db, HOT_WALLET);
      out(
        `hot wallet after: held ${results.hotCheck.held}, balance ${results.hotCheck.balance}, Σ ledger ${results.hotCheck.ledgerSum} → ${results.hotCheck.ok ? 'ok' : 'FAILED'}`,
      );
    }

    // --- queue drain --------------------------------------------------------------------
    if (options.phases.has('queue')) {
      out(`queue drain: ${options.messages} messages…`);
      const closeCpu = cpuWindow(service.pid);
      const rss = rssSampler(service.pid);
      if (profileDir) service.startProfile();
      const q = await queueDrain(db, rabbitmqUrl, options.messages, options.wallets, `bench-${stamp}`);
      results.queue = { ...q, cpu: closeCpu(), serviceRssMiB: rss.stop() };
      service.assertAlive('the queue drain');
      if (profileDir) await addProfile(results, 'queue drain', await service.stopProfile(join(profileDir, 'queue-drain.cpuprofile')));
      out(
        `queue drain: ${q.settled} settled, ${q.failed} failed, ${q.duplicates} duplicates in ${(q.drainMs / 1000).toFixed(1)} s → ${q.settlementsPerSecond.toFixed(1)} settlements/s${q.timedOut ? ' (TIMED OUT)' : ''}`,
      );
    }

    results.reconciliation = await reconcile(db);
    out(`reconciliation: ${results.reconciliation.wallets} wallets, ${results.reconciliation.mismatches} mismatches`);

    // --- scale --------------------------------------------------------------------------
    if (options.scale) {
      out(
        `scale: generating wallets ${options.wallets + 1}…${options.scaleWallets} with ${options.scaleEntriesPerWallet} ledger rows each…`,
      );
      t = performance.now();
      await seedScale(db, options.wallets + 1, options.scaleWallets, options.scaleEntriesPerWallet);
      const seedSeconds = (performance.now() - t) / 1000;
      const counts = await db.query<{ wallets: string; ledger: string }>(
        `SELECT (SELECT count(*) FROM wallets)::text AS wallets, (SELECT count(*) FROM ledger_entries)::text AS ledger`,
      );
      results.scale = { wallets: Number(counts.rows[0].wallets), ledgerRows: Number(counts.rows[0].ledger), seedSeconds };
      out(`scale: ${results.scale.wallets} wallets, ${results.scale.ledgerRows} ledger rows in ${seedSeconds.toFixed(0)} s`);
      results.scaleReconciliation = await reconcile(db);
      out(`scale: reconciliation ${results.scaleReconciliation.mismatches} mismatches over ${results.scaleReconciliation.wallets} wallets`);
      for (const c of options.concurrency) {
        await runPoint('scale-http', c, { kind: 'random', count: options.scaleWallets });
        const a = find(results, 'http', c);
        const b = find(results, 'scale-http', c);
        if (a && b) {
          const change = (b.load.cyclesPerSecond / a.load.cyclesPerSecond - 1) * 100;
          out(`  scale vs 10,000 wallets at c=${c}: ${change >= 0 ? '+' : ''}${change.toFixed(1)} %`);
        }
      }
    }

    results.serviceHwmMiB = memoryMiB(service.pid, 'VmHWM');
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    results.failures.push(message);
    process.stderr.write(`\nbenchmark failed: ${error instanceof Error ? (error.stack ?? message) : message}\n`);
  } finally {
    if (service && results.serviceHwmMiB === undefined) results.serviceHwmMiB = memoryMiB(service.pid, 'VmHWM');
    await stopWorkers();
    await cleanup.run();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
  if (interrupted) return 130;

  results.info.uptimeAtEnd = uptimeLine();
  const markdown = renderMarkdown(results, options.concurrency);
  out();
  out(markdown);
  if (options.writeResults && results.points.length > 0) {
    writeFileSync(join(REPO_ROOT, 'bench', 'RESULTS.md'), `${markdown}\n`);
    out(`\nwritten: bench/RESULTS.md`);
  }
  const missed = targets(results, options.concurrency).filter((t) => t.verdict === 'missed').length;
  if (missed) out(`${missed} target(s) missed (see the table above).`);
  return results.failures.length ? 1 : 0;
}

/** Runs one measured point in a load process, timing CPU and memory over its measured window. */
function pointRunner(
  options: BenchOptions,
  service: ServiceProcess,
  db: pg.Pool,
  databaseUrl: string,
  results: BenchResults,
  profileDir: string | undefined,
  apiKey: string | undefined,
) {
  return async (kind: PointKind, concurrency: number, wallets: WalletChoice, profile = false): Promise<PointResult> => {
    const http = !kind.includes('baseline');
    await quiesce(db);
    let closeCpu: (() => CpuWindow) | undefined;
    let cpu: CpuWindow | undefined;
    let rss: { stop(): number } | undefined;
    let serviceRssMiB = 0;
    const profileFile = profile && profileDir ? join(profileDir, `${kind}-c${concurrency}.cpuprofile`) : undefined;
    let profileWritten: Promise<string | undefined> | undefined;
    const load = await runWorker(
      http ? 'http-load.worker.js' : 'sql-baseline.worker.js',
      { concurrency, warmupMs: options.warmupMs, durationMs: options.durationMs, wallets, origin: service.origin, databaseUrl, apiKey },
      (m) => {
        if (m.type === 'measuring') {
          closeCpu = cpuWindow(service.pid);
          rss = rssSampler(service.pid);
          if (profileFile) service.startProfile();
        } else if (m.type === 'measured') {
          cpu = closeCpu?.();
          serviceRssMiB = rss?.stop() ?? 0;
          if (profileFile) profileWritten = service.stopProfile(profileFile);
        }
      },
    );
    service.assertAlive(`${kind} c=${concurrency}`);
    const point: PointResult = { kind, concurrency, load, cpu, serviceRssMiB, loadAverage: os.loadavg()[0] };
    results.points.push(point);
    const errors = Object.values(load.errors).reduce((a, b) => a + b, 0);
    out(
      `${kind.padEnd(13)} c=${String(concurrency).padEnd(3)} ${load.cyclesPerSecond.toFixed(1).padStart(8)} cycles/s  ` +
        `start p50 ${load.start.p50.toFixed(2)} p99 ${load.start.p99.toFixed(2)} ms  end p50 ${load.end.p50.toFixed(2)} p99 ${load.end.p99.toFixed(2)} ms  ` +
        `errors ${errors}  load-gen CPU ${load.cpuShare.toFixed(2)}${http ? `  service CPU ${cpu?.service.toFixed(2) ?? '–'}  RSS ${serviceRssMiB.toFixed(0)} MiB` : ''}  ` +
        `postgres CPU ${cpu?.postgres.toFixed(2) ?? '–'}  machine ${cpu ? (cpu.machine * 100).toFixed(0) : '–'} %`,
    );
    if (errors) out(`  errors: ${JSON.stringify(load.errors)}`);
    if (profileWritten) await addProfile(results, `HTTP cycle, concurrency ${concurrency}`, await profileWritten);
    return point;
  };
}

function printRatio(results: BenchResults, service: PointKind, baseline: PointKind, c: number): void {
  const s = find(results, service, c);
  const b = find(results, baseline, c);
  if (s && b) out(`  → service ÷ baseline at c=${c}: ${(s.load.cyclesPerSecond / b.load.cyclesPerSecond).toFixed(2)}`);
}

/**
 * The baseline must charge what the service charges: settle random usage sets through the
 * baseline's SQL and compare with the service's own quote for the same usages.
 */
async function pricingParity(db: pg.Pool, origin: string): Promise<{ checked: number; mismatches: string[] }> {
  const mismatches: string[] = [];
  const checked = 20;
  for (let i = 0; i < checked; i++) {
    const usages = cycleUsages();
    if (i === 0) usages[0] = { ...usages[0], input_tokens: 1_000_000_000, cached_input_tokens: 333_333_333, output_tokens: 777_777_777 };
    const userId = PARITY_WALLET;
    const started = await baselineStart(db, userId, FEATURE_ID, FEATURE.hold_ttl_seconds);
    if (!started) throw new Error(`parity check: the baseline placed no hold on ${userId}`);
    const settled = await baselineSettle(db, userId, FEATURE_ID, started.usageKey, usages);
    const expected = await quote(origin, usages);
    if (!settled) mismatches.push(`usages ${JSON.stringify(usages)}: baseline settled nothing`);
    else if (settled.credits_charged !== expected)
      mismatches.push(`usages ${JSON.stringify(usages)}: service ${expected}, baseline ${settled.credits_charged}`);
  }
  return { checked, mismatches };
}

/** N parallel /start on a wallet with room for K holds must give exactly K; then cancel them. */
async function exactK(db: pg.Pool, origin: string): Promise<NonNullable<BenchResults['exactK']>> {
  const headers = { 'content-type': 'application/json', 'x-server-api-key': SERVICE_KEY };
  const answers = await Promise.all(
    Array.from({ length: K_ATTEMPTS }, async () => {
      const res = await fetch(`${origin}/api/credits-process/start`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ user_id: K_WALLET, feature_endpoint_id: FEATURE_ID }),
      });
      return { status: res.status, body: (await res.json()) as { data: { usage_key?: string } } };
    }),
  );
  const accessible = answers.filter((a) => a.status === 200);
  for (const a of accessible) {
    const res = await fetch(`${origin}/api/credits-process/cancel`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ usage_key: a.body.data.usage_key }),
    });
    if (res.status !== 200) throw new Error(`exactly-K: cancel answered ${res.status}`);
  }
  return {
    wallet: K_WALLET,
    room: K_HOLDS,
    attempts: K_ATTEMPTS,
    accessible: accessible.length,
    refused: answers.filter((a) => a.status === 402).length,
    other: answers.filter((a) => a.status !== 200 && a.status !== 402).length,
    check: await checkWallet(db, K_WALLET),
  };
}

async function addProfile(results: BenchResults, label: string, file: string | undefined): Promise<void> {
  if (!file) return;
  out(`cpu profile (${label}): ${file} (open it in Chrome DevTools → Performance, or speedscope)`);
  results.profiles.push({ label, ...summarizeProfile(file) });
}

const parsed = (() => {
  try {
    return parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(2);
  }
})();
if (parsed === 'help') {
  out(USAGE);
} else if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'main.js'))) {
  process.stderr.write('dist/src/main.js is missing: run `npm run build` (npm run bench does it for you)\n');
  process.exitCode = 2;
} else {
  void main(parsed).then((code) => {
    process.exitCode = code;
  });
}
