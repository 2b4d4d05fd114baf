// The side-by-side benchmark (issue #6): installs the peers from Debian when missing, then starts
// each system in turn on 127.0.0.1 (3 replicas, fsync on; systems.ts), runs the same workloads
// with the same parameters against it through the same runner, stops it by PID and removes its
// directories, and writes the report: BENCHMARKS.md-style markdown with comparison plots
// (report.ts), plus every run's own files (JSON, series, HdrHistogram logs, plots) in --out.
//
//   npx tsx bench/peers/run.ts                                  # the full run (minutes)
//   npx tsx bench/peers/run.ts --duration 2 --warmup 1 --workloads write-only,strong-read
//   node dist/bench/peers/run.js --out-md BENCHMARKS.md --plots-dir bench/results/peers
//
// One system at a time, so that none competes with another for the machine's cores; the load
// generator is this one process. A system that fails to start or to run is reported as such and
// the others still run. Ctrl-C stops the running system (each server also dies with this
// process: guarded-process.ts, the harness's stdin pipes).

import { spawnSync } from 'node:child_process';
import { type Dirent, existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SkvError } from '../../src/core/errors.js';
import { findZooKeeperClasspath } from '../../src/devtools/local-zookeeper.js';
import { which } from '../plot/png.js';
import { progressFor } from '../progress.js';
import { formatTable, writeReport } from '../report.js';
import { DEFAULT_RUN_OPTIONS, type RunOptions, type RunOutput, runBench } from '../runner.js';
import { isWorkloadName, type WorkloadSpec, workload } from '../workloads.js';
import { etcdVersion, findEtcdBinary } from './etcd-cluster.js';
import { machineFacts } from './machine.js';
import { type PeersReportInput, type SystemOutcome, writePeersReport } from './report.js';
import {
  isSystemName,
  type RunningSystem,
  SYSTEM_NAMES,
  type SystemName,
  startSystem,
} from './systems.js';

export const DEFAULT_WORKLOADS = [
  'write-only',
  'strong-read',
  'timeline-read',
  'conditional-put',
  'a',
] as const;

export interface PeersOptions {
  readonly systems: readonly SystemName[];
  readonly workloads: readonly WorkloadSpec[];
  /** The runner's options shared by every system (load only before each system's first run). */
  readonly run: RunOptions;
  readonly timeoutMs: number;
  /** Every run's own files go here. */
  readonly outDir: string;
  readonly mdPath: string;
  readonly plotsDir: string;
  /** Where the systems' data directories are made (a temp dir by default). */
  readonly dataDir?: string;
  readonly quiet: boolean;
  /** The command line, for the report's "Reproduce" section. */
  readonly command: string;
  readonly log?: (line: string) => void;
}

export interface PeersResult {
  readonly runs: RunOutput[];
  readonly systems: SystemOutcome[];
  readonly files: string[];
}

/** Runs every system in turn and writes the report; resolves once every server is stopped. */
export async function runPeers(o: PeersOptions): Promise<PeersResult> {
  const log = o.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const baseDir = o.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'skv-peers-')));
  await mkdir(baseDir, { recursive: true });
  const runs: RunOutput[] = [];
  const systems: SystemOutcome[] = [];
  let current: RunningSystem | null = null;
  const onSignal = () => {
    log('peers: interrupted, stopping the running system');
    void (current?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  try {
    for (const name of o.systems) {
      log(`peers: starting ${name}`);
      let system: RunningSystem;
      try {
        system = await startSystem(name, {
          baseDir,
          timeoutMs: o.timeoutMs,
          columnsPerRow: o.run.fieldCount,
        });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        log(`peers: ${name} did not start: ${message}`);
        systems.push({
          name,
          version: '-',
          startMs: 0,
          error: `did not start: ${message}`,
          describe: {},
        });
        continue;
      }
      current = system;
      let error: string | null = null;
      try {
        log(
          `peers: ${name} healthy after ${system.startMs} ms (pids ${system.target.serverPids().join(',')})`,
        );
        await system.target.setup();
        for (const [i, w] of o.workloads.entries()) {
          const label = `${name}-${w.name}`;
          const run = await runBench(
            system.target,
            w,
            { ...o.run, load: o.run.load && i === 0, label },
            progressFor({ quiet: o.quiet, lineIntervalS: 5 }),
          );
          runs.push(run);
          if (!o.quiet) log(`${formatTable(run.result)}\n`);
        }
      } catch (err) {
        error = `run failed: ${err instanceof Error ? err.message : String(err)}`;
        log(`peers: ${name} ${error}`);
      } finally {
        const describe = system.target.describe();
        await system.target.teardown().catch(() => undefined);
        await system.stop();
        current = null;
        systems.push({ name, version: system.version, startMs: system.startMs, error, describe });
        log(`peers: ${name} stopped`);
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    if (o.dataDir === undefined) await rm(baseDir, { recursive: true, force: true });
  }
  const written = await writeReport(o.outDir, runs);
  const etcdBin = findEtcdBinary();
  const zkVersion =
    systems.find((s) => s.name === 'zookeeper')?.version ?? debianVersion('zookeeper');
  const input: PeersReportInput = {
    generatedAt: new Date().toISOString(),
    command: o.command,
    machine: machineFacts({
      dataDir: o.dataDir ?? os.tmpdir(),
      etcdVersion: etcdBin === null ? 'not installed' : etcdVersion(etcdBin),
      zooKeeperVersion: zkVersion,
    }),
    parameters: {
      recordCount: o.run.recordCount,
      fieldCount: o.run.fieldCount,
      fieldLengthBytes: o.run.fieldLengthBytes,
      concurrency: o.run.concurrency,
      durationS: o.run.durationS,
      warmupS: o.run.warmupS,
      seed: o.run.seed,
      timeoutMs: o.timeoutMs,
    },
    workloads: o.workloads.map((w) => w.name),
    systems,
    runs: runs.map((r) => r.result),
  };
  const report = await writePeersReport(input, { plotsDir: o.plotsDir, mdPath: o.mdPath });
  log(`peers: ${report.pngNote}`);
  log(`peers: wrote ${o.mdPath}, plots in ${o.plotsDir}, run files in ${o.outDir}`);
  return { runs, systems, files: [...written.files, ...report.files] };
}

function debianVersion(pkg: string): string {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : 'unknown';
}

/**
 * Installs what the chosen systems need and is missing, from Debian when this is Debian and we
 * are root: etcd-server, zookeeper, and librsvg2-bin (rsvg-convert, for the PNG plots).
 * Elsewhere it says what to install; the PNGs are optional.
 */
export function ensureInstalled(systems: readonly SystemName[], log: (line: string) => void): void {
  const wanted: string[] = [];
  if (systems.includes('etcd') && findEtcdBinary() === null) wanted.push('etcd-server');
  const needsZk = systems.some((s) => s !== 'etcd');
  if (needsZk && findZooKeeperClasspath() === null) wanted.push('zookeeper');
  const optional = which('rsvg-convert') === null ? ['librsvg2-bin'] : [];
  const all = [...wanted, ...optional];
  if (all.length === 0) return;
  const debianRoot = existsSync('/etc/debian_version') && process.getuid?.() === 0;
  if (!debianRoot) {
    if (wanted.length > 0) {
      throw new SkvError(
        'unavailable',
        `missing: ${wanted.join(', ')} (Debian: apt-get install -y ${wanted.join(' ')})`,
      );
    }
    log('peers: rsvg-convert not found (Debian: librsvg2-bin); the plots stay SVG only');
    return;
  }
  log(`peers: installing ${all.join(' ')} (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...all], {
      stdio: 'inherit',
      env,
    });
  if (install().status !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit', env });
    install();
  }
  const still = [
    ...(wanted.includes('etcd-server') && findEtcdBinary() === null ? ['etcd-server'] : []),
    ...(wanted.includes('zookeeper') && findZooKeeperClasspath() === null ? ['zookeeper'] : []),
  ];
  if (still.length > 0) throw new SkvError('unavailable', `could not install ${still.join(', ')}`);
}

/**
 * The built CLI the skv servers run from (test/support/cluster.ts spawns bin/skv.js): missing is
 * an error; older than a source file under src/ is a warning (the run would measure old code).
 */
function checkSkvBuilt(log: (line: string) => void): void {
  const root = [
    fileURLToPath(new URL('../../', import.meta.url)),
    fileURLToPath(new URL('../../../', import.meta.url)),
  ].find((dir) => existsSync(path.join(dir, 'dist/src/cli/main.js')));
  if (root === undefined) {
    throw new SkvError(
      'unavailable',
      'skv is not built: run `npm run build` first (the servers run bin/skv.js)',
    );
  }
  const builtMs = statSync(path.join(root, 'dist/src/cli/main.js')).mtimeMs;
  const newer = newestSource(path.join(root, 'src'), builtMs, 4_096);
  if (newer !== null) {
    log(`peers: WARNING dist/ is older than ${path.relative(root, newer)}: run \`npm run build\``);
  }
}

/** A .ts file under `dir` modified after `sinceMs`, or null; looks at `filesMax` files at most. */
function newestSource(dir: string, sinceMs: number, filesMax: number): string | null {
  let seen = 0;
  const stack = [dir];
  while (stack.length > 0 && seen < filesMax) {
    const d = stack.pop() as string;
    let entries: Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) stack.push(full);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
        seen++;
        if (statSync(full).mtimeMs > sinceMs) return full;
      }
    }
  }
  return null;
}

function numberArg(value: string | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) {
    throw new SkvError('invalid-argument', `--${name} must be a number >= ${min}`);
  }
  return n;
}

export function parsePeersArgs(argv: readonly string[]): PeersOptions & { install: boolean } {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      systems: { type: 'string', default: SYSTEM_NAMES.join(',') },
      workloads: { type: 'string', default: DEFAULT_WORKLOADS.join(',') },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      'record-count': { type: 'string' },
      'field-count': { type: 'string' },
      'field-length': { type: 'string' },
      concurrency: { type: 'string' },
      seed: { type: 'string' },
      'timeout-ms': { type: 'string' },
      out: { type: 'string' },
      'out-md': { type: 'string' },
      'plots-dir': { type: 'string' },
      'data-dir': { type: 'string' },
      'no-install': { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const systems = (values.systems ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const s of systems) {
    if (!isSystemName(s)) {
      throw new SkvError('invalid-argument', `unknown system "${s}" (${SYSTEM_NAMES.join(', ')})`);
    }
  }
  const workloads = (values.workloads ?? '').split(',').map((w) => {
    const name = w.trim().toLowerCase();
    if (!isWorkloadName(name)) throw new SkvError('invalid-argument', `unknown workload "${w}"`);
    return workload(name);
  });
  const d = DEFAULT_RUN_OPTIONS;
  const timeoutMs = numberArg(values['timeout-ms'], 'timeout-ms', 5_000, 1);
  const run: RunOptions = {
    ...d,
    durationS: numberArg(values.duration, 'duration', 10, 0.1),
    warmupS: numberArg(values.warmup, 'warmup', d.warmupS, 0),
    recordCount: numberArg(values['record-count'], 'record-count', d.recordCount, 1),
    fieldCount: numberArg(values['field-count'], 'field-count', d.fieldCount, 1),
    fieldLengthBytes: numberArg(values['field-length'], 'field-length', d.fieldLengthBytes, 0),
    concurrency: numberArg(values.concurrency, 'concurrency', d.concurrency, 1),
    seed: numberArg(values.seed, 'seed', d.seed, 0),
    drainTimeoutMs: timeoutMs + 1_000,
  };
  const outDir =
    values.out ?? `bench/results/tmp/peers-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  return {
    systems: systems as SystemName[],
    workloads,
    run,
    timeoutMs,
    outDir,
    mdPath: values['out-md'] ?? path.join(outDir, 'BENCHMARKS.md'),
    plotsDir: values['plots-dir'] ?? outDir,
    ...(values['data-dir'] === undefined ? {} : { dataDir: values['data-dir'] }),
    quiet: values.quiet ?? false,
    install: !(values['no-install'] ?? false),
    command: ['npx tsx bench/peers/run.ts', ...argv].join(' '),
  };
}

async function main(): Promise<void> {
  const o = parsePeersArgs(process.argv.slice(2));
  const log = (line: string) => process.stdout.write(`${line}\n`);
  if (o.install) ensureInstalled(o.systems, log);
  if (o.systems.some((s) => s === 'skv' || s === 'skv-unary')) checkSkvBuilt(log);
  await runPeers({ ...o, log });
}

if (
  process.argv[1] !== undefined &&
  path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
) {
  main().catch((err: unknown) => {
    console.error(`peers: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
}
