// The benchmark runner (bench/): short runs through the real client library and gRPC edge over
// the in-memory backend, the key choosers' distributions, coordinated-omission correction in
// open-loop mode, CPU accounting, and the well-formedness of the report files.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BenchCommandOptions,
  registerBenchCommand,
  runOptionsFor,
  workloadsFor,
} from '../bench/cli.js';
import { parseStatCpuMs } from '../bench/cpu.js';
import {
  AcknowledgedCounter,
  fnvHash64Mod,
  LatestChooser,
  ScrambledZipfianChooser,
  UniformChooser,
  ZipfianGenerator,
  zeta,
} from '../bench/generators.js';
import { hashedKeySplits, keyName, scramble48 } from '../bench/keys.js';
import type { LatencySummaryUs } from '../bench/measure.js';
import { barChartSvg, lineChartSvg, niceTicks } from '../bench/plot/svg.js';
import { Random } from '../bench/random.js';
import { writeReport } from '../bench/report.js';
import { DEFAULT_RUN_OPTIONS, type RunOptions, type RunOutput, runBench } from '../bench/runner.js';
import { type MemoryServer, startMemoryServer } from '../bench/support/memory-server.js';
import type { BenchOps, BenchTarget } from '../bench/target.js';
import { MemoryTarget } from '../bench/targets/memory.js';
import { SkvTarget } from '../bench/targets/skv.js';
import { UnaryTarget } from '../bench/targets/skv-unary.js';
import { workload } from '../bench/workloads.js';

// ---------------------------------------------------------------------------------------------
// A minimal XML well-formedness check (no XML parser is a dependency): one root element, every
// tag closed in order, attributes quoted, no raw '<' or stray '&' in text or attribute values.

function checkWellFormedXml(xml: string): void {
  let s = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  const entity = /&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g;
  const checkText = (text: string, where: string) => {
    if (text.includes('<')) throw new Error(`raw '<' in ${where}`);
    if (text.replace(entity, '').includes('&')) throw new Error(`stray '&' in ${where}`);
  };
  while (s.length > 0) {
    const lt = s.indexOf('<');
    if (lt < 0) {
      checkText(s, 'trailing text');
      if (s.trim() !== '') throw new Error('text after the root element');
      break;
    }
    const text = s.slice(0, lt);
    checkText(text, 'text');
    if (stack.length === 0 && text.trim() !== '') throw new Error('text outside the root element');
    const gt = s.indexOf('>', lt);
    if (gt < 0) throw new Error('unterminated tag');
    const tag = s.slice(lt + 1, gt);
    s = s.slice(gt + 1);
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
      continue;
    }
    const selfClosing = tag.endsWith('/');
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*="[^"]*")*)\s*$/.exec(body);
    if (m === null) throw new Error(`malformed tag <${tag}>`);
    for (const a of (m[2] ?? '').matchAll(/="([^"]*)"/g)) checkText(a[1] ?? '', 'attribute');
    if (stack.length === 0) roots++;
    if (!selfClosing) stack.push(m[1]!);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join('> <')}>`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
}

function expectOrdered(l: LatencySummaryUs): void {
  expect(l.count).toBeGreaterThan(0);
  expect(l.min).toBeGreaterThan(0);
  expect(l.min).toBeLessThanOrEqual(l.p50);
  expect(l.p50).toBeLessThanOrEqual(l.p95);
  expect(l.p95).toBeLessThanOrEqual(l.p99);
  expect(l.p99).toBeLessThanOrEqual(l.p999);
  // The histogram reports a percentile as its bucket's highest equivalent value, so it may
  // exceed the exact max by less than the 3-significant-digit resolution.
  expect(l.p999).toBeLessThanOrEqual(l.max * 1.001 + 1);
}

const short: RunOptions = {
  ...DEFAULT_RUN_OPTIONS,
  recordCount: 1000,
  concurrency: 32,
  loadConcurrency: 64,
  durationS: 0.8,
  warmupS: 0.2,
  load: false,
  seed: 42,
};

// ---------------------------------------------------------------------------------------------

describe('bench runner against the in-memory gRPC edge', () => {
  let server: MemoryServer;
  let target: SkvTarget;
  const runs: RunOutput[] = [];
  let outDir = '';

  beforeAll(async () => {
    server = await startMemoryServer();
    target = new SkvTarget({ servers: [server.address], timeoutMs: 5_000 });
    await target.setup();
    outDir = await mkdtemp(join(tmpdir(), 'skv-bench-'));
  });
  afterAll(async () => {
    await target.teardown();
    await server.stop();
    if (outDir !== '') await rm(outDir, { recursive: true, force: true });
  });

  it('loads every record, then runs YCSB A with both op types and no errors', async () => {
    const run = await runBench(target, workload('a'), { ...short, load: true });
    runs.push(run);
    const r = run.result;
    expect(r.load).toMatchObject({ records: 1000, inserted: 1000, timedOut: false, errors: {} });
    expect(server.backend.rowCount).toBe(1000);
    expect(r.ops.map((o) => o.op).sort()).toEqual(['read', 'update']);
    for (const o of r.ops) {
      expect(o.count).toBeGreaterThan(0);
      expect(o.opsPerSec).toBeGreaterThan(0);
      expect(o.errors).toEqual({});
      expectOrdered(o.latencyUs);
    }
    expect(r.totals.errors).toBe(0);
    expect(r.mode).toBe('closed');
    expect(r.series.length).toBeGreaterThanOrEqual(1);
  });

  it('--load-start resumes a load: only the records from there on are inserted', async () => {
    const run = await runBench(target, workload('c'), {
      ...short,
      load: true,
      recordCount: 1200,
      loadStart: 1000,
      operationCountMax: 10,
    });
    expect(run.result.load).toMatchObject({ records: 200, inserted: 200, errors: {} });
    expect(server.backend.rowCount).toBe(1200);
  });

  it('retries a failed insert while loading (--load-retries), and counts what it could not insert', async () => {
    /** Every 5th insert of a key fails its first `failures` attempts. */
    const flaky = (failures: number): BenchTarget => {
      const attempts = new Map<string, number>();
      let n = 0;
      const picked = new Set<string>();
      return {
        ...target,
        name: target.name,
        setup: () => target.setup(),
        teardown: async () => {},
        serverPids: () => target.serverPids(),
        describe: () => target.describe(),
        ops: {
          ...target.ops,
          insert: async (key, fields) => {
            if (!attempts.has(key) && n++ % 5 === 0) picked.add(key);
            const a = (attempts.get(key) ?? 0) + 1;
            attempts.set(key, a);
            if (picked.has(key) && a <= failures) {
              throw Object.assign(new Error('injected'), { code: 'deadline-exceeded' });
            }
            await target.ops.insert(key, fields);
          },
        },
      };
    };
    const retried = await runBench(flaky(2), workload('c'), {
      ...short,
      load: true,
      recordCount: 1300,
      loadStart: 1200,
      operationCountMax: 10,
    });
    expect(retried.result.load).toMatchObject({
      records: 100,
      inserted: 100,
      errors: {},
      retried: { 'deadline-exceeded': 40 },
    });
    const given = await runBench(flaky(2), workload('c'), {
      ...short,
      load: true,
      recordCount: 1400,
      loadStart: 1300,
      loadRetries: 1,
      operationCountMax: 10,
    });
    expect(given.result.load).toMatchObject({
      records: 100,
      inserted: 80,
      errors: { 'deadline-exceeded': 20 },
      retried: { 'deadline-exceeded': 20 },
    });
  });

  it('runs D (inserts grow the key space) and E (scans) without errors', async () => {
    for (const name of ['d', 'e'] as const) {
      const run = await runBench(target, workload(name), short);
      runs.push(run);
      const kinds = run.result.ops.map((o) => o.op).sort();
      expect(kinds).toEqual(name === 'd' ? ['insert', 'read'] : ['insert', 'scan']);
      for (const o of run.result.ops) {
        expect(o.count).toBeGreaterThan(0);
        expect(o.errors).toEqual({});
        expectOrdered(o.latencyUs);
      }
    }
    // D's and E's inserts are real rows beyond the loaded ones.
    expect(server.backend.rowCount).toBeGreaterThan(1000);
  });

  it('runs F and the conditional-put workload: a lost race is version-mismatch, nothing else', async () => {
    for (const name of ['f', 'conditional-put'] as const) {
      const run = await runBench(target, workload(name), short);
      runs.push(run);
      const cu = run.result.ops.find((o) => o.op === 'conditional-update');
      expect(cu?.count).toBeGreaterThan(0);
      for (const o of run.result.ops) {
        expect(Object.keys(o.errors).filter((c) => c !== 'version-mismatch')).toEqual([]);
        expectOrdered(o.latencyUs);
      }
    }
  });

  it('runs through plain unary gRPC calls too (the skv-unary target)', async () => {
    const unary = new UnaryTarget({ servers: [server.address], timeoutMs: 5_000 });
    await unary.setup();
    try {
      for (const name of ['a', 'e'] as const) {
        const { result } = await runBench(unary, workload(name), { ...short, durationS: 0.5 });
        expect(result.label).toBe(`skv-unary-${name}`);
        for (const o of result.ops) {
          expect(o.count).toBeGreaterThan(0);
          expect(o.errors).toEqual({});
        }
      }
      // A refusal reaches the unary target as its skv reason from the status metadata.
      const err = await unary.ops
        .update(keyName(0, 'hashed'), [{ column: 'field0', value: Buffer.alloc(2 * 1024 * 1024) }])
        .catch((e: unknown) => e);
      expect((err as { code: string }).code).toBe('invalid-argument');
    } finally {
      await unary.teardown();
    }
  });

  it('writes JSON, CSV, an HdrHistogram log and well-formed SVG files', async () => {
    const { files } = await writeReport(outDir, runs);
    const svgs = files.filter((f) => f.endsWith('.svg'));
    expect(svgs.length).toBe(runs.length * 2 + 2);
    for (const f of svgs) checkWellFormedXml(await readFile(f, 'utf8'));

    const json = JSON.parse(await readFile(join(outDir, 'skv-a.json'), 'utf8'));
    expect(json.schema).toBe('skv-bench-result/1');
    expect(json.ops.length).toBe(2);

    const csv = (await readFile(join(outDir, 'skv-a.series.csv'), 'utf8')).trim().split('\n');
    expect(csv[0]).toBe(
      't_s,phase,interval_s,ops_per_s,read_ops_per_s,read_p50_us,read_p99_us,read_errors,update_ops_per_s,update_p50_us,update_p99_us,update_errors',
    );
    expect(csv.length).toBeGreaterThan(1);

    // The log reads back with HdrHistogram's own reader, and its counts add up to the series'.
    const log = await readFile(join(outDir, 'skv-a.hlog'), 'utf8');
    const reader = new hdr.HistogramLogReader(log);
    let logged = 0;
    for (let h = reader.nextIntervalHistogram(); h !== null; h = reader.nextIntervalHistogram()) {
      logged += h.totalCount;
    }
    const seriesCount = runs[0]!.result.series.reduce(
      (n, p) => n + (p.ops.read?.count ?? 0) + (p.ops.update?.count ?? 0),
      0,
    );
    expect(logged).toBe(seriesCount);
    expect(await readFile(join(outDir, 'summary.md'), 'utf8')).toContain('| skv-a | a | closed |');
  });
});

describe('bench command options', () => {
  const base = {
    target: 'memory' as const,
    api: 'session' as const,
    writeProportion: 0.5,
    sweepWritePcts: [10, 50],
    scanLengthMax: 100,
  };
  it('expands a workload list and the mixed sweep, in order', () => {
    const names = workloadsFor({
      ...base,
      workload: 'a,sweep,timeline-read',
    } as BenchCommandOptions).map((w) => w.name);
    expect(names).toEqual(['a', 'mixed-w10', 'mixed-w50', 'timeline-read']);
    const [w10] = workloadsFor({ ...base, workload: 'sweep' } as BenchCommandOptions);
    expect(w10!.proportions.update).toBeCloseTo(0.1);
    expect(w10!.proportions.read).toBeCloseTo(0.9);
  });
  it('rejects an unknown workload by name', () => {
    expect(() => workloadsFor({ ...base, workload: 'a,g' } as BenchCommandOptions)).toThrow(/"g"/);
  });
  it('parses the command line into run options', async () => {
    let seen: BenchCommandOptions | null = null;
    const program = new Command('skv').exitOverride().configureOutput({ writeErr: () => {} });
    registerBenchCommand(program).action((o: BenchCommandOptions) => {
      seen = o;
    });
    await program.parseAsync(
      [
        'bench',
        '--target',
        'memory',
        '--workload',
        'f',
        '--concurrency',
        '8',
        '--target-rate',
        '500',
        '--no-load',
        '--seed',
        '9',
      ],
      { from: 'user' },
    );
    const o = runOptionsFor(seen!);
    expect(o).toMatchObject({ concurrency: 8, targetOpsPerSec: 500, load: false, seed: 9 });
    await expect(
      program.parseAsync(['bench', '--concurrency', '0'], { from: 'user' }),
    ).rejects.toThrow(/integer/);
  });
});

describe('SVG plots', () => {
  it('escapes text and stays well-formed for awkward labels and empty series', () => {
    const line = lineChartSvg({
      title: 'a <b> & "c"',
      xLabel: "x's",
      yLabel: 'y',
      series: [
        {
          name: 'r&w',
          points: [
            [0, 1],
            [1, 2],
          ],
        },
        { name: 'empty', points: [] },
      ],
    });
    checkWellFormedXml(line);
    expect(line).toContain('a &lt;b&gt; &amp; &quot;c&quot;');
    checkWellFormedXml(
      barChartSvg({
        title: 't',
        yLabel: 'ops/s',
        groups: ['a', 'b'],
        series: [{ name: 'skv', values: [1, Number.NaN] }],
      }),
    );
  });

  it('the checker rejects what is not well-formed (it can fail)', () => {
    expect(() => checkWellFormedXml('<svg><g></svg>')).toThrow();
    expect(() => checkWellFormedXml('<svg><text>a & b</text></svg>')).toThrow();
    expect(() => checkWellFormedXml('<svg x=1/>')).toThrow();
  });
});

describe('key choosers', () => {
  const samples = 200_000;
  const items = 1000;
  const counts = (next: () => number) => {
    const c = new Array<number>(items).fill(0);
    let outside = 0;
    for (let i = 0; i < samples; i++) {
      const k = next();
      if (k >= 0 && k < items) c[k]!++;
      else outside++;
    }
    expect(outside).toBe(0);
    return c;
  };
  const topShare = (c: number[], n: number) =>
    [...c]
      .sort((a, b) => b - a)
      .slice(0, n)
      .reduce((a, b) => a + b, 0) / samples;

  it('zipfian: item 0 is drawn with probability 1/zeta(n), the top 10 as sum i^-0.99 / zeta(n)', () => {
    const z = new ZipfianGenerator(new Random(1), items);
    const c = counts(() => z.next());
    const zetan = zeta(0, items, 0.99, 0);
    expect(c[0]! / samples).toBeCloseTo(1 / zetan, 2);
    expect(topShare(c, 10)).toBeCloseTo(zeta(0, 10, 0.99, 0) / zetan, 1);
    expect(c[0]).toBeGreaterThan(c[1]!);
    expect(c[1]).toBeGreaterThan(c[9]!);
  });

  it('scrambled zipfian: skewed like YCSB (hot key ~1/26.47), hot keys spread over the space', () => {
    const s = new ScrambledZipfianChooser(new Random(2), items, () => items);
    const c = counts(() => s.next());
    const hottest = Math.max(...c) / samples;
    expect(hottest).toBeGreaterThan(0.03);
    expect(hottest).toBeLessThan(0.06);
    expect(topShare(c, items / 10)).toBeGreaterThan(0.25);
    const hotKeys = c
      .map((n, k) => [n, k] as const)
      .sort((a, b) => b[0] - a[0])
      .slice(0, 10)
      .map(([, k]) => k);
    expect(hotKeys.some((k) => k >= items / 2)).toBe(true);

    const u = new UniformChooser(new Random(3), () => items);
    const uc = counts(() => u.next());
    expect(topShare(uc, items / 10)).toBeLessThan(0.13);
  });

  it('latest: the newest keys are the hottest, and it follows the growing limit', () => {
    let limit = items;
    const l = new LatestChooser(new Random(4), () => limit);
    const c = counts(() => l.next());
    expect(c[items - 1]! / samples).toBeGreaterThan(0.1);
    expect(c[items - 1]).toBeGreaterThan(c[0]!);
    limit = items + 500;
    let newest = 0;
    for (let i = 0; i < 10_000; i++) if (l.next() === limit - 1) newest++;
    expect(newest).toBeGreaterThan(1000);
  });

  it('fnvHash64Mod equals YCSB Math.abs(fnvhash64(v)) % n computed with BigInt', () => {
    const reference = (v: number, n: number) => {
      let h = 0xcbf29ce484222325n;
      let x = BigInt(v);
      for (let i = 0; i < 8; i++) {
        h ^= x & 0xffn;
        x >>= 8n;
        h = BigInt.asUintN(64, h * 1099511628211n);
      }
      let signed = BigInt.asIntN(64, h);
      if (signed < 0n) signed = -signed;
      return Number(BigInt.asUintN(64, signed) % BigInt(n));
    };
    const r = new Random(5);
    for (let i = 0; i < 2000; i++) {
      const v = i < 1000 ? i : Math.floor(r.nextDouble() * 10_000_000_000);
      const n = [1, 7, 1000, 1_000_003, 2 ** 37][i % 5]!;
      expect(fnvHash64Mod(v, n)).toBe(reference(v, n));
    }
  });

  it('hashed keys are 16 bytes and never collide', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) seen.add(keyName(i, 'hashed'));
    expect(seen.size).toBe(100_000);
    expect(keyName(12345, 'hashed')).toHaveLength(16);
    expect(keyName(2 ** 48 - 1, 'ordered')).toBe('userffffffffffff');
    expect(scramble48(2 ** 48 - 1)).toBeLessThan(2 ** 48);
  });

  it('hashedKeySplits cuts the hashed keys of a load into even ranges', () => {
    const splits = hashedKeySplits(3);
    expect(splits).toEqual(['user555555555555', 'useraaaaaaaaaaaa']);
    const counts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) {
      const k = keyName(i, 'hashed');
      counts[splits.filter((s) => k >= s).length]! += 1;
    }
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
    expect(hashedKeySplits(1)).toEqual([]);
  });

  it('acknowledged counter: readers see a key only once every insert below it completed', () => {
    const a = new AcknowledgedCounter(10, 8);
    const k1 = a.take();
    const k2 = a.take();
    a.acknowledge(k2);
    expect(a.limit).toBe(10);
    a.acknowledge(k1);
    expect(a.limit).toBe(12);
    for (let i = 0; i < 8; i++) a.take();
    expect(() => a.take()).toThrow(/outstanding/);
  });
});

// ---------------------------------------------------------------------------------------------

/** A target whose every operation takes `serviceMs`: it serves at most 1000/serviceMs ops/s per slot. */
function slowTarget(serviceMs: number): BenchTarget {
  const wait = () => new Promise<void>((resolve) => setTimeout(resolve, serviceMs));
  const ops: BenchOps = {
    read: async () => {
      await wait();
      return true;
    },
    update: wait,
    insert: wait,
    conditionalUpdate: wait,
    scan: async () => {
      await wait();
      return 1;
    },
  };
  return {
    name: 'slow',
    ops,
    setup: async () => {},
    teardown: async () => {},
    serverPids: () => [],
    describe: () => ({ target: 'slow' }),
  };
}

describe('open loop', () => {
  it('measures latency from the intended start when the target falls behind (coordinated omission)', async () => {
    // 200 ops/s intended, one slot, 20 ms per op: at most ~50/s get served, so operation k
    // waits about k * 15 ms for its slot; a closed-loop view would see only the 20 ms.
    const { result } = await runBench(slowTarget(20), workload('c'), {
      ...short,
      concurrency: 1,
      targetOpsPerSec: 200,
      durationS: 1,
      warmupS: 0,
    });
    const read = result.ops.find((o) => o.op === 'read')!;
    expect(result.mode).toBe('open');
    expect(read.serviceUs).not.toBeNull();
    // Relative, not absolute, bounds: the machine may be loaded (no timing targets in tests).
    expect(read.latencyUs.max).toBeGreaterThan(400_000);
    expect(read.latencyUs.max).toBeGreaterThan(read.serviceUs!.p50 * 10);
    expect(read.latencyUs.p50).toBeGreaterThan(read.serviceUs!.p50 * 5);
    expect(result.openLoop!.backlogAtEnd).toBeGreaterThan(100);
  });

  it('closed loop on the same target sees only the service time', async () => {
    const { result } = await runBench(slowTarget(20), workload('c'), {
      ...short,
      concurrency: 1,
      durationS: 0.5,
      warmupS: 0,
    });
    const read = result.ops.find((o) => o.op === 'read')!;
    // No backlog accumulates: the median stays near the 20 ms service time (generous bound).
    expect(read.latencyUs.p50).toBeLessThan(200_000);
    expect(read.serviceUs).toBeNull();
  });

  it('keeps to the schedule when the target keeps up', async () => {
    const { result } = await runBench(slowTarget(1), workload('c'), {
      ...short,
      concurrency: 16,
      targetOpsPerSec: 200,
      durationS: 1,
      warmupS: 0,
    });
    expect(result.openLoop!.backlogAtEnd).toBe(0);
    expect(result.openLoop!.started).toBeGreaterThanOrEqual(195);
    expect(result.totals.opsPerSec).toBeGreaterThan(150);
    expect(result.totals.latencyUs.p50).toBeLessThan(50_000);
  });
});

describe('CPU accounting', () => {
  it('parses utime + stime after a command name with spaces and parentheses', () => {
    const stat =
      '4242 (node (a) b) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 11 0 100 1000 200';
    expect(parseStatCpuMs(stat, 100)).toBe(3000);
  });

  it('reports server CPU per op for the memory target (a child process)', async () => {
    const t = new MemoryTarget({ timeoutMs: 5_000 });
    try {
      await t.setup();
      expect(t.serverPids()).toHaveLength(1);
      const { result } = await runBench(t, workload('write-only'), {
        ...short,
        recordCount: 200,
        load: true,
        durationS: 1,
      });
      expect(result.totals.errors).toBe(0);
      expect(result.cpu.serverPids).toEqual(t.serverPids());
      expect(result.cpu.serverCpuMs).toBeGreaterThan(0);
      expect(result.cpu.serverCpuMsPerOp).toBeGreaterThan(0);
      expect(result.cpu.clientCpuMsPerOp).toBeGreaterThan(0);
      expect(Object.values(result.cpu.serverRssBytes)[0]).toBeGreaterThan(1_000_000);
    } finally {
      await t.teardown();
    }
    expect(t.serverPids()).toEqual([]);
  });
});

describe('plot axes', () => {
  it('a y axis ends at or above the largest value (66k on a would-be 60k axis)', () => {
    for (const max of [66_000 * 1.05, 1, 9.99, 123_456, 5_000]) {
      const ticks = niceTicks(0, max, 6, true);
      expect(ticks[ticks.length - 1]!).toBeGreaterThanOrEqual(max);
      expect(ticks[0]).toBe(0);
    }
  });

  it('an x axis keeps its ticks inside the range', () => {
    const ticks = niceTicks(0, 66_000 * 1.05);
    expect(Math.max(...ticks)).toBeLessThanOrEqual(66_000 * 1.05);
  });
});
