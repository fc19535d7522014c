import { DataSource, EntityManager } from 'typeorm';
import { formatScaled, toScaled } from '../common/decimal';
import { Money } from '../common/money';
import { Feature } from '../features/feature.entity';
import { AiModel, ModelPriceVersion } from '../pricing/ai-model.entity';
import { LedgerService } from '../ledger/ledger.service';
import { SYSTEM_ACTOR } from '../audit/actor';
import { AuditService } from '../audit/audit.service';
import { ApiKey } from '../keys/api-key.entity';
import { keyView, sha256 } from '../keys/keys.service';

/**
 * Demo data for a first run: a few real models, two features and a funded wallet, so the credits
 * flow can be tried with curl straight away (docs/demo.md). Loaded by the first start on a new
 * embedded database, by every start with SEED_DEMO=true, or by `npm run seed:demo`.
 *
 * Prices are the providers' public list prices in USD per million tokens as of 2025, for the demo
 * only: they change, and an operator sets their own through PATCH /api/pricing/models/:ai_model.
 */
export const DEMO_MODELS = [
  { aiModel: 'gpt-4o', input: '2.50', output: '10.00', cachedInput: '1.25' },
  { aiModel: 'gpt-4o-mini', input: '0.15', output: '0.60', cachedInput: '0.075' },
  { aiModel: 'claude-sonnet-4', input: '3.00', output: '15.00', cachedInput: '0.30' },
  { aiModel: 'gemini-2.5-flash', input: '0.30', output: '2.50', cachedInput: '0.075' },
] as const;

export const DEMO_FEATURES = [
  { featureEndpointId: 'ai_chat_v1', name: 'AI chat', minHoldingCredits: '5', profitMargin: '0.2', fixedCost: null, allowedPlans: [] },
  {
    featureEndpointId: 'image_gen_v1',
    name: 'Image generation',
    minHoldingCredits: '20',
    profitMargin: null,
    fixedCost: '2',
    allowedPlans: ['pro'],
  },
] as const;

/**
 * 950 paid credits plus a 50-credit promotional grant drawn first (priority 10) that expires 30
 * days after the seed (API.md §8): 1000 in all, and the first charge shows a draw from it.
 */
export const DEMO_WALLET = { userId: 'demo-user', plan: 'pro', initialCredits: '950' } as const;
export const DEMO_PROMO_GRANT = { amount: '50', priority: 10, days: 30, description: 'welcome bonus (demo)' } as const;

/**
 * The demo's scoped service key (API.md §11): ai_chat_v1 only, 200 credits per UTC day. Its
 * secret is FIXED and PUBLIC (docs/demo.md), like `dev-server-key`: it exists so a newcomer can
 * try a scoped key with curl, and it is never issued when NODE_ENV=production (the seed is called
 * with `demoKey: false` there). Because it is public it is not a secret: the log line still names
 * it by prefix only, as every key.
 */
export const DEMO_KEY = {
  keyId: '0de30000-0000-4000-8000-000000000001',
  name: 'demo chat service (dev only)',
  secret: 'ck_s_demo_chat_DEV_ONLY_not_a_secret',
  allowedFeatures: ['ai_chat_v1'],
  spendCap: { amount: '200', period: 'day' },
} as const;

export interface SeedOptions {
  /** Issue DEMO_KEY (never in production: its secret is public). */
  demoKey?: boolean;
}

/** One thing the seed created: `gpt-4o` (a model) with what it was created as. */
export interface SeededItem {
  kind: 'model' | 'feature' | 'wallet' | 'key';
  id: string;
  detail: string;
}

/** `model gpt-4o: 2.500000 in / …`: the CLI prints one such line per item. */
export const describeSeeded = (item: SeededItem): string => `${item.kind} ${item.id}: ${item.detail}`;

/** All items in one short phrase, for the server's single log line. */
export function summariseSeeded(items: readonly SeededItem[]): string {
  const ids = (kind: SeededItem['kind']) => items.filter((i) => i.kind === kind).map((i) => i.id);
  return (['model', 'feature', 'wallet', 'key'] as const)
    .map((kind) => [kind, ids(kind)] as const)
    .filter(([, list]) => list.length > 0)
    .map(([kind, list]) => `${list.length === 1 ? kind : `${kind}s`} ${list.join(', ')}`)
    .join('; ');
}

/**
 * Creates whatever demo data is missing and returns what it created (nothing on a second run).
 * Each insert is `ON CONFLICT DO NOTHING`, so two instances seeding at once, or a seed after an
 * operator already made `gpt-4o`, never fail and never overwrite anything.
 */
export async function seedDemo(dataSource: DataSource, options: SeedOptions = {}): Promise<SeededItem[]> {
  const created: SeededItem[] = [];

  for (const m of DEMO_MODELS) {
    const prices = {
      inputPricePerMillion: toScaled(m.input),
      outputPricePerMillion: toScaled(m.output),
      cachedInputPricePerMillion: toScaled(m.cachedInput),
      profitMargin: null,
    };
    // The same two rows PricingService.createModel writes: the current price and its version 1.
    const inserted = await dataSource.transaction(async (manager) => {
      if (!(await insertIfMissing(manager, AiModel, { aiModel: m.aiModel, version: 1, ...prices }))) return false;
      await manager.getRepository(ModelPriceVersion).insert({ aiModel: m.aiModel, version: 1, ...prices });
      return true;
    });
    if (inserted) {
      created.push({
        kind: 'model',
        id: m.aiModel,
        detail:
          `${formatScaled(prices.inputPricePerMillion)} in / ${formatScaled(prices.outputPricePerMillion)} out / ` +
          `${formatScaled(prices.cachedInputPricePerMillion)} cached input, USD per million tokens`,
      });
    }
  }

  for (const f of DEMO_FEATURES) {
    const inserted = await insertIfMissing(dataSource.manager, Feature, {
      featureEndpointId: f.featureEndpointId,
      name: f.name,
      minHoldingCredits: Money.parse(f.minHoldingCredits),
      holdTtlSeconds: null,
      profitMargin: f.profitMargin === null ? null : toScaled(f.profitMargin),
      fixedCost: f.fixedCost === null ? null : Money.parse(f.fixedCost),
      allowedPlans: [...f.allowedPlans],
      active: true,
    });
    if (inserted) {
      const extras = [
        f.profitMargin !== null && `profit margin ${f.profitMargin}`,
        f.fixedCost !== null && `fixed cost ${f.fixedCost}`,
        f.allowedPlans.length > 0 && `plans ${f.allowedPlans.join(', ')}`,
      ].filter(Boolean);
      created.push({
        kind: 'feature',
        id: f.featureEndpointId,
        detail: `holds ${f.minHoldingCredits} credits${extras.length ? `, ${extras.join(', ')}` : ''}`,
      });
    }
  }

  // As POST /api/wallets does: the wallet row and its 'initial' ledger entry in one transaction,
  // both written by the ledger (so balance = Σ ledger from the start).
  const ledger = new LedgerService(dataSource);
  const walletCreated = await dataSource.transaction(async (manager) => {
    const inserted = await ledger.createWallet(manager, { userId: DEMO_WALLET.userId, plan: DEMO_WALLET.plan, ifMissing: true });
    if (!inserted) return false;
    await ledger.post(manager, {
      userId: DEMO_WALLET.userId,
      kind: 'initial',
      amount: Money.parse(DEMO_WALLET.initialCredits),
      description: 'initial credits',
    });
    await ledger.createGrant(manager, {
      userId: DEMO_WALLET.userId,
      amount: Money.parse(DEMO_PROMO_GRANT.amount),
      kind: 'promotional',
      priority: DEMO_PROMO_GRANT.priority,
      expiresAt: new Date(Date.now() + DEMO_PROMO_GRANT.days * 86_400_000),
      idempotencyKey: null,
      requestHash: '',
      description: DEMO_PROMO_GRANT.description,
    });
    return true;
  });
  if (walletCreated) {
    created.push({
      kind: 'wallet',
      id: DEMO_WALLET.userId,
      detail:
        `plan ${DEMO_WALLET.plan}, ${DEMO_WALLET.initialCredits} paid credits + ${DEMO_PROMO_GRANT.amount} promotional ` +
        `(drawn first, expire in ${DEMO_PROMO_GRANT.days} days)`,
    });
  }

  if (options.demoKey && (await seedDemoKey(dataSource))) {
    created.push({
      kind: 'key',
      id: DEMO_KEY.keyId,
      detail: `service key ${DEMO_KEY.secret.slice(0, 12)}…, features ${DEMO_KEY.allowedFeatures.join(', ')}, cap ${DEMO_KEY.spendCap.amount} credits per ${DEMO_KEY.spendCap.period} (its public dev secret: docs/demo.md)`,
    });
  }

  return created;
}

/** The demo key and its audit row (actor `system`), in one transaction; false when it exists already. */
async function seedDemoKey(dataSource: DataSource): Promise<boolean> {
  return dataSource.transaction(async (manager) => {
    const inserted = await insertIfMissing(manager, ApiKey, {
      keyId: DEMO_KEY.keyId,
      name: DEMO_KEY.name,
      scope: 'service',
      prefix: DEMO_KEY.secret.slice(0, 12),
      secretHash: sha256(DEMO_KEY.secret),
      allowedFeatures: [...DEMO_KEY.allowedFeatures],
      spendCapAmount: Money.parse(DEMO_KEY.spendCap.amount),
      spendCapPeriod: DEMO_KEY.spendCap.period,
      expiresAt: null,
    });
    if (!inserted) return false;
    const key = await manager.getRepository(ApiKey).findOneByOrFail({ keyId: DEMO_KEY.keyId });
    await new AuditService(dataSource).append(manager, SYSTEM_ACTOR, 'key.create', DEMO_KEY.keyId, { ...keyView(key) });
    return true;
  });
}

/** INSERT … ON CONFLICT DO NOTHING RETURNING *: a row comes back only when it was new. */
async function insertIfMissing<T extends object>(manager: EntityManager, entity: new () => T, values: Partial<T>): Promise<boolean> {
  const result = await manager
    .createQueryBuilder()
    .insert()
    .into(entity)
    .values(values as never)
    .orIgnore()
    .returning('*')
    .execute();
  return (result.raw as unknown[]).length > 0;
}
