/** Every migration, oldest first (listed, not globbed: see database.options.ts). */
import { WalletsAndLedger1764000000000 } from './1764000000000-wallets-and-ledger';

export const MIGRATIONS: Function[] = [WalletsAndLedger1764000000000];
