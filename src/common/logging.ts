import { RequestMethod } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { Params } from 'nestjs-pino';
import type { AppConfig } from '../config/configuration';
import { API_KEY_HEADER } from './api-key.guard';
import { REQUEST_ID_HEADER } from './request-id';

/** Headers whose values never reach a log line. */
export const REDACTED_PATHS = [
  `req.headers["${API_KEY_HEADER}"]`,
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
];

/**
 * nestjs-pino settings: JSON lines (pretty only on an interactive terminal outside production),
 * `request_id` on every line about a request, secrets redacted.
 */
export function loggingParams(config: AppConfig): Params {
  const pretty = config.nodeEnv !== 'production' && process.stdout.isTTY === true;
  return {
    pinoHttp: {
      level: config.logLevel,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      genReqId: (req: IncomingMessage) => req.headers[REQUEST_ID_HEADER] as string,
      customAttributeKeys: { reqId: 'request_id' },
      // Binds `request_id` on the request's logger, so every line about the request carries it
      // (the `req` serializer below keeps only method and url).
      quietReqLogger: true,
      // Health probes and scrapes every few seconds would drown the useful lines.
      // Middie strips the matched path from req.url while the logger runs: the path is originalUrl.
      autoLogging: { ignore: (req: IncomingMessage & { originalUrl?: string }) => /^\/(health|metrics)/.test(req.originalUrl ?? req.url ?? '') },
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({ method: req.method, url: req.url }),
        res: (res: { statusCode: number }) => ({ status: res.statusCode }),
      },
      ...(pretty ? { transport: { target: 'pino-pretty', options: { singleLine: true } } } : {}),
    },
    // nestjs-pino's default route, '{/*splat}', is never matched by @fastify/middie under Nest 12:
    // the request logger never ran — no request line at any level, and no request_id on the lines
    // logged while serving a request. '*path' is matched by middie for every path.
    forRoutes: [{ path: '*path', method: RequestMethod.ALL }],
  };
}
