import { Body, Controller, Get, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { type Actor, CurrentActor } from '../audit/actor';
import { ADMIN_ROUTE_ERRORS, ApiErrors, ApiSuccess, BODY_ERRORS } from '../common/openapi';
import { CreateGrantDto, GrantsQueryDto, VoidGrantDto } from './dto/grant.dto';
import { GRANT_CHANGE_EXAMPLE, GRANT_EXAMPLE, GrantChangeResponseDoc, GrantResponseDoc } from './dto/grant-responses.dto';
import { GrantsService } from './grants.service';

const USER_ID = ApiParam({ name: 'user_id', description: "The wallet's user id.", example: 'u1' });
const GRANT_ID = ApiParam({ name: 'grant_id', format: 'uuid' });

/** Credit grants (API.md §8). Admin scope. Thin: GrantsService decides, the ledger writes. */
@ApiTags('grants')
@Controller('api/wallets/:user_id/grants')
export class GrantsController {
  constructor(private readonly grants: GrantsService) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({
    summary: 'Grant credits',
    description:
      "Admin scope. A paid or promotional grant with a priority and an optional expiry; it pays the wallet's debt first. " +
      'A repeated idempotency_key with the same body answers 200 `already_applied`; with another body 409.',
  })
  @USER_ID
  @ApiSuccess({
    status: 201,
    description: 'Granted (200 with `already_applied` for a repeat).',
    type: GrantChangeResponseDoc,
    example: GRANT_CHANGE_EXAMPLE,
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'wallet_not_found', 'conflict')
  async create(
    @Param('user_id') userId: string,
    @Body() dto: CreateGrantDto,
    @CurrentActor() actor: Actor,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const { created, answer } = await this.grants.create(userId, dto, actor);
    if (!created) reply.status(200);
    return answer;
  }

  @Get()
  @ApiOperation({
    summary: "The wallet's grants",
    description: 'Admin scope. In drawing order: active grants as they would be drawn, then the others, newest first.',
  })
  @USER_ID
  @ApiSuccess({ description: 'A page of grants.', type: GrantResponseDoc, page: true, example: GRANT_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error', 'wallet_not_found')
  list(@Param('user_id') userId: string, @Query() query: GrantsQueryDto) {
    return this.grants.list(userId, query);
  }

  @Post(':grant_id/void')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Void a grant',
    description: 'Admin scope. What remains leaves the balance (ledger kind grant_voided). Voiding again answers `already_voided`.',
  })
  @USER_ID
  @GRANT_ID
  @ApiSuccess({
    description: 'Voided (or already voided).',
    type: GrantChangeResponseDoc,
    example: {
      ...GRANT_CHANGE_EXAMPLE,
      status: 'voided',
      grant: { ...GRANT_EXAMPLE, remaining: '0.000000', voided: '50.000000', status: 'voided', void_reason: 'granted by mistake' },
      transaction: { ...GRANT_CHANGE_EXAMPLE.transaction, kind: 'grant_voided', amount: '-50.000000', balance_after: '100.000000' },
    },
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'wallet_not_found', 'grant_not_found', 'conflict')
  void(@Param('user_id') userId: string, @Param('grant_id') grantId: string, @Body() dto: VoidGrantDto, @CurrentActor() actor: Actor) {
    return this.grants.void(userId, grantId, dto.reason, actor);
  }
}
