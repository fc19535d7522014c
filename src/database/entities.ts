import { Hold } from '../credits-process/hold.entity';
import { SettlementFailure } from '../credits-process/settlement-failure.entity';
import { Feature } from '../features/feature.entity';
import { AiModel, ModelPriceVersion } from '../pricing/ai-model.entity';
import { PricingSettingsRow } from '../pricing/pricing-settings.entity';
import { LedgerEntry } from '../wallets/ledger-entry.entity';
import { Wallet } from '../wallets/wallet.entity';
import { ApiKey } from '../keys/api-key.entity';
import { AuditEntry } from '../audit/audit-entry.entity';
import { Grant } from '../grants/grant.entity';

/** Every TypeORM entity of the service (listed, not globbed: see database.options.ts). */
export const ENTITIES: (new () => object)[] = [
  Wallet,
  LedgerEntry,
  Feature,
  AiModel,
  ModelPriceVersion,
  PricingSettingsRow,
  Hold,
  SettlementFailure,
  ApiKey,
  AuditEntry,
  Grant,
];
