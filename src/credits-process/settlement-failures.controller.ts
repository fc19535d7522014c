import { type Actor, CurrentActor } from '../audit/actor';
import { Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { IsIn } from 'class-validator';
import { Optional } from '../common/validation';
import { ADMIN_ROUTE_ERRORS, ApiErrors, ApiSuccess } from '../common/openapi';
import { PageQueryDto } from '../common/pagination';
import {
  DISCARD_EXAMPLE,
  DiscardResponseDoc,
  REPLAY_EXAMPLE,
  ReplayResponseDoc,
  SETTLEMENT_FAILURE_EXAMPLE,
  SettlementFailureResponseDoc,
} from './dto/credits-process-responses.dto';
import type { SettlementFailureStatus } from './settlement-failure.entity';
import { QueueSettlementService } from './queue-settlement.service';
import { SettlementFailuresService } from './settlement-failures.service';

class FailuresQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ description: 'Only the failures in this state.', enum: ['pending', 'replayed', 'discarded'], example: 'pending' })
  @Optional()
  @IsIn(['pending', 'replayed', 'discarded'])
  status?: SettlementFailureStatus;
}

const FAILURE_ID = ApiParam({ name: 'id', description: 'The settlement failure id.', example: '7' });

@ApiTags('settlement-failures')
@Controller('api/settlement-failures')
export class SettlementFailuresController {
  constructor(
    private readonly failures: SettlementFailuresService,
    private readonly queueSettlement: QueueSettlementService,
  ) {}

  @Get()
  @ApiOperation({
    summary: 'List queued settlements that could not be applied',
    description: 'Admin scope. Each kept whole with its reason; oldest first.',
  })
  @ApiSuccess({
    description: 'A page of settlement failures.',
    type: SettlementFailureResponseDoc,
    page: true,
    example: SETTLEMENT_FAILURE_EXAMPLE,
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error')
  list(@Query() query: FailuresQueryDto) {
    return this.failures.list(query.status, query.cursor, query.limit);
  }

  /** Runs the stored message through the settlement again (e.g. after adding a missing price). */
  @Post(':id/replay')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Replay a settlement failure',
    description:
      'Admin scope. Runs the stored message through the settlement again (e.g. after adding the missing price). It charges at most once: the failure is claimed first (a concurrent replay or discard answers 409 conflict), and a direct charge without idempotency_key settles under its AMQP message_id, or else a key of the failure. On a failure it stays pending with the new reason.',
  })
  @FAILURE_ID
  @ApiSuccess({ description: 'Replayed: the settlement and the resolved failure.', type: ReplayResponseDoc, example: REPLAY_EXAMPLE })
  @ApiErrors(
    ...ADMIN_ROUTE_ERRORS,
    'settlement_failure_not_found',
    'conflict',
    // What the replayed settlement itself can answer:
    'validation_error',
    'usage_key_not_found',
    'feature_not_found',
    'wallet_not_found',
    'usage_key_mismatch',
    'unknown_model',
  )
  replay(@Param('id') id: string, @CurrentActor() actor: Actor) {
    return this.queueSettlement.replay(id, actor);
  }

  @Post(':id/discard')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Discard a settlement failure',
    description:
      'Admin scope. Marks it resolved without settling; it stays on record. Refused (409 conflict) while a replay holds it, or after a replay that stopped without an answer and may have charged: replay it again (it charges at most once).',
  })
  @FAILURE_ID
  @ApiSuccess({ description: 'Discarded.', type: DiscardResponseDoc, example: DISCARD_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'settlement_failure_not_found', 'conflict')
  discard(@Param('id') id: string, @CurrentActor() actor: Actor) {
    return this.queueSettlement.discard(id, actor);
  }
}
