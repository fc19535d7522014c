import { FastifyAdapter, RouteConfig } from '@nestjs/platform-fastify';
import type { FastifyReply } from 'fastify';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Answered as is, outside the `{success, data}` envelope (see RawResponse). */
    rawResponse?: boolean;
  }
}

/** On a handler: its answer is sent as is, outside the `{success, data}` envelope (Prometheus text). */
export const RawResponse = () => RouteConfig({ rawResponse: true });

/**
 * The Fastify adapter, plus the contract's `{ success: true, data }` envelope around every
 * successful answer of a Nest handler (failures get theirs from HttpExceptionFilter).
 *
 * Nest hands each handler's result to the adapter's `reply()`; the exception filter and Fastify's
 * own error answers send directly. This used to be a global interceptor, but with any interceptor
 * at all Nest runs every request through an rxjs pipeline (defer, mergeAll, lastValueFrom, an
 * AsyncResource per request): about 5 % of the service's CPU on the hot routes, for one wrapper
 * object. Whether a route is raw is Fastify route config, read from the route being answered.
 */
export class EnvelopeFastifyAdapter extends FastifyAdapter {
  override reply(
    response: Parameters<FastifyAdapter['reply']>[0],
    body: unknown,
    statusCode?: number,
  ): ReturnType<FastifyAdapter['reply']> {
    const reply = response as FastifyReply;
    // An error status reaching here (Nest's fallback exception handler) already has its own body.
    const success = (statusCode ?? reply.statusCode) < 400;
    const raw = reply.request?.routeOptions.config.rawResponse === true;
    return super.reply(response, success && !raw ? { success: true, data: body } : body, statusCode);
  }
}
