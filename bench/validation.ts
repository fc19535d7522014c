/**
 * Micro-benchmark of body validation on the hot routes: validated bodies per CPU-second for the fast
 * parser registered for each DTO (fastParseBody), the global pipe with its fast paths (what a
 * request pays), and the pipe with class-validator alone (what it paid before fast paths).
 *
 *   npm run build && node dist/bench/validation.js [--seconds 0.5] [--rounds 7]
 *
 * Run it at two commits, on the same machine, to compare two fast parsers: it measures whatever
 * parser the DTO module registers. Each figure is the median of `rounds` timed runs, the three paths
 * interleaved so that a slower moment of the machine hits them alike. Not a Jest test: timings in a
 * test suite would be flaky on a shared machine and prove nothing.
 */
import 'reflect-metadata';
import type { ArgumentMetadata } from '@nestjs/common';
import { createValidationPipe, fastParseBody } from '../src/common/validation';
import { EndMultiModelDto, EndSingleModelDto, StartProcessDto } from '../src/credits-process/dto/credits-process.dto';

type Cls = new () => object;

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
}

const SECONDS = option('seconds', 0.5);
const ROUNDS = option('rounds', 7);

const usage = (model: string) => ({ ai_model: model, input_tokens: 1200, output_tokens: 300, cached_input_tokens: 100 });
const target = { user_id: 'bench-u-0001234', feature_endpoint_id: 'bench_chat_v1', usage_key: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10' };

/** The bodies bench.ts sends, as JSON.parse gives them (each run parses a fresh copy: the pipe may change its input). */
const CASES: { name: string; cls: Cls; json: string }[] = [
  {
    name: '/start',
    cls: StartProcessDto,
    json: JSON.stringify({ user_id: target.user_id, feature_endpoint_id: target.feature_endpoint_id }),
  },
  { name: '/end-multimodel, 1 usage', cls: EndMultiModelDto, json: JSON.stringify({ ...target, usages: [usage('gpt-4o')] }) },
  {
    name: '/end-multimodel, 3 usages',
    cls: EndMultiModelDto,
    json: JSON.stringify({ ...target, usages: [usage('gpt-4o'), usage('gpt-4o-mini'), usage('claude-sonnet')] }),
  },
  { name: '/end', cls: EndSingleModelDto, json: JSON.stringify({ ...target, ...usage('gpt-4o') }) },
];

const fastPipe = createValidationPipe();
const classicPipe = createValidationPipe({ fastPaths: false });

type Path = (cls: Cls, body: object) => unknown;
const PATHS: Record<string, Path> = {
  'fast parser': (cls, body) => fastParseBody(cls, body),
  'pipe, fast paths on': (cls, body) => fastPipe.transform(body, meta(cls)),
  'pipe, class-validator only': (cls, body) => classicPipe.transform(body, meta(cls)),
};

const metas = new Map<Cls, ArgumentMetadata>();
function meta(cls: Cls): ArgumentMetadata {
  let m = metas.get(cls);
  if (!m) metas.set(cls, (m = { type: 'body', metatype: cls, data: undefined }));
  return m;
}

/**
 * Bodies per CPU-second for one path: batches of 200 fresh bodies, only the validation loop counted
 * (a fresh JSON.parse per body is needed, as the pipe may change its input, but is not counted).
 * CPU time, not wall time: on a shared machine (load 20 on 2 cores here) wall time mostly measures
 * the wait for a core.
 */
async function run(path: Path, cls: Cls, json: string): Promise<number> {
  const bodies: object[] = new Array<object>(200);
  let done = 0;
  let busy = 0;
  const cpu = () => {
    const { user, system } = process.cpuUsage();
    return user + system;
  };
  while (busy < SECONDS * 1e6) {
    for (let i = 0; i < bodies.length; i++) bodies[i] = JSON.parse(json) as object;
    const start = cpu();
    for (let i = 0; i < bodies.length; i++) {
      let out = path(cls, bodies[i]);
      if (out instanceof Promise) out = await out; // the parser alone is synchronous: no microtask for it
      if (out === undefined) throw new Error(`${cls.name}: the fast parser refused a valid body`);
    }
    busy += cpu() - start;
    done += bodies.length;
  }
  return (done * 1e6) / busy;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const rows: string[][] = [];
  for (const c of CASES) {
    const figures: Record<string, number[]> = {};
    for (const name of Object.keys(PATHS)) figures[name] = [];
    for (const name of Object.keys(PATHS)) await run(PATHS[name], c.cls, c.json); // warm-up: JIT, metadata caches
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, path] of Object.entries(PATHS)) figures[name].push(await run(path, c.cls, c.json));
    }
    const classic = median(figures['pipe, class-validator only']);
    for (const [name, values] of Object.entries(figures)) {
      const m = median(values);
      const spread = ((Math.max(...values) - Math.min(...values)) / m) * 100;
      rows.push([c.name, name, fmt(m), `±${spread.toFixed(0)} %`, `${(m / classic).toFixed(1)}×`]);
    }
  }
  const header = ['body', 'path', 'bodies per CPU-second (median)', 'spread', '÷ class-validator'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  const out = [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  process.stdout.write(`node ${process.version}, ${ROUNDS} rounds of ${SECONDS} CPU-s per figure\n${out.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
