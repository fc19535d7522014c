import { Controller, Get, Inject, Optional } from '@nestjs/common';
import { HealthCheck, HealthCheckService, HealthIndicatorFunction, TypeOrmHealthIndicator } from '@nestjs/terminus';
import { ApiServiceUnavailableResponse, ApiTags, getSchemaPath } from '@nestjs/swagger';
import { Public } from '../common/api-key.guard';
import { ApiPublicOperation, ApiSuccess, FailureEnvelopeDoc } from '../common/openapi';
import { LIVE_EXAMPLE, LiveResponseDoc, READY_EXAMPLE, ReadyResponseDoc } from './dto/health-responses.dto';
import { BROKER_HEALTH } from './broker-health';
import type { BrokerHealth } from './broker-health';

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
  @ApiSuccess({ description: 'Alive.', type: LiveResponseDoc, example: LIVE_EXAMPLE })
  live(): LiveResponseDoc {
    return { status: 'ok' };
  }

  /** Ready for traffic: the database answers and, when RABBITMQ_URL is set, the broker is connected. */
  @Get('ready')
  // Documented below, not by terminus (see health-responses.dto.ts); the answer is never cached.
  @HealthCheck({ noCache: true, swaggerDocumentation: false })
  @ApiPublicOperation('Readiness: the database (and the broker, when configured) answer', 'No key needed.')
  @ApiSuccess({ description: 'Ready.', type: ReadyResponseDoc, example: READY_EXAMPLE })
  @ApiServiceUnavailableResponse({
    description: 'A dependency is down (`data.status`: `unavailable`).',
    schema: { $ref: getSchemaPath(FailureEnvelopeDoc) },
    example: {
      success: false,
      data: {
        status: 'unavailable',
        message: 'A dependency of the service is unavailable; retry shortly.',
        details: { database: { status: 'up' }, broker: { status: 'down', message: 'not connected to RabbitMQ' } },
      },
    },
  })
  ready() {
    const checks: HealthIndicatorFunction[] = [() => this.db.pingCheck('database', { timeout: 2000 })];
    const broker = this.broker;
    if (broker) checks.push(() => broker.check('broker'));
    return this.health.check(checks);
  }
}
