import { readFileSync } from 'node:fs';

/**
 * Reads a V8 .cpuprofile and says where the time went: self time per function, and per "where"
 * (a package under node_modules, a service source file, node internals, GC, idle) both as self
 * time and as inclusive time (the share of samples with that package anywhere on the stack).
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  where: string;
  selfMs: number;
  selfShare: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleShare: number;
  functions: ProfileRow[];
  places: { where: string; selfShare: number; inclusiveShare: number }[];
}

/** Where a frame's code lives, coarse enough to add up: `pkg:typeorm`, `src/credits-process/…`, `node`, `(gc)`. */
function whereOf(node: ProfileNode): string {
  const { url, functionName } = node.callFrame;
  if (!url) {
    if (functionName === '(garbage collector)') return '(gc)';
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(program)') return '(program)';
    if (functionName === '(root)') return '(root)';
    return '(native)';
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return `pkg:${rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const src = url.indexOf('/dist/src/');
  if (src >= 0) return `src/${url.slice(src + '/dist/src/'.length).replace(/\.js$/, '')}`;
  if (url.startsWith('node:')) return 'node';
  return url.replace(/^file:\/\//, '');
}

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

  const fnSelf = new Map<string, { name: string; where: string; us: number }>();
  const placeSelf = new Map<string, number>();
  const placeIncl = new Map<string, number>();
  let idleUs = 0;
  // Samples taken inside the profiler hook itself (stopping, serialising) are not the service's.
  const inHook = (id: number) => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      if (byId.get(cur)!.callFrame.url.includes('cpu-profile.hook')) return true;
    }
    return false;
  };
  for (const id of [...selfUs.keys()]) if (inHook(id)) selfUs.delete(id);
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const where = whereOf(node);
    if (where === '(idle)') idleUs += us;
    const name = `${node.callFrame.functionName || '(anonymous)'}${node.callFrame.url ? `:${node.callFrame.lineNumber + 1}` : ''}`;
    const key = `${where} ${name}`;
    const row = fnSelf.get(key) ?? { name, where, us: 0 };
    row.us += us;
    fnSelf.set(key, row);
    placeSelf.set(where, (placeSelf.get(where) ?? 0) + us);
    // Inclusive: each place on this sample's stack counts once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const w = whereOf(byId.get(cur)!);
      if (!seen.has(w)) {
        seen.add(w);
        placeIncl.set(w, (placeIncl.get(w) ?? 0) + us);
      }
    }
  }
  // Shares are of the busy (non-idle) time: what the CPU did while it worked.
  const busyUs = totalUs - idleUs || 1;
  return {
    file,
    totalMs: totalUs / 1000,
    idleShare: idleUs / totalUs,
    functions: [...fnSelf.values()]
      .filter((r) => r.where !== '(idle)')
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((r) => ({ name: r.name, where: r.where, selfMs: r.us / 1000, selfShare: r.us / busyUs })),
    places: [...placeIncl.keys()]
      .filter((w) => w !== '(idle)' && w !== '(root)' && w !== '(native)')
      .map((w) => ({ where: w, selfShare: (placeSelf.get(w) ?? 0) / busyUs, inclusiveShare: (placeIncl.get(w) ?? 0) / busyUs }))
      .filter((p) => p.selfShare >= 0.002 || p.inclusiveShare >= 0.01)
      .sort((a, b) => b.selfShare - a.selfShare),
  };
}
