import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApp } from '../../src/app.setup';
import { loadConfig } from '../../src/config/configuration';
import { createTestDatabase, TestDatabase } from './database';

export const SERVICE_KEY = 'test-service-key-1';
export const ADMIN_KEY = 'test-admin-key-1';

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export interface RequestOptions {
  body?: unknown;
  /** Raw body text (sent as is, with the given content type). */
  raw?: string;
  /** API key; defaults to the admin key; `null` sends none. */
  key?: string | null;
  headers?: Record<string, string>;
}

export interface TestApp {
  app: NestFastifyApplication;
  db: TestDatabase;
  baseUrl: string;
  request<T = any>(method: string, path: string, options?: RequestOptions): Promise<ApiResponse<T>>;
  close(): Promise<void>;
}

/** Environment every test app starts from; tests override what they exercise. */
export function testEnv(databaseUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    SERVER_API_KEYS: SERVICE_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    LOG_LEVEL: 'silent',
    PORT: '0',
    ...overrides,
  };
}

/** An HTTP client for a running service at `baseUrl` (real sockets, real JSON). */
export function httpClient(baseUrl: string) {
  return async function request<T = any>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    const key = options.key === undefined ? ADMIN_KEY : options.key;
    if (key !== null) headers['x-server-api-key'] = key;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${baseUrl}${path}`, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* left as text: a test asserting on JSON will fail loudly */
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  };
}

/** Starts the real app (same pipeline as production) on a throwaway database and a free port. */
export async function startTestApp(overrides: Record<string, string> = {}, existingDb?: TestDatabase): Promise<TestApp> {
  const db = existingDb ?? (await createTestDatabase());
  const app = await createApp(loadConfig(testEnv(db.url, overrides)), { swaggerUi: false });
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    app,
    db,
    baseUrl,
    request: httpClient(baseUrl),
    async close() {
      await app.close();
      if (!existingDb) await db.drop();
    },
  };
}
