import type { HealthIndicatorResult } from '@nestjs/terminus';

/** Provided by the queue module when RABBITMQ_URL is set; /health/ready then includes the broker. */
export const BROKER_HEALTH = Symbol('BROKER_HEALTH');

export interface BrokerHealth {
  check(key: string): Promise<HealthIndicatorResult>;
}
