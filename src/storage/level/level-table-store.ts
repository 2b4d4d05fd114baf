// The classic-level adapter of the TableStore port: the only importer of classic-level.
//
// Durability contract (FORMAT.md "Flush"): `flushToTables` calls compactRange over a key range
// where nothing is stored. LevelDB 1.20's DBImpl::CompactRange (deps/leveldb/leveldb-1.20/
// db/db_impl.cc:567) first calls TEST_CompactMemTable(), which queues a null write that forces a
// memtable switch and then waits until the immutable memtable is written to a synced level-0
// table and recorded in the synced MANIFEST. No table overlaps the compacted range, so nothing
// else is compacted. CompactRange returns void, so a failed table write would be silent; the
// probe put that follows fails if LevelDB holds a background error.
//
// Writes are not synced (`sync: false`): durability of the data comes from the commit log until
// `flushToTables` has put it in table files, and only then is a checkpoint reported.

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { ClassicLevel } from 'classic-level';
import { assert } from '../../core/assert.js';
import { FLUSH_RANGE_END, FLUSH_RANGE_START, PROBE_KEY } from '../encoding.js';
import type {
  TableBatch,
  TableIterateOptions,
  TableLevelStats,
  TableOp,
  TableSnapshot,
  TableStore,
} from '../table-store.js';

const ITERATE_BATCH_ENTRIES_MAX = 1000;
/** A batch write that skips LevelDB's log (an option only skv's LevelDB build reads). */
const UNLOGGED = { sync: false, skvNoLog: true };
/** Operations added to a batch between two turns of the event loop. */
const WRITE_SLICE_OPS = 2048;
const ITERATE_BATCH_ENTRIES_DEFAULT = 256;
/**
 * Gets without a snapshot that arrive in one turn of the event loop go to LevelDB as one
 * getMany of at most this many keys: one thread-pool job and one implicit snapshot instead of
 * one each per key. Measured on 10 million 110-byte rows (2-core machine): single gets with a
 * snapshot each 12k/s at 0.060 ms CPU, without 28k/s at 0.026 ms, getMany of 64 keys 40k/s at
 * 0.018 ms, of 256 keys 77k/s at 0.011 ms.
 */
const GET_BATCH_KEYS_MAX = 256;

interface PendingGet {
  readonly key: Buffer;
  readonly resolve: (value: Buffer | undefined) => void;
  readonly reject: (error: unknown) => void;
}

type Db = ClassicLevel<Buffer, Buffer>;
type LevelSnapshot = ReturnType<Db['snapshot']>;

export interface LevelTableStoreOptions {
  /** LevelDB's own write buffer (its memtable); ours is separate. */
  readonly writeBufferSizeBytes?: number;
  readonly cacheSizeBytes?: number;
}

/**
 * LevelDB keeps up to this many tables open, each with its index and bloom filter at hand
 * (LevelDB maps up to 1000 table files and reads the rest with pread, holding a descriptor for
 * each within a fifth of the process's limit). classic-level's default, 1000, is fewer tables
 * than a node held at 10 M rows (1,082 on 2.1 GB): past it, a read that lands on a closed table
 * opens it again (reads its footer, index and filter) and closes another. 10 M read-only lives
 * read 61.1 k/s with this against 48.8 k/s (BENCHMARKS.md "Size").
 */
const MAX_OPEN_TABLES = 20_000;

const MIB = 1024 * 1024;

/**
 * LevelDB's `leveldb.stats` property: a table with one row per level that has tables or
 * compaction time ("Level Files Size(MB) Time(sec) Read(MB) Write(MB)"; sizes in MiB).
 */
export function parseLevelStats(text: string): TableLevelStats[] {
  const levels: TableLevelStats[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line);
    if (m === null) continue;
    const [level, files, sizeMib, seconds, readMib, writeMib] = m.slice(1).map(Number) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    levels.push({
      level,
      files,
      bytes: sizeMib * MIB,
      compactionSeconds: seconds,
      compactionReadBytes: readMib * MIB,
      compactionWrittenBytes: writeMib * MIB,
    });
  }
  return levels;
}

export class LevelTableStore implements TableStore {
  private probeCount = 0;
  private pendingGets: PendingGet[] = [];
  private getsScheduled = false;

  private constructor(
    private readonly db: Db,
    readonly location: string,
  ) {}

  static async open(
    location: string,
    options: LevelTableStoreOptions = {},
  ): Promise<LevelTableStore> {
    const db: Db = new ClassicLevel<Buffer, Buffer>(location, {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
      createIfMissing: true,
      writeBufferSize: options.writeBufferSizeBytes ?? 16 * 1024 * 1024,
      cacheSize: options.cacheSizeBytes ?? 32 * 1024 * 1024,
      maxOpenFiles: MAX_OPEN_TABLES,
    });
    await db.open();
    return new LevelTableStore(db, location);
  }

  async get(key: Buffer, snapshot?: TableSnapshot): Promise<Buffer | undefined> {
    if (snapshot !== undefined) {
      return (await this.db.get(key, { snapshot: snapshot as LevelSnapshot })) ?? undefined;
    }
    return await new Promise<Buffer | undefined>((resolve, reject) => {
      this.pendingGets.push({ key, resolve, reject });
      if (this.pendingGets.length >= GET_BATCH_KEYS_MAX) {
        this.dispatchGets();
      } else if (!this.getsScheduled) {
        this.getsScheduled = true;
        setImmediate(() => {
          this.getsScheduled = false;
          this.dispatchGets();
        });
      }
    });
  }

  /** One getMany for the gets queued so far; it reads them all at one instant (its snapshot). */
  private dispatchGets(): void {
    const batch = this.pendingGets;
    if (batch.length === 0) return;
    this.pendingGets = [];
    this.db.getMany(batch.map((g) => g.key)).then(
      (values) => {
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(values[i] ?? undefined);
      },
      (error: unknown) => {
        for (const g of batch) g.reject(error);
      },
    );
  }

  snapshot(): TableSnapshot {
    return this.db.snapshot();
  }

  levelStats(): TableLevelStats[] {
    return this.db.status === 'open' ? parseLevelStats(this.db.getProperty('leveldb.stats')) : [];
  }

  async *iterate(options: TableIterateOptions): AsyncGenerator<Array<[Buffer, Buffer]>> {
    const batch = Math.min(
      options.batchEntries ?? ITERATE_BATCH_ENTRIES_DEFAULT,
      ITERATE_BATCH_ENTRIES_MAX,
    );
    assert(batch > 0, 'iterate batch size');
    const it = this.db.iterator({
      gte: options.gte,
      lt: options.lt,
      ...(options.snapshot === undefined ? {} : { snapshot: options.snapshot as LevelSnapshot }),
    });
    try {
      for (;;) {
        const entries = await it.nextv(batch);
        if (entries.length === 0) return;
        yield entries;
      }
    } finally {
      await it.close();
    }
  }

  async write(ops: readonly TableOp[]): Promise<void> {
    if (ops.length === 0) return;
    // One atomic batch, built in slices: handing many operations over in one call blocks the
    // event loop (long enough, for a whole memtable, to lose a ZooKeeper session).
    const batch = this.batch();
    try {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!;
        if (op.type === 'put') batch.put(op.key, op.value);
        else batch.del(op.key);
        if ((i + 1) % WRITE_SLICE_OPS === 0) await yieldToEventLoop();
      }
      await batch.write();
    } catch (err) {
      await batch.close().catch(() => {});
      throw err;
    }
  }

  /**
   * A chained batch: classic-level hands each put and del straight to LevelDB's native
   * WriteBatch, which copies the bytes (binding.cc batch_put), so callers may reuse buffers.
   * That holds only while nobody listens to the database's 'write' event (abstract-level then
   * keeps the operations): this adapter never does.
   */
  batch(): TableBatch {
    assert(this.db.listenerCount('write') === 0, "no 'write' listener (batches copy at once)");
    const batch = this.db.batch();
    return {
      put: (key, value) => {
        batch.put(key, value);
      },
      del: (key) => {
        batch.del(key);
      },
      // skv's LevelDB build (scripts/build-leveldb.mjs) skips its log for `skvNoLog`; the
      // prebuilt binary ignores the option and logs the batch, which is only slower.
      write: (options) => batch.write(options?.unlogged === true ? UNLOGGED : {}),
      close: () => batch.close(),
    };
  }

  async clear(gte: Buffer, lt: Buffer): Promise<void> {
    await this.db.clear({ gte, lt });
  }

  async flushToTables(): Promise<void> {
    await this.db.compactRange(FLUSH_RANGE_START, FLUSH_RANGE_END);
    // Fails if the memtable compaction above recorded a background error.
    const probe = Buffer.allocUnsafe(8);
    probe.writeDoubleBE(++this.probeCount);
    await this.db.put(PROBE_KEY, probe);
  }

  /** LevelDB's `leveldb.num-files-at-levelN` etc., for tests and metrics. */
  property(name: string): string {
    return this.db.getProperty(name);
  }

  async close(): Promise<void> {
    this.dispatchGets();
    await this.db.close();
  }
}
