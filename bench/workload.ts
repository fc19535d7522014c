/**
 * What one benchmark cycle is made of, shared by the orchestrator and both load processes, so the
 * service and the bare-SQL baseline do exactly the same business work: the same wallets, feature,
 * price table and usages.
 */

export const SERVICE_KEY = 'bench-service-key-1';
export const ADMIN_KEY = 'bench-admin-key-1';

export const FEATURE_ID = 'bench_chat_v1';
/** Hold placed by every /start. Money is always a 6-decimal string. */
export const HOLD_AMOUNT = '1.000000';
export const INITIAL_CREDITS = '1000000.000000';
export const HOT_WALLET = 'bench-hot';
export const HOT_INITIAL_CREDITS = '1000000000.000000';
/** Wallet the pricing-parity check settles on (large charges: kept out of the load's wallets). */
export const PARITY_WALLET = 'bench-parity';
/** Wallet of the exactly-K check: room for K holds, then many more parallel starts. */
export const K_WALLET = 'bench-k';
export const K_HOLDS = 10;
/** = K_HOLDS × HOLD_AMOUNT. */
export const K_INITIAL_CREDITS = '10.000000';
export const K_ATTEMPTS = 64;

export const FEATURE = {
  feature_endpoint_id: FEATURE_ID,
  name: 'Benchmark chat',
  min_holding_credits: HOLD_AMOUNT,
  hold_ttl_seconds: 900,
  profit_margin: '0.25',
  fixed_cost: '0.010000',
  allowed_plans: [],
  active: true,
};

/** A small but realistic price table (USD per million tokens). Cycles use the first two. */
export const MODELS = [
  {
    ai_model: 'bench-gpt-large',
    input_price_per_million: '2.500000',
    output_price_per_million: '10.000000',
    cached_input_price_per_million: '1.250000',
  },
  { ai_model: 'bench-gpt-mini', input_price_per_million: '0.150000', output_price_per_million: '0.600000' },
  {
    ai_model: 'bench-claude-large',
    input_price_per_million: '3.000000',
    output_price_per_million: '15.000000',
    cached_input_price_per_million: '0.300000',
  },
  { ai_model: 'bench-claude-small', input_price_per_million: '0.800000', output_price_per_million: '4.000000', profit_margin: '0.1' },
  { ai_model: 'bench-embed', input_price_per_million: '0.020000', output_price_per_million: '0.000000' },
  { ai_model: 'bench-gemini', input_price_per_million: '1.250000', output_price_per_million: '5.000000' },
];
export const CYCLE_MODELS = [MODELS[0].ai_model, MODELS[1].ai_model] as const;

export interface Usage {
  ai_model: string;
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
}

const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

/** The two usages one cycle settles (token counts vary a little, as real traffic does). */
export function cycleUsages(): Usage[] {
  return CYCLE_MODELS.map((ai_model) => {
    const input = randomInt(500, 4000);
    return { ai_model, input_tokens: input, output_tokens: randomInt(50, 800), cached_input_tokens: randomInt(0, input >> 1) };
  });
}

/** `bench-u-0000042`: zero-padded so text order = numeric order (the ledger index is by user_id). */
export function walletId(n: number, prefix = 'bench-u-'): string {
  return `${prefix}${String(n).padStart(7, '0')}`;
}

/** Which wallets a load process uses: a random one of 1..count, or always the same one. */
/** `prefix`: another set of wallets than `bench-u-…` (the span wallets, `bench-span-…`). */
export type WalletChoice = { kind: 'random'; count: number; prefix?: string } | { kind: 'one'; userId: string };

export function walletPicker(choice: WalletChoice): () => string {
  if (choice.kind === 'one') return () => choice.userId;
  return () => walletId(1 + Math.floor(Math.random() * choice.count), choice.prefix);
}

/**
 * The span point's wallets: each holds SPAN_GRANTS small grants of about 40 % of a cycle's charge
 * (drawn first), then a large paid one, so nearly every charge draws from two or three grants.
 */
export const SPAN_WALLET_PREFIX = 'bench-span-';
export const SPAN_WALLETS = 2000;
export const SPAN_GRANTS = 20;

/** Options handed to a load process (HTTP load generator or SQL baseline) as argv[2] JSON. */
export interface LoadOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  wallets: WalletChoice;
}

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** What a load process reports back to the orchestrator. */
export interface LoadResult {
  cycles: number;
  measuredMs: number;
  cyclesPerSecond: number;
  /** Failed requests (by reason) during the measured window; a failed /start skips its /end. */
  errors: Record<string, number>;
  start: LatencySummary;
  end: LatencySummary;
  /** This process's CPU time over the measured wall time (1.0 = one core busy). */
  cpuShare: number;
}

/** Messages a load process sends over IPC. */
export type LoadMessage =
  { type: 'measuring' } | { type: 'measured' } | { type: 'result'; result: LoadResult } | { type: 'error'; message: string };

/** Latencies in milliseconds, kept in a growable typed array (no per-sample allocation). */
export class LatencyRecorder {
  private samples = new Float64Array(1 << 16);
  private n = 0;

  add(ms: number): void {
    if (this.n === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.n++] = ms;
  }

  summary(): LatencySummary {
    const sorted = this.samples.slice(0, this.n).sort();
    const at = (q: number) => (this.n === 0 ? 0 : sorted[Math.min(this.n - 1, Math.max(0, Math.ceil(q * this.n) - 1))]);
    let sum = 0;
    for (const v of sorted) sum += v;
    return {
      count: this.n,
      mean: this.n ? sum / this.n : 0,
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      max: this.n ? sorted[this.n - 1] : 0,
    };
  }
}

/**
 * The closed loop shared by both load processes: `concurrency` loops, each running cycles back to
 * back. Cycles completed between the end of warm-up and the deadline count; a cycle whose hold was
 * placed is always settled, even after the deadline, so no hold is left behind.
 */
export async function closedLoop(
  options: LoadOptions,
  send: (message: LoadMessage) => void,
  cycle: (userId: string, record: (which: 'start' | 'end', ms: number) => void, fail: (reason: string) => void) => Promise<void>,
): Promise<LoadResult> {
  const pick = walletPicker(options.wallets);
  const startLatency = new LatencyRecorder();
  const endLatency = new LatencyRecorder();
  const errors: Record<string, number> = {};
  let measuring = false;
  let stopped = false;
  let cycles = 0;
  let cpuAtStart = process.cpuUsage();
  let measureStart = 0;
  let measureEnd = 0;

  const warmup = setTimeout(() => {
    measuring = true;
    cpuAtStart = process.cpuUsage();
    measureStart = performance.now();
    send({ type: 'measuring' });
  }, options.warmupMs);
  const deadline = new Promise<void>((resolve) =>
    setTimeout(() => {
      stopped = true;
      measureEnd = performance.now();
      send({ type: 'measured' });
      resolve();
    }, options.warmupMs + options.durationMs),
  );
  let cpuAtEnd: NodeJS.CpuUsage | undefined;
  void deadline.then(() => (cpuAtEnd = process.cpuUsage(cpuAtStart)));

  // Throughput = cycles completed inside the window; latencies = requests completed inside it.
  const inWindow = () => measuring && !stopped;
  const loop = async () => {
    while (!stopped) {
      let failed = false;
      await cycle(
        pick(),
        (which, ms) => {
          if (inWindow()) (which === 'start' ? startLatency : endLatency).add(ms);
        },
        (reason) => {
          failed = true;
          if (inWindow()) errors[reason] = (errors[reason] ?? 0) + 1;
        },
      );
      if (!failed && inWindow()) cycles++;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, loop));
  clearTimeout(warmup);
  await deadline;
  const measuredMs = measureEnd - measureStart;
  const cpu = cpuAtEnd ?? process.cpuUsage(cpuAtStart);
  return {
    cycles,
    measuredMs,
    cyclesPerSecond: measuredMs > 0 ? (cycles * 1000) / measuredMs : 0,
    errors,
    start: startLatency.summary(),
    end: endLatency.summary(),
    cpuShare: measuredMs > 0 ? (cpu.user + cpu.system) / 1000 / measuredMs : 0,
  };
}

/** Boilerplate of a load process: read options, run, report over IPC, exit; die with the parent. */
export function runLoadProcess(main: (options: LoadOptions, send: (m: LoadMessage) => void) => Promise<LoadResult>): void {
  const send = (message: LoadMessage) => {
    if (process.send && process.connected) process.send(message);
  };
  // The orchestrator went away (crash, Ctrl-C): stop at once rather than load a machine alone.
  const orphaned = () => process.exit(2);
  process.on('disconnect', orphaned);
  const finish = () => {
    process.off('disconnect', orphaned);
    process.disconnect?.();
  };
  const options = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
  main(options, send)
    .then((result) => {
      send({ type: 'result', result });
      finish();
    })
    .catch((error: unknown) => {
      send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      process.exitCode = 1;
      finish();
    });
}
