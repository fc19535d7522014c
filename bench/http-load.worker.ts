/**
 * The HTTP load generator, run as its own process so its CPU does not count against the service:
 * a closed loop of POST /start then POST /end-multimodel over an undici keep-alive Pool with one
 * connection per in-flight loop. Bodies are built with JSON.stringify and answers parsed only as
 * far as the next request needs, to keep the generator itself cheap.
 */
import { Pool } from 'undici';
import { closedLoop, cycleUsages, FEATURE_ID, LoadOptions, runLoadProcess, SERVICE_KEY } from './workload';

interface HttpLoadOptions extends LoadOptions {
  origin: string;
  /** A key issued through the API (`--db-key`); the environment's service key otherwise. */
  apiKey?: string;
}

runLoadProcess(async (options, send) => {
  const { origin, apiKey } = options as HttpLoadOptions;
  const HEADERS = { 'content-type': 'application/json', 'x-server-api-key': apiKey ?? SERVICE_KEY };
  const pool = new Pool(origin, { connections: options.concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const post = async (path: string, body: string) => {
    const started = performance.now();
    const res = await pool.request({ method: 'POST', path, headers: HEADERS, body });
    const text = await res.body.text();
    return { status: res.statusCode, text, ms: performance.now() - started };
  };
  try {
    return await closedLoop(options, send, async (userId, record, fail) => {
      let usageKey: string;
      try {
        const start = await post('/api/credits-process/start', JSON.stringify({ user_id: userId, feature_endpoint_id: FEATURE_ID }));
        if (start.status !== 200) return fail(`start ${start.status} ${statusWord(start.text)}`);
        record('start', start.ms);
        usageKey = (JSON.parse(start.text) as { data: { usage_key: string } }).data.usage_key;
      } catch (error) {
        return fail(`start ${(error as Error).message}`);
      }
      try {
        const end = await post(
          '/api/credits-process/end-multimodel',
          JSON.stringify({ user_id: userId, usage_key: usageKey, feature_endpoint_id: FEATURE_ID, usages: cycleUsages() }),
        );
        if (end.status !== 200) return fail(`end ${end.status} ${statusWord(end.text)}`);
        record('end', end.ms);
      } catch (error) {
        return fail(`end ${(error as Error).message}`);
      }
    });
  } finally {
    await pool.close();
  }
});

/** The contract's `data.status` word of a failure, for the error tally. */
function statusWord(text: string): string {
  try {
    return String((JSON.parse(text) as { data?: { status?: unknown } }).data?.status ?? '');
  } catch {
    return text.slice(0, 60);
  }
}
