import { Body, Controller, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ServiceScope } from '../common/api-key.guard';
import { PageQueryDto } from '../common/pagination';
import { AdjustDto, CreateWalletDto, TopUpDto, TransactionsQueryDto, UpdateWalletDto } from './dto/wallet.dto';
import { WalletsService } from './wallets.service';

@Controller('api/wallets')
export class WalletsController {
  constructor(private readonly wallets: WalletsService) {}

  @Post()
  @HttpCode(201)
  create(@Body() dto: CreateWalletDto) {
    return this.wallets.create(dto);
  }

  @Get()
  list(@Query() query: PageQueryDto) {
    return this.wallets.list(query.cursor, query.limit);
  }

  @Get(':user_id')
  @ServiceScope()
  get(@Param('user_id') userId: string) {
    return this.wallets.get(userId);
  }

  @Patch(':user_id')
  update(@Param('user_id') userId: string, @Body() dto: UpdateWalletDto) {
    return this.wallets.update(userId, dto);
  }

  @Post(':user_id/top-up')
  @HttpCode(200)
  topUp(@Param('user_id') userId: string, @Body() dto: TopUpDto) {
    return this.wallets.topUp(userId, dto);
  }

  @Post(':user_id/adjust')
  @HttpCode(200)
  adjust(@Param('user_id') userId: string, @Body() dto: AdjustDto) {
    return this.wallets.adjust(userId, dto);
  }

  @Get(':user_id/transactions')
  transactions(@Param('user_id') userId: string, @Query() query: TransactionsQueryDto) {
    return this.wallets.transactions(userId, query);
  }
}
