import { Module } from '@nestjs/common';
import { PricingModule } from '../pricing/pricing.module';
import { WalletsModule } from '../wallets/wallets.module';
import { CreditsProcessController } from './credits-process.controller';
import { CreditsProcessService } from './credits-process.service';
import { HoldSweeper } from './hold-sweeper';

@Module({
  imports: [WalletsModule, PricingModule],
  controllers: [CreditsProcessController],
  providers: [CreditsProcessService, HoldSweeper],
  exports: [CreditsProcessService],
})
export class CreditsProcessModule {}
