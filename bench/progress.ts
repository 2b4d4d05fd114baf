// The live display of a run: a cli-progress bar on stderr when stderr is a terminal (live ops/s,
// p99 so far, time left), plain periodic lines otherwise (CI logs, pipes), or nothing.

import { Presets, SingleBar } from 'cli-progress';
import type { ProgressSink } from './runner.js';

export function formatUs(us: number): string {
  if (us >= 1_000_000) return `${(us / 1_000_000).toFixed(2)} s`;
  if (us >= 1_000) return `${(us / 1_000).toFixed(us >= 100_000 ? 0 : 2)} ms`;
  return `${Math.round(us)} µs`;
}

export function formatRate(opsPerSec: number): string {
  return opsPerSec >= 10_000 ? `${(opsPerSec / 1000).toFixed(1)}k` : opsPerSec.toFixed(0);
}

/** The bar (TTY) or the lines (not a TTY); `quiet` for neither. */
export function progressFor(options: {
  quiet: boolean;
  stream?: NodeJS.WriteStream;
  lineIntervalS?: number;
}): ProgressSink | null {
  if (options.quiet) return null;
  const stream = options.stream ?? process.stderr;
  return stream.isTTY
    ? new BarProgress(stream)
    : new LineProgress(stream, options.lineIntervalS ?? 5);
}

class BarProgress implements ProgressSink {
  private bar: SingleBar | null = null;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  start(phase: 'load' | 'run', totalS: number, label: string): void {
    this.bar = new SingleBar(
      {
        stream: this.stream,
        format: `${label} [{bar}] {phase} {elapsed}/{totalS}s | {rate} ops/s | p99 {p99} | {left}`,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 5,
      },
      Presets.shades_classic,
    );
    const total = phase === 'load' ? 1 : Math.max(1, Math.round(totalS));
    this.bar.start(total, 0, {
      phase,
      elapsed: 0,
      totalS: Math.round(totalS),
      rate: '-',
      p99: '-',
      left: '',
    });
  }

  update(s: Parameters<ProgressSink['update']>[0]): void {
    if (this.bar === null) return;
    const load = s.phase === 'load' && s.total !== undefined && s.done !== undefined;
    const left = load
      ? `${s.done}/${s.total} rows`
      : `${Math.max(0, Math.ceil(s.totalS - s.elapsedS))} s left`;
    if (load) this.bar.setTotal(s.total!);
    this.bar.update(load ? s.done! : Math.min(s.elapsedS, s.totalS), {
      phase: s.phase,
      elapsed: Math.floor(s.elapsedS),
      totalS: Math.round(s.totalS),
      rate: formatRate(s.opsPerSec),
      p99: s.p99Us > 0 ? formatUs(s.p99Us) : '-',
      left,
    });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

class LineProgress implements ProgressSink {
  private label = '';
  private lastLineS = -Infinity;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly intervalS: number,
  ) {}

  start(phase: 'load' | 'run', totalS: number, label: string): void {
    this.label = label;
    this.lastLineS = -Infinity;
    const what = phase === 'load' ? `load (at most ${totalS} s)` : `run, ${totalS} s`;
    this.stream.write(`${label}: ${what}\n`);
  }

  update(s: Parameters<ProgressSink['update']>[0]): void {
    if (s.elapsedS - this.lastLineS < this.intervalS) return;
    this.lastLineS = s.elapsedS;
    const where =
      s.phase === 'load'
        ? `${s.done ?? 0}/${s.total ?? 0} rows`
        : `${Math.max(0, Math.ceil(s.totalS - s.elapsedS))} s left`;
    const p99 = s.p99Us > 0 ? formatUs(s.p99Us) : '-';
    this.stream.write(
      `${this.label}: ${s.phase} ${s.elapsedS.toFixed(0)} s, ${formatRate(s.opsPerSec)} ops/s, p99 ${p99}, ${where}\n`,
    );
  }

  stop(): void {}
}
