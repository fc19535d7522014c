import { Controller, Get, Query } from '@nestjs/common';
import { Optional } from '../common/validation';
import { ApiOperation, ApiProperty, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { IsIn, IsString, Length } from 'class-validator';
import { ADMIN_ROUTE_ERRORS, ApiErrors, ApiSuccess } from '../common/openapi';
import { PageQueryDto } from '../common/pagination';
import { AUDIT_ACTIONS, type AuditAction } from './audit-entry.entity';
import { AuditService } from './audit.service';

export class AuditQueryDto extends PageQueryDto {
  @ApiPropertyOptional({
    description: 'Only rows about this user id, feature, model, key id, failure id or usage key.',
    maxLength: 256,
    example: 'demo-user',
  })
  @Optional()
  @IsString()
  @Length(1, 256)
  target?: string;

  @ApiPropertyOptional({
    description: 'Only rows by this key_id, or `env` for the keys of SERVER_API_KEYS / ADMIN_API_KEYS.',
    example: 'env',
  })
  @Optional()
  @IsString()
  @Length(1, 64)
  actor?: string;

  @ApiPropertyOptional({ enum: AUDIT_ACTIONS, example: 'wallet.top_up' })
  @Optional()
  @IsIn(AUDIT_ACTIONS)
  action?: AuditAction;
}

class AuditActorDoc {
  @ApiProperty({ description: 'The key record that acted, or `env`.', example: 'env' })
  key_id!: string;
  @ApiProperty({ example: 'env key 3f2a9c41d0b7' })
  name!: string;
}

export class AuditEntryResponseDoc {
  @ApiProperty({ example: '42' })
  id!: string;
  @ApiProperty({ format: 'date-time' })
  at!: string;
  @ApiProperty({ type: AuditActorDoc })
  actor!: AuditActorDoc;
  @ApiProperty({ enum: AUDIT_ACTIONS })
  action!: AuditAction;
  @ApiProperty({ example: 'demo-user' })
  target!: string;
  @ApiProperty({ type: String, nullable: true })
  request_id!: string | null;
  @ApiProperty({ type: 'object', additionalProperties: true, description: 'What the write changed; secrets never appear.' })
  changes!: Record<string, unknown>;
}

const AUDIT_EXAMPLE: AuditEntryResponseDoc = {
  id: '42',
  at: '2026-12-02T10:00:00.000Z',
  actor: { key_id: 'env', name: 'env key 3f2a9c41d0b7' },
  action: 'wallet.top_up',
  target: 'demo-user',
  request_id: '0b7c6a7e-2f0e-4a59-9d0c-1f9e3c1b2a77',
  changes: { amount: '100.000000', transaction_id: '17' },
};

@ApiTags('audit')
@Controller('api/audit-log')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @ApiOperation({ summary: 'The audit log', description: 'Admin scope. Every admin write, newest first; filter by target, actor, action.' })
  @ApiSuccess({ description: 'A page of audit rows.', type: AuditEntryResponseDoc, page: true, example: AUDIT_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error')
  list(@Query() query: AuditQueryDto) {
    return this.audit.list(query);
  }
}
