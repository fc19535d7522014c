import { SERVICE_KEY } from './http';
import type { ApiResponse, RequestOptions } from './http';

/**
 * A price table and feature catalogue for the load and fault suites, and the expected charge of
 * a usage computed independently from API.md §5 in bigint micro-units (never a float).
 */

type Request = (method: string, path: string, options?: RequestOptions) => Promise<ApiResponse>;

export const MULTI_QUEUE = 'credits_process_end_multimodel_queue';
export const LEGACY_QUEUE = 'credits_process_end_queue';
export const DEAD_LETTER_QUEUE = 'credits_process_dead_letter_queue';

interface ModelDef {
  input: string;
  output: string;
  cached?: string;
  margin?: string;
}
interface FeatureDef {
  min_holding_credits: string;
  margin?: string;
  fixed_cost?: string;
  hold_ttl_seconds?: number;
}

export const CREDITS_PER_USD = '100';
export const DEFAULT_MARGIN = '0.1';

export const MODELS: Record<string, ModelDef> = {
  'gpt-4o': { input: '2.5', output: '10', cached: '1.25' },
  'mini-x': { input: '0.15', output: '0.6', margin: '0.35' },
  'odd-7': { input: '0.333333', output: '1.777777' },
};

export const FEATURES: Record<string, FeatureDef> = {
  chat: { min_holding_credits: '5', margin: '0.2' },
  tool: { min_holding_credits: '1.5', fixed_cost: '0.01' },
  // A hold that lives one second: used where the sweepers must race settlements.
  flash: { min_holding_credits: '2', margin: '0.05', hold_ttl_seconds: 1 },
};

/** "12.5" → 12500000n. */
export function micros(text: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) throw new Error(`not a 6-decimal amount: ${text}`);
  const value = BigInt(m[2]) * 1_000_000n + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] ? -value : value;
}

/** 12500000n → "12.500000". */
export function formatMicros(value: bigint): string {
  const abs = value < 0n ? -value : value;
  return `${value < 0n ? '-' : ''}${abs / 1_000_000n}.${(abs % 1_000_000n).toString().padStart(6, '0')}`;
}

export interface UsageLine {
  ai_model: string;
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens?: number;
}

const E18 = 10n ** 18n;

/** credits_charged of API.md §5, in micro-credits: Σ exact per-usage credits + fixed cost, rounded half up once. */
export function expectedCharge(featureId: string, usages: UsageLine[]): bigint {
  const feature = FEATURES[featureId];
  let total = 0n; // 10^-24 credits
  for (const u of usages) {
    const model = MODELS[u.ai_model];
    const pin = micros(model.input);
    const pout = micros(model.output);
    const pcached = model.cached ? micros(model.cached) : pin;
    const margin = micros(feature.margin ?? model.margin ?? DEFAULT_MARGIN);
    const cached = BigInt(u.cached_input_tokens ?? 0);
    const n = (BigInt(u.input_tokens) - cached) * pin + cached * pcached + BigInt(u.output_tokens) * pout;
    total += n * (1_000_000n + margin) * micros(CREDITS_PER_USD);
  }
  const sum = total + micros(feature.fixed_cost ?? '0') * E18;
  return (sum * 2n + E18) / (E18 * 2n);
}

/** A small seeded PRNG (mulberry32): the load is random but the same on every run. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  const pick = <T>(items: readonly T[]): T => items[int(0, items.length - 1)];
  const shuffle = <T>(items: T[]): T[] => {
    for (let i = items.length - 1; i > 0; i--) {
      const j = int(0, i);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  };
  return { next, int, pick, shuffle, chance: (p: number) => next() < p };
}
export type Rng = ReturnType<typeof rng>;

/** 1–3 usages with token counts that exercise every price path (cached input, rounding). */
export function randomUsages(r: Rng, max = 3): UsageLine[] {
  return Array.from({ length: r.int(1, max) }, () => {
    const ai_model = r.pick(Object.keys(MODELS));
    const input_tokens = r.int(0, 250_000);
    const usage: UsageLine = { ai_model, input_tokens, output_tokens: r.int(0, 60_000) };
    if (r.chance(0.4)) usage.cached_input_tokens = r.int(0, input_tokens);
    return usage;
  });
}

async function ok(res: Promise<ApiResponse>, what: string): Promise<ApiResponse> {
  const r = await res;
  if (r.status >= 300) throw new Error(`${what} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r;
}

export async function createCatalog(request: Request): Promise<void> {
  await ok(
    request('PUT', '/api/pricing/settings', { body: { credits_per_usd: CREDITS_PER_USD, default_profit_margin: DEFAULT_MARGIN } }),
    'settings',
  );
  for (const [ai_model, m] of Object.entries(MODELS)) {
    await ok(
      request('POST', '/api/pricing/models', {
        body: {
          ai_model,
          input_price_per_million: m.input,
          output_price_per_million: m.output,
          cached_input_price_per_million: m.cached,
          profit_margin: m.margin,
        },
      }),
      `model ${ai_model}`,
    );
  }
  for (const [feature_endpoint_id, f] of Object.entries(FEATURES)) {
    await ok(
      request('POST', '/api/features', {
        body: {
          feature_endpoint_id,
          name: feature_endpoint_id,
          min_holding_credits: f.min_holding_credits,
          profit_margin: f.margin,
          fixed_cost: f.fixed_cost,
          hold_ttl_seconds: f.hold_ttl_seconds,
        },
      }),
      `feature ${feature_endpoint_id}`,
    );
  }
}

export async function createWallets(request: Request, prefix: string, count: number, initialCredits: string): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  await runPool(ids, 8, (user_id) =>
    ok(request('POST', '/api/wallets', { body: { user_id, initial_credits: initialCredits } }), `wallet ${user_id}`),
  );
  return ids;
}

/** Runs `work` over `items` with at most `concurrency` in flight; results in input order. */
export async function runPool<T, R>(items: readonly T[], concurrency: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await work(items[i], i);
      }
    }),
  );
  return results;
}

/** POST /start that must succeed; returns the usage key. */
export async function startHold(request: Request, user_id: string, feature_endpoint_id: string): Promise<string> {
  const r = await ok(
    request('POST', '/api/credits-process/start', { key: SERVICE_KEY, body: { user_id, feature_endpoint_id } }),
    `start ${user_id}/${feature_endpoint_id}`,
  );
  return r.body.data.usage_key as string;
}
