import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { type Actor, CurrentActor } from '../audit/actor';
import { ADMIN_ROUTE_ERRORS, ApiErrors, ApiSuccess, BODY_ERRORS } from '../common/openapi';
import { PageQueryDto } from '../common/pagination';
import {
  CreateWebhookDto,
  DELIVERY_EXAMPLE,
  EVENT_EXAMPLE,
  EventResponseDoc,
  EventsQueryDto,
  RedeliverResponseDoc,
  UpdateWebhookDto,
  WEBHOOK_EXAMPLE,
  WebhookDeliveryResponseDoc,
  WebhookResponseDoc,
  WebhookWithSecretResponseDoc,
} from './dto/events.dto';
import { WebhooksService } from './webhooks.service';

const WEBHOOK_ID = ApiParam({ name: 'id', description: 'The webhook id.', format: 'uuid' });
const EVENT_ID = ApiParam({ name: 'id', description: 'The event id.', format: 'uuid' });

/** Webhooks (API.md §10). Admin scope. */
@ApiTags('events')
@Controller('api/webhooks')
export class WebhooksController {
  constructor(private readonly webhooks: WebhooksService) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({
    summary: 'Register a webhook',
    description: 'Admin scope. The answer holds the signing secret; it is never shown again.',
  })
  @ApiSuccess({
    status: 201,
    description: 'Registered.',
    type: WebhookWithSecretResponseDoc,
    example: { ...WEBHOOK_EXAMPLE, secret: 'whsec_…' },
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS)
  create(@Body() dto: CreateWebhookDto, @CurrentActor() actor: Actor) {
    return this.webhooks.create(dto, actor);
  }

  @Get()
  @ApiOperation({ summary: 'List webhooks', description: 'Admin scope. No secrets.' })
  @ApiSuccess({ description: 'A page of webhooks.', type: WebhookResponseDoc, page: true, example: WEBHOOK_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error')
  list(@Query() query: PageQueryDto) {
    return this.webhooks.list(query.cursor, query.limit);
  }

  @Get(':id')
  @WEBHOOK_ID
  @ApiOperation({ summary: 'Read a webhook', description: 'Admin scope. No secret.' })
  @ApiSuccess({ description: 'The webhook.', type: WebhookResponseDoc, example: WEBHOOK_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'webhook_not_found')
  get(@Param('id') id: string) {
    return this.webhooks.get(id);
  }

  @Patch(':id')
  @WEBHOOK_ID
  @ApiOperation({ summary: 'Change a webhook', description: 'Admin scope: url, events, active, description. The secret never changes.' })
  @ApiSuccess({ description: 'The webhook.', type: WebhookResponseDoc, example: { ...WEBHOOK_EXAMPLE, active: false } })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'webhook_not_found')
  update(@Param('id') id: string, @Body() dto: UpdateWebhookDto, @CurrentActor() actor: Actor) {
    return this.webhooks.update(id, dto, actor);
  }

  @Delete(':id')
  @WEBHOOK_ID
  @ApiOperation({ summary: 'Delete a webhook', description: 'Admin scope. Its pending deliveries and attempt history go with it.' })
  @ApiSuccess({ description: 'The deleted webhook.', type: WebhookResponseDoc, example: WEBHOOK_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'webhook_not_found')
  delete(@Param('id') id: string, @CurrentActor() actor: Actor) {
    return this.webhooks.delete(id, actor);
  }

  @Get(':id/deliveries')
  @WEBHOOK_ID
  @ApiOperation({ summary: "A webhook's delivery attempts", description: 'Admin scope. Every attempt, newest first.' })
  @ApiSuccess({ description: 'A page of attempts.', type: WebhookDeliveryResponseDoc, page: true, example: DELIVERY_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error', 'webhook_not_found')
  deliveries(@Param('id') id: string, @Query() query: PageQueryDto) {
    return this.webhooks.deliveries(id, query.cursor, query.limit);
  }
}

/** The outbox (API.md §10). Admin scope. */
@ApiTags('events')
@Controller('api/events')
export class EventsController {
  constructor(private readonly webhooks: WebhooksService) {}

  @Get()
  @ApiOperation({ summary: 'List events', description: 'Admin scope. The outbox, newest first; filter by type and user_id.' })
  @ApiSuccess({ description: 'A page of events.', type: EventResponseDoc, page: true, example: EVENT_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error')
  list(@Query() query: EventsQueryDto) {
    return this.webhooks.events(query);
  }

  @Get(':id')
  @EVENT_ID
  @ApiOperation({ summary: 'Read an event', description: 'Admin scope.' })
  @ApiSuccess({ description: 'The event.', type: EventResponseDoc, example: EVENT_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'event_not_found')
  get(@Param('id') id: string) {
    return this.webhooks.event(id);
  }

  @Post(':id/redeliver')
  @HttpCode(202)
  @EVENT_ID
  @ApiOperation({
    summary: 'Deliver an event again',
    description: 'Admin scope. To every matching active webhook and to the exchange, with a fresh retry budget.',
  })
  @ApiSuccess({
    status: 202,
    description: 'Queued.',
    type: RedeliverResponseDoc,
    example: { status: 'queued', event_id: EVENT_EXAMPLE.id, deliveries: 2 },
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'event_not_found')
  redeliver(@Param('id') id: string) {
    return this.webhooks.redeliver(id);
  }
}
