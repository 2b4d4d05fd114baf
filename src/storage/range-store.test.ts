import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RangeId } from '../core/ids.js';
import { type Lsn, lsn } from '../core/lsn.js';
import type { ColumnWrite, RowMutation } from '../core/mutation.js';
import { dataPrefix, dataPrefixEnd, decodeMeta, metaKey } from './encoding.js';
import { LevelTableStore } from './level/level-table-store.js';
import { NodeStorage, type NodeStorageOptions } from './node-storage.js';
import { RangeStore, type Row } from './range-store.js';
import type { TableStore } from './table-store.js';

const b = (s: string) => Buffer.from(s);
const dirs: string[] = [];
const open: NodeStorage[] = [];

async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'skv-storage-'));
  dirs.push(d);
  return d;
}

async function openNode(dir: string, options: NodeStorageOptions = {}): Promise<NodeStorage> {
  const n = await NodeStorage.open(dir, options);
  open.push(n);
  return n;
}

async function closeNode(n: NodeStorage): Promise<void> {
  await n.close();
  open.splice(open.indexOf(n), 1);
}

afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function put(
  key: string | Buffer,
  column: string | Buffer,
  value: string | null,
  expectedVersion?: number,
): RowMutation {
  const w: ColumnWrite = {
    column: typeof column === 'string' ? b(column) : column,
    value: value === null ? null : b(value),
    ...(expectedVersion === undefined ? {} : { expectedVersion }),
  };
  return { key: typeof key === 'string' ? b(key) : key, writes: [w] };
}

function row(key: string, ...writes: ColumnWrite[]): RowMutation {
  return { key: b(key), writes };
}

/** "key/column" -> [key, column] (columns here hold no '/'). */
function splitCell(cell: string): [string, string] {
  const i = cell.lastIndexOf('/');
  return [cell.slice(0, i), cell.slice(i + 1)];
}

function text(rows: readonly Row[]): string[] {
  return rows.map(
    (r) =>
      `${Buffer.from(r.key).toString('hex')}:${r.cells
        .map(
          (c) =>
            `${Buffer.from(c.column).toString()}=${Buffer.from(c.value).toString()}@${c.version}`,
        )
        .join(',')}`,
  );
}

let seq = 0;
function next(): Lsn {
  return lsn(1, ++seq);
}

describe('RangeStore reads and writes', () => {
  it('apply, get, readRow and scan report values and versions per column', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    seq = 0;
    const a = await r.apply(
      next(),
      row('k1', { column: b('a'), value: b('1') }, { column: b('b'), value: b('2') }),
    );
    expect(a).toEqual({ ok: true, previousVersions: [0, 0], versions: [1, 1] });
    const c = await r.apply(next(), put('k1', 'a', 'x'));
    expect(c).toEqual({ ok: true, previousVersions: [1], versions: [2] });
    await r.apply(next(), put('k2', 'a', 'y'));
    expect(await r.get(b('k1'), b('a'))).toEqual({ found: true, value: b('x'), version: 2 });
    expect(await r.get(b('k1'), b('zz'))).toEqual({ found: false, version: 0 });
    const cells = await r.readRow(b('k1'), 'all');
    expect(cells.map((x) => [x.column.toString(), x.version])).toEqual([
      ['a', 2],
      ['b', 1],
    ]);
    const some = await r.readRow(b('k1'), [b('b'), b('nope')]);
    expect(some.map((x) => x.column.toString())).toEqual(['b']);
    const s = await r.scan(b(''), null, { columns: [b('a')] });
    expect(text(s.rows)).toEqual([
      `${b('k1').toString('hex')}:a=x@2`,
      `${b('k2').toString('hex')}:a=y@3`,
    ]);
    expect(s.lsn).toEqual(lsn(1, 3));
    expect(r.lastAppliedLsn).toEqual(lsn(1, 3));
    expect(r.memtableBytes).toBeGreaterThan(0);
    const d = await r.apply(next(), put('k1', 'a', null));
    expect(d).toEqual({ ok: true, previousVersions: [2], versions: [0] });
    expect(await r.get(b('k1'), b('a'))).toEqual({ found: false, version: 0 });
  });

  it('memtable cells give back their row key and column, 0x00 bytes included, to every reader', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    seq = 0;
    const hex = (u: Uint8Array) => Buffer.from(u).toString('hex');
    const key = Buffer.from([0x00, 0x01, 0x6b, 0x00, 0xff]);
    const column = Buffer.from([0x63, 0x00, 0x01, 0x00]);
    await r.apply(next(), put(key, column, 'v1'));
    await r.apply(next(), put(key, 'plain', 'v2'));
    await r.apply(next(), put(Buffer.from([0x00]), column, 'v3'));
    const want = [
      [hex(Buffer.from([0x00])), hex(column), 'v3', 3],
      [hex(key), hex(column), 'v1', 1],
      [hex(key), hex(b('plain')), 'v2', 2],
    ];
    const scanned = (await r.scan(Buffer.alloc(0), null)).rows.flatMap((x) =>
      x.cells.map((c) => [hex(x.key), hex(c.column), `${c.value}`, c.version]),
    );
    expect(scanned).toEqual(want);
    const row = await r.readRow(key, 'all');
    expect(row.map((c) => [hex(c.column), `${c.value}`])).toEqual([
      [hex(column), 'v1'],
      [hex(b('plain')), 'v2'],
    ]);
    expect(
      (await r.readRow(key, [column])).map((c) => Buffer.from(c.column).equals(column)),
    ).toEqual([true]);
    const snap = await r.exportSnapshot();
    const exported = [];
    for await (const chunk of snap.chunks()) {
      for (const c of chunk) {
        exported.push([hex(c.key), hex(c.column), `${c.value}`, c.version]);
      }
    }
    expect(exported).toEqual(want);
    // The same cells once flushed (read back from LevelDB, not the memtable), and the digest
    // of the memtable (which hashes each cell's key and column) equals the flushed one's.
    const before = await r.digest();
    await r.flush();
    expect((await r.scan(Buffer.alloc(0), null)).rows.length).toBe(2);
    expect((await r.digest()).checksum).toBe(before.checksum);
  });

  it('conditional write applies when the version matches and writes nothing when it does not', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    seq = 0;
    expect((await r.apply(next(), put('k', 'c', 'v1', 0))).ok).toBe(true); // only if absent
    expect(await r.apply(next(), put('k', 'c', 'v2', 0))).toEqual({
      ok: false,
      reason: 'version-mismatch',
      writeIndex: 0,
      actualVersion: 1,
    });
    expect(r.lastAppliedLsn).toEqual(lsn(1, 2)); // a failed condition still consumes the record
    expect(await r.apply(next(), put('k', 'c', 'v3', 1))).toEqual({
      ok: true,
      previousVersions: [1],
      versions: [3],
    });
    expect(await r.apply(next(), put('k', 'c', null, 1))).toMatchObject({
      ok: false,
      actualVersion: 3,
    });
    expect(await r.apply(next(), put('k', 'c', null, 3))).toEqual({
      ok: true,
      previousVersions: [3],
      versions: [0],
    });
  });

  it('one failed condition in a multi-column write writes no column, also against flushed data', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    seq = 0;
    await r.apply(
      next(),
      row('k', { column: b('a'), value: b('a1') }, { column: b('b'), value: b('b1') }),
    );
    await r.flush(); // the version check must now read LevelDB
    const before = (await r.digest()).checksum;
    const res = await r.apply(
      next(),
      row(
        'k',
        { column: b('a'), value: b('a2'), expectedVersion: 1 },
        { column: b('new'), value: b('n') },
        { column: b('b'), value: b('b2'), expectedVersion: 7 },
      ),
    );
    expect(res).toEqual({ ok: false, reason: 'version-mismatch', writeIndex: 2, actualVersion: 1 });
    expect(
      (await r.readRow(b('k'), 'all')).map((c) => `${c.column}=${c.value}@${c.version}`),
    ).toEqual(['a=a1@1', 'b=b1@1']);
    expect(await r.digest()).toEqual({ lsn: lsn(1, 2), checksum: before });
  });

  it('a tombstone in the memtable shadows the LevelDB value, and stays deleted after its own flush', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    seq = 0;
    await r.apply(next(), put('k', 'c', 'old'));
    await r.apply(next(), put('k2', 'c', 'kept'));
    await r.flush();
    await r.apply(next(), put('k', 'c', null));
    expect(await r.get(b('k'), b('c'))).toEqual({ found: false, version: 0 });
    expect(text((await r.scan(b(''), null)).rows)).toEqual([`${b('k2').toString('hex')}:c=kept@2`]);
    await r.flush();
    expect(await r.get(b('k'), b('c'))).toEqual({ found: false, version: 0 });
    expect((await r.scan(b(''), null)).rows).toHaveLength(1);
    // A conditional put-if-absent now succeeds: the deleted column has version 0.
    expect((await r.apply(next(), put('k', 'c', 'again', 0))).ok).toBe(true);
  });

  it('scan merges memtable, flushing memtable and tables in key order with limits and [start, end) bounds, with 0x00/0xff keys', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    seq = 0;
    const keys = [
      Buffer.from([0x00]),
      Buffer.from([0x00, 0x00]),
      Buffer.from([0x00, 0xff]),
      Buffer.from([0x01]),
      Buffer.from([0x61]),
      Buffer.from([0x61, 0x00]),
      Buffer.from([0xff]),
      Buffer.from([0xff, 0x00]),
      Buffer.from([0xff, 0xff]),
    ];
    // Interleave layers: some keys only in tables, some overwritten in the memtable.
    for (const [i, k] of keys.entries()) {
      await r.apply(next(), put(k, 'c', `t${i}`));
      if (i % 3 === 2) await r.flush();
    }
    await r.apply(next(), put(keys[4]!, 'c', 'mem'));
    await r.apply(next(), put(keys[4]!, Buffer.from([0x00]), 'col0'));
    const all = await r.scan(Buffer.alloc(0), null);
    expect(all.rows.map((x) => Buffer.from(x.key).toString('hex'))).toEqual(
      keys.map((k) => k.toString('hex')),
    );
    expect(all.rows[4]!.cells.map((c) => Buffer.from(c.column).toString('hex'))).toEqual([
      '00',
      '63',
    ]);
    expect(Buffer.from(all.rows[4]!.cells[1]!.value).toString()).toBe('mem');

    const bounded = await r.scan(Buffer.from([0x00, 0x00]), Buffer.from([0xff, 0x00]));
    expect(bounded.rows.map((x) => Buffer.from(x.key).toString('hex'))).toEqual([
      '0000',
      '00ff',
      '01',
      '61',
      '6100',
      'ff',
    ]);
    const page1 = await r.scan(Buffer.from([0x00]), null, { limit: 4 });
    expect(page1.rows).toHaveLength(4);
    expect(Buffer.from(page1.resumeKey!).toString('hex')).toBe('61');
    const page2 = await r.scan(page1.resumeKey!, null, { limit: 4 });
    expect(page2.rows.map((x) => Buffer.from(x.key).toString('hex'))).toEqual([
      '61',
      '6100',
      'ff',
      'ff00',
    ]);
    const page3 = await r.scan(page2.resumeKey!, null, { limit: 4 });
    expect(page3.rows.map((x) => Buffer.from(x.key).toString('hex'))).toEqual(['ffff']);
    expect(page3.resumeKey).toBeNull();
    await expect(r.scan(b(''), null, { limit: 0 })).rejects.toMatchObject({
      code: 'invalid-argument',
    });
  });

  it('while a flush runs, the active memtable shadows the frozen one in get, readRow and scan', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    seq = 0;
    await r.apply(next(), put('k', 'c', 'frozen'));
    await r.apply(next(), put('k', 'd', 'frozen-only'));
    const flushing = r.flush();
    expect(r.isFlushing).toBe(true);
    await r.apply(next(), put('k', 'c', 'active'));
    await r.apply(next(), put('k', 'd', null));
    expect(r.isFlushing).toBe(true);
    const [got, cells, scanned] = await Promise.all([
      r.get(b('k'), b('c')),
      r.readRow(b('k'), 'all'),
      r.scan(b(''), null),
    ]);
    expect(got).toEqual({ found: true, value: b('active'), version: 3 });
    expect(cells.map((c) => `${c.column}=${c.value}`)).toEqual(['c=active']);
    expect(text(scanned.rows)).toEqual([`${b('k').toString('hex')}:c=active@3`]);
    await flushing;
    expect(text((await r.scan(b(''), null)).rows)).toEqual([
      `${b('k').toString('hex')}:c=active@3`,
    ]);
  });

  it('ranges sharing one LevelDB do not see each other', async () => {
    const node = await openNode(await freshDir());
    seq = 0;
    await node.range(1).apply(next(), put('k', 'c', 'one'));
    await node.range(2).apply(next(), put('k', 'c', 'two'));
    await node.flushAll();
    expect((await node.range(1).scan(b(''), null)).rows).toHaveLength(1);
    expect(await node.range(2).get(b('k'), b('c'))).toMatchObject({ value: b('two') });
  });
});

describe('RangeStore flush, checkpoints and recovery', () => {
  it('flush records checkpoint LSN and checksum atomically with the data and survives reopen', async () => {
    const dir = await freshDir();
    const reported: Array<[number, Lsn]> = [];
    let node = await openNode(dir, { onCheckpoint: (id, l) => reported.push([id, l]) });
    let r = node.range(5);
    seq = 0;
    for (let i = 0; i < 50; i++) await r.apply(next(), put(`k${i}`, 'c', `v${i}`));
    expect(r.checkpointLsn).toEqual(lsn(0, 0));
    expect(await r.flush()).toEqual(lsn(1, 50));
    expect(reported).toEqual([[5, lsn(1, 50)]]);
    const digest = await r.digest();
    await r.apply(next(), put('k0', 'c', 'unflushed')); // only in the commit log's care
    await closeNode(node);

    node = await openNode(dir);
    expect(node.persistedRangeIds()).toEqual([5]);
    expect(node.checkpointLsn(5)).toEqual(lsn(1, 50));
    r = node.range(5);
    expect(r.lastAppliedLsn).toEqual(lsn(1, 50));
    expect(await r.digest()).toEqual(digest);
    expect(await r.get(b('k0'), b('c'))).toEqual({ found: true, value: b('v0'), version: 1 });
    expect((await r.scan(b(''), null)).rows).toHaveLength(50);
  });

  it('a flush writes every cell exactly, through buffers it reuses: sizes up to the limits, tombstones, more cells than a slice', async () => {
    const dir = await freshDir();
    let node = await openNode(dir);
    let r = node.range(3);
    seq = 0;
    // Keys and values of many lengths, in an order unlike key order, so each cell overwrites a
    // longer or shorter one in the scratch buffers; two cells outgrow the initial 64 KiB.
    const expected = new Map<string, Buffer | null>();
    for (let i = 0; i < 5000; i++) {
      const key = `k${(i * 7919) % 5000}`.padEnd(1 + (i % 37), 'x');
      const value = Buffer.alloc((i * 131) % 700, i % 251);
      await r.apply(next(), { key: b(key), writes: [{ column: b(`c${i % 3}`), value }] });
      expected.set(`${key}/c${i % 3}`, value);
    }
    const bigKey = 'K'.repeat(4096);
    const bigValue = Buffer.alloc(1024 * 1024, 9);
    await r.apply(next(), { key: b(bigKey), writes: [{ column: b('c'), value: bigValue }] });
    expected.set(`${bigKey}/c`, bigValue);
    // Two cells become tombstones (flushed as deletes).
    const deleted = [...expected.keys()].filter((c) => c.endsWith('/c0')).slice(0, 2);
    for (const cell of deleted) {
      const [key, column] = splitCell(cell);
      await r.apply(next(), put(key, column, null));
      expected.set(cell, null);
    }
    await r.apply(next(), put('small', 'c', 'after the big one'));
    expected.set('small/c', b('after the big one'));
    await r.flush();
    await closeNode(node);

    node = await openNode(dir);
    r = node.range(3);
    for (const [cell, value] of expected) {
      const [key, column] = splitCell(cell);
      const got = await r.get(b(key), b(column));
      expect(got.found).toBe(value !== null);
      if (got.found) expect(Buffer.compare(Buffer.from(got.value), value!)).toBe(0);
    }
    const rows = (await r.scan(b(''), null, { limit: 100_000 })).rows;
    const cells = rows.reduce((n, row) => n + row.cells.length, 0);
    expect(cells).toBe(expected.size - 2);
  });

  it('replaying records at or below lastAppliedLsn is a no-op (crash replay)', async () => {
    const dir = await freshDir();
    let node = await openNode(dir);
    let r = node.range(1);
    const records: Array<[Lsn, RowMutation]> = [
      [lsn(1, 1), put('a', 'c', '1')],
      [lsn(1, 2), put('a', 'c', '2', 1)],
      [lsn(2, 3), put('b', 'c', '3')],
      [lsn(2, 4), put('a', 'c', null)],
    ];
    for (const [l, m] of records.slice(0, 3)) await r.apply(l, m);
    await r.flush();
    await closeNode(node);
    node = await openNode(dir);
    r = node.range(1);
    // Recovery replays the whole log; the first three are below the checkpoint.
    const results = [];
    for (const [l, m] of records) results.push(await r.apply(l, m));
    expect(results.slice(0, 3)).toEqual(Array(3).fill({ ok: false, reason: 'already-applied' }));
    expect(results[3]).toEqual({ ok: true, previousVersions: [2], versions: [0] });
    const d = await r.digest();
    for (const [l, m] of records)
      expect(await r.apply(l, m)).toMatchObject({ reason: 'already-applied' });
    expect(await r.digest()).toEqual(d);
  });

  it('checksum is equal across different flush patterns and differs when one cell differs', async () => {
    const node = await openNode(await freshDir());
    const ops: Array<[Lsn, RowMutation]> = [];
    for (let i = 1; i <= 200; i++) {
      const k = `k${i % 37}`;
      const m =
        i % 11 === 0
          ? put(k, `c${i % 3}`, null)
          : i % 7 === 0
            ? put(k, 'c0', `v${i}`, i - 7)
            : put(k, `c${i % 3}`, `v${i}`);
      ops.push([lsn(1, i), m]);
    }
    // Reads of unread cells in background batches of 2 keys (while later applies run).
    const small = await openNode(await freshDir(), { settleBatchKeys: 2 });
    const stores: RangeStore[] = [
      node.range(1),
      node.range(2),
      node.range(3),
      node.range(5),
      small.range(1),
    ];
    // Stores 3 and 4 apply as a follower does (no previous versions asked for), so their
    // unconditional writes of cells in no memtable leave the tables' old cell to be subtracted
    // later.
    for (const [i, [l, m]] of ops.entries()) {
      await stores[0]!.apply(l, m);
      await stores[1]!.apply(l, m);
      if (i % 13 === 0) await stores[1]!.flush();
      await stores[2]!.apply(l, m);
      if (i % 50 === 49) await stores[2]!.flush();
      await stores[3]!.apply(l, m, { previousVersions: false });
      if (i % 17 === 16) await stores[3]!.flush();
      if (i % 29 === 28) expect(await stores[3]!.digest()).toEqual(await stores[0]!.digest());
      void stores[4]!.apply(l, m, { previousVersions: false });
      if (i % 19 === 18) await stores[4]!.flush();
      if (i % 31 === 30) expect(await stores[4]!.digest()).toEqual(await stores[0]!.digest());
    }
    const [d0, d1, d2, d3, d4] = await Promise.all(stores.map((s) => s.digest()));
    expect(d1).toEqual(d0);
    expect(d2).toEqual(d0);
    expect(d3).toEqual(d0);
    expect(d4).toEqual(d0);
    expect(d0!.checksum).not.toBe(0n);
    // Same records except one value: different checksum.
    const odd = node.range(4);
    for (const [i, [l, m]] of ops.entries()) {
      await odd.apply(
        l,
        i === 150 ? { ...m, writes: m.writes.map((w) => ({ ...w, value: w.value && b('X') })) } : m,
      );
    }
    expect((await odd.digest()).lsn).toEqual(d0!.lsn);
    expect((await odd.digest()).checksum).not.toBe(d0!.checksum);
  });

  it('flush runs when the memtable is over its limit and applies and reads go on meanwhile', async () => {
    const reported: Lsn[] = [];
    const node = await openNode(await freshDir(), {
      memtableSizeBytesMax: 64 * 1024,
      onCheckpoint: (_id, l) => reported.push(l),
    });
    const r = node.range(1);
    seq = 0;
    let sawFlushing = false;
    for (let i = 0; i < 600; i++) {
      await r.apply(next(), put(`k${i % 200}`, 'c', 'x'.repeat(500)));
      if (r.isFlushing) {
        sawFlushing = true;
        expect((await r.get(b(`k${i % 200}`), b('c'))).found).toBe(true);
      }
      expect(r.memtableBytes).toBeLessThan(3 * 64 * 1024 + 10_000);
    }
    await r.flush();
    expect(sawFlushing).toBe(true);
    // The flush the limit started (the first ~110 applies fill 64 KiB) and the final one, for
    // the applies made while it ran. How many more depends on how fast LevelDB writes (a flush
    // that comes due while one runs waits for it): asking for 3 failed on a loaded machine.
    expect(reported.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < reported.length; i++)
      expect(reported[i]!.seq).toBeGreaterThan(reported[i - 1]!.seq);
    expect((await r.scan(b(''), null)).rows).toHaveLength(200);
  });
});

describe('RangeStore checkpoints bound the log tail', () => {
  // A workload that rewrites a few cells never fills the memtable: the checkpoint must still
  // move, or the commit log behind it (replayed at every start, held in memory by the replica,
  // never collected) grows without bound. Found at 10 M rows: a benchmark that rewrote the same
  // keys left 760 k entries behind a range's checkpoint.
  const limit = 64 * 1024;
  // The tail after the checkpoint is at most one memtable's worth of ~600-byte writes (+ the one
  // that crossed the limit, + those applied while the last flush ran).
  const tailMax = 2 * (limit / 600) + 2;

  /** Range 1 of a fresh node with a `limit` memtable, and the checkpoints it reports. */
  async function smallMemtableRange(): Promise<{ r: RangeStore; reported: Lsn[] }> {
    const reported: Lsn[] = [];
    const node = await openNode(await freshDir(), {
      memtableSizeBytesMax: limit,
      onCheckpoint: (_id, l) => reported.push(l),
    });
    seq = 0;
    return { r: node.range(1), reported };
  }

  async function flushesDone(r: RangeStore): Promise<void> {
    while (r.isFlushing) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  it('rewriting one cell flushes once the writes would fill a memtable', async () => {
    const { r, reported } = await smallMemtableRange();
    // ~600 bytes a write: 1,000 writes are about 9 memtables' worth, in one cell.
    for (let i = 0; i < 1000; i++) await r.apply(next(), put('hot', 'c', 'x'.repeat(500)));
    await flushesDone(r);
    expect(r.memtableBytes).toBeLessThan(1000);
    expect(reported.length).toBeGreaterThanOrEqual(2);
    expect(r.lastAppliedLsn.seq - r.checkpointLsn.seq).toBeLessThan(tailMax);
    expect((await r.get(b('hot'), b('c'))).version).toBe(1000);
  });

  it('conditions refused over and over still move the checkpoint', async () => {
    const { r, reported } = await smallMemtableRange();
    expect((await r.apply(next(), put('row', 'c', 'v'))).ok).toBe(true);
    for (let i = 0; i < 1000; i++) {
      const res = await r.apply(next(), put('row', 'c', 'y'.repeat(500), 99));
      expect(res).toMatchObject({ ok: false, reason: 'version-mismatch' });
    }
    await flushesDone(r);
    expect(reported.length).toBeGreaterThanOrEqual(2);
    expect(r.lastAppliedLsn.seq - r.checkpointLsn.seq).toBeLessThan(tailMax);
    // Nothing the refused records carried reached the tables.
    const got = await r.get(b('row'), b('c'));
    expect(got).toMatchObject({ found: true, version: 1 });
    expect(Buffer.from((got as { value: Uint8Array }).value).toString()).toBe('v');
  });
});

describe('RangeStore reads without a table snapshot', () => {
  /** The LevelDB adapter, with gets that have no snapshot held back until `release`. */
  async function gatedTables(dir: string) {
    const level = await LevelTableStore.open(dir);
    let gate: Promise<void> | null = null;
    let release = () => {};
    let waiting = 0;
    const tables: TableStore = {
      get: async (key, snapshot) => {
        if (snapshot === undefined && gate !== null) {
          waiting++;
          await gate;
          waiting--;
        }
        return level.get(key, snapshot);
      },
      snapshot: () => level.snapshot(),
      iterate: (o) => level.iterate(o),
      write: (ops) => level.write(ops),
      batch: () => level.batch(),
      clear: (gte, lt) => level.clear(gte, lt),
      flushToTables: () => level.flushToTables(),
      levelStats: () => level.levelStats(),
      close: () => level.close(),
    };
    return {
      tables,
      /** Table reads waiting at the gate. */
      waiting: () => waiting,
      hold: () => {
        gate = new Promise<void>((r) => {
          release = r;
        });
      },
      release: () => {
        gate = null;
        release();
      },
    };
  }

  it('a get whose table read straddles a snapshot import answers from the new generation, not the cleared old one', async () => {
    const g = await gatedTables(await freshDir());
    const store = new RangeStore(1 as RangeId, g.tables, {
      generation: 1,
      checkpointLsn: lsn(0, 0),
      checksum: 0n,
    });
    expect((await store.apply(lsn(1, 1), put('k', 'c', 'old'))).ok).toBe(true);
    await store.flush();

    g.hold();
    const pending = store.get(b('k'), b('c'));
    async function* cells() {
      yield [{ key: b('k'), column: b('c'), value: b('new'), version: 5 }];
    }
    await store.importSnapshot(cells(), lsn(1, 5));
    g.release();

    const r = await pending;
    expect(r.found).toBe(true);
    expect(r.found && Buffer.from(r.value).toString()).toBe('new');
    expect(r.version).toBe(5);
    await store.close();
    await g.tables.close();
  });

  it("a follower's writes read no table; digest, a flush that starts during digest's reads, and the flush's meta record all settle the old cells once", async () => {
    const g = await gatedTables(await freshDir());
    const meta = { generation: 1, checkpointLsn: lsn(0, 0), checksum: 0n };
    const store = new RangeStore(1 as RangeId, g.tables, meta);
    const ref = new RangeStore(2 as RangeId, g.tables, meta);
    const both = async (l: Lsn, m: RowMutation) => {
      await store.apply(l, m, { previousVersions: false });
      await ref.apply(l, m);
    };
    for (let i = 1; i <= 3; i++) await both(lsn(1, i), put(`k${i}`, 'c', `v${i}`));
    await store.flush();
    await ref.flush();
    // k1 and k2 are in the tables only: the follower's overwrites do not read them.
    expect(await store.apply(lsn(1, 4), put('k1', 'c', 'w1'), { previousVersions: false })).toEqual(
      { ok: true, previousVersions: [0], versions: [4] },
    );
    await ref.apply(lsn(1, 4), put('k1', 'c', 'w1'));
    await both(lsn(1, 5), put('k2', 'c', 'w2'));
    g.hold();
    const digest = store.digest(); // its table reads wait at the gate
    await new Promise((r) => setTimeout(r, 20));
    const flushed = store.flush(); // takes the unread cells over; its reads wait too
    g.release();
    const [d, checkpoint] = await Promise.all([digest, flushed]);
    expect(checkpoint).toEqual(lsn(1, 5));
    expect(d).toEqual(await ref.digest());
    // The checkpoint's meta record has the settled checksum too: a store opened from it agrees.
    const reopened = new RangeStore(1 as RangeId, g.tables, {
      generation: 1,
      checkpointLsn: checkpoint,
      checksum: decodeMeta((await g.tables.get(metaKey(1 as RangeId)))!).checksum,
    });
    expect(await reopened.digest()).toEqual(await ref.digest());
    // Later writes (a conditional one reads, a follower's does not) keep them equal.
    await both(lsn(1, 6), put('k3', 'c', 'x3', 3));
    await both(lsn(1, 7), put('k2', 'c', 'x2'));
    expect(await store.digest()).toEqual(await ref.digest());
    await store.close();
    await ref.close();
    await g.tables.close();
  });

  it('past checksumUnreadKeysMax unread cells the store stops reading them: digest and export sum a scan, meta records carry no checksum, an import keeps it again', async () => {
    const g = await gatedTables(await freshDir());
    const meta = { generation: 1, checkpointLsn: lsn(0, 0), checksum: 0n };
    const store = new RangeStore(1 as RangeId, g.tables, meta, { checksumUnreadKeysMax: 3 });
    const ref = new RangeStore(2 as RangeId, g.tables, meta); // reads at every apply
    let at = 0;
    const both = async (m: RowMutation) => {
      at++;
      await store.apply(lsn(1, at), m, { previousVersions: false });
      await ref.apply(lsn(1, at), m);
    };
    const metaOf = async (id: number) => decodeMeta((await g.tables.get(metaKey(id as RangeId)))!);
    // Writes that read (a leader's conditional ones, say) keep it with no unread cell.
    for (let i = 1; i <= 10; i++) {
      at++;
      await store.apply(lsn(1, at), put(`k${i}`, 'c', `v${i}`));
      await ref.apply(lsn(1, at), put(`k${i}`, 'c', `v${i}`));
    }
    await store.flush();
    await ref.flush();
    expect((await metaOf(1)).checksum).toBe((await ref.digest()).checksum);
    // Three unread table cells are still read (at the digest)...
    for (let i = 1; i <= 3; i++) await both(put(`k${i}`, 'c', `w${i}`));
    g.hold();
    const settling = store.digest();
    await new Promise((r) => setTimeout(r, 20));
    expect(g.waiting()).toBe(3);
    g.release();
    expect(await settling).toEqual(await ref.digest());
    // ...the fourth gives the checksum up: no table read at all, and the digest scans.
    for (let i = 4; i <= 7; i++) await both(put(`k${i}`, 'c', `w${i}`));
    await both(put('k11', 'c', 'new'));
    await both(row('k1', { column: b('c'), value: null }, { column: b('d'), value: b('d1') }));
    g.hold();
    const scanned = store.digest();
    await new Promise((r) => setTimeout(r, 20));
    expect(g.waiting()).toBe(0);
    g.release();
    const expected = await ref.digest();
    expect(await scanned).toEqual(expected);
    // A flush writes a meta record without a checksum; a store opened from it scans too.
    await store.flush();
    await ref.flush();
    expect((await metaOf(1)).checksum).toBeNull();
    expect((await metaOf(2)).checksum).toBe(expected.checksum);
    const reopened = new RangeStore(1 as RangeId, g.tables, await metaOf(1));
    expect(await reopened.digest()).toEqual(expected);
    await both(put('k5', 'c', 'x5'));
    expect(await store.digest()).toEqual(await ref.digest());
    // An export carries the scanned checksum, which the import checks and keeps.
    const snap = await store.exportSnapshot();
    expect(snap.checksum).toBe((await ref.digest()).checksum);
    const target = new RangeStore(3 as RangeId, g.tables, meta, { checksumUnreadKeysMax: 3 });
    await target.importSnapshot(snap.chunks(), snap.lsn, snap.checksum);
    await target.apply(lsn(1, at + 1), put('k6', 'c', 'y6'), { previousVersions: false });
    await ref.apply(lsn(1, at + 1), put('k6', 'c', 'y6'));
    await target.flush();
    expect((await metaOf(3)).checksum).toBe((await ref.digest()).checksum);
    const corrupt = await store.exportSnapshot();
    const other = new RangeStore(4 as RangeId, g.tables, meta);
    await expect(
      other.importSnapshot(corrupt.chunks(), corrupt.lsn, corrupt.checksum ^ 1n),
    ).rejects.toThrow(/checksum/);
    for (const st of [store, ref, reopened, target, other]) await st.close();
    await g.tables.close();
  });

  it("close waits for a flush's reads of unread cells (the tables may close right after)", async () => {
    const g = await gatedTables(await freshDir());
    const fatal: Error[] = [];
    const store = new RangeStore(
      1 as RangeId,
      g.tables,
      { generation: 1, checkpointLsn: lsn(0, 0), checksum: 0n },
      { onFatal: (_r, e) => fatal.push(e) },
    );
    for (let i = 1; i <= 2; i++) await store.apply(lsn(1, i), put(`k${i}`, 'c', 'v'));
    await store.flush();
    for (let i = 3; i <= 4; i++) {
      await store.apply(lsn(1, i), put(`k${i - 2}`, 'c', 'w'), { previousVersions: false });
    }
    g.hold();
    const flushed = store.flush();
    await new Promise((r) => setTimeout(r, 20));
    expect(g.waiting()).toBe(2);
    const closed = store.close();
    let done = false;
    void closed.then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    g.release();
    await closed;
    expect(await flushed).toEqual(lsn(1, 4));
    await g.tables.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(fatal).toEqual([]);
  });

  it('many concurrent gets of flushed and missing cells each get their own answer', async () => {
    const n = await openNode(await freshDir());
    const r = n.range(1 as RangeId);
    for (let i = 1; i <= 600; i++) {
      await r.apply(lsn(1, i), put(`k${i}`, 'c', `v${i}`));
    }
    await r.flush();
    const answers = await Promise.all(
      Array.from({ length: 1200 }, (_, i) => r.get(b(`k${i + 1}`), b('c'))),
    );
    answers.forEach((a, i) => {
      if (i < 600) {
        expect(a.found && Buffer.from(a.value).toString()).toBe(`v${i + 1}`);
        expect(a.version).toBe(i + 1);
      } else {
        expect(a.found).toBe(false);
      }
    });
  });
});

describe('RangeStore apply prefetch', () => {
  it('a table read prefetched before a flush rewrote the cell is not used: the condition sees the flushed version', async () => {
    // P2 writes k and starts a flush; P3 (queued with P2, so its prefetch read k = v1 from the
    // tables) waits behind that flush, which moves k from the memtables to the tables. A stale
    // prefetch would answer version 1, and P3's condition on version 2 would fail.
    const n = await openNode(await freshDir(), { memtableSizeBytesMax: 100 });
    const r = n.range(1 as RangeId);
    expect((await r.apply(lsn(1, 1), put('k', 'c', 'v1'))).ok).toBe(true);
    await r.flush();
    const p2 = r.apply(lsn(1, 2), put('k', 'c', 'x'.repeat(200)));
    const p25 = r.apply(lsn(1, 3), put('other', 'c', 'y'.repeat(1000)));
    const p3 = r.apply(lsn(1, 4), put('k', 'c', 'v3', 2));
    expect((await p2).ok).toBe(true);
    expect((await p25).ok).toBe(true);
    expect(await p3).toEqual({ ok: true, previousVersions: [2], versions: [4] });
    const got = await r.get(b('k'), b('c'));
    expect(got.found && Buffer.from(got.value).toString()).toBe('v3');
  });
});

describe('RangeStore staged snapshot imports (a receiver holds a chunk, not the range)', () => {
  const cells = (rows: readonly Row[]) =>
    rows.flatMap((r) =>
      r.cells.map(
        (c) =>
          `${Buffer.from(r.key).toString()}/${Buffer.from(c.column).toString()}=${Buffer.from(c.value).toString()}`,
      ),
    );
  const cell = (key: string, value: string, version: number) => ({
    key: b(key),
    column: b('c'),
    value: b(value),
    version,
  });

  it('stages chunks as they come while the range serves and applies, then switches at commit', async () => {
    const dir = await freshDir();
    const node = await openNode(dir);
    const r = node.range(1);
    await r.apply(lsn(1, 1), put('k', 'c', 'before'));
    const staged = await node.beginImport(1, lsn(2, 10));
    await staged.add([cell('a', '1', 4)]);
    await staged.add([cell('k', 'after', 9), cell('m', '2', 10)]);
    // Nothing staged shows, and the range still takes writes (the snapshot will supersede them).
    expect(cells((await r.scan(b(''), null)).rows)).toEqual(['k/c=before']);
    expect((await r.apply(lsn(1, 2), put('z', 'c', 'late'))).ok).toBe(true);
    await staged.commit();
    expect(cells((await r.scan(b(''), null)).rows)).toEqual(['a/c=1', 'k/c=after', 'm/c=2']);
    expect(r.lastAppliedLsn).toEqual(lsn(2, 10));
    expect(r.checkpointLsn).toEqual(lsn(2, 10));
    // A reopened node reads the imported generation, and nothing else is left.
    await closeNode(node);
    const again = await openNode(dir);
    expect(cells((await again.range(1).scan(b(''), null)).rows)).toEqual([
      'a/c=1',
      'k/c=after',
      'm/c=2',
    ]);
  });

  it('two staged at once: the newer commits, the older then fails and leaves no cells', async () => {
    const dir = await freshDir();
    const node = await openNode(dir);
    const r = node.range(1);
    await r.apply(lsn(1, 1), put('k', 'c', 'v'));
    const older = await node.beginImport(1, lsn(2, 5));
    await older.add([cell('o', 'old', 5)]);
    const newer = await node.beginImport(1, lsn(3, 8));
    await newer.add([cell('n', 'new', 8)]);
    await newer.commit();
    expect(cells((await r.scan(b(''), null)).rows)).toEqual(['n/c=new']);
    await expect(older.add([cell('p', 'x', 5)])).rejects.toThrow(/import ended/);
    await expect(older.commit()).rejects.toThrow(/import ended/);
    await older.abort();
    expect(cells((await r.scan(b(''), null)).rows)).toEqual(['n/c=new']);
    // Only the committed generation holds data: nothing is left for a reopen to collect.
    await closeNode(node);
    const t = await LevelTableStore.open(join(dir, 'sstables'));
    const perGeneration: number[] = [];
    for (let g = 0; g <= 3; g++) {
      let n = 0;
      for await (const batch of t.iterate({ gte: dataPrefix(1, g), lt: dataPrefixEnd(1, g) })) {
        n += batch.length;
      }
      perGeneration.push(n);
    }
    await t.close();
    // Generation 0 was the range's, 1 the older import's, 2 the newer (committed) one's.
    expect(perGeneration).toEqual([0, 0, 1, 0]);
  });

  it('a chunk out of order or a wrong checksum ends the import and leaves the range as it was', async () => {
    const node = await openNode(await freshDir());
    const r = node.range(1);
    await r.apply(lsn(1, 1), put('k', 'c', 'v'));
    const disordered = await node.beginImport(1, lsn(2, 5));
    await disordered.add([cell('m', '1', 5)]);
    await expect(disordered.add([cell('a', '2', 5)])).rejects.toThrow(/out of order/);
    await expect(disordered.add([cell('z', '3', 5)])).rejects.toThrow(/out of order/);
    await expect(disordered.commit()).rejects.toThrow(/out of order/);
    const wrong = await node.beginImport(1, lsn(2, 5), 12345n);
    await wrong.add([cell('a', '1', 5)]);
    await expect(wrong.commit()).rejects.toThrow(/checksum/);
    expect(cells((await r.scan(b(''), null)).rows)).toEqual(['k/c=v']);
    expect(r.lastAppliedLsn).toEqual(lsn(1, 1));
  });
});
