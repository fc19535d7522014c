import { Controller, Get, Param, Query } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { ApiOperation, ApiParam, ApiProperty, ApiTags } from '@nestjs/swagger';
import { DataSource, MoreThan } from 'typeorm';
import { ADMIN_ROUTE_ERRORS, ApiErrors, ApiSuccess } from '../common/openapi';
import { DEFAULT_PAGE_SIZE, PageQueryDto, toPage } from '../common/pagination';
import { Wallet } from '../wallets/wallet.entity';
import { walletNotFound } from '../wallets/wallets.errors';
import { isUuid } from '../wallets/wallets.service';
import { validationError } from '../common/domain-error';
import { Hold } from './hold.entity';

export class LiveHoldResponseDoc {
  @ApiProperty({ format: 'uuid', example: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10' })
  usage_key!: string;
  @ApiProperty({ example: 'ai_chat_v1' })
  feature_endpoint_id!: string;
  @ApiProperty({ description: 'Credits this hold keeps out of the available credits.', example: '10.000000' })
  hold_amount!: string;
  @ApiProperty({ description: 'Past expiry, waiting for the sweeper (it still counts in `held` until then).', example: false })
  expired!: boolean;
  @ApiProperty({ format: 'date-time' })
  created_at!: string;
  @ApiProperty({ format: 'date-time' })
  expires_at!: string;
}

const LIVE_HOLD_EXAMPLE: LiveHoldResponseDoc = {
  usage_key: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10',
  feature_endpoint_id: 'ai_chat_v1',
  hold_amount: '10.000000',
  expired: false,
  created_at: '2026-11-25T10:00:00.000Z',
  expires_at: '2026-11-25T10:15:00.000Z',
};

function liveHoldView(h: Hold): LiveHoldResponseDoc {
  return {
    usage_key: h.usageKey,
    feature_endpoint_id: h.featureEndpointId,
    hold_amount: h.amount.toString(),
    expired: h.expiresAt.getTime() <= Date.now(),
    created_at: h.createdAt.toISOString(),
    expires_at: h.expiresAt.toISOString(),
  };
}

/** A wallet's live holds (status held): what its `held` figure is made of. Reads only. */
@ApiTags('wallets')
@Controller('api/wallets')
export class HoldsController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Get(':user_id/holds')
  @ApiOperation({
    summary: "A wallet's live holds",
    description: 'Admin scope. Holds still counted in `held`, by usage_key; page with cursor/limit.',
  })
  @ApiParam({ name: 'user_id', description: "The wallet's user id.", example: 'u1' })
  @ApiSuccess({ description: 'A page of live holds.', type: LiveHoldResponseDoc, page: true, example: LIVE_HOLD_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error', 'wallet_not_found')
  async list(@Param('user_id') userId: string, @Query() query: PageQueryDto) {
    if (!(await this.dataSource.getRepository(Wallet).existsBy({ userId }))) throw walletNotFound(userId);
    if (query.cursor !== undefined && !isUuid(query.cursor)) throw validationError([{ field: 'cursor', message: 'is not a valid cursor' }]);
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const rows = await this.dataSource.getRepository(Hold).find({
      where: { userId, status: 'held', ...(query.cursor ? { usageKey: MoreThan(query.cursor.toLowerCase()) } : {}) },
      order: { usageKey: 'ASC' },
      take: limit + 1,
    });
    return toPage(rows, limit, (h) => h.usageKey, liveHoldView);
  }
}
