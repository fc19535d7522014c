import { ApiProperty } from '@nestjs/swagger';
import { MONEY_ANSWER } from '../../common/openapi';

export const FEATURE_EXAMPLE = {
  feature_endpoint_id: 'ai_chat_v1',
  name: 'AI chat',
  min_holding_credits: '5.000000',
  hold_ttl_seconds: 900,
  hold_ttl_is_default: true,
  profit_margin: '0.200000',
  fixed_cost: null,
  allowed_plans: [],
  active: true,
  price_lock: false,
  created_at: '2026-11-25T10:00:00.000Z',
  updated_at: '2026-11-25T10:00:00.000Z',
} satisfies FeatureResponseDoc;

/** A feature as answered; featureView (features.views.ts) builds it, typed as this class. */
export class FeatureResponseDoc {
  @ApiProperty({ example: 'ai_chat_v1' })
  feature_endpoint_id!: string;

  @ApiProperty({ example: 'AI chat' })
  name!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '5.000000' })
  min_holding_credits!: string;

  @ApiProperty({
    description: 'The hold lifetime in effect (the service default when the feature sets none).',
    type: 'integer',
    example: 900,
  })
  hold_ttl_seconds!: number;

  @ApiProperty({ description: 'True when hold_ttl_seconds is the service default.', example: true })
  hold_ttl_is_default!: boolean;

  @ApiProperty({ ...MONEY_ANSWER, nullable: true, example: '0.200000' })
  profit_margin!: string | null;

  @ApiProperty({ ...MONEY_ANSWER, nullable: true, example: null })
  fixed_cost!: string | null;

  @ApiProperty({ description: 'Empty = every plan.', type: [String], example: [] })
  allowed_plans!: string[];

  @ApiProperty({ example: true })
  active!: boolean;

  @ApiProperty({ description: 'True: a hold settles at the prices in force when it was placed (API.md §13).', example: false })
  price_lock!: boolean;

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:00:00.000Z' })
  created_at!: string;

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:00:00.000Z' })
  updated_at!: string;
}
