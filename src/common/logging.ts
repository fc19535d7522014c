import { AsyncLocalStorage } from 'node:async_hooks';
import type { LoggerService } from '@nestjs/common';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { pino, type DestinationStream, type Level, type Logger as Pino, type LoggerOptions } from 'pino';
import type { AppConfig } from '../config/configuration';
import { API_KEY_HEADER } from './api-key.guard';

/** Headers whose values never reach a log line (no line carries headers at all; this is the safety net). */
export const REDACTED_PATHS = [
  `req.headers["${API_KEY_HEADER}"]`,
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'req.headers["set-cookie"]',
];

/** The fields every line about one request carries: `request_id`, then what bindLogFields added. */
type RequestFields = Record<string, unknown>;

/**
 * The fields of the request being handled, for every line logged while handling it: the services
 * log through Nest's static Logger and know nothing of requests. One plain object per request,
 * which bindLogFields extends in place — no pino child logger is built per request, and the
 * fields are only read when a line is actually written (see `mixin` below).
 */
const requestFields = new AsyncLocalStorage<RequestFields>();
const NO_FIELDS: RequestFields = Object.freeze({});

/** Health probes and scrapes every few seconds would drown the useful lines. */
const UNLOGGED = /^\/(health|metrics)(\/|\?|$)/;

/**
 * The service's one pino logger, as a Nest LoggerService: JSON lines on stdout (pretty only on an
 * interactive terminal outside production; on `destination` in tests), at LOG_LEVEL, with
 * `request_id` and the bound fields on every line written while handling a request, secrets
 * redacted.
 */
export function createLogger(config: Pick<AppConfig, 'logLevel' | 'nodeEnv'>, destination?: DestinationStream): AppLogger {
  const options: LoggerOptions = {
    level: config.logLevel,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    mixin: () => requestFields.getStore() ?? NO_FIELDS,
    // The request's value wins over a line's own field of the same name, and each key appears
    // once: some log stores refuse a JSON line with a repeated key (Elasticsearch's strict
    // duplicate detection).
    mixinMergeStrategy: (line: object, fields: object) => (fields === NO_FIELDS ? line : { ...line, ...fields }),
  };
  if (destination) return new AppLogger(pino(options, destination));
  const pretty = config.nodeEnv !== 'production' && process.stdout.isTTY === true;
  return new AppLogger(pino(pretty ? { ...options, transport: { target: 'pino-pretty', options: { singleLine: true } } } : options));
}

/**
 * Nest's LoggerService over pino, for `new Logger(context)` everywhere in the service. Nest passes
 * the logger's context (a class name) as the last argument; an object first argument becomes the
 * line's fields, a string the message.
 */
export class AppLogger implements LoggerService {
  constructor(readonly pino: Pino) {}

  log(message: unknown, ...params: unknown[]): void {
    this.write('info', message, params);
  }
  error(message: unknown, ...params: unknown[]): void {
    this.write('error', message, params);
  }
  warn(message: unknown, ...params: unknown[]): void {
    this.write('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    this.write('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    this.write('trace', message, params);
  }
  fatal(message: unknown, ...params: unknown[]): void {
    this.write('fatal', message, params);
  }

  private write(level: Level, message: unknown, params: unknown[]): void {
    // Most calls are below the level in production: build nothing for them.
    if (!this.pino.isLevelEnabled(level)) return;
    const line: Record<string, unknown> = {};
    let rest = params;
    if (params.length > 0) {
      line.context = params[params.length - 1];
      rest = params.slice(0, -1);
    }
    const log = this.pino[level].bind(this.pino) as (obj: object, msg?: string, ...args: unknown[]) => void;
    if (typeof message === 'object' && message !== null) {
      if (message instanceof Error) line.err = message;
      else Object.assign(line, message);
      log(line, ...(rest as [string?, ...unknown[]]));
    } else if (
      level === 'error' &&
      typeof message === 'string' &&
      rest.length === 1 &&
      typeof rest[0] === 'string' &&
      /\n\s*at /.test(rest[0])
    ) {
      // Nest's own exception handlers call error(message, stack, context).
      const err = new Error(message);
      err.stack = rest[0];
      line.err = err;
      log(line);
    } else {
      log(line, String(message), ...rest);
    }
  }
}

/**
 * Request logging in one Fastify onRequest hook (no Nest middleware, no per-request child logger):
 * - it enters the request's fields for everything that runs for it: the rest of Fastify's
 *   lifecycle, Nest's guards, pipes, handler and filter (Fastify carries the context across the
 *   body's socket events itself). One `run` per request;
 * - at info, it writes the request's one closing line when the response closes: "request
 *   completed" (or "request errored" for a 5xx, "request aborted" when the client left first), with
 *   method, url, status, time and every field bound while handling it. The response's `close`
 *   rather than Fastify's onResponse, which never runs for a client that left. Health probes and
 *   scrapes are not logged.
 */
export function logRequests(fastify: FastifyInstance, logger: AppLogger): void {
  const log = logger.pino;
  fastify.addHook('onRequest', (request, reply, done) => {
    const fields: RequestFields = { request_id: request.id };
    if (log.isLevelEnabled('info') && !UNLOGGED.test(request.url)) {
      reply.raw.on('close', () => requestFields.run(fields, () => logClosed(log, request, reply, fields)));
    }
    requestFields.run(fields, done);
  });
}

/**
 * The closing line of a request, as pino-http wrote it. Written inside the request's own context:
 * the response's events may run in another one, whose fields the mixin would otherwise add.
 */
function logClosed(log: Pino, request: FastifyRequest, reply: FastifyReply, fields: RequestFields): void {
  const res = reply.raw;
  const line = {
    ...fields,
    req: { method: request.method, url: request.url },
    res: { status: res.headersSent ? res.statusCode : null },
    responseTime: Math.round(reply.elapsedTime),
  };
  if (res.statusCode >= 500) log.info({ ...line, err: new Error(`failed with status code ${res.statusCode}`) }, 'request errored');
  else log.info(line, res.writableEnded && !request.raw.readableAborted ? 'request completed' : 'request aborted');
}

/**
 * Binds fields to the current request's log lines (and its "request completed" line). Outside a
 * request there is nothing to bind to, and a log field must never fail the work it describes.
 */
export function bindLogFields(fields: Record<string, unknown>): void {
  const current = requestFields.getStore();
  if (current) Object.assign(current, fields);
}
