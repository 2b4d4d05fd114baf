// Measurement of one run: an HdrHistogram per operation type (latency in µs, 3 significant
// digits, 1 µs .. 60 s, larger values clamped to the top), errors by code, and a per-second
// series (ops/s, p50, p99 per operation type) whose interval histograms also go to an
// HdrHistogram log (the format HdrHistogram's tools read: HistogramLogProcessor, the plotter).
//
// Two clocks of latency in open-loop mode: `latency` is measured from the operation's intended
// start (coordinated-omission corrected: time spent waiting for a free slot counts) and `service`
// from when it was really sent. In closed-loop mode they are the same and only `latency` is kept.
//
// Bounds: histograms are fixed-size; the series and the log grow by one entry per second of run,
// and runs are bounded in time by the runner.

import * as hdr from 'hdr-histogram-js';
import type { OpKind } from './workloads.js';

export const LATENCY_US_MAX = 60_000_000;

export type Phase = 'load' | 'warmup' | 'measure';

export interface LatencySummaryUs {
  readonly count: number;
  readonly min: number;
  readonly mean: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export interface OpSeriesPoint {
  readonly count: number;
  readonly opsPerSec: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly errors: number;
}

export interface SeriesPoint {
  /** Seconds since the run's transaction phase started, at the end of this interval. */
  readonly tS: number;
  readonly intervalS: number;
  readonly phase: Phase;
  readonly opsPerSec: number;
  readonly ops: Partial<Record<OpKind, OpSeriesPoint>>;
}

export function newHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_US_MAX,
    numberOfSignificantValueDigits: 3,
    autoResize: false,
  });
}

export function summarize(h: hdr.Histogram): LatencySummaryUs {
  const count = h.totalCount;
  if (count === 0) return { count, min: 0, mean: 0, p50: 0, p95: 0, p99: 0, p999: 0, max: 0 };
  return {
    count,
    min: h.minNonZeroValue,
    mean: Math.round(h.mean * 10) / 10,
    p50: h.getValueAtPercentile(50),
    p95: h.getValueAtPercentile(95),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    max: h.maxValue,
  };
}

/**
 * The latency percentile spectrum as (percentile, µs) pairs, evenly spaced on the log scale of
 * 1/(1 - p) up to 99.999% (and the max), the x-axis HdrHistogram's plots use.
 */
export function spectrum(h: hdr.Histogram, stepsPerDecade = 10): [number, number][] {
  if (h.totalCount === 0) return [];
  const out: [number, number][] = [];
  for (let i = 0; i <= 5 * stepsPerDecade; i++) {
    const p = 100 * (1 - 10 ** (-i / stepsPerDecade));
    out.push([Math.round(p * 10_000) / 10_000, h.getValueAtPercentile(p)]);
  }
  out.push([100, h.maxValue]);
  return out;
}

function clampUs(us: number): number {
  if (us < 1) return 1;
  if (us > LATENCY_US_MAX) return LATENCY_US_MAX;
  return Math.round(us);
}

class OpRecorder {
  readonly total = newHistogram();
  readonly service = newHistogram();
  readonly interval = newHistogram();
  readonly errors = new Map<string, number>();
  intervalErrors = 0;
  /** Successful operations that completed inside the measured window. */
  completedInWindow = 0;
}

export class Measurement {
  private readonly recorders = new Map<OpKind, OpRecorder>();
  /** Every measured operation, for the live p99 of the progress display. */
  readonly all = newHistogram();
  readonly series: SeriesPoint[] = [];
  private readonly hdrLines: string[] = [];
  private intervalStartS = 0;

  constructor(readonly openLoop: boolean) {}

  private recorder(op: OpKind): OpRecorder {
    let r = this.recorders.get(op);
    if (r === undefined) {
      r = new OpRecorder();
      this.recorders.set(op, r);
    }
    return r;
  }

  /**
   * A successful operation. `measured`: it started inside the measured window (after warm-up);
   * `inWindow`: it also completed before the window closed (counts toward ops/s).
   */
  recordOk(
    op: OpKind,
    latencyUs: number,
    serviceUs: number,
    how: { measured: boolean; inWindow: boolean },
  ): void {
    const r = this.recorder(op);
    const v = clampUs(latencyUs);
    r.interval.recordValue(v);
    if (!how.measured) return;
    r.total.recordValue(v);
    this.all.recordValue(v);
    if (this.openLoop) r.service.recordValue(clampUs(serviceUs));
    if (how.inWindow) r.completedInWindow++;
  }

  recordError(op: OpKind, code: string, how: { measured: boolean }): void {
    const r = this.recorder(op);
    r.intervalErrors++;
    if (!how.measured) return;
    r.errors.set(code, (r.errors.get(code) ?? 0) + 1);
  }

  /** Closes the current interval at `nowS` (seconds since the phase started). */
  tick(nowS: number, phase: Phase): SeriesPoint {
    const intervalS = Math.max(1e-3, nowS - this.intervalStartS);
    const ops: Partial<Record<OpKind, OpSeriesPoint>> = {};
    let total = 0;
    for (const [op, r] of this.recorders) {
      const count = r.interval.totalCount;
      total += count;
      ops[op] = {
        count,
        opsPerSec: count / intervalS,
        p50Us: count === 0 ? 0 : r.interval.getValueAtPercentile(50),
        p99Us: count === 0 ? 0 : r.interval.getValueAtPercentile(99),
        errors: r.intervalErrors,
      };
      if (count > 0) this.logInterval(op, r.interval, this.intervalStartS, nowS);
      r.interval.reset();
      r.intervalErrors = 0;
    }
    const point: SeriesPoint = {
      tS: Math.round(nowS * 1000) / 1000,
      intervalS: Math.round(intervalS * 1000) / 1000,
      phase,
      opsPerSec: total / intervalS,
      ops,
    };
    this.series.push(point);
    this.intervalStartS = nowS;
    return point;
  }

  private logInterval(op: OpKind, h: hdr.Histogram, startS: number, endS: number): void {
    h.tag = op;
    let line = '';
    const writer = new hdr.HistogramLogWriter((s) => {
      line += s;
    });
    // Values are µs; the log's max column is in ms (maxValueUnitRatio 1000).
    writer.outputIntervalHistogram(h, startS, endS, 1000);
    this.hdrLines.push(line);
  }

  /** The HdrHistogram log (format 1.3) of the per-second interval histograms, tagged by op. */
  hdrLog(startTimeMs: number, comment: string): string {
    let head = '';
    const writer = new hdr.HistogramLogWriter((s) => {
      head += s;
    });
    writer.outputComment(comment);
    writer.outputLogFormatVersion();
    writer.outputStartTime(startTimeMs);
    writer.outputLegend();
    return head + this.hdrLines.join('');
  }

  ops(): OpKind[] {
    return [...this.recorders.keys()];
  }

  opTotals(op: OpKind): {
    latency: hdr.Histogram;
    service: hdr.Histogram | null;
    errors: Record<string, number>;
    completedInWindow: number;
  } {
    const r = this.recorder(op);
    return {
      latency: r.total,
      service: this.openLoop ? r.service : null,
      errors: Object.fromEntries(r.errors),
      completedInWindow: r.completedInWindow,
    };
  }

  /** Errors of every op type during the measured window. */
  errorCount(): number {
    let n = 0;
    for (const r of this.recorders.values()) for (const c of r.errors.values()) n += c;
    return n;
  }
}
