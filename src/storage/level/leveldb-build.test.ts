// The LevelDB that classic-level loads here is skv's build (scripts/build-leveldb.mjs): reads that
// look in two tables start no compaction, level 1 holds 64 MiB, and a batch may skip LevelDB's
// log. Against classic-level's prebuilt binary these tests fail: the same reads move the upper
// table down a level (LevelDB 1.20's seek compaction), level 1 is kept at 10 MiB, and every
// batch is logged (so an unlogged one survives a close without flush).

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { LevelTableStore, parseLevelStats } from './level-table-store.js';
import { levelDbBuild } from './leveldb-build.js';

const ROWS = 4000;
const key = (i: number): string => `k${String(i).padStart(8, '0')}`;
const VALUE = 'x'.repeat(100);

describe.skipIf(process.env.SKV_LEVELDB_PREBUILT === '1')("skv's LevelDB build", () => {
  let dir = '';
  afterEach(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('is the binary classic-level loads', () => {
    const build = levelDbBuild();
    expect(build.detail).toContain(
      'no seek compaction, level 1 64 MiB, unlogged batches, hardware CRC-32C, adaptive snappy',
    );
    expect(build.patched).toBe(true);
  });

  it('starts no compaction when reads look in a second table', async () => {
    dir = await mkdtemp(join(tmpdir(), 'skv-seek-'));
    const db = new ClassicLevel<string, string>(dir, {
      keyEncoding: 'utf8',
      valueEncoding: 'utf8',
      writeBufferSize: 64 * 1024,
    });
    await db.open();
    try {
      // Even rows, compacted down; then odd rows over the same keys, flushed into a table above
      // them. Every get of an even row looks in the upper table first, misses, and reads the
      // lower one: LevelDB 1.20 charges the upper table a seek for each (100 allowed).
      let batch = db.batch();
      for (let i = 0; i < ROWS; i += 2) batch.put(key(i), VALUE);
      await batch.write();
      await db.compactRange(key(0), key(ROWS));
      batch = db.batch();
      for (let i = 1; i < ROWS; i += 2) batch.put(key(i), VALUE);
      await batch.write();
      await db.compactRange('a', 'a0'); // flushes the memtable; compacts nothing of the rows
      const levels = async (): Promise<number[]> => {
        const files: number[] = [];
        for (let level = 0; level < 7; level++) {
          files.push(Number(await db.getProperty(`leveldb.num-files-at-level${level}`)));
        }
        return files;
      };
      const before = await levels();
      expect(before.filter((n) => n > 0).length, `tables per level ${before}`).toBe(2);

      for (let round = 0; round < 10; round++) {
        const keys = Array.from({ length: 100 }, (_, j) => key(2 * (round * 100 + j)));
        const values = await db.getMany(keys);
        expect(values.every((v) => v === VALUE)).toBe(true);
      }
      // A compaction the reads scheduled runs on LevelDB's background thread: give it time.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(await levels()).toEqual(before);
    } finally {
      await db.close();
    }
  });

  it('lets level 1 grow past 10 MiB before it compacts it down', async () => {
    dir = await mkdtemp(join(tmpdir(), 'skv-level1-'));
    const db = new ClassicLevel<Buffer, Buffer>(dir, {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
      writeBufferSize: 1024 * 1024,
      compression: false,
    });
    await db.open();
    try {
      // About 28 MB of random rows through a 1 MiB write buffer: level 0 is compacted into
      // level 1 every four tables. Stock LevelDB then moves level 1 down to keep it at 10 MiB.
      for (let b = 0; b < 240; b++) {
        const batch = db.batch();
        for (let i = 0; i < 1000; i++) batch.put(randomBytes(16), randomBytes(100));
        await batch.write();
      }
      // Compactions run on LevelDB's thread: wait until its statistics stop changing.
      let stats = '';
      for (let unchanged = 0, polls = 0; unchanged < 5 && polls < 200; polls++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const now = db.getProperty('leveldb.stats');
        unchanged = now === stats ? unchanged + 1 : 0;
        stats = now;
      }
      const level1 = parseLevelStats(stats).find((l) => l.level === 1);
      expect(level1?.bytes ?? 0, stats).toBeGreaterThan(16 * 1024 * 1024);
    } finally {
      await db.close();
    }
  });

  it('compresses values that compress, in a table that also holds values that do not', async () => {
    dir = await mkdtemp(join(tmpdir(), 'skv-snappy-'));
    const db = new ClassicLevel<Buffer, Buffer>(dir, {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
      writeBufferSize: 64 * 1024 * 1024,
    });
    await db.open();
    try {
      // 4 MB of random values first (blocks that do not compress, so the build stops trying
      // for a while), then 4 MB of values that compress, in key order: one table.
      const row = (i: number): Buffer => Buffer.from(`r${String(i).padStart(8, '0')}`);
      const batch = db.batch();
      for (let i = 0; i < 40_000; i++) batch.put(row(i), randomBytes(100));
      const text = Buffer.from('abcdefghij'.repeat(10));
      for (let i = 40_000; i < 80_000; i++) batch.put(row(i), text);
      await batch.write();
      await db.compactRange(row(0), row(80_000)); // the memtable into a table
      const bytes = Number(await db.approximateSize(row(0), row(80_000)));
      // Uncompressed, the rows take over 8.8 MB; with the compressible half compressed, under 6.
      expect(bytes).toBeGreaterThan(4_000_000);
      expect(bytes).toBeLessThan(6_000_000);
      expect((await db.get(row(39_999)))?.length).toBe(100);
      expect((await db.get(row(79_999)))?.equals(text)).toBe(true);
    } finally {
      await db.close();
    }
  });

  it('keeps an unlogged batch only once flushToTables has put it in a table', async () => {
    dir = await mkdtemp(join(tmpdir(), 'skv-nolog-'));
    const k = (name: string) => Buffer.from(name);
    let store = await LevelTableStore.open(dir);
    let batch = store.batch();
    batch.put(k('logged'), k('1'));
    await batch.write();
    batch = store.batch();
    batch.put(k('unlogged'), k('2'));
    await batch.write({ unlogged: true });
    expect((await store.get(k('unlogged')))?.toString()).toBe('2');
    // Closed without a flush: LevelDB recovers its memtable from its log, which lacks the batch.
    await store.close();
    store = await LevelTableStore.open(dir);
    try {
      expect((await store.get(k('logged')))?.toString()).toBe('1');
      expect(await store.get(k('unlogged'))).toBeUndefined();
      batch = store.batch();
      batch.put(k('flushed'), k('3'));
      await batch.write({ unlogged: true });
      await store.flushToTables();
    } finally {
      await store.close();
    }
    store = await LevelTableStore.open(dir);
    try {
      expect((await store.get(k('flushed')))?.toString()).toBe('3');
    } finally {
      await store.close();
    }
  });
});
