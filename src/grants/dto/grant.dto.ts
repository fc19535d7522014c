import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, IsISO8601, IsString, Length, Max, Min } from 'class-validator';
import { IsMoney } from '../../common/money.validator';
import { ApiMoneyField } from '../../common/openapi';
import { PageQueryDto } from '../../common/pagination';
import { Optional } from '../../common/validation';
import { GRANT_STATUSES, type GrantKind, type GrantStatus } from '../grant.entity';

export class CreateGrantDto {
  @ApiMoneyField({ description: 'Credits granted; positive, not zero.', example: '50.000000' })
  @IsMoney({ nonZero: true })
  amount!: string | number;

  @ApiPropertyOptional({ enum: ['paid', 'promotional'], default: 'paid', example: 'promotional' })
  @Optional()
  @IsIn(['paid', 'promotional'])
  kind?: GrantKind;

  @ApiPropertyOptional({ type: 'integer', minimum: 0, maximum: 100, default: 50, description: 'Lower is drawn first.', example: 10 })
  @Optional()
  @IsInt()
  @Min(0)
  @Max(100)
  priority?: number;

  @ApiPropertyOptional({
    type: 'string',
    format: 'date-time',
    nullable: true,
    description: 'When what remains expires (in the future); null or absent: never.',
    example: '2027-01-01T00:00:00Z',
  })
  @Optional({ nullable: true })
  @IsISO8601({ strict: true })
  expires_at?: string | null;

  @ApiPropertyOptional({
    description: 'Makes the grant safe to repeat: the same key with the same body grants once (`already_applied`); with another body, 409.',
    minLength: 1,
    maxLength: 128,
    example: 'welcome-bonus-u1',
  })
  @Optional()
  @IsString()
  @Length(1, 128)
  idempotency_key?: string;

  @ApiPropertyOptional({ minLength: 1, maxLength: 500, example: 'welcome bonus' })
  @Optional()
  @IsString()
  @Length(1, 500)
  description?: string;
}

export class VoidGrantDto {
  @ApiProperty({ description: 'Why: kept on the grant and its ledger entry.', minLength: 1, maxLength: 500, example: 'granted by mistake' })
  @IsString()
  @Length(1, 500)
  reason!: string;
}

export class GrantsQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ enum: GRANT_STATUSES, description: 'Only grants in this status (every status when absent).' })
  @Optional()
  @IsIn(GRANT_STATUSES)
  status?: GrantStatus;
}
