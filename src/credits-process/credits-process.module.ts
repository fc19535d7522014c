import { Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { PricingModule } from '../pricing/pricing.module';
import { WalletsModule } from '../wallets/wallets.module';
import { CreditsProcessConsumer } from './credits-process.consumer';
import { CreditsProcessController } from './credits-process.controller';
import { CreditsProcessService } from './credits-process.service';
import { HoldSweeper } from './hold-sweeper';
import { HoldsController } from './holds.controller';
import { QueueSettlementService } from './queue-settlement.service';
import { SettlementFailuresController } from './settlement-failures.controller';
import { SettlementFailuresService } from './settlement-failures.service';

@Module({
  imports: [LedgerModule, WalletsModule, PricingModule],
  controllers: [CreditsProcessController, CreditsProcessConsumer, SettlementFailuresController, HoldsController],
  providers: [CreditsProcessService, HoldSweeper, QueueSettlementService, SettlementFailuresService],
  exports: [CreditsProcessService],
})
export class CreditsProcessModule {}
