// The side-by-side benchmark's peers (bench/peers/, bench/targets/{etcd,zookeeper}.ts): a real
// 3-member etcd cluster and a real 3-server ZooKeeper ensemble started by the script's own code,
// a tiny run of the script against both (about 1.5 s of load each), its report, the conditional
// update that loses its race, and the row codec both peers store rows with.
//
// Needs the `etcd` binary (Debian: etcd-server) and ZooKeeper (Debian: zookeeper). Without etcd
// the real-cluster tests are skipped with a message; without ZooKeeper they fail, as the rest of
// the suite does.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findEtcdBinary } from '../bench/peers/etcd-cluster.js';
import { goalChecks } from '../bench/peers/report.js';
import { decodeRow, encodeFields, encodeRow, mergeRow } from '../bench/peers/row-codec.js';
import { type PeersResult, runPeers } from '../bench/peers/run.js';
import { type RunningSystem, startSystem } from '../bench/peers/systems.js';
import { DEFAULT_RUN_OPTIONS } from '../bench/runner.js';
import type { BenchOps, Field } from '../bench/target.js';
import type { EtcdOps } from '../bench/targets/etcd.js';
import type { ZooKeeperOps } from '../bench/targets/zookeeper.js';
import { workload } from '../bench/workloads.js';

const etcdBinary = findEtcdBinary();
if (etcdBinary === null) {
  console.warn(
    'bench-peers: SKIPPED the etcd and ZooKeeper runs: no `etcd` binary (Debian: apt-get install -y etcd-server, or set SKV_ETCD_BIN)',
  );
}

const field = (column: string, fill: number, bytes = 100): Field => ({
  column,
  value: Buffer.alloc(bytes, fill),
});

describe('the row codec', () => {
  it('round-trips the columns of a row in order', () => {
    const row = encodeRow([
      ['field0', Buffer.from('a')],
      ['field1', Buffer.alloc(0)],
      ['é', Buffer.alloc(300, 7)],
    ]);
    const cells = decodeRow(row);
    expect([...cells.keys()]).toEqual(['field0', 'field1', 'é']);
    expect(cells.get('field1')?.length).toBe(0);
    expect(cells.get('é')?.equals(Buffer.alloc(300, 7))).toBe(true);
  });

  it('stores the issue row shape (one 100-byte column) in 111 bytes', () => {
    expect(encodeFields([field('field0', 1)]).length).toBe(111);
  });

  it('keeps the other columns when a partial update is merged', () => {
    const merged = decodeRow(
      mergeRow(encodeFields([field('field0', 1, 4), field('field1', 2, 4)]), [
        field('field1', 9, 2),
      ]),
    );
    expect(merged.get('field0')?.equals(Buffer.alloc(4, 1))).toBe(true);
    expect(merged.get('field1')?.equals(Buffer.alloc(2, 9))).toBe(true);
  });

  it('rejects a row truncated inside a value as corruption', () => {
    const row = encodeFields([field('field0', 1)]);
    expect(() => decodeRow(row.subarray(0, row.length - 1))).toThrow(
      expect.objectContaining({ code: 'corruption' }),
    );
  });
});

/** Both peers' conditional update, in its two halves. */
type CasOps<T> = BenchOps & {
  readForUpdate(key: string): Promise<T>;
  writeIfUnchanged(token: T, fields: readonly Field[]): Promise<void>;
};

async function raceIsLost<T extends { readonly row: Buffer | null }>(
  ops: CasOps<T>,
): Promise<void> {
  const key = 'user0000000000aa';
  // Present row: another writer between the read and the conditional write.
  await ops.insert(key, [field('field0', 1)]);
  const token = await ops.readForUpdate(key);
  await ops.update(key, [field('field0', 2)]);
  await expect(ops.writeIfUnchanged(token, [field('field0', 3)])).rejects.toMatchObject({
    code: 'version-mismatch',
  });
  // Absent row: another writer creates it first.
  const fresh = 'user0000000000bb';
  const absent = await ops.readForUpdate(fresh);
  await ops.insert(fresh, [field('field0', 4)]);
  await expect(ops.writeIfUnchanged(absent, [field('field0', 5)])).rejects.toMatchObject({
    code: 'version-mismatch',
  });
  // Uncontended, it wins, and the row holds what it wrote.
  await ops.conditionalUpdate(key, [field('field0', 6)]);
  const after = await ops.readForUpdate(key);
  expect(after.row === null ? null : decodeRow(after.row).get('field0')).toEqual(
    Buffer.alloc(100, 6),
  );
  expect(await ops.scan('user0000000000a0', 10)).toBe(2);
}

describe.skipIf(etcdBinary === null)('etcd and ZooKeeper, 3 replicas each, on 127.0.0.1', () => {
  let outDir = '';
  let result: PeersResult | null = null;

  beforeAll(async () => {
    outDir = await mkdtemp(path.join(os.tmpdir(), 'skv-peers-test-'));
    result = await runPeers({
      systems: ['etcd', 'zookeeper'],
      workloads: [workload('write-only'), workload('strong-read'), workload('timeline-read')],
      run: {
        ...DEFAULT_RUN_OPTIONS,
        recordCount: 300,
        concurrency: 32,
        loadConcurrency: 32,
        durationS: 0.4,
        warmupS: 0.1,
        drainTimeoutMs: 6_000,
      },
      timeoutMs: 5_000,
      outDir,
      mdPath: path.join(outDir, 'BENCHMARKS.md'),
      plotsDir: outDir,
      quiet: true,
      command: 'vitest test/bench-peers.test.ts',
      log: () => {},
    });
  });

  afterAll(async () => {
    if (outDir !== '') await rm(outDir, { recursive: true, force: true });
  });

  it('starts both systems and runs every workload against each without errors', () => {
    expect(result?.systems.map((s) => [s.name, s.error])).toEqual([
      ['etcd', null],
      ['zookeeper', null],
    ]);
    const runs = result?.runs.map((r) => r.result) ?? [];
    expect(runs.map((r) => r.label)).toEqual([
      'etcd-write-only',
      'etcd-strong-read',
      'etcd-timeline-read',
      'zookeeper-write-only',
      'zookeeper-strong-read',
      'zookeeper-timeline-read',
    ]);
    for (const r of runs) {
      expect(r.load === null || r.load.inserted === 300, r.label).toBe(true);
      expect(r.totals.count, r.label).toBeGreaterThan(0);
      expect(r.totals.errors, `${r.label}: ${JSON.stringify(r.ops.map((o) => o.errors))}`).toBe(0);
      // The 3 replicas' CPU was accounted.
      expect(r.cpu.serverPids.length, r.label).toBe(3);
      expect(r.cpu.serverCpuMsPerOp, r.label).toBeGreaterThan(0);
    }
  });

  it('writes the side-by-side markdown with a table per workload and the plots it links', async () => {
    const md = await readFile(path.join(outDir, 'BENCHMARKS.md'), 'utf8');
    for (const w of ['write-only', 'strong-read', 'timeline-read']) {
      expect(md).toContain(`### ${w}:`);
    }
    expect(md).toMatch(/^\| etcd \| \d+ \|/m);
    expect(md).toMatch(/^\| zookeeper \| \d+ \|/m);
    expect(md).toContain('etcd 3.');
    for (const plot of ['peers-throughput', 'peers-p99', 'peers-server-cpu']) {
      expect(md).toContain(`(${plot}.svg)`);
      const svg = await readFile(path.join(outDir, `${plot}.svg`), 'utf8');
      expect(svg).toContain('<svg');
    }
    // Without skv runs the goals cannot be judged, and say so rather than pass.
    expect(goalChecks(result?.runs.map((r) => r.result) ?? []).map((c) => c.status)).toEqual([
      'n/a',
      'n/a',
      'n/a',
      'n/a',
    ]);
  });

  for (const name of ['etcd', 'zookeeper'] as const) {
    it(`${name}: a conditional update that loses its race reports version-mismatch`, async () => {
      const base = await mkdtemp(path.join(os.tmpdir(), 'skv-peers-cas-'));
      let system: RunningSystem | null = null;
      try {
        system = await startSystem(name, { baseDir: base, timeoutMs: 5_000, columnsPerRow: 1 });
        await system.target.setup();
        if (name === 'etcd') await raceIsLost(system.target.ops as EtcdOps);
        else await raceIsLost(system.target.ops as ZooKeeperOps);
      } finally {
        await system?.target.teardown();
        await system?.stop();
        await rm(base, { recursive: true, force: true });
      }
    });
  }
});
