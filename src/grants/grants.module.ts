import { Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { WalletsModule } from '../wallets/wallets.module';
import { GrantSweeper } from './grant-sweeper';
import { GrantsController } from './grants.controller';
import { GrantsService } from './grants.service';

/** Credit grants (API.md §8): routes and the expiry sweeper; the ledger moves their credits. */
@Module({
  imports: [LedgerModule, WalletsModule],
  controllers: [GrantsController],
  providers: [GrantsService, GrantSweeper],
})
export class GrantsModule {}
