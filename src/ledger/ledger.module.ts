import { Module } from '@nestjs/common';
import { LedgerService } from './ledger.service';

/**
 * The owner of the money tables (`wallets`, `holds`, `ledger_entries`): every statement that
 * writes them is a named function of LedgerService. Services decide; the ledger writes.
 */
@Module({
  providers: [LedgerService],
  exports: [LedgerService],
})
export class LedgerModule {}
