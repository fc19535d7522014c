import { Module } from '@nestjs/common';
import { EventRelay } from './event-relay';
import { GrantExpiryNotices } from './grant-expiry-notices';
import { EventsController, WebhooksController } from './webhooks.controller';
import { WebhooksService } from './webhooks.service';

/** Events out (API.md §10): the outbox's relay, webhooks, the outbox's listing and the grant.expiring sweep. */
@Module({
  controllers: [WebhooksController, EventsController],
  providers: [WebhooksService, EventRelay, GrantExpiryNotices],
  exports: [EventRelay, GrantExpiryNotices],
})
export class EventsModule {}
