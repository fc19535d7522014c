import { Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { ReconciliationController } from './reconciliation.controller';
import { ReconciliationService } from './reconciliation.service';
import { WalletsController } from './wallets.controller';
import { WalletsService } from './wallets.service';

@Module({
  imports: [LedgerModule],
  controllers: [WalletsController, ReconciliationController],
  providers: [WalletsService, ReconciliationService],
  exports: [WalletsService],
})
export class WalletsModule {}
