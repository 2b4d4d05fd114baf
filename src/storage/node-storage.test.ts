import { readdirSync, statSync } from 'node:fs';
import { mkdtemp, open as openFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lsn } from '../core/lsn.js';
import type { RowMutation } from '../core/mutation.js';
import {
  dataPrefix,
  decodeSnapshotChunk,
  encodeCellKey,
  encodeDataValue,
  encodeSnapshotChunk,
  type SnapshotCell,
} from './encoding.js';
import { LevelTableStore } from './level/level-table-store.js';
import { NodeStorage, type NodeStorageOptions } from './node-storage.js';

const b = (s: string) => Buffer.from(s);
const dirs: string[] = [];
const opened: Array<{ close(): Promise<void> }> = [];

async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'skv-node-storage-'));
  dirs.push(d);
  return d;
}

async function openNode(dir: string, options: NodeStorageOptions = {}): Promise<NodeStorage> {
  const n = await NodeStorage.open(dir, options);
  opened.push(n);
  return n;
}

async function closeNode(n: { close(): Promise<void> }): Promise<void> {
  await n.close();
  opened.splice(opened.indexOf(n), 1);
}

afterEach(async () => {
  for (const n of opened.splice(0)) await n.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function put(key: string, column: string, value: string | null): RowMutation {
  return { key: b(key), writes: [{ column: b(column), value: value === null ? null : b(value) }] };
}

/** Flips one byte every `strideBytes` in every LevelDB `.log` file (TESTING.md B.5 damage). */
async function damageLevelLogs(levelDir: string, strideBytes = 512): Promise<number> {
  let damaged = 0;
  for (const name of await readdir(levelDir)) {
    if (!name.endsWith('.log')) continue;
    const path = join(levelDir, name);
    const size = (await stat(path)).size;
    const f = await openFile(path, 'r+');
    try {
      for (let at = 100; at < size; at += strideBytes) {
        const buf = Buffer.alloc(1);
        await f.read(buf, 0, 1, at);
        buf[0] = buf[0]! ^ 0x5a;
        await f.write(buf, 0, 1, at);
        damaged++;
      }
    } finally {
      await f.close();
    }
  }
  return damaged;
}

describe('checkpoint durability against LevelDB WAL damage', () => {
  it('control: a batch that only reached LevelDB .log is silently lost when the .log is damaged', async () => {
    // Shows that the damage below really bites; without flushToTables this is what we would lose.
    const dir = await freshDir();
    let t = await LevelTableStore.open(dir);
    opened.push(t);
    for (let i = 0; i < 200; i++) {
      await t.write([
        { type: 'put', key: b(`k${String(i).padStart(4, '0')}`), value: Buffer.alloc(100, 1) },
      ]);
    }
    await closeNode(t);
    expect(await damageLevelLogs(dir)).toBeGreaterThan(0);
    t = await LevelTableStore.open(dir); // opens without any error
    opened.push(t);
    let n = 0;
    for await (const batch of t.iterate({ gte: b('k'), lt: b('l') })) n += batch.length;
    expect(n).toBeLessThan(200);
  });

  it('flushed data and its checkpoint survive damage to every LevelDB .log after reopen', async () => {
    const dir = await freshDir();
    const levelDir = join(dir, 'sstables');
    const tablesAtReport: number[] = [];
    const logBytesAtReport: number[] = [];
    let node = await openNode(dir, {
      onCheckpoint: () => {
        // Observed synchronously at the moment the checkpoint is reported to the log.
        const names = readdirSync(levelDir);
        tablesAtReport.push(names.filter((n) => n.endsWith('.ldb')).length);
        for (const n of names.filter((x) => x.endsWith('.log'))) {
          logBytesAtReport.push(statSync(join(levelDir, n)).size);
        }
      },
    });
    let r = node.range(3);
    for (let i = 1; i <= 200; i++) {
      await r.apply(lsn(1, i), put(`k${String(i).padStart(4, '0')}`, 'c', 'x'.repeat(100)));
    }
    const checkpoint = await r.flush();
    const digest = await r.digest();
    await closeNode(node);
    // The data is in a table file, and the live .log holds at most the small flush probe.
    expect(tablesAtReport[0]).toBeGreaterThan(0);
    expect(Math.max(...logBytesAtReport)).toBeLessThan(1000);
    await damageLevelLogs(levelDir, 7);

    node = await openNode(dir);
    expect(node.checkpointLsn(3)).toEqual(checkpoint);
    r = node.range(3);
    expect(await r.digest()).toEqual(digest);
    const rows = await r.scan(b(''), null, { limit: 1000 });
    expect(rows.rows).toHaveLength(200);
  });
});

describe('large flushes', () => {
  it('a memtable of 20,000 cells (ten slices) flushes whole: contents, checksum and checkpoint survive reopen', async () => {
    const dir = await freshDir();
    let node = await openNode(dir);
    let r = node.range(5);
    const cells = 20_000;
    for (let i = 1; i <= cells; i++) {
      await r.apply(lsn(1, i), put(`k${String(i).padStart(6, '0')}`, 'c', `v${i}`));
    }
    const checkpoint = await r.flush();
    const digest = await r.digest();
    await closeNode(node);
    node = await openNode(dir);
    expect(node.checkpointLsn(5)).toEqual(checkpoint);
    r = node.range(5);
    expect(await r.digest()).toEqual(digest);
    const rows = await r.scan(b(''), null, { limit: cells + 10 });
    expect(rows.rows).toHaveLength(cells);
  });
});

async function* chunksOf(cells: SnapshotCell[], size: number): AsyncGenerator<SnapshotCell[]> {
  for (let i = 0; i < cells.length; i += size) yield cells.slice(i, i + size);
}

async function collect(gen: AsyncGenerator<SnapshotCell[]>): Promise<SnapshotCell[][]> {
  const out: SnapshotCell[][] = [];
  for await (const c of gen) out.push(c);
  return out;
}

describe('range snapshots', () => {
  it('export is consistent at one LSN while applies go on, and import reproduces contents and checksum', async () => {
    const a = await openNode(await freshDir());
    const ra = a.range(1);
    let s = 0;
    for (let i = 0; i < 3000; i++)
      await ra.apply(lsn(1, ++s), put(`k${i % 1500}`, `c${i % 3}`, `v${i}`));
    await ra.flush();
    for (let i = 0; i < 100; i++) await ra.apply(lsn(1, ++s), put(`k${i}`, 'c0', null));
    for (let i = 0; i < 100; i++) await ra.apply(lsn(1, ++s), put(`m${i}`, 'c', 'mem'));
    const expected = await ra.scan(b(''), null, { limit: 100_000 });
    const snap = await a.exportSnapshot(1, { chunkCellsMax: 500 });
    expect(snap.lsn).toEqual(lsn(1, s));
    // Writes after the export started do not leak into it.
    const gen = snap.chunks();
    const first = await gen.next();
    await ra.apply(lsn(1, ++s), put('k5', 'c1', 'late'));
    await ra.flush();
    const rest = await collect(gen);
    const chunks = [first.value as SnapshotCell[], ...rest];
    const cellCount = expected.rows.reduce((n, r) => n + r.cells.length, 0);
    expect(cellCount).toBe(1566); // 1500 + 100 new - 34 deleted
    expect(chunks.map((c) => c.length)).toEqual([500, 500, 500, 66]); // bounded chunks
    // Through the wire format, into another node.
    const wire = chunks.map((c) => encodeSnapshotChunk(c));
    const bNode = await openNode(await freshDir());
    await bNode.range(7).apply(lsn(1, 1), put('stale', 'c', 'gone'));
    async function* decoded() {
      for (const w of wire) yield decodeSnapshotChunk(w);
    }
    await bNode.importSnapshot(7, decoded(), snap.lsn, snap.checksum);
    const rb = bNode.range(7);
    expect(await rb.digest()).toEqual({ lsn: snap.lsn, checksum: snap.checksum });
    expect(rb.checkpointLsn).toEqual(snap.lsn);
    const got = await rb.scan(b(''), null, { limit: 100_000 });
    expect(got.rows.map((r) => [r.key, r.cells])).toEqual(
      expected.rows.map((r) => [r.key, r.cells]),
    );
    expect(await rb.get(b('stale'), b('c'))).toEqual({ found: false, version: 0 });
    // Applies continue after the imported LSN.
    expect(await rb.apply(lsn(1, s + 1), put('k1', 'c1', 'after'))).toMatchObject({ ok: true });
  });

  it('import survives reopen, and an import with a wrong checksum changes nothing', async () => {
    const dir = await freshDir();
    let node = await openNode(dir);
    const r = node.range(2);
    await r.apply(lsn(1, 1), put('old', 'c', 'v'));
    await r.flush();
    const cells: SnapshotCell[] = [
      { key: b('a'), column: b('c'), value: b('1'), version: 4 },
      { key: b('b'), column: b('c'), value: b('2'), version: 9 },
    ];
    await expect(
      node.importSnapshot(2, chunksOf(cells, 1), lsn(2, 10), 12345n),
    ).rejects.toMatchObject({
      code: 'corruption',
    });
    expect(await r.get(b('old'), b('c'))).toMatchObject({ found: true });
    expect(r.lastAppliedLsn).toEqual(lsn(1, 1));
    const out = await collect(
      (async function* () {
        yield cells;
      })(),
    );
    await node.importSnapshot(2, chunksOf(out[0]!, 1), lsn(2, 10));
    const digest = await node.range(2).digest();
    await closeNode(node);
    node = await openNode(dir);
    expect(node.garbageCollectedAtOpen).toBe(0);
    expect(node.checkpointLsn(2)).toEqual(lsn(2, 10));
    expect(await node.range(2).digest()).toEqual(digest);
    expect(await node.range(2).get(b('b'), b('c'))).toEqual({
      found: true,
      value: b('2'),
      version: 9,
    });
    expect(await node.range(2).get(b('old'), b('c'))).toEqual({ found: false, version: 0 });
  });

  it('readers never see a half-imported range', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    await r.apply(lsn(1, 1), put('k', 'c', 'before'));
    let release!: () => void;
    const gate = new Promise<void>((res) => {
      release = res;
    });
    let firstChunkTaken!: () => void;
    const taken = new Promise<void>((res) => {
      firstChunkTaken = res;
    });
    async function* slow(): AsyncGenerator<SnapshotCell[]> {
      yield [{ key: b('a'), column: b('c'), value: b('1'), version: 2 }];
      firstChunkTaken();
      await gate;
      yield [{ key: b('k'), column: b('c'), value: b('after'), version: 3 }];
    }
    const importing = node.importSnapshot(1, slow(), lsn(1, 3));
    await taken;
    expect(await r.get(b('k'), b('c'))).toMatchObject({ value: b('before') });
    expect(await r.get(b('a'), b('c'))).toEqual({ found: false, version: 0 });
    expect((await r.scan(b(''), null)).rows).toHaveLength(1);
    release();
    await importing;
    expect(await r.get(b('k'), b('c'))).toMatchObject({ value: b('after'), version: 3 });
    expect((await r.scan(b(''), null)).rows).toHaveLength(2);
  });

  it('a failed chunk source leaves the range unchanged, and leftovers of a crashed import are collected at open', async () => {
    const dir = await freshDir();
    let node = await openNode(dir);
    const r = node.range(1);
    await r.apply(lsn(1, 1), put('k', 'c', 'v'));
    await r.flush();
    async function* broken(): AsyncGenerator<SnapshotCell[]> {
      yield [{ key: b('a'), column: b('c'), value: b('1'), version: 1 }];
      throw new Error('peer went away');
    }
    await expect(node.importSnapshot(1, broken(), lsn(1, 5))).rejects.toThrow('peer went away');
    expect((await r.scan(b(''), null)).rows.map((x) => x.key.toString())).toEqual(['k']);
    await closeNode(node);
    // Simulate a crash in the middle of an import: cells under a generation no meta names.
    const t = await LevelTableStore.open(join(dir, 'sstables'));
    await t.write([
      {
        type: 'put',
        key: Buffer.concat([dataPrefix(1, 1), encodeCellKey(b('zz'), b('c'))]),
        value: encodeDataValue(3, b('junk')),
      },
      {
        type: 'put',
        key: Buffer.concat([dataPrefix(9, 0), encodeCellKey(b('x'), b('c'))]),
        value: encodeDataValue(3, b('junk')),
      },
    ]);
    await t.close();
    node = await openNode(dir);
    expect(node.garbageCollectedAtOpen).toBe(2);
    expect((await node.range(1).scan(b(''), null)).rows.map((x) => x.key.toString())).toEqual([
      'k',
    ]);
    expect((await node.range(9).scan(b(''), null)).rows).toEqual([]);
  });

  it('dropRange removes data and checkpoint for good', async () => {
    const dir = await freshDir();
    let node = await openNode(dir);
    await node.range(1).apply(lsn(1, 1), put('k', 'c', 'v'));
    await node.range(2).apply(lsn(1, 1), put('k', 'c', 'v'));
    await node.flushAll();
    await node.dropRange(1);
    expect(await node.range(1).get(b('k'), b('c'))).toEqual({ found: false, version: 0 });
    await closeNode(node);
    node = await openNode(dir);
    expect(node.persistedRangeIds()).toEqual([2]);
    expect(node.checkpointLsn(1)).toEqual(lsn(0, 0));
    expect((await node.range(1).scan(b(''), null)).rows).toEqual([]);
    expect((await node.range(2).scan(b(''), null)).rows).toHaveLength(1);
  });
});
