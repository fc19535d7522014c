import { Body, Controller, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiProperty, ApiTags } from '@nestjs/swagger';
import { type Actor, CurrentActor } from '../audit/actor';
import { ADMIN_ROUTE_ERRORS, ApiErrors, ApiSuccess, BODY_ERRORS } from '../common/openapi';
import { PageQueryDto } from '../common/pagination';
import { CreateKeyDto, RotateKeyDto, SpendCapDto, UpdateKeyDto } from './dto/keys.dto';
import { KeysService } from './keys.service';

export class KeyResponseDoc {
  @ApiProperty({ format: 'uuid' })
  key_id!: string;
  @ApiProperty({ example: 'chat service' })
  name!: string;
  @ApiProperty({ enum: ['service', 'admin'] })
  scope!: string;
  @ApiProperty({ description: "The secret's first characters, to recognise it.", example: 'ck_s_Q2hhdF' })
  prefix!: string;
  @ApiProperty({ type: [String], description: 'Empty = every feature.' })
  allowed_features!: string[];
  @ApiProperty({ type: SpendCapDto, nullable: true })
  spend_cap!: SpendCapDto | null;
  @ApiProperty({ type: String, format: 'date-time', nullable: true })
  expires_at!: string | null;
  @ApiProperty({ type: String, format: 'date-time', nullable: true })
  revoked_at!: string | null;
  @ApiProperty({ format: 'date-time' })
  created_at!: string;
  @ApiProperty({ format: 'date-time' })
  updated_at!: string;
}

export class KeyWithSecretResponseDoc extends KeyResponseDoc {
  @ApiProperty({ description: 'The secret, shown in this answer only. Send it as x-server-api-key.' })
  key!: string;
}

export class KeyDetailResponseDoc extends KeyResponseDoc {
  @ApiProperty({ enum: ['day', 'month'], description: "The spend cap's period; `day` for a key without a cap.", example: 'day' })
  spend_period!: string;
  @ApiProperty({
    description:
      'What the key spent in the current UTC period: its settlements’ charges plus its live holds (what the cap is checked against).',
    example: '12.500000',
  })
  spent_this_period!: string;
  @ApiProperty({ format: 'date-time', description: 'When the current period ends (UTC midnight, or the first of next month).' })
  period_resets_at!: string;
}

const KEY_EXAMPLE: KeyResponseDoc = {
  key_id: '5d1c8a4e-3b2f-4c6d-9e7f-0a1b2c3d4e5f',
  name: 'chat service',
  scope: 'service',
  prefix: 'ck_s_Q2hhdF',
  allowed_features: ['ai_chat_v1'],
  spend_cap: { amount: '500.000000', period: 'day' },
  expires_at: null,
  revoked_at: null,
  created_at: '2026-12-02T10:00:00.000Z',
  updated_at: '2026-12-02T10:00:00.000Z',
};
const KEY_ID = ApiParam({ name: 'key_id', format: 'uuid' });

/** API keys as records (API.md §11). Admin scope only: a service key cannot raise its own limits. */
@ApiTags('keys')
@Controller('api/keys')
export class KeysController {
  constructor(private readonly keys: KeysService) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({ summary: 'Issue a key', description: 'Admin scope. The answer holds the secret; it is never shown again.' })
  @ApiSuccess({ status: 201, description: 'Issued.', type: KeyWithSecretResponseDoc, example: { ...KEY_EXAMPLE, key: 'ck_s_…' } })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS)
  create(@Body() dto: CreateKeyDto, @CurrentActor() actor: Actor) {
    return this.keys.create(dto, actor);
  }

  @Get()
  @ApiOperation({ summary: 'List keys', description: 'Admin scope. No secrets, only prefixes.' })
  @ApiSuccess({ description: 'A page of keys.', type: KeyResponseDoc, page: true, example: KEY_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error')
  list(@Query() query: PageQueryDto) {
    return this.keys.list(query.cursor, query.limit);
  }

  @Get(':key_id')
  @KEY_ID
  @ApiOperation({ summary: 'Read a key', description: 'Admin scope, with what it spent this period.' })
  @ApiSuccess({
    description: 'The key.',
    type: KeyDetailResponseDoc,
    example: { ...KEY_EXAMPLE, spend_period: 'day', spent_this_period: '12.500000', period_resets_at: '2026-12-03T00:00:00.000Z' },
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'key_not_found')
  get(@Param('key_id') keyId: string) {
    return this.keys.get(keyId);
  }

  @Patch(':key_id')
  @KEY_ID
  @ApiOperation({ summary: 'Change a key', description: 'Admin scope: name, allowed_features, spend_cap. Scope never changes.' })
  @ApiSuccess({ description: 'The key.', type: KeyResponseDoc, example: KEY_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'key_not_found', 'conflict')
  update(@Param('key_id') keyId: string, @Body() dto: UpdateKeyDto, @CurrentActor() actor: Actor) {
    return this.keys.update(keyId, dto, actor);
  }

  @Post(':key_id/revoke')
  @HttpCode(200)
  @KEY_ID
  @ApiOperation({
    summary: 'Revoke a key',
    description: 'Admin scope. 401 for it at once on this instance, within a second on the others.',
  })
  @ApiSuccess({
    description: 'The revoked key.',
    type: KeyResponseDoc,
    example: { ...KEY_EXAMPLE, revoked_at: '2026-12-02T11:00:00.000Z' },
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'key_not_found')
  revoke(@Param('key_id') keyId: string, @CurrentActor() actor: Actor) {
    return this.keys.revoke(keyId, actor);
  }

  @Post(':key_id/rotate')
  @HttpCode(200)
  @KEY_ID
  @ApiOperation({ summary: 'Rotate a key', description: 'Admin scope. A new secret; the old one works for grace_seconds more.' })
  @ApiSuccess({ description: 'The key with its new secret.', type: KeyWithSecretResponseDoc, example: { ...KEY_EXAMPLE, key: 'ck_s_…' } })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'key_not_found', 'conflict')
  rotate(@Param('key_id') keyId: string, @Body() dto: RotateKeyDto, @CurrentActor() actor: Actor) {
    return this.keys.rotate(keyId, dto, actor);
  }
}
