import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppModule } from './app.module';
import { createLogger, logRequests } from './common/logging';
import { EnvelopeFastifyAdapter } from './common/response-envelope';
import { setupOpenApi } from './common/openapi';
import { setupConsole } from './common/console';
import { MetricsService } from './metrics/metrics.service';
import { RabbitSettlementServer } from './queue/rabbit-settlement.server';
import { clientErrorHandler, frameworkErrorResponse } from './common/http-exception.filter';
import { createValidationPipe } from './common/validation';
import { REQUEST_ID_HEADER, requestIdFor } from './common/request-id';
import { securityHeaders } from './common/security-headers';
import type { AppConfig } from './config/configuration';

/**
 * Builds the HTTP application exactly as production runs it; main.ts and the e2e tests both call
 * this, so tests exercise the real pipeline (guard, pipe, filter, envelope, request id).
 */
export interface CreateAppOptions {
  /**
   * Serve the Swagger UI at /docs (default). The e2e tests turn it off: its static assets are
   * loaded through @fastify/static, which Jest's ESM mode cannot import. /docs-json is always on.
   */
  swaggerUi?: boolean;
  /** Serve the operator console at /console (default; see src/common/console.ts). */
  console?: boolean;
}

export async function createApp(config: AppConfig, options: CreateAppOptions = {}): Promise<NestFastifyApplication> {
  const adapter = new EnvelopeFastifyAdapter({
    bodyLimit: config.bodyLimitBytes,
    genReqId: requestIdFor,
    // Fastify's own request logging is off: logRequests logs each request once.
    logger: false,
    // No Nest middleware: request logging runs as Fastify hooks. Without this Nest registers
    // @fastify/middie anyway, whose onRequest hook then runs on every request for nothing.
    skipMiddie: true,
    // Ids in paths are up to 128 characters (API.md §4–§6), percent-encoded up to 12 bytes each:
    // Fastify's default limit of 100 answered 414 for valid ids of 101–128 characters.
    routerOptions: { maxParamLength: 2048 },
    frameworkErrors: (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
      const { httpStatus, body } = frameworkErrorResponse(error);
      void reply.status(httpStatus).send(body);
    },
    clientErrorHandler,
  });
  // Bodies are JSON only (API.md §2). Nest's default parsers would also accept
  // application/x-www-form-urlencoded — a form post could then create wallets or holds with every
  // field a string — and Fastify's built-in text/plain parser hands a string to the validators.
  // With Nest's parsers off and text/plain removed, Fastify's own JSON parser (same body limit and
  // prototype-poisoning rules) is the only one: anything else is 415 unsupported_media_type.
  adapter.getInstance().removeContentTypeParser('text/plain');
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.register(config), adapter, {
    bufferLogs: true,
    // A failed start must print only main.ts's one-line reason (API.md §1): Nest would otherwise
    // flush the buffered boot logs and the error with its stack trace to stderr. The buffer is
    // flushed into pino below, once the app was built.
    autoFlushLogs: false,
    abortOnError: false,
    bodyParser: false,
  });
  const logger = createLogger(config);
  app.useLogger(logger);
  app.flushLogs();
  app.useGlobalPipes(createValidationPipe());
  const metrics = app.get(MetricsService);
  const fastify = app.getHttpAdapter().getInstance();
  // Per-request hooks are plain callbacks, not async functions: an async hook costs a promise
  // (and its async-context bookkeeping) on every request.
  const headers = securityHeaders();
  fastify.addHook('onRequest', (request, reply, done) => {
    reply.headers(headers);
    reply.header(REQUEST_ID_HEADER, request.id);
    done();
  });
  fastify.addHook('onResponse', (request, reply, done) => {
    metrics.httpDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    done();
  });
  logRequests(fastify, logger);
  setupOpenApi(app, options.swaggerUi ?? true);
  if ((options.console ?? true) && !(await setupConsole(app))) {
    logger.warn('the operator console is not built (dist/console is missing): run `npm run build`', 'Console');
  }
  if (config.usingDevKeys) {
    logger.warn(
      '!!! Using the DEV API KEYS (dev-server-key / dev-admin-key): anyone can call this service. Set SERVER_API_KEYS and ADMIN_API_KEYS. !!!',
      'Security',
    );
  }
  app.enableShutdownHooks();
  if (config.rabbitmqUrl) {
    app.connectMicroservice({ strategy: app.get(RabbitSettlementServer) }, { inheritAppConfig: true });
    // Returns at once: the consumer connects (and reconnects) in the background.
    await app.startAllMicroservices();
  } else {
    logger.log('RABBITMQ_URL is not set: queue settlement is off (settle over HTTP)', 'Queue');
  }
  return app;
}
