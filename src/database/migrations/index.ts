import { WalletsAndLedger1764000000000 } from './1764000000000-wallets-and-ledger';
import { FeaturesAndPricing1764000000001 } from './1764000000001-features-and-pricing';
import { HoldsAndSettlementFailures1764000000002 } from './1764000000002-holds-and-settlement-failures';
import { ApiKeysAndAuditLog1764000000006 } from './1764000000006-api-keys-and-audit-log';

/** Every migration, oldest first (listed, not globbed: see database.options.ts). */
export const MIGRATIONS: (new () => object)[] = [
  WalletsAndLedger1764000000000,
  FeaturesAndPricing1764000000001,
  HoldsAndSettlementFailures1764000000002,
  ApiKeysAndAuditLog1764000000006,
];
