import { Global, Injectable, Module, Provider } from '@nestjs/common';
import type { HealthIndicatorResult } from '@nestjs/terminus';
import type { AppConfig } from '../config/configuration';
import { BROKER_HEALTH, BrokerHealth } from '../health/broker-health';
import { MetricsService } from '../metrics/metrics.service';
import { RabbitSettlementServer } from './rabbit-settlement.server';
import { SETTLEMENT_QUEUES } from './queue.constants';

@Injectable()
class RabbitHealth implements BrokerHealth {
  constructor(private readonly server: RabbitSettlementServer) {}

  async check(key: string): Promise<HealthIndicatorResult> {
    return this.server.isConnected() ? { [key]: { status: 'up' } } : { [key]: { status: 'down', message: 'not connected to RabbitMQ' } };
  }
}

/**
 * Queue settlement infrastructure. With RABBITMQ_URL set it provides the transport strategy
 * (main/createApp connects it) and the broker's readiness check; without, neither exists and
 * settlement is HTTP-only.
 */
@Global()
@Module({})
export class QueueModule {
  static forRoot(config: AppConfig) {
    const providers: Provider[] = config.rabbitmqUrl
      ? [
          {
            provide: RabbitSettlementServer,
            inject: [MetricsService],
            useFactory: (metrics: MetricsService) => {
              const server = new RabbitSettlementServer({
                url: config.rabbitmqUrl!,
                queues: SETTLEMENT_QUEUES,
                prefetch: config.rabbitmqPrefetch,
                retryDelaysMs: config.rabbitmqRetryDelaysMs,
              });
              metrics.setSources({ queueDepth: () => server.queueDepths() });
              return server;
            },
          },
          RabbitHealth,
          { provide: BROKER_HEALTH, useExisting: RabbitHealth },
        ]
      : [];
    return { module: QueueModule, providers, exports: providers.length ? [RabbitSettlementServer, BROKER_HEALTH] : [] };
  }
}
