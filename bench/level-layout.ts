// Benchmark of the storage layout under LevelDB alone: one database holding three ranges (the
// node's layout) against three databases of one range each, at a given number of rows. Through
// the product's adapter (LevelTableStore: batched gets, sliced write batches, flushToTables).
//
// Load N rows in a random order (130-byte values, the bench's 16-byte row keys encoded as the
// node stores them: range prefix, cell key), wait until LevelDB is idle, then run cycles of: W
// random overwrites and a forced flush to level 0 (as a memtable flush does), R random reads
// (gets of 256 keys at a time, 8 batches in flight), and the wait until compaction is idle
// again. Prints one JSON line per phase: wall time, process CPU (every thread: compaction
// included) and LevelDB's levels.
//
// Run: node dist/bench/level-layout.js --dbs 1|3 --rows 10000000 [--cycles 3] [--dir PATH]
// The data goes under --dir (kept), or a temp dir (removed).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { dataPrefix, encodeCellKey } from '../src/storage/encoding.js';
import { LevelTableStore } from '../src/storage/level/level-table-store.js';
import { fieldName, keyName, ValuePool } from './keys.js';
import { Random } from './random.js';

const RANGES = 3;
const VALUE_BYTES = 130;
const WRITES_PER_CYCLE = 700_000;
const READS_PER_CYCLE = 400_000;
const READ_BATCH_KEYS = 256;
const READ_BATCHES_IN_FLIGHT = 8;
const WRITE_BATCH_OPS = 1000;
const IDLE_WINDOW_MS = 3000;
const IDLE_CPU_S = 0.05;

const { values: args } = parseArgs({
  options: {
    dbs: { type: 'string', default: '3' },
    rows: { type: 'string', default: '10000000' },
    cycles: { type: 'string', default: '3' },
    seed: { type: 'string', default: '12345' },
    dir: { type: 'string' },
  },
});
const DBS = Number(args.dbs);
const ROWS = Number(args.rows);
const CYCLES = Number(args.cycles);
if (DBS !== 1 && DBS !== RANGES) throw new Error(`--dbs must be 1 or ${RANGES}`);
if (!Number.isSafeInteger(ROWS) || ROWS < 1) throw new Error('--rows must be a positive integer');

const random = new Random(Number(args.seed));
const values = new ValuePool(random, VALUE_BYTES);
const nextUint32 = (): number => random.nextUint32();

/** Row i: its range, and its key as the node stores it (range prefix, cell key of field0). */
function rowKey(i: number): { range: number; key: Buffer } {
  const range = i % RANGES;
  const cell = encodeCellKey(Buffer.from(keyName(i, 'hashed')), Buffer.from(fieldName(0)));
  return { range, key: Buffer.concat([dataPrefix(range, 0), cell]) };
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

const root = args.dir ?? (await mkdtemp(join(tmpdir(), 'skv-level-layout-')));
const stores: LevelTableStore[] = [];
for (let d = 0; d < DBS; d++) stores.push(await LevelTableStore.open(join(root, `db${d}`)));
/** The database that holds `range`'s rows. */
const dbOf = (range: number): number => (DBS === 1 ? 0 : range);

async function write(count: number, pick: (j: number) => number): Promise<void> {
  const batches: Array<Array<{ type: 'put'; key: Buffer; value: Buffer }>> = stores.map(() => []);
  const pending: Promise<void>[] = [];
  for (let j = 0; j < count; j++) {
    const { range, key } = rowKey(pick(j));
    const d = dbOf(range);
    batches[d]!.push({ type: 'put', key, value: values.next() });
    if (batches[d]!.length >= WRITE_BATCH_OPS) {
      pending.push(stores[d]!.write(batches[d]!.splice(0)));
      if (pending.length >= 4) await Promise.all(pending.splice(0));
    }
  }
  for (let d = 0; d < stores.length; d++) pending.push(stores[d]!.write(batches[d]!));
  await Promise.all(pending);
  await Promise.all(stores.map((s) => s.flushToTables()));
}

/** Reads about `count` random rows; returns how many were read and how many found. */
async function read(count: number): Promise<{ reads: number; found: number }> {
  let issued = 0;
  let found = 0;
  async function reader(): Promise<void> {
    while (issued < count) {
      issued += READ_BATCH_KEYS;
      const gets: Promise<Buffer | undefined>[] = [];
      for (let j = 0; j < READ_BATCH_KEYS; j++) {
        const { range, key } = rowKey(nextUint32() % ROWS);
        gets.push(stores[dbOf(range)]!.get(key));
      }
      for (const v of await Promise.all(gets)) if (v !== undefined) found++;
    }
  }
  await Promise.all(Array.from({ length: READ_BATCHES_IN_FLIGHT }, reader));
  return { reads: issued, found };
}

/** Waits until the process (LevelDB's compaction thread included) is idle; returns seconds. */
async function untilIdle(): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const before = cpuSeconds();
    await sleep(IDLE_WINDOW_MS);
    if (cpuSeconds() - before < IDLE_CPU_S) {
      return (performance.now() - t0 - IDLE_WINDOW_MS) / 1000;
    }
  }
}

/** Files and MB per level, for each database. */
function levels(): string {
  return stores
    .map((s) =>
      s
        .property('leveldb.stats')
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => /^\d+$/.test(f[0] ?? ''))
        .map((f) => `L${f[0]}:${f[1]}f/${f[2]}MB`)
        .join(' '),
    )
    .join(' | ');
}

const round = (x: number): number => Math.round(x * 100) / 100;

try {
  const c0 = cpuSeconds();
  const t0 = performance.now();
  await write(ROWS, (j) => j);
  const loadS = (performance.now() - t0) / 1000;
  const settleS = await untilIdle();
  console.log(
    JSON.stringify({
      phase: 'load',
      dbs: DBS,
      rows: ROWS,
      loadS: round(loadS),
      settleS: round(settleS),
      cpuS: round(cpuSeconds() - c0),
      levels: levels(),
    }),
  );
  for (let c = 0; c < CYCLES; c++) {
    const cw = cpuSeconds();
    const tw = performance.now();
    await write(WRITES_PER_CYCLE, () => nextUint32() % ROWS);
    const writeS = (performance.now() - tw) / 1000;
    const writeCpuS = cpuSeconds() - cw;
    const cr = cpuSeconds();
    const tr = performance.now();
    const { reads, found } = await read(READS_PER_CYCLE);
    const readS = (performance.now() - tr) / 1000;
    const readCpuS = cpuSeconds() - cr;
    const cs = cpuSeconds();
    const settle = await untilIdle();
    const settleCpuS = cpuSeconds() - cs;
    console.log(
      JSON.stringify({
        phase: `cycle ${c + 1}`,
        dbs: DBS,
        rows: ROWS,
        writeS: round(writeS),
        writeCpuS: round(writeCpuS),
        readS: round(readS),
        reads,
        readsPerS: Math.round(reads / readS),
        readCpuS: round(readCpuS),
        found,
        settleS: round(settle),
        settleCpuS: round(settleCpuS),
        cycleCpuS: round(writeCpuS + readCpuS + settleCpuS),
        levels: levels(),
      }),
    );
  }
} finally {
  await Promise.all(stores.map((s) => s.close()));
  if (args.dir === undefined) await rm(root, { recursive: true, force: true });
}
