import { ApiProperty } from '@nestjs/swagger';
import { DEPENDENCY_STATES } from '../../common/openapi';

/*
 * Documentation of the health answers. Written here rather than taken from @nestjs/terminus's
 * @HealthCheck(): terminus documents the bare check result (without the `{ success, data }`
 * envelope the service answers with), and only when it can `require()` @nestjs/swagger, which
 * depends on the runtime: the document, and so client/openapi.ts, would differ from one to another.
 */

export const LIVE_EXAMPLE = { status: 'ok' } satisfies LiveResponseDoc;

export class LiveResponseDoc {
  @ApiProperty({ enum: ['ok'], example: 'ok' })
  status!: 'ok';
}

const ALL_UP = { database: { status: 'up' }, broker: { status: 'up' } };

export const READY_EXAMPLE = { status: 'ok', info: ALL_UP, error: {}, details: ALL_UP } satisfies ReadyResponseDoc;

/** @nestjs/terminus's check result: `info` the indicators up, `error` those down, `details` all. */
export class ReadyResponseDoc {
  @ApiProperty({ enum: ['ok'], example: 'ok' })
  status!: 'ok';

  @ApiProperty({ ...DEPENDENCY_STATES, example: ALL_UP })
  info!: Record<string, { status: string }>;

  @ApiProperty({ ...DEPENDENCY_STATES, example: {} })
  error!: Record<string, { status: string }>;

  @ApiProperty({ ...DEPENDENCY_STATES, example: ALL_UP })
  details!: Record<string, { status: string }>;
}
