import { WalletsAndLedger1764000000000 } from './1764000000000-wallets-and-ledger';
import { FeaturesAndPricing1764000000001 } from './1764000000001-features-and-pricing';
import { HoldsAndSettlementFailures1764000000002 } from './1764000000002-holds-and-settlement-failures';
import { WideMoneyColumns1764000000003 } from './1764000000003-wide-money-columns';
import { SettlementFailureClaims1764000000004 } from './1764000000004-settlement-failure-claims';
import { ApiKeysAndAuditLog1764000000006 } from './1764000000006-api-keys-and-audit-log';
import { EventsOutbox1764000000008 } from './1764000000008-events-outbox';
import { PriceLock1764000000010 } from './1764000000010-price-lock';
import { ApiKeySpendCounters1764000000017 } from './1764000000017-api-key-spend-counters';
import { Grants1764000000018 } from './1764000000018-grants';
import { GrantEvents1764000000019 } from './1764000000019-grant-events';
import { HoldPriceSnapshot1764000000020 } from './1764000000020-hold-price-snapshot';

/** Every migration, oldest first (listed, not globbed: see database.options.ts). */
export const MIGRATIONS: (new () => object)[] = [
  WalletsAndLedger1764000000000,
  FeaturesAndPricing1764000000001,
  HoldsAndSettlementFailures1764000000002,
  WideMoneyColumns1764000000003,
  SettlementFailureClaims1764000000004,
  ApiKeysAndAuditLog1764000000006,
  EventsOutbox1764000000008,
  PriceLock1764000000010,
  ApiKeySpendCounters1764000000017,
  Grants1764000000018,
  GrantEvents1764000000019,
  HoldPriceSnapshot1764000000020,
];
