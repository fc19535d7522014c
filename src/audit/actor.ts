import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Caller } from '../common/api-key.guard';

/** Who made an admin write, for its audit row: a key record, or a key from the environment. */
export interface Actor {
  /** The key record's id; null for SERVER_API_KEYS / ADMIN_API_KEYS. */
  keyId: string | null;
  name: string;
  requestId: string | null;
}

/** The actor of writes nobody requested (the demo seeder, a migration). */
export const SYSTEM_ACTOR: Actor = { keyId: null, name: 'system', requestId: null };

export function actorOf(request: FastifyRequest & { caller?: Caller }): Actor {
  const caller = request.caller;
  return { keyId: caller?.recordId ?? null, name: caller?.name ?? 'unknown', requestId: request.id ?? null };
}

/** The request's actor, as a controller parameter: `create(@Body() dto, @CurrentActor() actor: Actor)`. */
export const CurrentActor = createParamDecorator((_: unknown, context: ExecutionContext) => actorOf(context.switchToHttp().getRequest()));
