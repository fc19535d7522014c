import { Module } from '@nestjs/common';
import { EventRelay } from './event-relay';
import { EventsController, WebhooksController } from './webhooks.controller';
import { WebhooksService } from './webhooks.service';

/** Events out (API.md §10): the outbox's relay, webhooks and the outbox's listing. */
@Module({
  controllers: [WebhooksController, EventsController],
  providers: [WebhooksService, EventRelay],
  exports: [EventRelay],
})
export class EventsModule {}
