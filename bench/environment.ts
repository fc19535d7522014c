import { ChildProcess, execFile, fork, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { ADMIN_KEY, LoadMessage, LoadOptions, LoadResult, SERVICE_KEY } from './workload';

/**
 * Everything the benchmark creates outside itself — a database, a RabbitMQ vhost, the service
 * and the load processes — and the one place that undoes it all, whatever happens.
 */

const run = promisify(execFile);

/** dist/bench/environment.js → the repository root. */
export const REPO_ROOT = resolve(__dirname, '..', '..');
export const WORK_DIR = join(REPO_ROOT, 'bench', '.work');

export const ADMIN_DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const BROKER_URL = process.env.BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

const log = (line: string) => process.stdout.write(`${line}\n`);

/** Undo steps, run last-in first-out, each at most once, errors reported and skipped. */
export class Cleanup {
  private readonly steps: { what: string; undo: () => Promise<unknown> }[] = [];
  private running?: Promise<void>;

  add(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo });
  }

  /** A nested scope: run on its own when its work is done, or with this one on failure. */
  child(what: string): Cleanup {
    const scope = new Cleanup();
    this.add(what, () => scope.run());
    return scope;
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.steps.length > 0) {
        const step = this.steps.pop()!;
        try {
          await step.undo();
        } catch (error) {
          process.stderr.write(`cleanup: ${step.what} failed: ${(error as Error).message}\n`);
        }
      }
    })();
    return this.running;
  }
}

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createDatabase(name: string, cleanup: Cleanup): Promise<string> {
  await withAdmin((c) => c.query(`CREATE DATABASE ${name}`));
  cleanup.add(`drop database ${name}`, () =>
    withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => log(`dropped database ${name}`)),
  );
  return databaseUrl(name);
}

export async function createVhost(name: string, cleanup: Cleanup): Promise<string> {
  await run('rabbitmqctl', ['add_vhost', name]);
  cleanup.add(`delete vhost ${name}`, () => run('rabbitmqctl', ['delete_vhost', name]).then(() => log(`deleted vhost ${name}`)));
  await run('rabbitmqctl', ['set_permissions', '-p', name, 'guest', '.*', '.*', '.*']);
  return `${BROKER_URL}/${encodeURIComponent(name)}`;
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** Sends SIGTERM, then SIGKILL if the process has not exited after `graceMs`. */
async function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timeout = delay(graceMs).then(() => 'timeout' as const);
  if ((await Promise.race([exited, timeout])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

export interface ServiceProcess {
  pid: number;
  origin: string;
  logFile: string;
  /** Steers the preloaded profiler (cpu-profile.hook.ts); a no-op without --cpu-prof. */
  startProfile(): void;
  /** Stops sampling and resolves with the written .cpuprofile (undefined without --cpu-prof). */
  stopProfile(file: string): Promise<string | undefined>;
  /** Throws (with the end of its output) if the service has exited. */
  assertAlive(during: string): void;
  stop(): Promise<void>;
}

export interface ServiceOptions {
  databaseUrl: string;
  /** Undefined: queue settlement off. */
  rabbitmqUrl?: string;
  cpuProfile: boolean;
  extraEnv?: Record<string, string>;
}

/**
 * The node flags production runs the service with: those of `npm run start:prod` in package.json
 * (one place to change them), or BENCH_NODE_FLAGS to measure others.
 */
export function serviceNodeFlags(): string[] {
  const override = process.env.BENCH_NODE_FLAGS;
  if (override !== undefined) return override.split(/\s+/).filter(Boolean);
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const match = /^node((?:\s+--\S+)*)\s+dist\/src\/main\.js$/.exec(pkg.scripts['start:prod'].trim());
  if (!match) throw new Error(`cannot read the node flags from package.json start:prod: "${pkg.scripts['start:prod']}"`);
  return match[1].split(/\s+/).filter(Boolean);
}

/**
 * Starts `node <serviceNodeFlags()> dist/src/main.js` as production runs it (npm run start:prod)
 * and waits for /health/ready. Extra
 * variables in the benchmark's own environment (DATABASE_POOL_SIZE, RABBITMQ_PREFETCH, …) pass
 * through, so a tuning can be measured without editing the benchmark.
 */
export async function startService(options: ServiceOptions, cleanup: Cleanup): Promise<ServiceProcess> {
  const port = await freePort();
  mkdirSync(WORK_DIR, { recursive: true });
  const logFile = join(WORK_DIR, `service-${Date.now()}.log`);
  const logStream = createWriteStream(logFile);
  const args = [
    ...serviceNodeFlags(),
    ...(options.cpuProfile ? ['-r', join(REPO_ROOT, 'dist', 'bench', 'cpu-profile.hook.js')] : []),
    join(REPO_ROOT, 'dist', 'src', 'main.js'),
  ];
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      DATABASE_URL: options.databaseUrl,
      RABBITMQ_URL: options.rabbitmqUrl ?? '',
      SERVER_API_KEYS: SERVICE_KEY,
      ADMIN_API_KEYS: ADMIN_KEY,
      PORT: String(port),
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      ...(options.cpuProfile ? { BENCH_CPU_PROFILE: '1' } : {}),
      ...options.extraEnv,
    },
    stdio: [options.cpuProfile ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const keep = (chunk: Buffer) => {
    logStream.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  cleanup.add('stop the service', async () => {
    await stopProcess(child, 15_000);
    logStream.end();
  });
  const origin = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the service exited during start-up (${child.exitCode ?? child.signalCode}):\n${tail}`);
    }
    try {
      const res = await fetch(`${origin}/health/ready`);
      if (res.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`the service was not ready after 90 s:\n${tail}`);
    await delay(200);
  }
  return {
    pid: child.pid!,
    origin,
    logFile,
    startProfile() {
      child.stdin?.write('start\n');
    },
    async stopProfile(file) {
      if (!child.stdin) return undefined;
      child.stdin.write(`stop ${file}\n`);
      for (let i = 0; i < 300 && !existsSync(file); i++) await delay(100);
      if (!existsSync(file)) throw new Error(`the service wrote no CPU profile to ${file}`);
      return file;
    },
    assertAlive(during) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`the service exited (${child.exitCode ?? child.signalCode}) during ${during}; see ${logFile}:\n${tail}`);
      }
    },
    stop: () => stopProcess(child, 15_000),
  };
}

const liveWorkers = new Set<ChildProcess>();

/** Kills load processes still running (they also exit on their own when we disconnect). */
export async function stopWorkers(): Promise<void> {
  await Promise.all([...liveWorkers].map((c) => stopProcess(c, 3_000)));
}

/**
 * Runs a load process (dist/bench/<script>) and resolves with its result. `on` sees the
 * measuring/measured marks, so the caller can time CPU and memory over the same window.
 */
export function runWorker(
  script: string,
  options: LoadOptions & Record<string, unknown>,
  on: (m: LoadMessage) => void = () => undefined,
): Promise<LoadResult> {
  return new Promise((resolveResult, reject) => {
    const child = fork(join(REPO_ROOT, 'dist', 'bench', script), [JSON.stringify(options)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    liveWorkers.add(child);
    let result: LoadResult | undefined;
    let failure: string | undefined;
    const limit = setTimeout(
      () => {
        failure = `${script} did not finish in time`;
        child.kill('SIGKILL');
      },
      options.warmupMs + options.durationMs + 120_000,
    );
    child.on('message', (m: LoadMessage) => {
      if (m.type === 'result') result = m.result;
      else if (m.type === 'error') failure = m.message;
      else on(m);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(limit);
      liveWorkers.delete(child);
      if (result) resolveResult(result);
      else reject(new Error(failure ?? `${script} exited (${code ?? signal}) without a result`));
    });
  });
}
