// The side-by-side report (BENCHMARKS.md): the machine, the parameters, one table per workload
// (one row per system, and one per operation type when a workload mixes them), the issue's
// performance goals checked against the figures, and comparison bars (throughput, p99, server
// CPU per operation) as SVG with PNG copies when a renderer is installed (bench/plot/png.ts).
//
// Pure where it can be: `peersMarkdown` and `goalChecks` turn results into text; only
// `writePeersReport` touches the disk. Plot links in the markdown are relative to its folder.

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { findPngRenderer, renderPng } from '../plot/png.js';
import { barChartSvg } from '../plot/svg.js';
import { formatUs } from '../progress.js';
import type { BenchResult } from '../runner.js';
import type { MachineFacts } from './machine.js';
import type { SystemName } from './systems.js';

export interface SystemOutcome {
  readonly name: SystemName;
  readonly version: string;
  /** Time from launch to healthy, ms. */
  readonly startMs: number;
  /** Why the system has no results (it did not start, or its run failed); null when it ran. */
  readonly error: string | null;
  readonly describe: Record<string, string>;
}

export interface PeersParameters {
  readonly recordCount: number;
  readonly fieldCount: number;
  readonly fieldLengthBytes: number;
  readonly concurrency: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly seed: number;
  readonly timeoutMs: number;
}

export interface PeersReportInput {
  readonly generatedAt: string;
  readonly command: string;
  readonly machine: MachineFacts;
  readonly parameters: PeersParameters;
  readonly workloads: readonly string[];
  readonly systems: readonly SystemOutcome[];
  readonly runs: readonly BenchResult[];
}

export interface Plot {
  readonly title: string;
  /** Relative to the markdown file. */
  readonly svg: string;
  readonly png: string | null;
}

const systemOf = (r: BenchResult): string => r.target.target ?? r.label;

function find(runs: readonly BenchResult[], system: string, workload: string) {
  return runs.find((r) => systemOf(r) === system && r.workload.name === workload);
}

function errorsText(errors: Record<string, number>): string {
  const parts = Object.entries(errors)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${n}`);
  return parts.length === 0 ? '0' : parts.join(', ');
}

function allErrors(r: BenchResult): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of r.ops) for (const [k, n] of Object.entries(o.errors)) out[k] = (out[k] ?? 0) + n;
  return out;
}

const ms = (v: number | null, digits = 3) => (v === null ? '-' : `${v.toFixed(digits)} ms`);
const rate = (v: number) => v.toFixed(0);

export type GoalStatus = 'met' | 'not met' | 'n/a';

export interface GoalCheck {
  readonly goal: string;
  readonly status: GoalStatus;
  readonly detail: string;
}

/** The issue's goals (issue #6, "Performance goals") against one side-by-side run. */
export function goalChecks(runs: readonly BenchResult[]): GoalCheck[] {
  const get = (system: string, workload: string) => find(runs, system, workload);
  const ops = (r: BenchResult | undefined) => r?.totals.opsPerSec ?? null;
  const p99 = (r: BenchResult | undefined) => (r === undefined ? null : r.totals.latencyUs.p99);
  const checks: GoalCheck[] = [];
  const status = (ok: boolean | null): GoalStatus => (ok === null ? 'n/a' : ok ? 'met' : 'not met');

  const skvW = get('skv', 'write-only');
  const peersW = [get('etcd', 'write-only'), get('zookeeper', 'write-only')].filter(
    (r): r is BenchResult => r !== undefined,
  );
  const bestPeer = peersW.sort((a, b) => b.totals.opsPerSec - a.totals.opsPerSec)[0];
  {
    const s = ops(skvW);
    const b = ops(bestPeer);
    const ok = s === null || b === null ? null : s >= 2 * b && p99(skvW)! <= p99(bestPeer)!;
    checks.push({
      goal: 'writes: at least 2x the better peer, p99 no worse',
      status: status(ok),
      detail:
        s === null || b === null || bestPeer === undefined
          ? 'missing runs'
          : `skv ${rate(s)}/s p99 ${formatUs(p99(skvW)!)}; ${systemOf(bestPeer)} ${rate(b)}/s p99 ${formatUs(p99(bestPeer)!)} (${(s / b).toFixed(2)}x)`,
    });
  }
  {
    const s = ops(get('skv', 'strong-read'));
    const z = ops(get('zookeeper', 'strong-read'));
    const e = ops(get('etcd', 'strong-read'));
    const ok = s === null || z === null || e === null ? null : s >= z && s >= 2 * e;
    checks.push({
      goal: "strong reads: at least ZooKeeper's sync+read and 2x etcd's linearizable reads",
      status: status(ok),
      detail: `skv ${s === null ? '-' : rate(s)}/s; zookeeper ${z === null ? '-' : rate(z)}/s; etcd ${e === null ? '-' : rate(e)}/s`,
    });
  }
  {
    const s = ops(get('skv', 'timeline-read'));
    const z = ops(get('zookeeper', 'timeline-read'));
    const ok = s === null || z === null ? null : s >= z;
    checks.push({
      goal: "timeline reads: at least ZooKeeper's follower reads",
      status: status(ok),
      detail: `skv ${s === null ? '-' : rate(s)}/s; zookeeper ${z === null ? '-' : rate(z)}/s`,
    });
  }
  {
    const c = skvW?.cpu.serverCpuMsPerOp ?? null;
    checks.push({
      goal: 'efficiency: at most 0.1 ms of server CPU per replicated write (3 nodes together)',
      status: status(c === null ? null : c <= 0.1),
      detail: `skv ${ms(c)}; etcd ${ms(get('etcd', 'write-only')?.cpu.serverCpuMsPerOp ?? null)}; zookeeper ${ms(get('zookeeper', 'write-only')?.cpu.serverCpuMsPerOp ?? null)}`,
    });
  }
  return checks;
}

export function peersMarkdown(
  input: PeersReportInput,
  plots: readonly Plot[],
  pngNote: string,
): string {
  const m = input.machine;
  const p = input.parameters;
  const lines: string[] = [
    '# Benchmarks: skv, etcd and ZooKeeper side by side',
    '',
    `Generated ${input.generatedAt} by \`${input.command}\` (bench/peers/run.ts).`,
    '',
    '## Machine',
    '',
    `- CPU: ${m.nproc} x ${m.cpuModel}`,
    `- RAM: ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB`,
    `- Disk (data directories): ${m.disk}`,
    `- Kernel: ${m.kernel}; Node ${m.node}`,
    `- etcd ${m.etcd}; ZooKeeper ${m.zookeeper}; skv commit ${m.skvCommit}`,
    '- Every server, and the load generator (one Node process), on this one machine, on 127.0.0.1.',
    '',
    '## Setup',
    '',
    `- Each system in turn, alone on the machine: 3 replicas, fsync on, each with its own data directory; started, loaded with ${p.recordCount} rows, measured, stopped by PID, its directories removed.`,
    `- Rows: 16-byte keys, ${p.fieldCount} column(s) of ${p.fieldLengthBytes} bytes. Closed loop, ${p.concurrency} requests in flight, ${p.durationS} s measured after ${p.warmupS} s of warm-up, seed ${p.seed}, ${p.timeoutMs} ms per-operation deadline.`,
    '- Server CPU per operation: utime + stime of the 3 replica processes over the measured window, summed, divided by the operations completed (skv: its 3 nodes; its coordination ZooKeeper is off the data path and not counted). Load generator CPU per operation beside it.',
    '- Load average: the 1-minute load average before -> after each run; this is a shared 2-core machine, read the figures with it.',
    '',
    '| system | version | started in | how the load generator talks to it |',
    '|---|---|---:|---|',
  ];
  for (const s of input.systems) {
    lines.push(
      `| ${s.name} | ${s.version} | ${s.error === null ? `${(s.startMs / 1000).toFixed(1)} s` : '-'} | ${s.describe.path ?? '-'}${s.describe.rows === undefined ? '' : `; ${s.describe.rows}`} |`,
    );
  }
  const failed = input.systems.filter((s) => s.error !== null);
  if (failed.length > 0) {
    lines.push('', 'Systems without results:', '');
    for (const s of failed) lines.push(`- ${s.name}: ${s.error}`);
  }

  lines.push('', '## Results', '');
  for (const w of input.workloads) {
    const some = input.runs.find((r) => r.workload.name === w);
    if (some === undefined) continue;
    lines.push(`### ${w}: ${some.workload.description}`, '');
    lines.push(
      '| system | ops/s | p50 | p99 | p99.9 | server CPU/op (3 replicas) | load gen CPU/op | errors | load avg |',
      '|---|---:|---:|---:|---:|---:|---:|---|---|',
    );
    for (const s of input.systems) {
      const r = find(input.runs, s.name, w);
      if (r === undefined) continue;
      const l = r.totals.latencyUs;
      lines.push(
        `| ${s.name} | ${rate(r.totals.opsPerSec)} | ${formatUs(l.p50)} | ${formatUs(l.p99)} | ${formatUs(l.p999)} | ${ms(r.cpu.serverCpuMsPerOp)} | ${ms(r.cpu.clientCpuMsPerOp)} | ${errorsText(allErrors(r))} | ${r.machine.loadAverage[0].toFixed(1)} -> ${r.machine.loadAverage[1].toFixed(1)} |`,
      );
      if (r.ops.length > 1) {
        for (const o of r.ops) {
          lines.push(
            `| ${s.name}: ${o.op} | ${rate(o.opsPerSec)} | ${formatUs(o.latencyUs.p50)} | ${formatUs(o.latencyUs.p99)} | ${formatUs(o.latencyUs.p999)} | | | ${errorsText(o.errors)} | |`,
          );
        }
      }
    }
    lines.push('');
  }

  lines.push('## Against the goals of issue #6', '');
  lines.push('| goal | status | figures |', '|---|---|---|');
  for (const c of goalChecks(input.runs)) lines.push(`| ${c.goal} | ${c.status} | ${c.detail} |`);
  lines.push('');

  if (plots.length > 0) {
    lines.push('## Plots', '');
    for (const plot of plots) {
      lines.push(`![${plot.title}](${plot.png ?? plot.svg})`, '');
      lines.push(
        `${plot.title}: [SVG](${plot.svg})${plot.png === null ? '' : `, [PNG](${plot.png})`}`,
        '',
      );
    }
    lines.push(pngNote, '');
  }
  lines.push(
    '## Reproduce',
    '',
    '```sh',
    'npm run build   # the skv servers run from the built bin/skv.js',
    input.command,
    '```',
    '',
  );
  return lines.join('\n');
}

/** The three comparison bar charts, one group per workload and one bar per system. */
export function peersPlots(
  input: PeersReportInput,
): { name: string; title: string; svg: string }[] {
  const groups = input.workloads.filter((w) => input.runs.some((r) => r.workload.name === w));
  const systems = input.systems.filter((s) => s.error === null).map((s) => s.name);
  const series = (f: (r: BenchResult) => number | null) =>
    systems.map((name) => ({
      name,
      values: groups.map((g) => {
        const r = find(input.runs, name, g);
        const v = r === undefined ? null : f(r);
        return v === null ? Number.NaN : v;
      }),
    }));
  return [
    {
      name: 'peers-throughput',
      title: 'Throughput by workload',
      svg: barChartSvg({
        title: 'Throughput by workload (3 replicas each)',
        yLabel: 'operations per second',
        groups,
        series: series((r) => r.totals.opsPerSec),
      }),
    },
    {
      name: 'peers-p99',
      title: 'p99 latency by workload',
      svg: barChartSvg({
        title: 'p99 latency by workload',
        yLabel: 'p99 latency (ms)',
        groups,
        series: series((r) => r.totals.latencyUs.p99 / 1000),
      }),
    },
    {
      name: 'peers-server-cpu',
      title: 'Server CPU per operation by workload',
      svg: barChartSvg({
        title: 'Server CPU per operation, 3 replicas summed',
        yLabel: 'ms of CPU per operation',
        groups,
        series: series((r) => r.cpu.serverCpuMsPerOp),
      }),
    },
  ];
}

/** Writes the plots into `plotsDir` (with PNGs when possible) and the markdown to `mdPath`. */
export async function writePeersReport(
  input: PeersReportInput,
  o: { plotsDir: string; mdPath: string },
): Promise<{ files: string[]; pngNote: string }> {
  await mkdir(o.plotsDir, { recursive: true });
  await mkdir(path.dirname(path.resolve(o.mdPath)), { recursive: true });
  const files: string[] = [];
  const mdDir = path.dirname(path.resolve(o.mdPath));
  const rel = (file: string) => path.relative(mdDir, path.resolve(file)).split(path.sep).join('/');
  const renderer = findPngRenderer();
  const plots: Plot[] = [];
  let failed = 0;
  for (const chart of peersPlots(input)) {
    const svg = path.join(o.plotsDir, `${chart.name}.svg`);
    await writeFile(svg, chart.svg);
    files.push(svg);
    let png: string | null = null;
    if (renderer !== null) {
      const target = path.join(o.plotsDir, `${chart.name}.png`);
      try {
        await renderPng(renderer, svg, target, { width: 900, height: 520 });
        files.push(target);
        png = target;
      } catch {
        failed++;
      }
    }
    plots.push({ title: chart.title, svg: rel(svg), png: png === null ? null : rel(png) });
  }
  const pngNote =
    renderer === null
      ? 'PNG: none made, no SVG renderer is installed (Debian `librsvg2-bin` gives rsvg-convert); the SVGs are complete.'
      : `PNG: rendered with ${renderer.kind}${failed > 0 ? `; ${failed} failed` : ''}.`;
  await writeFile(o.mdPath, peersMarkdown(input, plots, pngNote));
  files.push(o.mdPath);
  return { files, pngNote };
}
