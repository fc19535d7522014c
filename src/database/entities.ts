/** Every TypeORM entity of the service (listed, not globbed: see database.options.ts). */
import { LedgerEntry } from '../wallets/ledger-entry.entity';
import { Wallet } from '../wallets/wallet.entity';

export const ENTITIES: Function[] = [Wallet, LedgerEntry];
