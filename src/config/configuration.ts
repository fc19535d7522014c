/**
 * The service's whole configuration, read once from the environment and validated at boot.
 * A bad value throws a ConfigError whose message is the one line printed before exiting.
 */
export type LogLevel = 'silent' | 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
const LOG_LEVELS: readonly LogLevel[] = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'];

export interface AppConfig {
  nodeEnv: string;
  port: number;
  /** Undefined = embedded PostgreSQL (PGlite) in `embeddedDataDir`. */
  databaseUrl: string | undefined;
  embeddedDataDir: string;
  databasePoolSize: number;
  /** Most requests of one kind (starts, settlements) written by one coalesced SQL statement. */
  batchMaxSize: number;
  /** Coalesced statements of one kind running at once (each holds a pooled connection). */
  batchConcurrency: number;
  /**
   * What a batch whose statement failed (other than for an unreachable database) does: `split`
   * runs each of its requests alone, so one request's fault cannot fail its neighbours; `fail`
   * answers the error to all of them, so a bug in the batch SQL cannot hide behind the retry
   * (the tests run with it).
   */
  batchFallback: BatchFallback;
  rabbitmqUrl: string | undefined;
  /** Prefetch of the settlement consumer's channel. */
  rabbitmqPrefetch: number;
  /** Delays before each retry of a transiently failing queued settlement; then dead-lettered. */
  rabbitmqRetryDelaysMs: number[];
  serverApiKeys: string[];
  adminApiKeys: string[];
  /** True when a scope fell back to its dev key. */
  usingDevKeys: boolean;
  holdTtlSeconds: number;
  /** How long an instance may price with cached features/models/settings (0 = always read). */
  pricingCacheTtlMs: number;
  /** How long an instance trusts a key record it read (a revocation elsewhere is seen within this). */
  keyCacheTtlMs: number;
  /** How often the sweeper marks expired holds; 0 turns it off. */
  holdSweepIntervalMs: number;
  /** How often the grant sweeps run — expiry (API.md §8) and grant.expiring notices (§10); 0 turns them off on this instance. */
  grantSweepIntervalMs: number;
  logLevel: LogLevel;
  ratePerSecond: number;
  /** Failed key checks allowed per client address per minute before 429 (brute-force guard). */
  authFailuresPerMinute: number;
  bodyLimitBytes: number;
  /**
   * When the demo data is loaded at start: `auto` (SEED_DEMO unset) only on an embedded database
   * that this start has just created, outside production; `on` at every start (idempotent),
   * whatever the database; `off` never.
   */
  seedDemo: 'auto' | 'on' | 'off';
  /** How often the event relay looks at the outbox (API.md §10); 0 turns the relay off on this instance. */
  eventRelayIntervalMs: number;
  /** Delays before each retry of a webhook delivery; after the last one the delivery is `failed`. */
  webhookRetryDelaysMs: number[];
  /** How long a webhook has to answer (the contract's 10 s; lower only for tests). */
  webhookTimeoutMs: number;
  /** In production, webhook URLs resolving to loopback/private/link-local addresses are refused unless true. */
  webhookAllowPrivateNetworks: boolean;
  /** Events whose deliveries are all finished are pruned after this many days. */
  eventRetentionDays: number;
  /** A grant is noticed (`grant.expiring`) once it expires within this many seconds. */
  grantExpiryNoticeSeconds: number;
}

export type BatchFallback = 'split' | 'fail';

export const DEV_SERVER_KEY = 'dev-server-key';
export const DEV_ADMIN_KEY = 'dev-admin-key';

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return Number(raw);
}

function delaysVar(env: Env, name: string, fallback: number[]): number[] {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const parts = raw.split(',').map((p) => p.trim());
  if (parts.length > 20 || parts.some((p) => !/^\d{1,7}$/.test(p))) {
    throw new ConfigError(`${name} must be a comma-separated list of at most 20 millisecond delays, got "${raw}"`);
  }
  return parts.map(Number);
}

/** About 24 h in all (23 h 51 min): 10 s, 30 s, 1 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h. */
export const DEFAULT_WEBHOOK_RETRY_DELAYS_MS = [
  10_000, 30_000, 60_000, 300_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000, 28_800_000, 28_800_000,
];

function longDelaysVar(env: Env, name: string, fallback: number[]): number[] {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const parts = raw.split(',').map((p) => p.trim());
  if (parts.length > 30 || parts.some((p) => !/^\d{1,9}$/.test(p) || Number(p) > 86_400_000)) {
    throw new ConfigError(`${name} must be a comma-separated list of at most 30 millisecond delays of at most a day, got "${raw}"`);
  }
  return parts.map(Number);
}

function boolVar(env: Env, name: string): boolean {
  const raw = env[name]?.trim() ?? '';
  if (raw !== '' && raw !== 'true' && raw !== 'false') throw new ConfigError(`${name} must be true or false, got "${raw}"`);
  return raw === 'true';
}

function urlVar(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(`${name} must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  }
  return raw;
}

function keysVar(env: Env, name: string): string[] | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  const keys = raw
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  if (keys.some((k) => k.length < 8)) throw new ConfigError(`${name}: every key must be at least 8 characters`);
  return keys;
}

export function loadConfig(env: Env): AppConfig {
  const nodeEnv = env.NODE_ENV?.trim() || 'development';
  const production = nodeEnv === 'production';
  const serverKeys = keysVar(env, 'SERVER_API_KEYS');
  const adminKeys = keysVar(env, 'ADMIN_API_KEYS');
  if (production && (!serverKeys || !adminKeys)) {
    throw new ConfigError('SERVER_API_KEYS and ADMIN_API_KEYS must be set when NODE_ENV=production (dev keys are refused)');
  }
  const devKeys = [DEV_SERVER_KEY, DEV_ADMIN_KEY];
  if (production && [...serverKeys!, ...adminKeys!].some((k) => devKeys.includes(k))) {
    throw new ConfigError('the dev keys dev-server-key / dev-admin-key are refused when NODE_ENV=production');
  }
  const logLevel = (env.LOG_LEVEL?.trim() || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  }
  const batchFallback = env.BATCH_FALLBACK?.trim() || 'split';
  if (batchFallback !== 'split' && batchFallback !== 'fail') {
    throw new ConfigError(`BATCH_FALLBACK must be split or fail, got "${batchFallback}"`);
  }
  const seed = env.SEED_DEMO?.trim() ?? '';
  if (seed !== '' && seed !== 'true' && seed !== 'false') throw new ConfigError(`SEED_DEMO must be true or false, got "${seed}"`);

  return {
    nodeEnv,
    port: intVar(env, 'PORT', 3000, 0, 65535),
    databaseUrl: urlVar(env, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    embeddedDataDir: env.EMBEDDED_DATA_DIR?.trim() || './data',
    databasePoolSize: intVar(env, 'DATABASE_POOL_SIZE', 20, 1, 200),
    batchMaxSize: intVar(env, 'BATCH_MAX_SIZE', 100, 1, 1000),
    batchConcurrency: intVar(env, 'BATCH_CONCURRENCY', 8, 1, 100),
    batchFallback,
    rabbitmqUrl: urlVar(env, 'RABBITMQ_URL', ['amqp:', 'amqps:']),
    rabbitmqPrefetch: intVar(env, 'RABBITMQ_PREFETCH', 200, 1, 1000),
    rabbitmqRetryDelaysMs: delaysVar(env, 'RABBITMQ_RETRY_DELAYS_MS', [500, 1000, 2000, 4000, 8000, 15000]),
    serverApiKeys: serverKeys ?? [DEV_SERVER_KEY],
    adminApiKeys: adminKeys ?? [DEV_ADMIN_KEY],
    usingDevKeys: !serverKeys || !adminKeys,
    holdTtlSeconds: intVar(env, 'HOLD_TTL_SECONDS', 900, 1, 604800),
    pricingCacheTtlMs: intVar(env, 'PRICING_CACHE_TTL_MS', 1000, 0, 600_000),
    keyCacheTtlMs: intVar(env, 'KEY_CACHE_TTL_MS', 1000, 0, 1000),
    holdSweepIntervalMs: intVar(env, 'HOLD_SWEEP_INTERVAL_MS', 1000, 0, 3_600_000),
    grantSweepIntervalMs: intVar(env, 'GRANT_SWEEP_INTERVAL_MS', 1000, 0, 3_600_000),
    logLevel,
    ratePerSecond: intVar(env, 'RATE_LIMIT_PER_SECOND', 0, 0, 1_000_000),
    authFailuresPerMinute: intVar(env, 'AUTH_FAILURES_PER_MINUTE', 30, 1, 1_000_000),
    bodyLimitBytes: intVar(env, 'BODY_LIMIT_BYTES', 262_144, 1024, 10_485_760),
    seedDemo: seed === '' ? 'auto' : seed === 'true' ? 'on' : 'off',
    eventRelayIntervalMs: intVar(env, 'EVENT_RELAY_INTERVAL_MS', 250, 0, 60_000),
    webhookRetryDelaysMs: longDelaysVar(env, 'WEBHOOK_RETRY_DELAYS_MS', DEFAULT_WEBHOOK_RETRY_DELAYS_MS),
    webhookTimeoutMs: intVar(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 100, 10_000),
    webhookAllowPrivateNetworks: boolVar(env, 'WEBHOOK_ALLOW_PRIVATE_NETWORKS'),
    eventRetentionDays: intVar(env, 'EVENT_RETENTION_DAYS', 30, 1, 3650),
    grantExpiryNoticeSeconds: intVar(env, 'GRANT_EXPIRY_NOTICE_SECONDS', 259_200, 1, 31_536_000),
  };
}
