import { ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { ADMIN_KEY, httpClient, SERVICE_KEY } from './http';
import { waitFor } from './wait';

/** The compiled service (`npm run build` runs before every test command). */
export const SERVICE_ENTRY = resolve(process.cwd(), 'dist/src/main.js');

/** A port nobody listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.unref();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

export interface ServiceProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  baseUrl: string;
  request: ReturnType<typeof httpClient>;
  /** Every line the process wrote, stdout and stderr, in order. */
  lines: string[];
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  exited: Promise<number | string>;
  /** Sends the signal and waits for the exit event. */
  kill(signal?: NodeJS.Signals): Promise<number | string>;
  /** Graceful stop (SIGTERM); SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<number | string>;
  /** Polls /health/ready until it answers 200. */
  ready(timeoutMs?: number): Promise<void>;
}

export interface SpawnOptions {
  /** Wait for /health/ready 200 before returning (default true). */
  waitReady?: boolean;
  readyTimeoutMs?: number;
}

/**
 * Runs `node dist/src/main.js` as a child process with exactly `env` (plus PATH/HOME), as
 * production would, on a free port. Used by the fault-injection suites: the process can be
 * SIGKILLed mid-work and started again on the same database and vhost.
 */
export async function spawnService(env: Record<string, string>, options: SpawnOptions = {}): Promise<ServiceProcess> {
  const port = env.PORT && env.PORT !== '0' ? Number(env.PORT) : await freePort();
  const child = spawn(process.execPath, [SERVICE_ENTRY], {
    cwd: process.cwd(),
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      SERVER_API_KEYS: SERVICE_KEY,
      ADMIN_API_KEYS: ADMIN_KEY,
      LOG_LEVEL: 'warn',
      NODE_ENV: 'test',
      ...env,
      PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const collect = (stream: NodeJS.ReadableStream | null) => {
    let rest = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const parts = (rest + chunk).split('\n');
      rest = parts.pop() ?? '';
      lines.push(...parts);
    });
    stream?.on('end', () => {
      if (rest) lines.push(rest);
      rest = '';
    });
  };
  collect(child.stdout);
  collect(child.stderr);
  const exited = new Promise<number | string>((done) => {
    child.on('exit', (code, signal) => done(code ?? signal ?? 'unknown'));
  });
  let gone = false;
  void exited.then(() => (gone = true));

  const baseUrl = `http://127.0.0.1:${port}`;
  const service: ServiceProcess = {
    child,
    pid: child.pid!,
    port,
    baseUrl,
    request: httpClient(baseUrl),
    lines,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!gone) child.kill(signal);
      return exited;
    },
    async stop(graceMs = 20_000) {
      if (gone) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    async ready(timeoutMs = options.readyTimeoutMs ?? 60_000) {
      const early = exited.then((how) => {
        throw new Error(`the service exited (${how}) before it was ready:\n${lines.slice(-20).join('\n')}`);
      });
      const ready = waitFor(
        `the service on port ${port} to be ready`,
        async () => !gone && (await service.request('GET', '/health/ready', { key: null })).status === 200,
        timeoutMs,
        100,
      );
      try {
        await Promise.race([ready, early]);
      } catch (error) {
        // A service that never became ready must not outlive the test.
        if (!gone) child.kill('SIGKILL');
        throw error;
      } finally {
        early.catch(() => undefined);
      }
    },
  };
  if (options.waitReady ?? true) await service.ready();
  return service;
}
