import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/**
 * The operator console's Content-Security-Policy: scripts, styles and data from this origin only —
 * no inline script, no eval, no frames; the page calls the API it is served by and nothing else.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Where `npm run build` puts the console: dist/console, beside dist/src/main.js. */
export function consoleRoot(entry = process.argv[1] ?? ''): string {
  return resolve(dirname(entry), '..', 'console');
}

/**
 * Serves the console (built from console/ by Vite) at /console: its hashed assets through
 * @fastify/static, and index.html for /console and every address under it, so a view's link
 * (/console/wallets/u1) opens that view. Loaded only when on: like the Swagger UI, @fastify/static
 * cannot be imported by Jest's ESM mode, so in-process tests turn the console off and the browser
 * test runs the service as a real process.
 */
export async function setupConsole(app: NestFastifyApplication, root = consoleRoot()): Promise<boolean> {
  const indexFile = join(root, 'index.html');
  if (!existsSync(indexFile)) return false;
  const index = readFileSync(indexFile, 'utf8');
  const fastify = app.getHttpAdapter().getInstance();
  const { default: fastifyStatic } = await import('@fastify/static');
  await app.register(fastifyStatic, {
    root: join(root, 'assets'),
    prefix: '/console/assets/',
    decorateReply: false,
    index: false,
    // Hashed file names: an asset never changes under its name.
    immutable: true,
    maxAge: '365d',
    setHeaders: (res) => void res.header('content-security-policy', CONSOLE_CSP),
  });
  const page = (_request: unknown, reply: { header(k: string, v: string): unknown; type(t: string): { send(b: string): unknown } }) => {
    reply.header('content-security-policy', CONSOLE_CSP);
    reply.header('cache-control', 'no-cache');
    return reply.type('text/html; charset=utf-8').send(index);
  };
  fastify.get('/console', page);
  fastify.get('/console/*', page);
  return true;
}
