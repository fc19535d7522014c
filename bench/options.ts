/** Command-line flags of `npm run bench -- …` (see bench/README.md). */

export type Phase = 'http' | 'baseline' | 'hot' | 'queue' | 'roundtrips';
const PHASES: readonly Phase[] = ['http', 'baseline', 'hot', 'queue', 'roundtrips'];

export interface BenchOptions {
  quick: boolean;
  durationMs: number;
  warmupMs: number;
  concurrency: number[];
  phases: Set<Phase>;
  scale: boolean;
  wallets: number;
  scaleWallets: number;
  scaleEntriesPerWallet: number;
  messages: number;
  cpuProf: boolean;
  writeResults: boolean;
  /** The HTTP load uses a service key issued through POST /api/keys (looked up in the database) instead of SERVER_API_KEYS. */
  dbKey: boolean;
}

export const USAGE = `npm run bench -- [flags]

  --quick                 ~5 s per point, 1 s warm-up, 2,000 queue messages: checks that it all works
  --duration <s>          measured seconds per point (default 15; 5 with --quick)
  --warmup <s>            unmeasured seconds before each point (default 3; 1 with --quick)
  --concurrency <list>    in-flight cycles, e.g. 8,32 (default)
  --only <list>           http, baseline, hot, queue, roundtrips (comma-separated; default all)
  --scale                 also repeat the HTTP cycle with 1,000,000 wallets and 10,000,000 ledger rows
  --scale-wallets <n>     wallets in the --scale data set (default 1000000)
  --scale-entries <n>     ledger rows per generated wallet (default 10)
  --wallets <n>           wallets of the main data set (default 10000)
  --messages <n>          queue-drain messages (default 20000; 2000 with --quick)
  --cpu-prof              profile the service during the HTTP cycle at the top concurrency
  --no-write              print only; leave bench/RESULTS.md alone
  --db-key                the HTTP load authenticates with a key issued by POST /api/keys (a database record) instead of SERVER_API_KEYS
  --help
`;

function positiveInt(flag: string, raw: string | undefined): number {
  if (raw === undefined || !/^\d+$/.test(raw) || Number(raw) <= 0) throw new Error(`${flag} needs a positive integer, got "${raw ?? ''}"`);
  return Number(raw);
}

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const quick = argv.includes('--quick');
  const options: BenchOptions = {
    quick,
    durationMs: (quick ? 5 : 15) * 1000,
    warmupMs: (quick ? 1 : 3) * 1000,
    concurrency: [8, 32],
    phases: new Set(PHASES),
    scale: false,
    wallets: 10_000,
    scaleWallets: 1_000_000,
    scaleEntriesPerWallet: 10,
    messages: quick ? 2_000 : 20_000,
    cpuProf: false,
    writeResults: true,
    dbKey: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => argv[++i];
    switch (flag) {
      case '--quick':
        break;
      case '--db-key':
        options.dbKey = true;
        break;
      case '--help':
      case '-h':
        return 'help';
      case '--duration':
        options.durationMs = positiveInt(flag, value()) * 1000;
        break;
      case '--warmup': {
        const raw = value();
        if (raw === undefined || !/^\d+$/.test(raw)) throw new Error(`--warmup needs a whole number of seconds, got "${raw ?? ''}"`);
        options.warmupMs = Number(raw) * 1000;
        break;
      }
      case '--concurrency': {
        const raw = value() ?? '';
        options.concurrency = raw.split(',').map((c) => positiveInt(flag, c.trim()));
        break;
      }
      case '--only': {
        const names = (value() ?? '').split(',').map((p) => p.trim());
        const unknown = names.filter((p) => !PHASES.includes(p as Phase));
        if (names.length === 0 || unknown.length > 0)
          throw new Error(`--only takes ${PHASES.join('|')} (comma-separated), got "${names.join(',')}"`);
        options.phases = new Set(names as Phase[]);
        break;
      }
      case '--scale':
        options.scale = true;
        break;
      case '--scale-wallets':
        options.scaleWallets = positiveInt(flag, value());
        break;
      case '--scale-entries':
        options.scaleEntriesPerWallet = positiveInt(flag, value());
        break;
      case '--wallets':
        options.wallets = positiveInt(flag, value());
        break;
      case '--messages':
        options.messages = positiveInt(flag, value());
        break;
      case '--cpu-prof':
        options.cpuProf = true;
        break;
      case '--no-write':
        options.writeResults = false;
        break;
      default:
        throw new Error(`unknown flag ${flag}\n\n${USAGE}`);
    }
  }
  if (options.scale && options.scaleWallets <= options.wallets) throw new Error('--scale-wallets must exceed --wallets');
  if (options.wallets > 9_999_999 || options.scaleWallets > 9_999_999) throw new Error('at most 9,999,999 wallets');
  // The scale run repeats the HTTP cycle and is compared with it.
  if (options.scale) options.phases.add('http');
  return options;
}
