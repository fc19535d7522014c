import type { IncomingMessage } from 'node:http';
import { RequestMethod } from '@nestjs/common';
import type { Params, PinoLogger } from 'nestjs-pino';
import type { AppConfig } from '../config/configuration';
import { API_KEY_HEADER } from './api-key.guard';
import { REQUEST_ID_HEADER } from './request-id';

/** Headers whose values never reach a log line. */
export const REDACTED_PATHS = [
  `req.headers["${API_KEY_HEADER}"]`,
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'req.headers["set-cookie"]',
];

/** Fields bound to a request's logger (request_id, and the settlement's ids) that a line may also name. */
const CORRELATION_FIELDS = ['request_id', 'user_id', 'usage_key', 'feature_endpoint_id'] as const;
const BOUND = Symbol('bound fields');

/**
 * pino writes a child logger's bindings and the line's own object side by side: a line naming
 * `user_id` on a request whose logger has `user_id` bound would repeat the key in its JSON, which
 * some log stores refuse (Elasticsearch's strict duplicate detection). The bound value wins.
 */
const dropRepeatedFields = {
  mixin: (line: object, _level: number, logger: { bindings(): Record<string, unknown> }): object =>
    CORRELATION_FIELDS.some((f) => f in line) ? { [BOUND]: logger.bindings() } : {},
  mixinMergeStrategy: (line: object, mixin: object): object => {
    const bound = (mixin as { [BOUND]?: Record<string, unknown> })[BOUND];
    if (!bound) return line;
    const kept: Record<string, unknown> = { ...line };
    for (const f of CORRELATION_FIELDS) if (f in bound) delete kept[f];
    return kept;
  },
};

/** The path the request was sent to: middie rewrites `req.url` while middleware runs. */
const requestPath = (req: IncomingMessage) => (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '';

/**
 * nestjs-pino settings: JSON lines (pretty only on an interactive terminal outside production),
 * `request_id` on every line about a request, secrets redacted.
 *
 * Settlement handlers add `user_id` / `usage_key` to the request's logger with
 * `PinoLogger.assign` (see CreditsProcessController); `assignResponse` makes them reach the
 * "request completed" line too.
 */
export function loggingParams(config: AppConfig): Params {
  const pretty = config.nodeEnv !== 'production' && process.stdout.isTTY === true;
  return {
    // nestjs-pino's default route, `{/*splat}`, reaches @fastify/middie (≥ 9.3) as `/{/*splat}`,
    // which matches only "/": the request logger then never ran and no line carried a request_id.
    // `{*splat}` becomes `/{*splat}`, which matches every path.
    forRoutes: [{ path: '{*splat}', method: RequestMethod.ALL }],
    assignResponse: true,
    pinoHttp: {
      level: config.logLevel,
      ...dropRepeatedFields,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      genReqId: (req: IncomingMessage) => req.headers[REQUEST_ID_HEADER] as string,
      // The request id alone is bound to every line logged while handling the request (under
      // `request_id`); the "request completed" line adds the method, url and status.
      quietReqLogger: true,
      customAttributeKeys: { reqId: 'request_id' },
      // Health probes and scrapes every few seconds would drown the useful lines.
      autoLogging: { ignore: (req: IncomingMessage) => /^\/(health|metrics)(\/|\?|$)/.test(requestPath(req)) },
      serializers: {
        // Method and path only: headers (keys, cookies) and bodies never reach a line.
        req: (req: { method: string; url: string }) => ({ method: req.method, url: req.url }),
        res: (res: { statusCode: number }) => ({ status: res.statusCode }),
      },
      ...(pretty ? { transport: { target: 'pino-pretty', options: { singleLine: true } } } : {}),
    },
  };
}

/**
 * Binds fields to the current request's log lines (and its "request completed" line). Outside a
 * request there is nothing to bind to, and a log field must never fail the work it describes.
 */
export function bindLogFields(logger: PinoLogger, fields: Record<string, unknown>): void {
  try {
    logger.assign(fields);
  } catch {
    /* not in a request's logging context */
  }
}
