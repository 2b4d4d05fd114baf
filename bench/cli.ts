// `skv bench`: the benchmark runner's command line (DESIGN.md §3). The integrator wires
// `registerBenchCommand` into src/cli/main.ts; bench/main.ts runs it standalone meanwhile.
//
// One invocation: set up one target, run each requested workload in turn (the load phase only
// before the first, since the records stay), print each run's table, then write every file of
// the report into --out. The target is torn down on every path out.

import { type Command, InvalidArgumentError, Option } from 'commander';
import type { KeyOrder } from './keys.js';
import { progressFor } from './progress.js';
import { formatTable, writeReport } from './report.js';
import {
  CONCURRENCY_MAX,
  DEFAULT_RUN_OPTIONS,
  type RunOptions,
  type RunOutput,
  runBench,
} from './runner.js';
import type { BenchTarget, ReadConsistency } from './target.js';
import { type ApiPath, MemoryTarget } from './targets/memory.js';
import { SkvTarget } from './targets/skv.js';
import { UnaryTarget } from './targets/skv-unary.js';
import { ZooKeeperTarget } from './targets/zookeeper.js';
import {
  DISTRIBUTIONS,
  type Distribution,
  isWorkloadName,
  SWEEP_WRITE_PERCENTS_DEFAULT,
  sweepWorkloads,
  type WorkloadSpec,
  workload,
} from './workloads.js';

export const TARGET_NAMES = ['skv', 'memory', 'etcd', 'zookeeper'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface BenchCommandOptions {
  servers?: string;
  target: TargetName;
  api: ApiPath;
  workload: string;
  writeProportion: number;
  sweepWritePcts: number[];
  distribution?: Distribution;
  consistency?: ReadConsistency;
  recordCount: number;
  fieldCount: number;
  fieldLength: number;
  keyOrder: KeyOrder;
  concurrency: number;
  targetRate: number;
  duration: number;
  warmup: number;
  seed: number;
  load: boolean;
  loadConcurrency: number;
  loadStart: number;
  loadTimeout: number;
  loadRetries: number;
  operationCount: number;
  scanLengthMax: number;
  timeoutMs: number;
  serverPids?: number[];
  out?: string;
  label?: string;
  quiet: boolean;
  progressInterval: number;
}

function intIn(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
    }
    return n;
  };
}

function numberIn(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a number in [${min}, ${max}]`);
    }
    return n;
  };
}

function intList(min: number, max: number) {
  const one = intIn(min, max);
  return (value: string): number[] => value.split(',').map((s) => one(s.trim()));
}

/** The runs one invocation makes, in order: `--workload` is a comma list, `sweep` expands. */
export function workloadsFor(o: BenchCommandOptions): WorkloadSpec[] {
  const overrides = {
    ...(o.distribution === undefined ? {} : { distribution: o.distribution }),
    ...(o.consistency === undefined ? {} : { readConsistency: o.consistency }),
    scanLengthMax: o.scanLengthMax,
  };
  const out: WorkloadSpec[] = [];
  for (const raw of o.workload.split(',')) {
    const name = raw.trim().toLowerCase();
    if (name === 'sweep') {
      out.push(...sweepWorkloads(o.sweepWritePcts, overrides));
    } else if (isWorkloadName(name)) {
      out.push(workload(name, { ...overrides, writeProportion: o.writeProportion }));
    } else {
      throw new InvalidArgumentError(`unknown workload "${raw}"`);
    }
  }
  return out;
}

export function runOptionsFor(o: BenchCommandOptions): RunOptions {
  return {
    ...DEFAULT_RUN_OPTIONS,
    recordCount: o.recordCount,
    fieldCount: o.fieldCount,
    fieldLengthBytes: o.fieldLength,
    keyOrder: o.keyOrder,
    concurrency: o.concurrency,
    targetOpsPerSec: o.targetRate,
    durationS: o.duration,
    warmupS: o.warmup,
    seed: o.seed,
    load: o.load,
    loadConcurrency: o.loadConcurrency,
    loadStart: o.loadStart,
    loadTimeoutS: o.loadTimeout,
    loadRetries: o.loadRetries,
    operationCountMax: o.operationCount,
    drainTimeoutMs: o.timeoutMs + 1_000,
  };
}

function serverList(o: BenchCommandOptions): string[] {
  const servers = (o.servers ?? process.env.SKV_SERVERS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (servers.length === 0) {
    throw new InvalidArgumentError(
      `--servers (or SKV_SERVERS) is required for --target ${o.target}`,
    );
  }
  return servers;
}

export async function createTarget(o: BenchCommandOptions): Promise<BenchTarget> {
  switch (o.target) {
    case 'skv': {
      const servers = serverList(o);
      const options = { servers, timeoutMs: o.timeoutMs, serverPids: o.serverPids ?? [] };
      return o.api === 'unary' ? new UnaryTarget(options) : new SkvTarget(options);
    }
    case 'memory':
      return new MemoryTarget({ timeoutMs: o.timeoutMs, api: o.api });
    case 'etcd': {
      // Loaded only here: etcd3 is a devDependency, and `skv` (which registers this command)
      // must start without it, as in the container image.
      const { EtcdTarget } = await import('./targets/etcd.js');
      // Client URLs of the members; a bare host:port means http.
      return new EtcdTarget({
        endpoints: serverList(o).map((s) => (s.includes('://') ? s : `http://${s}`)),
        timeoutMs: o.timeoutMs,
        columnsPerRow: o.fieldCount,
        serverPids: o.serverPids ?? [],
      });
    }
    case 'zookeeper':
      // One session per listed server.
      return new ZooKeeperTarget({
        connectStrings: serverList(o),
        timeoutMs: o.timeoutMs,
        columnsPerRow: o.fieldCount,
        serverPids: o.serverPids ?? [],
      });
  }
}

/** Runs the whole invocation; resolves with what was written. */
export async function runBenchCommand(
  o: BenchCommandOptions,
): Promise<{ runs: RunOutput[]; outDir: string; files: string[] }> {
  const workloads = workloadsFor(o);
  const base = runOptionsFor(o);
  const outDir = o.out ?? `bench/results/tmp/${new Date().toISOString().replace(/[:.]/g, '-')}`;
  const target = await createTarget(o);
  const runs: RunOutput[] = [];
  try {
    await target.setup();
    for (const [i, w] of workloads.entries()) {
      const label = `${o.label === undefined ? target.name : o.label}-${w.name}`;
      const progress = progressFor({ quiet: o.quiet, lineIntervalS: o.progressInterval });
      const run = await runBench(
        target,
        w,
        { ...base, load: base.load && i === 0, label },
        progress,
      );
      runs.push(run);
      process.stdout.write(`${formatTable(run.result)}\n\n`);
    }
  } finally {
    await target.teardown();
  }
  const written = await writeReport(outDir, runs);
  process.stdout.write(`${written.pngNote}\nwrote ${written.files.length} files to ${outDir}\n`);
  return { runs, outDir, files: written.files };
}

export function registerBenchCommand(program: Command): Command {
  const d = DEFAULT_RUN_OPTIONS;
  return program
    .command('bench')
    .description(
      'run YCSB-style and Spinnaker-paper workloads against a target; write tables, JSON, series, HdrHistogram logs and plots',
    )
    .option(
      '--servers <list>',
      'servers, host:port[,...] (env SKV_SERVERS): skv nodes, etcd client URLs, or ZooKeeper servers',
    )
    .addOption(
      new Option(
        '--target <name>',
        'what to benchmark (memory: an in-memory edge, for the client path; etcd, zookeeper: a running peer, see bench/peers/ to start one)',
      )
        .choices(TARGET_NAMES)
        .default('skv'),
    )
    .addOption(
      new Option(
        '--api <path>',
        'session: the client library (streams, batching); unary: one plain gRPC call per operation',
      )
        .choices(['session', 'unary'])
        .default('session'),
    )
    .option(
      '--workload <list>',
      'a,b,c,d,e,f (YCSB), write-only, strong-read, timeline-read, conditional-put, mixed, sweep',
      'a',
    )
    .option('--write-proportion <f>', 'share of writes in the mixed workload', numberIn(0, 1), 0.5)
    .option('--sweep-write-pcts <list>', 'write percentages of the mixed sweep', intList(0, 100), [
      ...SWEEP_WRITE_PERCENTS_DEFAULT,
    ])
    .addOption(
      new Option('--distribution <d>', "key distribution (default: the workload's)").choices(
        DISTRIBUTIONS,
      ),
    )
    .addOption(
      new Option('--consistency <c>', "read consistency (default: the workload's)").choices([
        'strong',
        'timeline',
      ]),
    )
    .option(
      '--record-count <n>',
      'records loaded and chosen from',
      intIn(1, 2 ** 37),
      d.recordCount,
    )
    .option('--field-count <n>', 'columns per row', intIn(1, 1024), d.fieldCount)
    .option(
      '--field-length <bytes>',
      'bytes per column value',
      intIn(0, 1024 * 1024),
      d.fieldLengthBytes,
    )
    .addOption(
      new Option('--key-order <o>', 'hashed (spread) or ordered (insert order) keys')
        .choices(['hashed', 'ordered'])
        .default(d.keyOrder),
    )
    .option(
      '--concurrency <n>',
      'closed loop: requests in flight; open loop: at most',
      intIn(1, CONCURRENCY_MAX),
      d.concurrency,
    )
    .option(
      '--target-rate <ops/s>',
      'open loop at this rate (0: closed loop)',
      numberIn(0, 10_000_000),
      d.targetOpsPerSec,
    )
    .option('--duration <s>', 'measured seconds', numberIn(0.1, 86_400), d.durationS)
    .option('--warmup <s>', 'seconds before measuring', numberIn(0, 3_600), d.warmupS)
    .option('--seed <n>', 'random seed', intIn(0, 2 ** 32 - 1), d.seed)
    .option('--no-load', 'skip the load phase (records already there)')
    .option(
      '--load-concurrency <n>',
      'inserts in flight while loading',
      intIn(1, CONCURRENCY_MAX),
      d.loadConcurrency,
    )
    .option(
      '--load-start <n>',
      'load only record numbers n.. (resume a load cut short; YCSB insertstart)',
      intIn(0, 2 ** 40),
      d.loadStart,
    )
    .option('--load-timeout <s>', 'load phase time limit', numberIn(1, 86_400), d.loadTimeoutS)
    .option(
      '--load-retries <n>',
      'attempts after a failed insert while loading, with backoff (YCSB insertion retry limit)',
      intIn(0, 100),
      d.loadRetries,
    )
    .option(
      '--operation-count <n>',
      'operations per run at most (0: until the duration ends)',
      intIn(0, Number.MAX_SAFE_INTEGER),
      0,
    )
    .option('--scan-length-max <n>', 'scan lengths are uniform in [1, n]', intIn(1, 100_000), 100)
    .option('--timeout-ms <ms>', 'per-operation deadline', intIn(1, 600_000), 5_000)
    .option(
      '--server-pids <list>',
      'server PIDs on this machine, for CPU per op',
      intList(1, 2 ** 31),
    )
    .option('--out <dir>', 'output folder (default bench/results/tmp/<time>, git-ignored)')
    .option('--label <s>', 'run label prefix (default: the target name)')
    .option('--quiet', 'no progress display', false)
    .option(
      '--progress-interval <s>',
      'seconds between progress lines when not a terminal',
      numberIn(0.1, 3_600),
      5,
    )
    .action(async (opts: BenchCommandOptions) => {
      await runBenchCommand(opts);
    });
}
