import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApp } from '../../src/app.setup';
import { loadConfig } from '../../src/config/configuration';
import { createTestDatabase, TestDatabase } from './database';
import { ADMIN_KEY, ApiResponse, httpClient, RequestOptions, SERVICE_KEY } from './http';

export { ADMIN_KEY, httpClient, SERVICE_KEY };
export type { ApiResponse, RequestOptions };

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
    // A batch statement that fails must fail the test, not be retried one by one: the retry would
    // yield the right money and hide the bug in the batch SQL.
    BATCH_FALLBACK: 'fail',
    ...overrides,
  };
}

/** Starts the real app (same pipeline as production) on a throwaway database and a free port. */
export async function startTestApp(overrides: Record<string, string> = {}, existingDb?: TestDatabase): Promise<TestApp> {
  const db = existingDb ?? (await createTestDatabase());
  const app = await createApp(loadConfig(testEnv(db.url, overrides)), { swaggerUi: false, console: false });
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
