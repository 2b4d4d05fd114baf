// Starts a Jepsen run in a private network namespace (TESTING.md B.1): `unshare -n`, `lo` up,
// then the runner (runner.ts, through tsx) inside; reads back its JSON report. The runner's
// output goes to a log file next to the report (its path is in the thrown error on a crash).

import { execFile, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findZooKeeperClasspath } from '../../src/devtools/local-zookeeper.js';
import type { JepsenConfig, JepsenReport } from './report.js';

const RUNNER = fileURLToPath(new URL('./runner.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Null when a run can happen here; otherwise why not (the suite must skip LOUDLY). */
export async function jepsenProblem(): Promise<string | null> {
  if (findZooKeeperClasspath() === null)
    return 'ZooKeeper is not installed (apt-get install zookeeper)';
  if (process.getuid?.() !== 0)
    return 'needs root (nodes run as their own uids so iptables can tell them apart)';
  try {
    await promisify(execFile)('unshare', [
      '-n',
      'sh',
      '-c',
      'ip link set lo up && iptables -w -t raw -L -n >/dev/null && iptables -w -t nat -L -n >/dev/null',
    ]);
  } catch (err) {
    return `unshare -n / iptables unavailable: ${String(err).split('\n')[0]}`;
  }
  return null;
}

export interface RunOptions {
  /** Kill the runner after this (a hung run must not hang the suite). */
  readonly timeoutMs: number;
  /** Keep the runner's log and report here (default: a temp dir, removed after). */
  readonly keepDir?: string;
}

export async function runJepsen(config: JepsenConfig, options: RunOptions): Promise<JepsenReport> {
  const dir = options.keepDir ?? (await mkdtemp(path.join(os.tmpdir(), 'skv-jepsen-')));
  const out = path.join(dir, `report-${config.seed}.json`);
  const logFile = path.join(dir, `runner-${config.seed}.log`);
  const args = [
    '-n',
    'sh',
    '-c',
    'ip link set lo up && exec "$0" "$@"',
    process.execPath,
    '--import',
    'tsx',
    RUNNER,
    '--out',
    out,
    '--seed',
    String(config.seed),
    '--duration-ms',
    String(config.durationMs),
    ...config.serverArgs.flatMap((a) => ['--server-arg', a]),
    ...(config.failpoints === '' ? [] : ['--failpoints', config.failpoints]),
    ...(config.schedule === undefined ? [] : ['--schedule', config.schedule]),
    ...(config.powerLossSyncMs === undefined
      ? []
      : ['--power-loss-sync-ms', String(config.powerLossSyncMs)]),
  ];
  const log = openSync(logFile, 'a');
  const child = spawn('unshare', args, { cwd: ROOT, stdio: ['pipe', log, log] });
  closeSync(log);
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('exit', (c, s) => {
      clearTimeout(timer);
      resolve(c ?? s ?? 'unknown');
    });
  });
  try {
    if (code !== 0) {
      const tail = (await readFile(logFile, 'utf8').catch(() => ''))
        .split('\n')
        .slice(-30)
        .join('\n');
      throw new Error(
        `jepsen runner (seed ${config.seed}) exited with ${code}; log ${logFile}:\n${tail}`,
      );
    }
    return JSON.parse(await readFile(out, 'utf8')) as JepsenReport;
  } finally {
    child.stdin?.end();
    if (options.keepDir === undefined && code === 0)
      await rm(dir, { recursive: true, force: true });
  }
}

/** A short human summary of a report. */
export function summarize(r: JepsenReport): string {
  if (r.skipped !== undefined) return `seed ${r.config.seed}: SKIPPED (${r.skipped})`;
  // biome-ignore lint/suspicious/noExplicitAny: the figures are free-form JSON, printed as found
  const f = r.figures as Record<string, any>;
  const lines = [
    `seed ${r.config.seed} (${r.config.durationMs / 1000} s${r.config.serverArgs.length > 0 ? `, ${r.config.serverArgs.join(' ')}` : ''}${r.config.schedule === 'power-cuts' ? ', power cuts only' : ''}${(r.config.powerLossSyncMs ?? 0) > 0 ? `, emulated flush ${r.config.powerLossSyncMs} ms` : ''}): ${r.ok ? 'PASS' : 'FAIL'}`,
    `  faults ${r.faults.length}: ${JSON.stringify(f.faultCounts)}`,
    `  ops completed ${f.completedOps}: ${JSON.stringify(f.ops)}`,
    `  linearizability ${JSON.stringify(f.linearizability)}`,
    `  set ${JSON.stringify({ ...f.set, lost: f.set?.lost?.length, phantom: f.set?.phantom?.length })}`,
    `  timeline ${JSON.stringify({ reads: f.timeline?.reads, notCommitted: f.timeline?.notCommitted?.length, wentBack: f.timeline?.wentBack?.length })}, counter ${JSON.stringify(f.counter)}`,
    `  convergence ${Math.round(f.convergence?.ms ?? -1)} ms ok=${f.convergence?.ok}; final recovery ${f.finalRecoveryMs === null ? 'never' : Math.round(f.finalRecoveryMs)} ms; max recovery after a heal ${f.recoveryMsMax} ms`,
    `  one node down: ${JSON.stringify(f.oneNodeDown)}`,
    ...r.faults.map(
      (x) =>
        `  - t=${(x.startMs / 1000).toFixed(1)}s ${x.kind} [${x.target}] heal+${x.recoveredMs === null ? 'never' : Math.round(x.recoveredMs)}ms ${x.detail}`,
    ),
    ...r.failures.map((x) => `  FAILURE ${x}`),
    ...(r.ok ? [] : ((f.notes as string[] | undefined) ?? []).map((x) => `  note: ${x}`)),
    ...((f.diagnostics as string[] | undefined) ?? []).map((x) => `  diagnostics: ${x}`),
  ];
  return lines.join('\n');
}
