import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsArray, IsBoolean, IsIn, IsString, IsUrl, Length, MaxLength } from 'class-validator';
import { PageQueryDto } from '../../common/pagination';
import { Optional } from '../../common/validation';
import { EVENT_TYPES, type EventType } from '../event-types';

const EVENT_FILTER = [...EVENT_TYPES, '*'] as const;
const URL_RULE = { protocols: ['http', 'https'], require_protocol: true, require_tld: false, allow_underscores: true };

export class CreateWebhookDto {
  @ApiProperty({
    description: 'Where events are POSTed (http or https). In production it must not resolve to a private network.',
    maxLength: 2048,
    example: 'https://partner.example.com/credits/webhook',
  })
  @IsString()
  @MaxLength(2048)
  @IsUrl(URL_RULE, { message: 'url must be an http or https URL' })
  url!: string;

  @ApiProperty({
    description: 'Event types delivered to it, or ["*"] for all.',
    type: [String],
    enum: EVENT_FILTER,
    minItems: 1,
    maxItems: 8,
    example: ['wallet.low_balance', 'wallet.depleted'],
  })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(8)
  @ArrayUnique()
  @IsIn(EVENT_FILTER, { each: true })
  events!: (EventType | '*')[];

  @ApiPropertyOptional({ minLength: 1, maxLength: 500, example: 'top-up reminders' })
  @Optional()
  @IsString()
  @Length(1, 500)
  description?: string;
}

export class UpdateWebhookDto {
  @ApiPropertyOptional({ maxLength: 2048, example: 'https://partner.example.com/credits/webhook' })
  @Optional()
  @IsString()
  @MaxLength(2048)
  @IsUrl(URL_RULE, { message: 'url must be an http or https URL' })
  url?: string;

  @ApiPropertyOptional({ type: [String], enum: EVENT_FILTER, minItems: 1, maxItems: 8, example: ['*'] })
  @Optional()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(8)
  @ArrayUnique()
  @IsIn(EVENT_FILTER, { each: true })
  events?: (EventType | '*')[];

  @ApiPropertyOptional({ description: 'false pauses deliveries (they wait); true resumes them.', example: false })
  @Optional()
  @IsBoolean()
  active?: boolean;

  @ApiPropertyOptional({ minLength: 1, maxLength: 500, example: 'top-up reminders' })
  @Optional()
  @IsString()
  @Length(1, 500)
  description?: string;
}

export class EventsQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ enum: EVENT_TYPES, example: 'wallet.low_balance' })
  @Optional()
  @IsIn(EVENT_TYPES)
  type?: EventType;

  @ApiPropertyOptional({ minLength: 1, maxLength: 128, example: 'u1' })
  @Optional()
  @IsString()
  @Length(1, 128)
  user_id?: string;
}

export class WebhookResponseDoc {
  @ApiProperty({ format: 'uuid' })
  webhook_id!: string;
  @ApiProperty({ example: 'https://partner.example.com/credits/webhook' })
  url!: string;
  @ApiProperty({ type: [String], enum: EVENT_FILTER })
  events!: string[];
  @ApiProperty({ type: String, nullable: true })
  description!: string | null;
  @ApiProperty()
  active!: boolean;
  @ApiProperty({ format: 'date-time' })
  created_at!: string;
  @ApiProperty({ format: 'date-time' })
  updated_at!: string;
}

export class WebhookWithSecretResponseDoc extends WebhookResponseDoc {
  @ApiProperty({ description: 'The signing secret, shown in this answer only.', example: 'whsec_…' })
  secret!: string;
}

export class WebhookDeliveryResponseDoc {
  @ApiProperty({ example: '31' })
  id!: string;
  @ApiProperty({ format: 'uuid' })
  event_id!: string;
  @ApiProperty({ type: 'integer', example: 1 })
  attempt!: number;
  @ApiProperty({ type: 'integer', nullable: true, description: 'null when no answer came.', example: 200 })
  status_code!: number | null;
  @ApiProperty({ type: String, nullable: true, description: 'null on success.' })
  error!: string | null;
  @ApiProperty({ type: 'integer', example: 42 })
  duration_ms!: number;
  @ApiProperty({ format: 'date-time' })
  at!: string;
  @ApiProperty({ enum: ['delivered', 'retrying', 'failed'] })
  outcome!: 'delivered' | 'retrying' | 'failed';
  @ApiProperty({ type: String, format: 'date-time', nullable: true, description: 'When retrying: the next attempt.' })
  next_attempt_at!: string | null;
}

export class EventDeliveryCountsDoc {
  @ApiProperty({ type: 'integer' })
  pending!: number;
  @ApiProperty({ type: 'integer' })
  delivered!: number;
  @ApiProperty({ type: 'integer' })
  failed!: number;
}

export class EventResponseDoc {
  @ApiProperty({ format: 'uuid', description: 'The event id: deduplicate on it.' })
  id!: string;
  @ApiProperty({ enum: EVENT_TYPES })
  type!: EventType;
  @ApiProperty({ format: 'date-time' })
  created_at!: string;
  @ApiProperty({ type: 'object', additionalProperties: true, description: 'See API.md §10 for each type.' })
  data!: Record<string, unknown>;
  @ApiProperty({ type: String, nullable: true, description: "The wallet's user id (null for a settlement failure)." })
  user_id!: string | null;
  @ApiProperty({ type: EventDeliveryCountsDoc, description: 'Its deliveries (the exchange and each webhook) by state.' })
  deliveries!: EventDeliveryCountsDoc;
}

export class RedeliverResponseDoc {
  @ApiProperty({ enum: ['queued'] })
  status!: 'queued';
  @ApiProperty({ format: 'uuid' })
  event_id!: string;
  @ApiProperty({ type: 'integer', description: 'Deliveries queued: every matching active webhook, plus the exchange.' })
  deliveries!: number;
}

export const WEBHOOK_EXAMPLE: WebhookResponseDoc = {
  webhook_id: '0b7c8d2e-4f1a-4b3c-9d8e-7f6a5b4c3d2e',
  url: 'https://partner.example.com/credits/webhook',
  events: ['wallet.low_balance', 'wallet.depleted'],
  description: 'top-up reminders',
  active: true,
  created_at: '2026-12-02T10:00:00.000Z',
  updated_at: '2026-12-02T10:00:00.000Z',
};

export const EVENT_EXAMPLE: EventResponseDoc = {
  id: '3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b',
  type: 'wallet.low_balance',
  created_at: '2026-12-02T10:05:00.000Z',
  data: { user_id: 'u1', threshold: '10.000000', credits: '9.500000', balance: '9.500000' },
  user_id: 'u1',
  deliveries: { pending: 0, delivered: 2, failed: 0 },
};

export const DELIVERY_EXAMPLE: WebhookDeliveryResponseDoc = {
  id: '31',
  event_id: EVENT_EXAMPLE.id,
  attempt: 1,
  status_code: 200,
  error: null,
  duration_ms: 42,
  at: '2026-12-02T10:05:00.250Z',
  outcome: 'delivered',
  next_attempt_at: null,
};
