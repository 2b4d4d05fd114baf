// What a run leaves behind: the end-of-run table, and in the output folder per run
// `<label>.json` (the full result), `<label>.series.csv` (the per-second series),
// `<label>.hlog` (HdrHistogram log), `<label>.throughput.svg` and `<label>.latency.svg`;
// per invocation `comparison-throughput.svg`, `comparison-p99.svg`, `summary.md` and
// `summary.json`; and a PNG beside every SVG when a renderer is installed (plot/png.ts).

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findPngRenderer, renderPng } from './plot/png.js';
import { barChartSvg, lineChartSvg } from './plot/svg.js';
import { formatRate, formatUs } from './progress.js';
import type { BenchResult, RunOutput } from './runner.js';
import { OP_KINDS } from './workloads.js';

export function fileSafe(label: string): string {
  return label.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120) || 'run';
}

function errorsText(errors: Record<string, number>): string {
  const parts = Object.entries(errors)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code}: ${n}`);
  return parts.length === 0 ? '-' : parts.join(', ');
}

function pad(cells: string[][]): string {
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells
    .map((r) =>
      r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '),
    )
    .join('\n');
}

/** The end-of-run table: one line per operation type, then totals, CPU and load facts. */
export function formatTable(r: BenchResult): string {
  const header = ['op', 'count', 'ops/s', 'p50', 'p95', 'p99', 'p99.9', 'max', 'errors'];
  const rows = r.ops.map((o) => [
    o.op,
    String(o.count),
    formatRate(o.opsPerSec),
    formatUs(o.latencyUs.p50),
    formatUs(o.latencyUs.p95),
    formatUs(o.latencyUs.p99),
    formatUs(o.latencyUs.p999),
    formatUs(o.latencyUs.max),
    errorsText(o.errors),
  ]);
  const t = r.totals;
  rows.push([
    'all',
    String(t.count),
    formatRate(t.opsPerSec),
    formatUs(t.latencyUs.p50),
    formatUs(t.latencyUs.p95),
    formatUs(t.latencyUs.p99),
    formatUs(t.latencyUs.p999),
    formatUs(t.latencyUs.max),
    String(t.errors),
  ]);
  const lines = [
    `== ${r.label}: ${r.workload.description}`,
    `   ${r.mode} loop, concurrency ${r.options.concurrency}` +
      (r.mode === 'open' ? `, target ${r.options.targetOpsPerSec} ops/s` : '') +
      `, ${r.durationS.toFixed(1)} s measured after ${r.options.warmupS} s warm-up, ` +
      `${r.options.recordCount} records x ${r.options.fieldCount} x ${r.options.fieldLengthBytes} B, ` +
      `${r.workload.distribution}, seed ${r.options.seed}`,
    `   machine load average ${r.machine.loadAverage[0].toFixed(1)} -> ${r.machine.loadAverage[1].toFixed(1)} (${r.machine.cpus} cpus)`,
  ];
  if (r.load !== null) {
    lines.push(
      `   load: ${r.load.inserted}/${r.load.records} rows in ${r.load.durationS.toFixed(1)} s ` +
        `(${formatRate(r.load.opsPerSec)} rows/s, p99 ${formatUs(r.load.latencyUs.p99)}, ` +
        `errors ${errorsText(r.load.errors)}` +
        (Object.keys(r.load.retried).length > 0 ? `, retried ${errorsText(r.load.retried)}` : '') +
        `${r.load.timedOut ? ', TIMED OUT' : ''})`,
    );
  }
  lines.push(pad([header, ...rows]));
  if (r.mode === 'open') {
    lines.push('   latency is from the intended start (coordinated-omission corrected)');
    for (const o of r.ops) {
      if (o.serviceUs === null) continue;
      lines.push(
        `   ${o.op} service time (from send): p50 ${formatUs(o.serviceUs.p50)}, p99 ${formatUs(o.serviceUs.p99)}`,
      );
    }
    if (r.openLoop !== null && r.openLoop.backlogAtEnd > 0) {
      lines.push(`   behind schedule: ${r.openLoop.backlogAtEnd} intended operations never sent`);
    }
  }
  const cpu = r.cpu;
  lines.push(
    `   CPU per op: server ${cpu.serverCpuMsPerOp === null ? 'unknown' : `${cpu.serverCpuMsPerOp.toFixed(4)} ms`}` +
      ` (pids ${cpu.serverPids.length === 0 ? 'unknown' : cpu.serverPids.join(',')}),` +
      ` load generator ${cpu.clientCpuMsPerOp === null ? 'unknown' : `${cpu.clientCpuMsPerOp.toFixed(4)} ms`}`,
  );
  const rss = Object.entries(cpu.serverRssBytes)
    .map(([pid, b]) => `${pid}: ${b === null ? '?' : `${(b / 2 ** 20).toFixed(0)} MiB`}`)
    .join(', ');
  if (rss !== '') lines.push(`   server RSS: ${rss}`);
  if (r.undrained > 0) lines.push(`   ${r.undrained} operations still in flight at the end`);
  return lines.join('\n');
}

/** The per-second series as CSV: one row per second, columns per operation type. */
export function seriesCsv(r: BenchResult): string {
  const ops = OP_KINDS.filter((op) => r.series.some((p) => p.ops[op] !== undefined));
  const head = ['t_s', 'phase', 'interval_s', 'ops_per_s'];
  for (const op of ops)
    head.push(`${op}_ops_per_s`, `${op}_p50_us`, `${op}_p99_us`, `${op}_errors`);
  const lines = [head.join(',')];
  for (const p of r.series) {
    const row = [String(p.tS), p.phase, String(p.intervalS), p.opsPerSec.toFixed(1)];
    for (const op of ops) {
      const o = p.ops[op];
      row.push(
        o === undefined ? '0' : o.opsPerSec.toFixed(1),
        String(o?.p50Us ?? 0),
        String(o?.p99Us ?? 0),
        String(o?.errors ?? 0),
      );
    }
    lines.push(row.join(','));
  }
  return `${lines.join('\n')}\n`;
}

export function throughputSvg(r: BenchResult): string {
  const ops = OP_KINDS.filter((op) => r.series.some((p) => p.ops[op] !== undefined));
  return lineChartSvg({
    title: `${r.label}: throughput over time`,
    xLabel: 'time (s; warm-up first)',
    yLabel: 'operations per second',
    series: [
      { name: 'all', points: r.series.map((p) => [p.tS, p.opsPerSec] as const) },
      ...ops.map((op) => ({
        name: op,
        points: r.series.map((p) => [p.tS, p.ops[op]?.opsPerSec ?? 0] as const),
      })),
    ],
  });
}

export function latencySvg(r: BenchResult): string {
  return lineChartSvg({
    title: `${r.label}: latency by percentile`,
    xLabel: 'percentile',
    yLabel: 'latency (ms)',
    xScale: 'percentile',
    series: r.ops.map((o) => ({
      name: o.op,
      // The max (p = 100) has no place on a log axis of 1/(1-p); the table gives it.
      points: o.spectrum.filter(([p]) => p < 100).map(([p, us]) => [p, us / 1000] as const),
    })),
  });
}

/** Comparison bars: one group per workload, one bar per target (or label when alone). */
export function comparisonSvgs(results: readonly BenchResult[]): {
  throughput: string;
  p99: string;
} {
  const groups = [...new Set(results.map((r) => r.workload.name))];
  const names = [...new Set(results.map((r) => r.target.target ?? r.label))];
  const pick = (f: (r: BenchResult) => number) =>
    names.map((name) => ({
      name,
      values: groups.map((g) => {
        const r = results.find(
          (x) => x.workload.name === g && (x.target.target ?? x.label) === name,
        );
        return r === undefined ? Number.NaN : f(r);
      }),
    }));
  return {
    throughput: barChartSvg({
      title: 'Throughput by workload',
      yLabel: 'operations per second',
      groups,
      series: pick((r) => r.totals.opsPerSec),
    }),
    p99: barChartSvg({
      title: 'p99 latency by workload',
      yLabel: 'p99 latency (ms)',
      groups,
      series: pick((r) => r.totals.latencyUs.p99 / 1000),
    }),
  };
}

export function summaryMarkdown(results: readonly BenchResult[], pngNote: string): string {
  const first = results[0];
  const lines = ['# skv bench results', ''];
  if (first !== undefined) {
    const m = first.machine;
    lines.push(
      `Machine: ${m.cpus} x ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB, Node ${m.node}, ${m.platform}; 1-minute load average ${m.loadAverage[0].toFixed(1)} before the first run.`,
      '',
    );
  }
  lines.push(
    '| run | workload | mode | ops/s | p50 | p95 | p99 | p99.9 | max | errors | server CPU/op |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of results) {
    const l = r.totals.latencyUs;
    const cpu = r.cpu.serverCpuMsPerOp;
    lines.push(
      `| ${r.label} | ${r.workload.name} | ${r.mode} | ${r.totals.opsPerSec.toFixed(0)} | ${formatUs(l.p50)} | ${formatUs(l.p95)} | ${formatUs(l.p99)} | ${formatUs(l.p999)} | ${formatUs(l.max)} | ${r.totals.errors} | ${cpu === null ? '-' : `${cpu.toFixed(3)} ms`} |`,
    );
  }
  lines.push('', pngNote, '');
  return lines.join('\n');
}

export interface WrittenReport {
  readonly files: string[];
  /** How PNGs were made, or why there are none. */
  readonly pngNote: string;
}

/** Writes every run's files and the comparison across them into `outDir`. */
export async function writeReport(
  outDir: string,
  runs: readonly RunOutput[],
): Promise<WrittenReport> {
  await mkdir(outDir, { recursive: true });
  const files: string[] = [];
  const svgs: string[] = [];
  const put = async (name: string, text: string) => {
    const path = join(outDir, name);
    await writeFile(path, text);
    files.push(path);
    if (name.endsWith('.svg')) svgs.push(path);
  };
  const used = new Set<string>();
  for (const run of runs) {
    let base = fileSafe(run.result.label);
    for (let i = 2; used.has(base); i++) base = `${fileSafe(run.result.label)}-${i}`;
    used.add(base);
    await put(`${base}.json`, `${JSON.stringify(run.result, null, 2)}\n`);
    await put(`${base}.series.csv`, seriesCsv(run.result));
    await put(`${base}.hlog`, run.hdrLog);
    await put(`${base}.throughput.svg`, throughputSvg(run.result));
    await put(`${base}.latency.svg`, latencySvg(run.result));
  }
  const results = runs.map((r) => r.result);
  const comparison = comparisonSvgs(results);
  await put('comparison-throughput.svg', comparison.throughput);
  await put('comparison-p99.svg', comparison.p99);
  const renderer = findPngRenderer();
  let pngNote: string;
  if (renderer === null) {
    pngNote =
      'PNG: none made, no SVG renderer is installed (install `librsvg2-bin` for rsvg-convert, or Chromium); the SVG files are complete.';
  } else {
    let failed = 0;
    for (const svg of svgs) {
      const png = svg.replace(/\.svg$/, '.png');
      try {
        await renderPng(renderer, svg, png, { width: 900, height: 520 });
        files.push(png);
      } catch {
        failed++;
      }
    }
    pngNote = `PNG: rendered with ${renderer.kind} (${renderer.path})${failed > 0 ? `; ${failed} failed` : ''}.`;
  }
  await put('summary.md', summaryMarkdown(results, pngNote));
  await put(
    'summary.json',
    `${JSON.stringify({ schema: 'skv-bench-summary/1', runs: results.map((r) => ({ label: r.label, workload: r.workload.name, target: r.target, mode: r.mode, totals: r.totals, cpu: r.cpu, ops: r.ops.map(({ spectrum: _s, ...o }) => o) })) }, null, 2)}\n`,
  );
  return { files, pngNote };
}
