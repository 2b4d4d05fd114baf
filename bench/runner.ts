// The benchmark runner: an optional load phase (insert `recordCount` rows, in parallel, bounded in
// count and time), then the transaction phase (warm-up, then the measured window) in closed-loop
// mode (`concurrency` workers, each with one operation in flight) or open-loop mode (operations
// scheduled at `targetOpsPerSec`, at most `concurrency` in flight).
//
// Open loop corrects for coordinated omission (Tene, "How NOT to measure latency"): operation i
// is *intended* to start at t0 + i/rate; when the target falls behind, the operation waits for a
// free slot, and its latency is measured from the intended start, not from when it was sent. The
// schedule is an index, not a queue, so falling behind costs no memory; intended operations never
// sent by the end of the window are reported as `backlogAtEnd`.
//
// Every loop is bounded: by the window's end time, by `operationCountMax`, and the final drain
// of in-flight operations by `drainTimeoutMs` (operations still out then are reported).

import { cpus, hostname, loadavg, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { assert } from '../src/core/assert.js';
import { processRssBytes, totalCpuMs } from './cpu.js';
import {
  AcknowledgedCounter,
  type KeyChooser,
  LatestChooser,
  ScrambledZipfianChooser,
  UniformChooser,
} from './generators.js';
import { fieldName, type KeyOrder, keyName, ValuePool } from './keys.js';
import {
  type LatencySummaryUs,
  Measurement,
  newHistogram,
  type SeriesPoint,
  spectrum,
  summarize,
} from './measure.js';
import { Random } from './random.js';
import { type BenchTarget, errorCode, type Field } from './target.js';
import { OP_KINDS, type OpKind, validateWorkload, type WorkloadSpec } from './workloads.js';

/** Load retries allowed at most, and the first retry's backoff (doubling after). */
const LOAD_RETRIES_MAX = 100;
const LOAD_RETRY_BACKOFF_MS = 100;

/** In-flight operations at most (closed-loop workers, open-loop slots, load workers). */
export const CONCURRENCY_MAX = 16_384;
/** Columns per row at most. */
export const FIELD_COUNT_MAX = 1024;

export interface RunOptions {
  readonly recordCount: number;
  readonly fieldCount: number;
  readonly fieldLengthBytes: number;
  readonly keyOrder: KeyOrder;
  /** Closed loop: workers; open loop: in-flight operations at most. */
  readonly concurrency: number;
  /** > 0: open loop at this rate; 0: closed loop. */
  readonly targetOpsPerSec: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly seed: number;
  /** Insert the records first. */
  readonly load: boolean;
  readonly loadConcurrency: number;
  /** The load inserts record numbers loadStart..recordCount-1 (YCSB's insertstart). */
  readonly loadStart: number;
  readonly loadTimeoutS: number;
  /**
   * Attempts after a failed insert, with backoff (YCSB's insertion retry limit): a row the
   * load leaves out turns later reads of it into not-found. A retried insert whose first
   * attempt had an unknown outcome writes the same value again.
   */
  readonly loadRetries: number;
  /** Operations in the transaction phase at most (warm-up included); 0: no count bound. */
  readonly operationCountMax: number;
  readonly drainTimeoutMs: number;
  /** A label for reports (defaults to `<target>-<workload>`). */
  readonly label?: string;
}

export const DEFAULT_RUN_OPTIONS: RunOptions = {
  recordCount: 10_000,
  fieldCount: 1,
  fieldLengthBytes: 100,
  keyOrder: 'hashed',
  concurrency: 256,
  targetOpsPerSec: 0,
  durationS: 10,
  warmupS: 2,
  seed: 1,
  load: true,
  loadConcurrency: 256,
  loadStart: 0,
  loadTimeoutS: 3_600,
  loadRetries: 3,
  operationCountMax: 0,
  drainTimeoutMs: 10_000,
};

/** What the live display is told; implemented in progress.ts. */
export interface ProgressSink {
  start(phase: 'load' | 'run', totalS: number, label: string): void;
  update(s: {
    phase: 'load' | 'warmup' | 'measure';
    elapsedS: number;
    totalS: number;
    opsPerSec: number;
    p99Us: number;
    done?: number;
    total?: number;
  }): void;
  stop(): void;
}

export interface OpResult {
  readonly op: OpKind;
  readonly count: number;
  readonly opsPerSec: number;
  readonly latencyUs: LatencySummaryUs;
  /** Open loop only: latency from the real send (without the wait for a slot). */
  readonly serviceUs: LatencySummaryUs | null;
  readonly errors: Record<string, number>;
  readonly spectrum: [number, number][];
}

export interface LoadResult {
  readonly records: number;
  readonly inserted: number;
  readonly durationS: number;
  readonly opsPerSec: number;
  readonly latencyUs: LatencySummaryUs;
  /** Rows not inserted after every attempt, by the last attempt's error code. */
  readonly errors: Record<string, number>;
  /** Failed attempts that were retried, by error code. */
  readonly retried: Record<string, number>;
  readonly timedOut: boolean;
}

export interface BenchResult {
  readonly schema: 'skv-bench-result/1';
  readonly label: string;
  readonly startedAt: string;
  readonly machine: {
    readonly hostname: string;
    readonly cpuModel: string;
    readonly cpus: number;
    readonly memoryBytes: number;
    readonly node: string;
    readonly platform: string;
    /** 1-minute load average before and after the run: other work on a shared machine. */
    readonly loadAverage: readonly [number, number];
  };
  readonly target: Record<string, string>;
  readonly workload: WorkloadSpec;
  readonly options: RunOptions;
  readonly mode: 'closed' | 'open';
  readonly load: LoadResult | null;
  /** The measured window's real length. */
  readonly durationS: number;
  readonly totals: {
    readonly count: number;
    readonly opsPerSec: number;
    readonly errors: number;
    readonly latencyUs: LatencySummaryUs;
  };
  readonly ops: OpResult[];
  readonly openLoop: {
    readonly targetOpsPerSec: number;
    readonly intended: number;
    readonly started: number;
    readonly backlogAtEnd: number;
  } | null;
  /** Operations still in flight when the drain timed out (their outcome is unrecorded). */
  readonly undrained: number;
  readonly cpu: {
    readonly serverPids: readonly number[];
    /** Server CPU over the measured window, summed over the servers; null when unknown. */
    readonly serverCpuMs: number | null;
    readonly serverCpuMsPerOp: number | null;
    readonly clientCpuMs: number;
    readonly clientCpuMsPerOp: number | null;
    readonly serverRssBytes: Record<string, number | null>;
  };
  readonly series: SeriesPoint[];
}

export interface RunOutput {
  readonly result: BenchResult;
  /** HdrHistogram log of the per-second interval histograms of the transaction phase. */
  readonly hdrLog: string;
}

export function validateRunOptions(o: RunOptions): void {
  assert(Number.isSafeInteger(o.recordCount) && o.recordCount >= 1, 'record count must be >= 1');
  assert(
    Number.isInteger(o.fieldCount) && o.fieldCount >= 1 && o.fieldCount <= FIELD_COUNT_MAX,
    `field count must be in [1, ${FIELD_COUNT_MAX}]`,
  );
  assert(o.fieldLengthBytes >= 0, 'field length must be >= 0');
  assert(
    o.concurrency >= 1 && o.concurrency <= CONCURRENCY_MAX,
    `concurrency must be in [1, ${CONCURRENCY_MAX}]`,
  );
  assert(
    o.loadConcurrency >= 1 && o.loadConcurrency <= CONCURRENCY_MAX,
    `load concurrency must be in [1, ${CONCURRENCY_MAX}]`,
  );
  assert(o.targetOpsPerSec >= 0, 'target rate must be >= 0');
  assert(o.durationS > 0, 'duration must be > 0');
  assert(o.warmupS >= 0, 'warm-up must be >= 0');
  assert(o.loadTimeoutS > 0, 'load timeout must be > 0');
  assert(
    Number.isSafeInteger(o.loadRetries) && o.loadRetries >= 0 && o.loadRetries <= LOAD_RETRIES_MAX,
    `load retries must be in [0, ${LOAD_RETRIES_MAX}]`,
  );
  assert(
    Number.isSafeInteger(o.loadStart) && o.loadStart >= 0 && o.loadStart <= o.recordCount,
    'load start must be in [0, record count]',
  );
  assert(o.operationCountMax >= 0, 'operation count must be >= 0');
  assert(o.drainTimeoutMs >= 0, 'drain timeout must be >= 0');
}

/** Runs one workload against a target that is already set up. */
export async function runBench(
  target: BenchTarget,
  workload: WorkloadSpec,
  options: RunOptions,
  progress: ProgressSink | null = null,
): Promise<RunOutput> {
  validateWorkload(workload);
  validateRunOptions(options);
  const label = options.label ?? `${target.name}-${workload.name}`;
  const startedAt = new Date().toISOString();
  const loadBefore = loadavg()[0] ?? 0;
  const random = new Random(options.seed);
  const values = new ValuePool(random, options.fieldLengthBytes);
  const load = options.load ? await runLoad(target, options, values, progress, label) : null;
  const run = new TransactionPhase(target, workload, options, random, values, progress, label);
  const phase = await run.execute();
  const machineCpus = cpus();
  const result: BenchResult = {
    schema: 'skv-bench-result/1',
    label,
    startedAt,
    machine: {
      hostname: hostname(),
      cpuModel: machineCpus[0]?.model ?? 'unknown',
      cpus: machineCpus.length,
      memoryBytes: totalmem(),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      loadAverage: [loadBefore, loadavg()[0] ?? 0],
    },
    target: target.describe(),
    workload,
    options,
    mode: options.targetOpsPerSec > 0 ? 'open' : 'closed',
    load,
    ...phase.result,
  };
  return {
    result,
    hdrLog: phase.measurement.hdrLog(
      phase.startTimeMs,
      `skv bench ${label} (latency in µs; interval max column in ms)`,
    ),
  };
}

function rowFields(values: ValuePool, fieldCount: number): Field[] {
  const fields: Field[] = new Array(fieldCount);
  for (let i = 0; i < fieldCount; i++) fields[i] = { column: fieldName(i), value: values.next() };
  return fields;
}

async function runLoad(
  target: BenchTarget,
  options: RunOptions,
  values: ValuePool,
  progress: ProgressSink | null,
  label: string,
): Promise<LoadResult> {
  const histogram = newHistogram();
  const errors = new Map<string, number>();
  const retried = new Map<string, number>();
  const t0 = performance.now();
  const deadline = t0 + options.loadTimeoutS * 1000;
  let nextKey = options.loadStart;
  let inserted = 0;
  let timedOut = false;
  progress?.start('load', options.loadTimeoutS, `${label} load`);
  const ticker = setInterval(() => {
    const elapsedS = (performance.now() - t0) / 1000;
    progress?.update({
      phase: 'load',
      elapsedS,
      totalS: options.loadTimeoutS,
      opsPerSec: inserted / Math.max(elapsedS, 1e-3),
      p99Us: histogram.totalCount === 0 ? 0 : histogram.getValueAtPercentile(99),
      done: nextKey,
      total: options.recordCount,
    });
  }, 1000);
  const worker = async () => {
    while (nextKey < options.recordCount) {
      if (performance.now() >= deadline) {
        timedOut = true;
        return;
      }
      const k = nextKey++;
      const key = keyName(k, options.keyOrder);
      const fields = rowFields(values, options.fieldCount);
      for (let attempt = 0; ; attempt++) {
        const start = performance.now();
        try {
          await target.ops.insert(key, fields);
          histogram.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
          inserted++;
          break;
        } catch (err) {
          const code = errorCode(err);
          if (attempt >= options.loadRetries || performance.now() >= deadline) {
            errors.set(code, (errors.get(code) ?? 0) + 1);
            break;
          }
          retried.set(code, (retried.get(code) ?? 0) + 1);
          await sleep(LOAD_RETRY_BACKOFF_MS * 2 ** attempt);
        }
      }
    }
  };
  try {
    const workers = Math.min(options.loadConcurrency, options.recordCount - options.loadStart);
    await Promise.all(Array.from({ length: workers }, worker));
  } finally {
    clearInterval(ticker);
    progress?.stop();
  }
  const durationS = (performance.now() - t0) / 1000;
  return {
    records: options.recordCount - options.loadStart,
    inserted,
    durationS,
    opsPerSec: inserted / Math.max(durationS, 1e-3),
    latencyUs: summarize(histogram),
    errors: Object.fromEntries(errors),
    retried: Object.fromEntries(retried),
    timedOut,
  };
}

type PhaseResult = Pick<
  BenchResult,
  'durationS' | 'totals' | 'ops' | 'openLoop' | 'undrained' | 'cpu' | 'series'
>;

class TransactionPhase {
  private readonly measurement: Measurement;
  private readonly chooser: KeyChooser;
  private readonly inserts: AcknowledgedCounter;
  private readonly cumulative: [OpKind, number][];
  private readonly allColumns: string[];
  private t0 = 0;
  private measureStart = 0;
  private endAt = 0;
  private issued = 0;
  private inflight = 0;
  private stopping = false;
  private onIdle: (() => void) | null = null;

  constructor(
    private readonly target: BenchTarget,
    private readonly workload: WorkloadSpec,
    private readonly options: RunOptions,
    private readonly random: Random,
    private readonly values: ValuePool,
    private readonly progress: ProgressSink | null,
    private readonly label: string,
  ) {
    this.measurement = new Measurement(options.targetOpsPerSec > 0);
    this.inserts = new AcknowledgedCounter(options.recordCount);
    const limit = () => this.inserts.limit;
    switch (workload.distribution) {
      case 'uniform':
        this.chooser = new UniformChooser(random, limit);
        break;
      case 'zipfian':
        // YCSB sizes the zipfian for the inserts it expects during the run, too.
        this.chooser = new ScrambledZipfianChooser(
          random,
          Math.min(2 ** 37, Math.ceil(options.recordCount * (1 + workload.proportions.insert))),
          limit,
        );
        break;
      case 'latest':
        this.chooser = new LatestChooser(random, limit);
        break;
    }
    let acc = 0;
    this.cumulative = [];
    for (const kind of OP_KINDS) {
      const p = workload.proportions[kind];
      if (p <= 0) continue;
      acc += p;
      this.cumulative.push([kind, acc]);
    }
    this.allColumns = Array.from({ length: options.fieldCount }, (_, i) => fieldName(i));
  }

  async execute(): Promise<
    { result: PhaseResult } & { measurement: Measurement; startTimeMs: number }
  > {
    const o = this.options;
    const startTimeMs = Date.now();
    this.t0 = performance.now();
    this.measureStart = this.t0 + o.warmupS * 1000;
    this.endAt = this.measureStart + o.durationS * 1000;
    const totalS = o.warmupS + o.durationS;
    const pids = this.target.serverPids();
    let cpuAtStart: { server: number | null; client: NodeJS.CpuUsage } | null = null;
    const takeCpuBaseline = () => {
      cpuAtStart = {
        server: pids.length > 0 ? totalCpuMs(pids) : null,
        client: process.cpuUsage(),
      };
    };
    if (o.warmupS === 0) takeCpuBaseline();
    const warmupTimer = o.warmupS > 0 ? setTimeout(takeCpuBaseline, o.warmupS * 1000) : undefined;

    this.progress?.start('run', totalS, this.label);
    const ticker = setInterval(() => this.tick(), 1000);
    let drained = true;
    let windowEnd = this.endAt;
    let cpuAtEnd: { server: number | null; client: NodeJS.CpuUsage } | null = null;
    try {
      let endTimer: NodeJS.Timeout | undefined;
      const windowOver = new Promise<void>((resolve) => {
        endTimer = setTimeout(resolve, Math.max(0, this.endAt - performance.now()));
      });
      // The loop ends at the window's end or earlier, when the operation count is reached.
      const loop = o.targetOpsPerSec > 0 ? this.openLoop(windowOver) : this.closedLoop();
      await Promise.race([windowOver, loop]);
      clearTimeout(endTimer);
      windowEnd = Math.min(this.endAt, performance.now());
      cpuAtEnd = {
        server: pids.length > 0 ? totalCpuMs(pids) : null,
        client: process.cpuUsage(),
      };
      this.stopping = true;
      drained = await this.drain(o.drainTimeoutMs);
    } finally {
      this.stopping = true;
      clearInterval(ticker);
      clearTimeout(warmupTimer);
      this.progress?.stop();
    }
    this.tick();
    // The measured window; shorter than asked when the operation count ran out first.
    const windowS = Math.max(1e-3, (windowEnd - this.measureStart) / 1000);
    const ops: OpResult[] = [];
    let count = 0;
    let inWindow = 0;
    for (const op of OP_KINDS) {
      if (!this.measurement.ops().includes(op)) continue;
      const t = this.measurement.opTotals(op);
      count += t.latency.totalCount;
      inWindow += t.completedInWindow;
      ops.push({
        op,
        count: t.latency.totalCount,
        opsPerSec: t.completedInWindow / windowS,
        latencyUs: summarize(t.latency),
        serviceUs: t.service === null ? null : summarize(t.service),
        errors: t.errors,
        spectrum: spectrum(t.latency),
      });
    }
    const start = cpuAtStart as { server: number | null; client: NodeJS.CpuUsage } | null;
    const end = cpuAtEnd as { server: number | null; client: NodeJS.CpuUsage } | null;
    const serverCpuMs =
      start?.server != null && end?.server != null ? end.server - start.server : null;
    const clientCpuMs =
      start !== null && end !== null
        ? (end.client.user - start.client.user + end.client.system - start.client.system) / 1000
        : 0;
    const perOp = (ms: number | null) =>
      ms === null || inWindow === 0 ? null : Math.round((ms / inWindow) * 10_000) / 10_000;
    // Operation i is intended at t0 + i/rate: count those strictly before the window's end
    // with the very expression the schedule uses (a plain ceil can be off by one in floating
    // point and report a phantom backlog).
    let intended = 0;
    if (o.targetOpsPerSec > 0) {
      const intervalMs = 1000 / o.targetOpsPerSec;
      intended = Math.ceil((windowEnd - this.t0) / intervalMs);
      while (intended > 0 && this.t0 + (intended - 1) * intervalMs >= windowEnd) intended--;
      while (this.t0 + intended * intervalMs < windowEnd) intended++;
    }
    return {
      measurement: this.measurement,
      startTimeMs,
      result: {
        durationS: windowS,
        totals: {
          count,
          opsPerSec: inWindow / windowS,
          errors: this.measurement.errorCount(),
          latencyUs: summarize(this.measurement.all),
        },
        ops,
        openLoop:
          o.targetOpsPerSec > 0
            ? {
                targetOpsPerSec: o.targetOpsPerSec,
                intended,
                started: this.issued,
                backlogAtEnd: Math.max(0, intended - this.issued),
              }
            : null,
        undrained: drained ? 0 : this.inflight,
        cpu: {
          serverPids: [...pids],
          serverCpuMs,
          serverCpuMsPerOp: perOp(serverCpuMs),
          clientCpuMs,
          clientCpuMsPerOp: perOp(clientCpuMs),
          serverRssBytes: Object.fromEntries(pids.map((p) => [String(p), processRssBytes(p)])),
        },
        series: this.measurement.series,
      },
    };
  }

  private phaseAt(now: number): 'warmup' | 'measure' {
    // Tolerance for timer lateness: the tick that closes the warm-up still belongs to it.
    return now <= this.measureStart + 50 ? 'warmup' : 'measure';
  }

  private tick(): void {
    const now = performance.now();
    const point = this.measurement.tick((now - this.t0) / 1000, this.phaseAt(now));
    const all = this.measurement.all;
    this.progress?.update({
      phase: this.phaseAt(now),
      elapsedS: (now - this.t0) / 1000,
      totalS: this.options.warmupS + this.options.durationS,
      opsPerSec: point.opsPerSec,
      // During warm-up nothing is measured yet: show the last second's worst p99 instead.
      p99Us:
        all.totalCount > 0
          ? all.getValueAtPercentile(99)
          : Math.max(0, ...Object.values(point.ops).map((o) => o.p99Us)),
    });
  }

  private canIssue(): boolean {
    const max = this.options.operationCountMax;
    return !this.stopping && (max === 0 || this.issued < max);
  }

  private async closedLoop(): Promise<void> {
    const worker = async () => {
      while (this.canIssue()) {
        const now = performance.now();
        if (now >= this.endAt) return;
        this.issued++;
        await this.execute1(this.chooseOp(), now);
      }
    };
    await Promise.all(Array.from({ length: this.options.concurrency }, worker));
  }

  private openLoop(windowOver: Promise<void>): Promise<void> {
    const intervalMs = 1000 / this.options.targetOpsPerSec;
    let next = 0;
    let timer: NodeJS.Timeout | null = null;
    return new Promise<void>((resolve) => {
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        if (timer !== null) clearTimeout(timer);
        resolve();
      };
      const pump = () => {
        if (finished) return;
        const now = performance.now();
        while (true) {
          if (!this.canIssue()) return finish();
          const intended = this.t0 + next * intervalMs;
          if (intended >= this.endAt) return finish();
          if (intended > now) {
            if (timer === null) {
              timer = setTimeout(() => {
                timer = null;
                pump();
              }, intended - now);
            }
            return;
          }
          // Behind schedule and no free slot: a completion calls pump() again.
          if (this.inflight >= this.options.concurrency) return;
          next++;
          this.issued++;
          void this.execute1(this.chooseOp(), intended).then(pump);
        }
      };
      void windowOver.then(finish);
      pump();
    });
  }

  private drain(timeoutMs: number): Promise<boolean> {
    if (this.inflight === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.onIdle = null;
        resolve(false);
      }, timeoutMs);
      this.onIdle = () => {
        clearTimeout(timer);
        this.onIdle = null;
        resolve(true);
      };
    });
  }

  private chooseOp(): OpKind {
    const u = this.random.nextDouble();
    for (const [kind, upTo] of this.cumulative) if (u < upTo) return kind;
    return this.cumulative[this.cumulative.length - 1]![0];
  }

  private updateFields(): Field[] {
    if (this.workload.writeAllFields) return rowFields(this.values, this.options.fieldCount);
    const i = this.random.nextInt(this.options.fieldCount);
    return [{ column: fieldName(i), value: this.values.next() }];
  }

  private readColumns(): readonly string[] {
    if (this.options.fieldCount === 1) return this.allColumns;
    if (this.workload.readAllFields) return [];
    return [fieldName(this.random.nextInt(this.options.fieldCount))];
  }

  /** Runs one operation and records it; never rejects. */
  private async execute1(op: OpKind, intendedStart: number): Promise<void> {
    const order = this.options.keyOrder;
    const ops = this.target.ops;
    let insertKey = -1;
    let call: () => Promise<unknown>;
    switch (op) {
      case 'read': {
        const key = keyName(this.chooser.next(), order);
        const columns = this.readColumns();
        const consistency = this.workload.readConsistency;
        call = async () => {
          if (!(await ops.read(key, { consistency, columns }))) {
            throw Object.assign(new Error(`row ${key} not found`), { code: 'not-found' });
          }
        };
        break;
      }
      case 'update': {
        const key = keyName(this.chooser.next(), order);
        const fields = this.updateFields();
        call = () => ops.update(key, fields);
        break;
      }
      case 'insert': {
        insertKey = this.inserts.take();
        const key = keyName(insertKey, order);
        const fields = rowFields(this.values, this.options.fieldCount);
        call = () => ops.insert(key, fields);
        break;
      }
      case 'scan': {
        const key = keyName(this.chooser.next(), order);
        const n = 1 + this.random.nextInt(this.workload.scanLengthMax);
        call = () => ops.scan(key, n);
        break;
      }
      case 'conditional-update': {
        const key = keyName(this.chooser.next(), order);
        const fields = this.updateFields();
        call = () => ops.conditionalUpdate(key, fields);
        break;
      }
    }
    this.inflight++;
    const sent = performance.now();
    const measured = intendedStart >= this.measureStart;
    try {
      await call();
      const end = performance.now();
      this.measurement.recordOk(op, (end - intendedStart) * 1000, (end - sent) * 1000, {
        measured,
        inWindow: measured && end <= this.endAt && !this.stopping,
      });
    } catch (err) {
      this.measurement.recordError(op, errorCode(err), { measured });
    } finally {
      if (insertKey >= 0) this.inserts.acknowledge(insertKey);
      this.inflight--;
      if (this.inflight === 0) this.onIdle?.();
    }
  }
}
