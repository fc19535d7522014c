import { Body, Controller, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { type Actor, CurrentActor } from '../audit/actor';
import { ServiceScope } from '../common/api-key.guard';
import { ADMIN_ROUTE_ERRORS, API_ROUTE_ERRORS, ApiErrors, ApiSuccess, BODY_ERRORS } from '../common/openapi';
import { AdjustDto, CreateWalletDto, TopUpDto, TransactionsQueryDto, UpdateWalletDto, WalletsQueryDto } from './dto/wallet.dto';
import {
  LEDGER_ENTRY_EXAMPLE,
  LedgerEntryResponseDoc,
  WALLET_CHANGE_EXAMPLE,
  WALLET_EXAMPLE,
  WalletChangeResponseDoc,
  WalletCreatedResponseDoc,
  WalletResponseDoc,
} from './dto/wallet-responses.dto';
import { WalletsService } from './wallets.service';

const USER_ID = ApiParam({ name: 'user_id', description: "The wallet's user id.", example: 'u1' });

@ApiTags('wallets')
@Controller('api/wallets')
export class WalletsController {
  constructor(private readonly wallets: WalletsService) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({ summary: 'Create a wallet', description: 'Admin scope. initial_credits are written to the ledger as its first entry.' })
  @ApiSuccess({
    status: 201,
    description: 'Created.',
    type: WalletCreatedResponseDoc,
    example: { ...WALLET_EXAMPLE, grant_id: '3f0b6a52-5f5e-4c55-8f0e-8a1d2b3c4d5e' },
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'already_exists')
  create(@Body() dto: CreateWalletDto, @CurrentActor() actor: Actor) {
    return this.wallets.create(dto, actor);
  }

  @Get()
  @ApiOperation({
    summary: 'List wallets',
    description: 'Admin scope. Ordered by user_id; page with cursor/limit; `user_id_prefix` searches.',
  })
  @ApiSuccess({ description: 'A page of wallets.', type: WalletResponseDoc, page: true, example: WALLET_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error')
  list(@Query() query: WalletsQueryDto) {
    return this.wallets.list(query.cursor, query.limit, query.user_id_prefix);
  }

  @Get(':user_id')
  @ServiceScope()
  @ApiOperation({ summary: 'Read a wallet', description: 'Service scope: balance, held and available credits.' })
  @USER_ID
  @ApiSuccess({ description: 'The wallet.', type: WalletResponseDoc, example: WALLET_EXAMPLE })
  @ApiErrors(...API_ROUTE_ERRORS, 'wallet_not_found')
  get(@Param('user_id') userId: string) {
    return this.wallets.get(userId);
  }

  @Patch(':user_id')
  @ApiOperation({ summary: 'Change plan or status', description: 'Admin scope. A suspended wallet is refused by /start.' })
  @USER_ID
  @ApiSuccess({ description: 'The wallet after the change.', type: WalletResponseDoc, example: { ...WALLET_EXAMPLE, status: 'suspended' } })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'wallet_not_found')
  update(@Param('user_id') userId: string, @Body() dto: UpdateWalletDto, @CurrentActor() actor: Actor) {
    return this.wallets.update(userId, dto, actor);
  }

  @Post(':user_id/top-up')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Add credits',
    description: 'Admin scope. A repeated idempotency_key adds nothing and answers `already_applied`.',
  })
  @USER_ID
  @ApiSuccess({ description: 'Applied (or already applied).', type: WalletChangeResponseDoc, example: WALLET_CHANGE_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'wallet_not_found', 'conflict')
  topUp(@Param('user_id') userId: string, @Body() dto: TopUpDto, @CurrentActor() actor: Actor) {
    return this.wallets.topUp(userId, dto, actor);
  }

  @Post(':user_id/adjust')
  @HttpCode(200)
  @ApiOperation({ summary: 'Operator correction', description: 'Admin scope. A signed amount; the balance may go below zero.' })
  @USER_ID
  @ApiSuccess({
    description: 'Applied.',
    type: WalletChangeResponseDoc,
    example: {
      status: 'applied',
      transaction: {
        ...LEDGER_ENTRY_EXAMPLE,
        kind: 'adjustment',
        amount: '-2.500000',
        balance_after: '97.500000',
        usage_key: null,
        description: 'refund of a failed generation',
        metadata: { reason: 'refund of a failed generation' },
      },
      wallet: { ...WALLET_EXAMPLE, balance: '97.500000', credits: '92.500000' },
      grant_id: null,
      debt_paid: '0.000000',
    },
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'wallet_not_found')
  adjust(@Param('user_id') userId: string, @Body() dto: AdjustDto, @CurrentActor() actor: Actor) {
    return this.wallets.adjust(userId, dto, actor);
  }

  @Get(':user_id/transactions')
  @ApiOperation({
    summary: "The wallet's ledger",
    description: 'Admin scope. Newest first, each entry with balance_after; filter by usage_key.',
  })
  @USER_ID
  @ApiSuccess({ description: 'A page of ledger entries.', type: LedgerEntryResponseDoc, page: true, example: LEDGER_ENTRY_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error', 'wallet_not_found')
  transactions(@Param('user_id') userId: string, @Query() query: TransactionsQueryDto) {
    return this.wallets.transactions(userId, query);
  }
}
