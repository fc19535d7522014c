import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

/**
 * What the machine was doing while a figure was taken, read from /proc: CPU of the service, of
 * every PostgreSQL process and of the whole machine over a window, and the service's memory.
 * On a shared 2-core box these say how much of a figure is the code and how much the neighbours.
 */

const TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of one process, in seconds (undefined once it is gone). */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after "(comm) ": state=0 … utime=11, stime=12.
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** CPU seconds of every process named `postgres`, per pid (other users' backends included). */
export function postgresCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (comm !== 'postgres') continue;
      const seconds = processCpuSeconds(Number(entry));
      if (seconds !== undefined) out.set(Number(entry), seconds);
    } catch {
      /* the process ended while we looked */
    }
  }
  return out;
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
function machineJiffies(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = fields[3] + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

export interface CpuWindow {
  /** Cores' worth of CPU (1.0 = one core busy the whole window). */
  service: number;
  postgres: number;
  /** Whole machine busy share, 0..1 of all cores. */
  machine: number;
}

/** Starts measuring CPU over a window; call the returned function to close it. */
export function cpuWindow(servicePid: number | undefined): () => CpuWindow {
  const t0 = performance.now();
  const service0 = servicePid === undefined ? undefined : processCpuSeconds(servicePid);
  const pg0 = postgresCpu();
  const m0 = machineJiffies();
  return () => {
    const seconds = (performance.now() - t0) / 1000;
    const service1 = servicePid === undefined ? undefined : processCpuSeconds(servicePid);
    let pgDelta = 0;
    for (const [pid, cpu] of postgresCpu()) pgDelta += cpu - (pg0.get(pid) ?? 0);
    const m1 = machineJiffies();
    return {
      service: service0 !== undefined && service1 !== undefined && seconds > 0 ? (service1 - service0) / seconds : 0,
      postgres: seconds > 0 ? pgDelta / seconds : 0,
      machine: m1.total > m0.total ? (m1.busy - m0.busy) / (m1.total - m0.total) : 0,
    };
  };
}

/** A field of /proc/<pid>/status in MiB (VmRSS, VmHWM). */
export function memoryMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Polls VmRSS every `everyMs` and keeps the maximum; stop() returns it. */
export function rssSampler(pid: number, everyMs = 100): { stop(): number } {
  let peak = memoryMiB(pid, 'VmRSS') ?? 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, memoryMiB(pid, 'VmRSS') ?? 0);
  }, everyMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, memoryMiB(pid, 'VmRSS') ?? 0);
    },
  };
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((v) => v.toFixed(2))
    .join(', ');
}

/** `uptime` as the shell prints it (falls back to os.loadavg()). */
export function uptimeLine(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${loadAverage()}`;
  }
}
