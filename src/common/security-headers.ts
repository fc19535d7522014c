import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet from 'helmet';

/**
 * helmet's security headers, computed once at start-up. With the options below helmet sets the
 * same fixed headers on every answer, whatever the request: running its middleware per request
 * (as @fastify/helmet does, rebuilding it each time) cost about 2 % of the service's CPU. helmet
 * itself still decides the header set and values; they are just captured instead of re-derived.
 *
 * The CSP is off: an API answers JSON, and the CSP would only get in the way of the Swagger UI.
 * Names are lower-cased, as Fastify stores reply headers.
 */
export function securityHeaders(): Readonly<Record<string, string>> {
  const headers: Record<string, string> = {};
  const capture = {
    setHeader(name: string, value: string) {
      headers[name.toLowerCase()] = value;
    },
    // X-Powered-By: Fastify never sets it.
    removeHeader() {},
  };
  let failure: unknown;
  helmet({ contentSecurityPolicy: false })({} as IncomingMessage, capture as unknown as ServerResponse, (error?: unknown) => {
    failure = error;
  });
  if (failure) throw failure;
  return Object.freeze(headers);
}
