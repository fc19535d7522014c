import { Controller, Get, Header } from '@nestjs/common';
import { ApiOkResponse, ApiProduces, ApiTags } from '@nestjs/swagger';
import { Public } from '../common/api-key.guard';
import { ApiPublicOperation } from '../common/openapi';
import { RawResponse } from '../common/response-envelope';
import { MetricsService } from './metrics.service';

@ApiTags('metrics')
@Public()
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get()
  @RawResponse()
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  @ApiPublicOperation(
    'Prometheus metrics',
    'No key needed; Prometheus text format, outside the `{success, data}` envelope. http_request_duration_seconds, ' +
      'credits_starts_total, credits_settlements_total, credits_charged_total, credits_active_holds, ' +
      'credits_settlement_failures_total, credits_queue_messages (with a broker) and the default process metrics.',
  )
  @ApiProduces('text/plain')
  @ApiOkResponse({ description: 'The metrics.', schema: { type: 'string' }, example: 'credits_active_holds 3\n' })
  scrape(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
