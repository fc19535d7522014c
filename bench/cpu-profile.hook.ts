/**
 * Preloaded into the service (`node -r dist/bench/cpu-profile.hook.js dist/src/main.js`) when the
 * benchmark runs with --cpu-prof. `node --cpu-prof` only writes its profile on a clean exit, which
 * Nest's shutdown hooks (re-raising the signal) never give, and a signal cannot be used to steer
 * it: enableShutdownHooks() shuts the app down on SIGUSR2 too. So the benchmark steers the
 * in-process inspector through the service's stdin instead, one command per line:
 *   `start`        — start sampling;
 *   `stop <file>`  — stop and write the profile to <file> (via a temporary name, then renamed).
 */
import { renameSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createInterface } from 'node:readline';

if (process.env.BENCH_CPU_PROFILE === '1') {
  const session = new Session();
  session.connect();
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const [command, file] = line.trim().split(/\s+/, 2);
    if (command === 'start') {
      session.post('Profiler.enable', () =>
        session.post('Profiler.setSamplingInterval', { interval: 200 }, () => session.post('Profiler.start')),
      );
    } else if (command === 'stop' && file) {
      session.post('Profiler.stop', (error, result) => {
        if (error) return;
        writeFileSync(`${file}.tmp`, JSON.stringify(result.profile));
        renameSync(`${file}.tmp`, file);
      });
    }
  });
  // Never the reason the service stays up.
  (process.stdin as unknown as { unref?: () => void }).unref?.();
}
