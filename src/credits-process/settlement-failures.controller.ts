import { Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { IsIn, IsOptional } from 'class-validator';
import { PageQueryDto } from '../common/pagination';
import type { SettlementFailureStatus } from './settlement-failure.entity';
import { QueueSettlementService } from './queue-settlement.service';
import { SettlementFailuresService } from './settlement-failures.service';

class FailuresQueryDto extends PageQueryDto {
  @IsOptional()
  @IsIn(['pending', 'replayed', 'discarded'])
  status?: SettlementFailureStatus;
}

@Controller('api/settlement-failures')
export class SettlementFailuresController {
  constructor(
    private readonly failures: SettlementFailuresService,
    private readonly queueSettlement: QueueSettlementService,
  ) {}

  @Get()
  list(@Query() query: FailuresQueryDto) {
    return this.failures.list(query.status, query.cursor, query.limit);
  }

  /** Runs the stored message through the settlement again (e.g. after adding a missing price). */
  @Post(':id/replay')
  @HttpCode(200)
  replay(@Param('id') id: string) {
    return this.queueSettlement.replay(id);
  }

  @Post(':id/discard')
  @HttpCode(200)
  discard(@Param('id') id: string) {
    return this.queueSettlement.discard(id);
  }
}
