import { Controller, Get, Inject, Optional } from '@nestjs/common';
import { HealthCheck, HealthCheckService, HealthIndicatorFunction, TypeOrmHealthIndicator } from '@nestjs/terminus';
import { ApiOkResponse, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { Public } from '../common/api-key.guard';
import { ApiPublicOperation } from '../common/openapi';
import { BROKER_HEALTH } from './broker-health';
import type { BrokerHealth } from './broker-health';

const READY_EXAMPLE = {
  success: true,
  data: {
    status: 'ok',
    info: { database: { status: 'up' }, broker: { status: 'up' } },
    error: {},
    details: { database: { status: 'up' }, broker: { status: 'up' } },
  },
};

@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly db: TypeOrmHealthIndicator,
    @Optional() @Inject(BROKER_HEALTH) private readonly broker?: BrokerHealth,
  ) {}

  /** The process is up and serving HTTP. */
  @Get('live')
  @ApiPublicOperation('Liveness: the process serves HTTP', 'No key needed.')
  @ApiOkResponse({ description: 'Alive.', schema: { type: 'object' }, example: { success: true, data: { status: 'ok' } } })
  live() {
    return { status: 'ok' };
  }

  /** Ready for traffic: the database answers and, when RABBITMQ_URL is set, the broker is connected. */
  @Get('ready')
  @HealthCheck()
  @ApiPublicOperation('Readiness: the database (and the broker, when configured) answer', 'No key needed.')
  @ApiOkResponse({ description: 'Ready.', schema: { type: 'object' }, example: READY_EXAMPLE })
  @ApiServiceUnavailableResponse({
    description: 'A dependency is down (`data.status`: `unavailable`).',
    schema: { type: 'object' },
    example: { success: false, data: { status: 'unavailable', message: 'A dependency is down; retry shortly.' } },
  })
  ready() {
    const checks: HealthIndicatorFunction[] = [() => this.db.pingCheck('database', { timeout: 2000 })];
    const broker = this.broker;
    if (broker) checks.push(() => broker.check('broker'));
    return this.health.check(checks);
  }
}
