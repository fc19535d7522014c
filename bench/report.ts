import type { ProfileSummary } from './cpu-profile';
import type { QueueDrainResult } from './queue-drain';
import type { RoundTripRow } from './round-trips';
import type { WalletCheck } from './seed';
import type { CpuWindow } from './system';
import type { LoadResult } from './workload';

/** The figures of one run and their rendering as the Markdown of bench/RESULTS.md. */

export type PointKind = 'http' | 'baseline' | 'hot-http' | 'hot-baseline' | 'scale-http' | 'span-http';

export interface PointResult {
  kind: PointKind;
  concurrency: number;
  load: LoadResult;
  cpu?: CpuWindow;
  /** Highest VmRSS of the service sampled during the measured window. */
  serviceRssMiB: number;
  /** 1-minute load average when the point ended. */
  loadAverage: number;
}

export interface RunInfo {
  date: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  uptimeAtStart: string;
  uptimeAtEnd?: string;
  postgres: string;
  postgresSettings: string;
  node: string;
  commit: string;
  mode: string;
  serviceEnv: string;
}

export interface BenchResults {
  info: RunInfo;
  points: PointResult[];
  parity?: { checked: number; mismatches: string[] };
  exactK?: { wallet: string; room: number; attempts: number; accessible: number; refused: number; other: number; check: WalletCheck };
  hotCheck?: WalletCheck;
  queue?: QueueDrainResult & { cpu: CpuWindow; serviceRssMiB: number };
  reconciliation?: { wallets: number; mismatches: number };
  /** The same check on the generated --scale data set, before its runs. */
  scaleReconciliation?: { wallets: number; mismatches: number };
  scale?: { wallets: number; ledgerRows: number; seedSeconds: number };
  serviceHwmMiB?: number;
  profiles: (ProfileSummary & { label: string })[];
  roundTrips?: RoundTripRow[];
  failures: string[];
}

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const pct = (n: number) => `${(n * 100).toFixed(0)} %`;
const cores = (n: number | undefined) => (n === undefined ? '–' : n.toFixed(2));
const table = (head: string[], rows: (string | number)[][]) =>
  [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

export function find(results: BenchResults, kind: PointKind, concurrency: number): PointResult | undefined {
  return results.points.find((p) => p.kind === kind && p.concurrency === concurrency);
}

function ratio(a: PointResult | undefined, b: PointResult | undefined): number | undefined {
  return a && b && b.load.cyclesPerSecond > 0 ? a.load.cyclesPerSecond / b.load.cyclesPerSecond : undefined;
}

export interface TargetRow {
  target: string;
  figure: string;
  verdict: 'met' | 'missed' | 'not measured';
}

/** The targets of issue 10, each judged from this run's figures. */
export function targets(results: BenchResults, concurrency: number[]): TargetRow[] {
  const top = Math.max(...concurrency);
  const low = Math.min(...concurrency);
  const verdict = (ok: boolean | undefined): TargetRow['verdict'] => (ok === undefined ? 'not measured' : ok ? 'met' : 'missed');
  const rows: TargetRow[] = [];

  const http = ratio(find(results, 'http', top), find(results, 'baseline', top));
  rows.push({
    target: `HTTP cycle ≥ 0.5 × bare-SQL baseline at concurrency ${top}${top === 32 ? '' : ' (32 not run)'}`,
    figure: http === undefined ? '–' : `${f2(http)} ×`,
    verdict: verdict(http === undefined ? undefined : http >= 0.5),
  });

  const light = find(results, 'http', low);
  rows.push({
    target: `start p99 < 5 ms and end p99 < 8 ms at concurrency ${low}${low === 8 ? '' : ' (8 not run)'}`,
    figure: light ? `start ${f2(light.load.start.p99)} ms, end ${f2(light.load.end.p99)} ms` : '–',
    verdict: verdict(light ? light.load.start.p99 < 5 && light.load.end.p99 < 8 : undefined),
  });

  const hot = ratio(find(results, 'hot-http', top), find(results, 'hot-baseline', top));
  const exactK = results.exactK
    ? results.exactK.accessible === results.exactK.room && results.exactK.other === 0 && results.exactK.check.ok
    : undefined;
  rows.push({
    target: `hot wallet ≥ 0.5 × its baseline at concurrency ${top}, exactly-K holds, held = 0 and balance = Σ ledger after`,
    figure: `${hot === undefined ? '–' : `${f2(hot)} ×`}; exactly-K ${exactK === undefined ? '–' : exactK ? 'ok' : 'FAILED'}; wallet ${results.hotCheck ? (results.hotCheck.ok ? 'ok' : 'FAILED') : '–'}`,
    verdict: verdict(hot === undefined ? undefined : hot >= 0.5 && exactK !== false && results.hotCheck?.ok !== false),
  });

  const bestBaseline = results.points
    .filter((p) => p.kind === 'baseline')
    .sort((a, b) => b.load.cyclesPerSecond - a.load.cyclesPerSecond)[0];
  const q = results.queue;
  const queueRatio = q && bestBaseline ? q.settlementsPerSecond / bestBaseline.load.cyclesPerSecond : undefined;
  rows.push({
    target: 'queue drain ≥ 2 × the bare-SQL single-cycle rate (best baseline point)',
    figure: q
      ? `${f1(q.settlementsPerSecond)}/s${bestBaseline ? ` vs ${f1(bestBaseline.load.cyclesPerSecond)}/s (c=${bestBaseline.concurrency}) = ${f2(queueRatio!)} ×` : ''}`
      : '–',
    verdict: verdict(queueRatio === undefined ? undefined : queueRatio >= 2 && !q!.timedOut && q!.duplicates === 0),
  });

  rows.push({
    target: 'service peak RSS < 200 MB (VmHWM over the whole run)',
    figure: results.serviceHwmMiB === undefined ? '–' : `${f1(results.serviceHwmMiB)} MiB`,
    verdict: verdict(results.serviceHwmMiB === undefined ? undefined : results.serviceHwmMiB * 1.048576 < 200),
  });

  const scaleChanges = concurrency
    .map((c) => ({ c, r: ratio(find(results, 'scale-http', c), find(results, 'http', c)) }))
    .filter((x): x is { c: number; r: number } => x.r !== undefined);
  rows.push({
    target: '--scale: throughput within 20 % of the 10,000-wallet figure',
    figure: scaleChanges.length ? scaleChanges.map((x) => `c=${x.c}: ${x.r >= 1 ? '+' : ''}${f1((x.r - 1) * 100)} %`).join(', ') : '–',
    verdict: verdict(scaleChanges.length ? scaleChanges.every((x) => x.r >= 0.8) : undefined),
  });
  return rows;
}

const KIND_LABEL: Record<PointKind, string> = {
  http: 'HTTP cycle',
  baseline: 'bare-SQL baseline',
  'hot-http': 'HTTP cycle, hot wallet',
  'hot-baseline': 'bare-SQL baseline, hot wallet',
  'scale-http': 'HTTP cycle, --scale data',
  'span-http': 'HTTP cycle, each charge spans grants',
};

/**
 * CPU milliseconds per cycle: of the app (the service for HTTP points, the baseline's own client
 * process for baseline points) and of PostgreSQL. Steadier than cycles/s on a shared machine.
 */
function perCycle(p: PointResult): string {
  const rate = p.load.cyclesPerSecond;
  if (!p.cpu || rate <= 0) return '–';
  const app = p.kind.includes('baseline') ? p.load.cpuShare : p.cpu.service;
  return `${f2((app * 1000) / rate)} / ${f2((p.cpu.postgres * 1000) / rate)}`;
}

export function pointsTable(points: PointResult[]): string {
  return table(
    [
      'run',
      'conc.',
      'cycles/s',
      'start p50 / p99 ms',
      'end p50 / p99 ms',
      'errors',
      'load-gen CPU',
      'service CPU',
      'postgres CPU',
      'CPU ms per cycle: app / postgres',
      'machine busy',
      'load avg',
      'service RSS',
    ],
    points.map((p) => [
      KIND_LABEL[p.kind],
      p.concurrency,
      f1(p.load.cyclesPerSecond),
      `${f2(p.load.start.p50)} / ${f2(p.load.start.p99)}`,
      `${f2(p.load.end.p50)} / ${f2(p.load.end.p99)}`,
      Object.values(p.load.errors).reduce((a, b) => a + b, 0),
      cores(p.load.cpuShare),
      p.kind.includes('baseline') ? '(idle)' : cores(p.cpu?.service),
      cores(p.cpu?.postgres),
      perCycle(p),
      p.cpu ? pct(p.cpu.machine) : '–',
      f1(p.loadAverage),
      p.kind.includes('baseline') ? '–' : `${f1(p.serviceRssMiB)} MiB`,
    ]),
  );
}

export function ratioTable(results: BenchResults, concurrency: number[]): string {
  const rows: (string | number)[][] = [];
  for (const [service, baseline, label] of [
    ['http', 'baseline', 'random wallets'],
    ['hot-http', 'hot-baseline', 'one hot wallet'],
    ['span-http', 'baseline', 'charges spanning 2–3 grants'],
  ] as const) {
    for (const c of concurrency) {
      const s = find(results, service, c);
      const b = find(results, baseline, c);
      if (!s && !b) continue;
      const r = ratio(s, b);
      rows.push([
        label,
        c,
        s ? f1(s.load.cyclesPerSecond) : '–',
        b ? f1(b.load.cyclesPerSecond) : '–',
        r === undefined ? '–' : `**${f2(r)}**`,
      ]);
    }
  }
  return table(['wallets', 'conc.', 'service cycles/s', 'baseline cycles/s', 'service ÷ baseline'], rows);
}

export function renderMarkdown(results: BenchResults, concurrency: number[]): string {
  const { info } = results;
  const out: string[] = [];
  out.push('# Benchmark results', '');
  out.push('Written by `npm run bench` (bench/README.md says what each figure means). Figures from a shared 2-core');
  out.push('machine are noisy: compare ratios measured in the same run, and read the load and CPU columns first.', '');
  out.push(
    table(
      ['', ''],
      [
        ['date', info.date],
        ['machine', `${info.cores} cores (${info.cpuModel}), ${f1(info.memoryGiB)} GiB`],
        ['load at start (`uptime`)', `\`${info.uptimeAtStart}\``],
        ['load at end (`uptime`)', info.uptimeAtEnd ? `\`${info.uptimeAtEnd}\`` : '–'],
        ['PostgreSQL', `${info.postgres} (${info.postgresSettings})`],
        ['Node', info.node],
        ['commit', info.commit],
        ['mode', info.mode],
        ['service environment', info.serviceEnv],
      ],
    ),
    '',
  );
  if (results.failures.length) {
    out.push('## Failures', '', ...results.failures.map((f) => `- ${f.replace(/\n/g, ' ')}`), '');
  }
  out.push('## Targets (issue 10)', '');
  out.push(
    table(
      ['target', 'this run', 'verdict'],
      targets(results, concurrency).map((t) => [
        t.target,
        t.figure,
        t.verdict === 'met' ? 'met' : t.verdict === 'missed' ? '**missed**' : 'not measured',
      ]),
    ),
    '',
  );
  out.push('## Service ÷ bare-SQL baseline', '', ratioTable(results, concurrency), '');
  out.push('## Every point', '');
  out.push('CPU columns are cores\' worth over the measured window (1.00 = one core busy throughout); "postgres" adds up every');
  out.push('`postgres` process on the machine, other users\' included; "machine busy" is all cores, everyone included.', '');
  out.push(pointsTable(results.points), '');
  const errors = results.points.filter((p) => Object.keys(p.load.errors).length > 0);
  if (errors.length) {
    out.push('Errors:', '', ...errors.map((p) => `- ${KIND_LABEL[p.kind]} c=${p.concurrency}: ${JSON.stringify(p.load.errors)}`), '');
  }
  if (results.exactK || results.hotCheck) {
    out.push('## Hot wallet checks', '');
    if (results.exactK) {
      const k = results.exactK;
      out.push(
        `- exactly-K: ${k.attempts} parallel /start on \`${k.wallet}\` with room for ${k.room} holds → ${k.accessible} accessible, ${k.refused} refused (402), ${k.other} other; after cancelling: held ${k.check.held}, balance ${k.check.balance} = Σ ledger ${k.check.ledgerSum} → ${k.check.ok ? 'ok' : '**FAILED**'}`,
      );
    }
    if (results.hotCheck) {
      const h = results.hotCheck;
      out.push(
        `- \`${h.userId}\` after the hot-wallet runs: held ${h.held}, live holds ${h.liveHolds}, balance ${h.balance}, Σ ledger ${h.ledgerSum} → ${h.ok ? 'ok' : '**FAILED**'}`,
      );
    }
    out.push('');
  }
  if (results.queue) {
    const q = results.queue;
    out.push('## Queue drain', '');
    out.push(
      table(
        [
          'messages',
          'settled',
          'failed',
          'duplicates',
          'publish s',
          'drain s',
          'settlements/s',
          'service CPU',
          'postgres CPU',
          'CPU ms per settlement: service / postgres',
          'machine busy',
          'service RSS',
        ],
        [
          [
            q.messages,
            q.settled,
            q.failed,
            q.duplicates,
            f1(q.publishMs / 1000),
            f1(q.drainMs / 1000),
            f1(q.settlementsPerSecond),
            cores(q.cpu.service),
            cores(q.cpu.postgres),
            q.settlementsPerSecond > 0
              ? `${f2((q.cpu.service * 1000) / q.settlementsPerSecond)} / ${f2((q.cpu.postgres * 1000) / q.settlementsPerSecond)}`
              : '–',
            pct(q.cpu.machine),
            `${f1(q.serviceRssMiB)} MiB`,
          ],
        ],
      ),
      '',
    );
    if (q.timedOut) out.push('**Timed out**: no progress for 60 s.', '');
  }
  if (results.scale) {
    const s = results.scale;
    out.push('## Scale', '');
    out.push(
      `${s.wallets.toLocaleString('en-US')} wallets, ${s.ledgerRows.toLocaleString('en-US')} ledger rows (generated in SQL in ${f1(s.seedSeconds)} s).`,
      '',
    );
    const rows = concurrency.flatMap((c) => {
      const a = find(results, 'http', c);
      const b = find(results, 'scale-http', c);
      if (!a || !b) return [];
      return [
        [
          c,
          f1(a.load.cyclesPerSecond),
          f1(b.load.cyclesPerSecond),
          `${b.load.cyclesPerSecond >= a.load.cyclesPerSecond ? '+' : ''}${f1((b.load.cyclesPerSecond / a.load.cyclesPerSecond - 1) * 100)} %`,
        ],
      ];
    });
    out.push(table(['conc.', 'cycles/s (10,000 wallets)', 'cycles/s (scale)', 'change'], rows), '');
  }
  if (results.roundTrips) {
    out.push('## Round trips per request (counted on the wire)', '');
    out.push('Sequential requests through a counting proxy (a separate, idle service instance; not used for any timing).', '');
    out.push(
      table(
        ['request', 'round trips', 'statements', 'statements, in order (last sample)'],
        results.roundTrips.map((r) => [
          r.request,
          f1(r.roundTrips),
          f1(r.statements),
          r.sequence.map((q) => `\`${q.replace(/\|/g, '\\|')}\``).join('<br>'),
        ]),
      ),
      '',
    );
  }
  out.push('## Correctness checks', '');
  if (results.parity) {
    out.push(
      `- pricing parity: the baseline's SQL pricing matched the service's /api/pricing/quote on ${results.parity.checked - results.parity.mismatches.length} of ${results.parity.checked} random usage sets${results.parity.mismatches.length ? ` (**mismatches**: ${results.parity.mismatches.join('; ')})` : ''}`,
    );
  }
  if (results.reconciliation) {
    const r = results.reconciliation;
    out.push(
      `- reconciliation after all runs: ${r.wallets.toLocaleString('en-US')} wallets, balance = Σ ledger, held = Σ live holds, and balance = Σ grants − debt (less what the bare-SQL baseline charged, which draws no grant); mismatches: ${r.mismatches}${r.mismatches ? ' **FAILED**' : ''}`,
    );
  }
  if (results.scaleReconciliation) {
    const r = results.scaleReconciliation;
    out.push(
      `- reconciliation of the --scale data set: ${r.wallets.toLocaleString('en-US')} wallets; mismatches: ${r.mismatches}${r.mismatches ? ' **FAILED**' : ''}`,
    );
  }
  out.push('');
  for (const p of results.profiles) {
    out.push(`## Service CPU profile: ${p.label}`, '');
    out.push(
      `\`${p.file.slice(p.file.indexOf('bench/'))}\`: ${f1(p.totalMs / 1000)} s sampled, idle ${pct(p.idleShare)}. Shares are of the busy time; inclusive = share of samples with that place anywhere on the stack.`,
      '',
    );
    out.push(
      table(
        ['where', 'self', 'inclusive'],
        p.places.slice(0, 25).map((x) => [x.where, pct(x.selfShare), pct(x.inclusiveShare)]),
      ),
      '',
    );
    out.push(
      table(
        ['function', 'where', 'self ms', 'self'],
        p.functions.map((x) => [`\`${x.name}\``, x.where, f1(x.selfMs), `${(x.selfShare * 100).toFixed(1)} %`]),
      ),
      '',
    );
  }
  return out.join('\n');
}
