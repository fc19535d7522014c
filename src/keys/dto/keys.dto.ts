import { Optional } from '../../common/validation';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { ArrayMaxSize, IsArray, IsIn, IsInt, IsISO8601, IsString, Length, Max, Min, ValidateNested } from 'class-validator';
import { IsMoney } from '../../common/money.validator';
import { ApiMoneyField } from '../../common/openapi';
import type { KeyScope } from '../../common/api-key.guard';
import type { SpendCapPeriod } from '../api-key.entity';

export class SpendCapDto {
  @ApiMoneyField({ description: 'Credits the key may spend per period (settled charges plus live holds).', example: '500.000000' })
  @IsMoney()
  amount!: string;

  @ApiProperty({ enum: ['day', 'month'], description: 'A UTC calendar day or month.', example: 'day' })
  @IsIn(['day', 'month'])
  period!: SpendCapPeriod;
}

class KeyLimitsDto {
  @ApiPropertyOptional({
    description: 'Features this key may use; empty or absent = all.',
    type: [String],
    maxItems: 100,
    example: ['ai_chat_v1'],
  })
  @Optional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @Length(1, 128, { each: true })
  allowed_features?: string[];

  @ApiPropertyOptional({
    type: SpendCapDto,
    nullable: true,
    description: 'null = no cap.',
    example: { amount: '500.000000', period: 'day' },
  })
  @Optional({ nullable: true })
  @ValidateNested()
  @Type(() => SpendCapDto)
  spend_cap?: SpendCapDto | null;
}

export class CreateKeyDto extends KeyLimitsDto {
  @ApiProperty({ minLength: 1, maxLength: 128, example: 'chat service' })
  @IsString()
  @Length(1, 128)
  name!: string;

  @ApiProperty({ enum: ['service', 'admin'], example: 'service' })
  @IsIn(['service', 'admin'])
  scope!: KeyScope;

  @ApiPropertyOptional({ format: 'date-time', description: 'After this instant the key answers 401.', example: '2027-01-01T00:00:00Z' })
  @Optional()
  @IsISO8601({ strict: true })
  expires_at?: string;
}

export class UpdateKeyDto extends KeyLimitsDto {
  @ApiPropertyOptional({ minLength: 1, maxLength: 128, example: 'chat service' })
  @Optional()
  @IsString()
  @Length(1, 128)
  name?: string;
}

export class RotateKeyDto {
  @ApiPropertyOptional({
    type: 'integer',
    minimum: 0,
    maximum: 604800,
    default: 0,
    description: 'How long the old secret keeps working.',
    example: 3600,
  })
  @Optional()
  @IsInt()
  @Min(0)
  @Max(604800)
  grace_seconds?: number;
}
