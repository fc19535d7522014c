/**
 * The HTTP side of the test helpers, with no import of the app itself: suites that only talk to
 * a spawned service process (test/chaos) load this without compiling src/.
 */
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
