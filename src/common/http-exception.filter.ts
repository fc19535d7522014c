import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import type { Duplex } from 'node:stream';
import { Observable, throwError } from 'rxjs';
import { DomainError, ERROR_HTTP_STATUS, ErrorCode, HTTP_ONLY_ERRORS } from './domain-error';
import { isDatabaseUnavailable, isDeadlock } from './database-errors';

/**
 * Words for the HTTP errors Nest/Fastify raise themselves (unknown route, bad JSON, body too big…),
 * by their status: the HTTP-only words, or the domain word of the same meaning.
 */
const FRAMEWORK_WORDS = [
  'validation_error',
  'unauthorized',
  'forbidden',
  'not_found',
  'method_not_allowed',
  'conflict',
  'payload_too_large',
  'unsupported_media_type',
  'rate_limited',
  'unavailable',
] as const satisfies readonly ErrorCode[];
const STATUS_WORD = new Map<number, ErrorCode>(FRAMEWORK_WORDS.map((word) => [ERROR_HTTP_STATUS[word], word]));

export interface ErrorBody {
  success: false;
  data: { status: ErrorCode; message: string; [extra: string]: unknown };
}

/** Turns anything thrown into the contract's failure envelope; never an HTML page or a stack trace. */
export function toErrorResponse(error: unknown, logger: Logger): { httpStatus: number; body: ErrorBody } {
  if (error instanceof DomainError) {
    return {
      httpStatus: error.httpStatus,
      body: { success: false, data: { ...error.details, status: error.code, message: error.message } },
    };
  }
  if (error instanceof HttpException && error.getStatus() === 503) {
    // Readiness (terminus) says a dependency is down: keep 503 so load balancers and callers
    // retry, and say which one (`details`), instead of a generic 500.
    const response = error.getResponse() as { details?: unknown };
    return {
      httpStatus: 503,
      body: {
        success: false,
        data: {
          status: 'unavailable',
          message: 'A dependency of the service is unavailable; retry shortly.',
          ...(response?.details ? { details: response.details } : {}),
        },
      },
    };
  }
  if (error instanceof HttpException || isFastifyError(error)) {
    const httpStatus = error instanceof HttpException ? error.getStatus() : (error as { statusCode: number }).statusCode;
    const word = STATUS_WORD.get(httpStatus) ?? (httpStatus >= 500 ? 'internal_error' : 'validation_error');
    const message = httpMessage(error, httpStatus);
    const data: ErrorBody['data'] = { status: word, message };
    if (word === 'validation_error') data.errors = [{ field: 'body', message }];
    return { httpStatus: httpStatus >= 500 ? 500 : httpStatus, body: { success: false, data } };
  }
  if (isDeadlock(error)) {
    // Rolled back whole after the statement-level retries: nothing was written, retrying is safe.
    logger.warn({ err: error }, 'transaction kept losing deadlocks');
    return {
      httpStatus: ERROR_HTTP_STATUS.unavailable,
      body: {
        success: false,
        data: { status: 'unavailable', message: 'The request collided with concurrent work; nothing was written. Retry it.' },
      },
    };
  }
  if (isDatabaseUnavailable(error)) {
    logger.warn({ err: error }, 'database unavailable');
    return {
      httpStatus: ERROR_HTTP_STATUS.unavailable,
      body: {
        success: false,
        data: { status: 'unavailable', message: 'The database is unavailable; nothing was written. Retry shortly.' },
      },
    };
  }
  logger.error({ err: error }, 'unhandled error');
  return { httpStatus: 500, body: { success: false, data: { status: 'internal_error', message: 'An internal error occurred.' } } };
}

function isFastifyError(error: unknown): error is Error & { statusCode: number; code: string } {
  const e = error as { statusCode?: unknown; code?: unknown };
  return error instanceof Error && typeof e.statusCode === 'number' && typeof e.code === 'string' && e.code.startsWith('FST_');
}

function httpMessage(error: Error, httpStatus: number): string {
  switch (httpStatus) {
    case 404:
      return error instanceof HttpException ? `${error.message.replace(/^Cannot /, 'No route for ')}.` : 'Not found.';
    case 413:
      return 'The request body is too large.';
    case 415:
      return 'The request body must be JSON (content-type: application/json).';
    case 400:
      return `The request body is not valid JSON: ${error.message}`.slice(0, 300);
    default:
      return httpStatus >= 500 ? 'An internal error occurred.' : error.message;
  }
}

/**
 * Errors Fastify's router answers before any Nest layer runs (a malformed percent-encoding, a
 * path parameter over `maxParamLength`): the contract's envelope too, never Fastify's own body.
 */
export function frameworkErrorResponse(error: { code?: string }): { httpStatus: number; body: ErrorBody } {
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return {
      httpStatus: HTTP_ONLY_ERRORS.uri_too_long,
      body: { success: false, data: { status: 'uri_too_long', message: 'A path parameter of the URL is too long.' } },
    };
  }
  const message = 'The URL is not valid (malformed percent-encoding).';
  return { httpStatus: 400, body: { success: false, data: { status: 'validation_error', message, errors: [{ field: 'url', message }] } } };
}

/**
 * Node's HTTP parser refuses some requests before Fastify sees them (headers or URL over the
 * size limit, bytes that are not HTTP). Same answer as Fastify's default handler — status, then
 * close — but in the contract's envelope, so a partner doing `throw new Error(data.message)` works.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, data]: [number, string, ErrorBody['data']] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [
          HTTP_ONLY_ERRORS.headers_too_large,
          'Request Header Fields Too Large',
          { status: 'headers_too_large', message: 'The request headers (or the URL) are too large.' },
        ]
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [
            HTTP_ONLY_ERRORS.request_timeout,
            'Request Timeout',
            { status: 'request_timeout', message: 'The request took too long to arrive.' },
          ]
        : [
            400,
            'Bad Request',
            {
              status: 'validation_error',
              message: 'The request is not valid HTTP.',
              errors: [{ field: 'request', message: 'is not valid HTTP' }],
            },
          ];
  const text = JSON.stringify({ success: false, data });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  }
  socket.destroy(error);
}

@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('HttpExceptionFilter');

  catch(error: unknown, host: ArgumentsHost): void | Observable<never> {
    // Queue handlers: hand the original error back to the transport, which decides retry vs ack.
    if (host.getType() !== 'http') return throwError(() => error);
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const { httpStatus, body } = toErrorResponse(error, this.logger);
    void reply.status(httpStatus).send(body);
  }
}
