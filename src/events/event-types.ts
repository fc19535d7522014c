/** The event types of API.md §10, each with the shape of its `data` (all money as 6-decimal strings). */
export const EVENT_TYPES = [
  'wallet.low_balance',
  'wallet.depleted',
  'wallet.recovered',
  'grant.expiring',
  'grant.expired',
  'usage.refunded',
  'settlement_failure.recorded',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The RabbitMQ topic exchange every event is published to (routing key = type). */
export const EVENTS_EXCHANGE = 'credits.events';

/** The event as delivered: the webhook body and the RabbitMQ message body, no envelope. */
export interface CreditsEventBody {
  id: string;
  type: EventType;
  created_at: string;
  data: Record<string, unknown>;
}
