import { Global, Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { KeysController } from './keys.controller';
import { KeysService } from './keys.service';

/** Global: the API-key guard (an app-wide guard) looks keys up through KeysService. */
@Global()
@Module({
  imports: [LedgerModule],
  controllers: [KeysController],
  providers: [KeysService],
  exports: [KeysService],
})
export class KeysModule {}
