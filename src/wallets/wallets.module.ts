import { Module } from '@nestjs/common';
import { ReconciliationController } from './reconciliation.controller';
import { ReconciliationService } from './reconciliation.service';
import { WalletsController } from './wallets.controller';
import { WalletsService } from './wallets.service';

@Module({
  controllers: [WalletsController, ReconciliationController],
  providers: [WalletsService, ReconciliationService],
  exports: [WalletsService],
})
export class WalletsModule {}
