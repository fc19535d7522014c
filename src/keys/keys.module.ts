import { Global, Module } from '@nestjs/common';
import { KeysController } from './keys.controller';
import { KeysService } from './keys.service';

/** Global: the API-key guard (an app-wide guard) looks keys up through KeysService. */
@Global()
@Module({
  controllers: [KeysController],
  providers: [KeysService],
  exports: [KeysService],
})
export class KeysModule {}
