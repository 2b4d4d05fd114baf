// CPU and memory accounting of processes on this machine, from /proc (Linux only; elsewhere every
// reading is null and the report says "unknown").
//
// /proc/<pid>/stat fields 14 and 15 are utime and stime in clock ticks (proc(5)); the command
// name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSec: number | null = null;

/** The kernel's USER_HZ (`getconf CLK_TCK`), 100 when it cannot be asked. */
export function clockTicksPerSec(): number {
  if (ticksPerSec !== null) return ticksPerSec;
  try {
    const out = execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2_000 });
    const n = Number(out.trim());
    ticksPerSec = Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    ticksPerSec = 100;
  }
  return ticksPerSec;
}

/** User + system CPU the process has used so far, in ms; null if it cannot be read. */
export function processCpuMs(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  return parseStatCpuMs(stat, clockTicksPerSec());
}

export function parseStatCpuMs(stat: string, ticks: number): number | null {
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  // After ") ": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
  const fields = stat.slice(close + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return ((utime + stime) * 1000) / ticks;
}

/** Resident set size in bytes; null if it cannot be read. */
export function processRssBytes(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

/** Sum of CPU ms over the processes; null if any one cannot be read (no partial sums). */
export function totalCpuMs(pids: readonly number[]): number | null {
  let sum = 0;
  for (const pid of pids) {
    const ms = processCpuMs(pid);
    if (ms === null) return null;
    sum += ms;
  }
  return sum;
}
