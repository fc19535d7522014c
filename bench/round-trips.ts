import net from 'node:net';
import pg from 'pg';
import { baselineSettle, baselineStart } from './baseline-statements';
import { Cleanup, freePort, startService } from './environment';
import { cycleUsages, FEATURE, FEATURE_ID, SERVICE_KEY, walletId } from './workload';

/**
 * Round trips on the wire: a second, idle service instance (no broker, hold sweeper off) talks to
 * PostgreSQL through a counting proxy, and sequential requests show exactly which statements each
 * one sends and how many times it waits for the database. The same is done for the baseline's
 * statements. Counting in a proxy would distort throughput, so the measured runs never use it.
 */

interface WireEvent {
  kind: 'statement' | 'sync';
  sql?: string;
}

/** Follows the client→server half of the PostgreSQL protocol and records what it sends. */
class ClientStream {
  private pending: Buffer = Buffer.alloc(0);
  private startup = true;
  private readonly prepared = new Map<string, string>();

  constructor(private readonly events: WireEvent[]) {}

  feed(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let off = 0;
    for (;;) {
      const left = this.pending.length - off;
      if (this.startup) {
        if (left < 8) break;
        const len = this.pending.readInt32BE(off);
        if (left < len) break;
        // An SSLRequest (80877103) is followed by the real, also untyped, startup message.
        if (this.pending.readInt32BE(off + 4) !== 80877103) this.startup = false;
        off += len;
        continue;
      }
      if (left < 5) break;
      const type = String.fromCharCode(this.pending[off]);
      const len = this.pending.readInt32BE(off + 1);
      if (left < 1 + len) break;
      this.message(type, this.pending.subarray(off + 5, off + 1 + len));
      off += 1 + len;
    }
    this.pending = this.pending.subarray(off);
  }

  private message(type: string, body: Buffer): void {
    const cstrings = () => {
      const out: string[] = [];
      let start = 0;
      for (let i = 0; i < body.length && out.length < 3; i++) {
        if (body[i] === 0) {
          out.push(body.toString('utf8', start, i));
          start = i + 1;
        }
      }
      return out;
    };
    if (type === 'Q') {
      this.events.push({ kind: 'statement', sql: cstrings()[0] }, { kind: 'sync' });
    } else if (type === 'P') {
      const [name, sql] = cstrings();
      this.prepared.set(name, sql);
    } else if (type === 'B') {
      const [, statement] = cstrings();
      this.events.push({ kind: 'statement', sql: this.prepared.get(statement) ?? `(prepared ${statement})` });
    } else if (type === 'S') {
      this.events.push({ kind: 'sync' });
    }
  }
}

async function countingProxy(target: { host: string; port: number }, events: WireEvent[], cleanup: Cleanup): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    const stream = new ClientStream(events);
    client.on('data', (chunk: Buffer) => {
      stream.feed(chunk);
      upstream.write(chunk);
    });
    upstream.pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanup.add('stop the counting proxy', async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return port;
}

export interface RoundTripRow {
  request: string;
  roundTrips: number;
  statements: number;
  /** The statements of the last sample, abbreviated. */
  sequence: string[];
}

const abbreviate = (sql: string) => sql.replace(/\s+/g, ' ').trim().slice(0, 90);

function summarize(request: string, samples: WireEvent[][]): RoundTripRow {
  const avg = (f: (e: WireEvent) => boolean) => samples.reduce((n, s) => n + s.filter(f).length, 0) / samples.length;
  const last = samples[samples.length - 1];
  return {
    request,
    roundTrips: avg((e) => e.kind === 'sync'),
    statements: avg((e) => e.kind === 'statement'),
    sequence: last.filter((e) => e.kind === 'statement').map((e) => abbreviate(e.sql ?? '')),
  };
}

/** Measures the service's and the baseline's requests, `samples` sequential times each. */
export async function measureRoundTrips(databaseUrl: string, parent: Cleanup, samples = 20): Promise<RoundTripRow[]> {
  const cleanup = parent.child('round-trip probe');
  const events: WireEvent[] = [];
  try {
    const target = new URL(databaseUrl);
    const port = await countingProxy({ host: target.hostname, port: Number(target.port || 5432) }, events, cleanup);
    const proxied = new URL(databaseUrl);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(port);
    const service = await startService(
      { databaseUrl: proxied.toString(), cpuProfile: false, extraEnv: { HOLD_SWEEP_INTERVAL_MS: '0' } },
      cleanup,
    );
    const headers = { 'content-type': 'application/json', 'x-server-api-key': SERVICE_KEY };
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${service.origin}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
      const json = (await res.json()) as { data: { usage_key?: string; status?: string } };
      if (res.status !== 200) throw new Error(`round trips: ${path} answered ${res.status} ${JSON.stringify(json)}`);
      return json.data;
    };
    const take = () => events.splice(0, events.length);
    const collected: Record<string, WireEvent[][]> = { start: [], end: [], direct: [], bStart: [], bSettle: [] };
    // The first requests warm caches and connections; only later ones are kept.
    for (let i = 0; i < samples + 3; i++) {
      const userId = walletId(100 + i);
      take();
      const started = await post('/api/credits-process/start', { user_id: userId, feature_endpoint_id: FEATURE_ID });
      const start = take();
      await post('/api/credits-process/end-multimodel', {
        user_id: userId,
        usage_key: started.usage_key,
        feature_endpoint_id: FEATURE_ID,
        usages: cycleUsages(),
      });
      const end = take();
      await post('/api/credits-process/end-multimodel', {
        user_id: userId,
        feature_endpoint_id: FEATURE_ID,
        idempotency_key: `rt-${Date.now()}-${i}`,
        usages: cycleUsages(),
      });
      const direct = take();
      if (i >= 3) {
        collected.start.push(start);
        collected.end.push(end);
        collected.direct.push(direct);
      }
    }
    await service.stop();

    const client = new pg.Client({ connectionString: proxied.toString() });
    await client.connect();
    cleanup.add('close the round-trip client', () => client.end());
    for (let i = 0; i < samples; i++) {
      const userId = walletId(200 + i);
      take();
      const started = await baselineStart(client, userId, FEATURE_ID, FEATURE.hold_ttl_seconds);
      collected.bStart.push(take());
      await baselineSettle(client, userId, FEATURE_ID, started!.usageKey, cycleUsages());
      collected.bSettle.push(take());
    }
    return [
      summarize('service POST /start', collected.start),
      summarize('service POST /end-multimodel (usage_key)', collected.end),
      summarize('service POST /end-multimodel (direct, idempotency_key) — half the queue messages', collected.direct),
      summarize('baseline start', collected.bStart),
      summarize('baseline settle', collected.bSettle),
    ];
  } finally {
    await cleanup.run();
  }
}
