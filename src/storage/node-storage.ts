// NodeStorage: the storage engine of one node: one TableStore per range the node replicates (a
// LevelDB under `<dataDir>/tables/<rangeId>`), and one RangeStore per range. Builds before
// per-range databases kept every range in one LevelDB under `<dataDir>/sstables`; a node that has
// one keeps serving the ranges it holds from it, and new ranges get databases of their own.
//
// Why a database per range: at 10 million rows a node's one database had five levels, so each
// random read probed one more level, and each write was rewritten by one more level of
// compaction, than in a database a third the size (BENCHMARKS.md "Size").
//
// Open: loads each range's meta record (generation, checkpoint LSN, checksum) and deletes data of
// any (range, generation) no meta record names: leftovers of an interrupted import or drop
// (FORMAT.md), and every range database without a meta record. Recovery then replays the commit
// log after each range's `checkpointLsn`; that is the caller's job.
//
// Durability contract: see RangeStore. A checkpoint is reported through `onCheckpoint` only after
// the range's data and meta record are in LevelDB table files.

import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { assert } from '../core/assert.js';
import { ClosedError } from '../core/errors.js';
import type { RangeId } from '../core/ids.js';
import { type Lsn, ZERO_LSN } from '../core/lsn.js';
import {
  DATA_PREFIX_END,
  DATA_PREFIX_START,
  dataPrefix,
  dataPrefixEnd,
  decodeMeta,
  META_PREFIX_END,
  META_PREFIX_START,
  parseDataPrefix,
  type RangeMeta,
  rangeIdOfMetaKey,
  type SnapshotCell,
} from './encoding.js';
import { LevelTableStore, type LevelTableStoreOptions } from './level/level-table-store.js';
import { OpeningTableStore } from './opening-table-store.js';
import {
  type RangeSnapshot,
  RangeStore,
  type RangeStoreOptions,
  type SnapshotExportOptions,
  type SnapshotImport,
} from './range-store.js';
import type { TableStore } from './table-store.js';

export interface NodeStorageOptions extends RangeStoreOptions {
  readonly level?: LevelTableStoreOptions;
}

const EMPTY_META: RangeMeta = { generation: 0, checkpointLsn: ZERO_LSN, checksum: 0n };
/** One LevelDB per range, named by the range's id, under this directory of the data dir. */
const RANGE_TABLES_DIR = 'tables';
/** The one LevelDB of builds before per-range databases; still used for the ranges it holds. */
const SHARED_TABLES_DIR = 'sstables';
/** A range database being deleted: renamed first, so a crash never leaves half of one. */
const DROPPED_SUFFIX = '.dropped';

export class NodeStorage {
  private readonly ranges = new Map<RangeId, RangeStore>();
  private closed = false;

  private constructor(
    private readonly dataDir: string,
    /** Each range's TableStore: its own database, or the shared one of an older build. */
    private readonly tables: Map<RangeId, TableStore>,
    private readonly shared: TableStore | null,
    private readonly metas: Map<RangeId, RangeMeta>,
    private readonly options: NodeStorageOptions,
    /** Data prefixes (and range databases) deleted at open as garbage (for tests and logs). */
    readonly garbageCollectedAtOpen: number,
  ) {}

  static async open(dataDir: string, options: NodeStorageOptions = {}): Promise<NodeStorage> {
    const opened: TableStore[] = [];
    try {
      const metas = new Map<RangeId, RangeMeta>();
      const tables = new Map<RangeId, TableStore>();
      let collected = 0;
      let shared: TableStore | null = null;
      const sharedDir = join(dataDir, SHARED_TABLES_DIR);
      if (existsSync(sharedDir)) {
        shared = await LevelTableStore.open(sharedDir, options.level);
        opened.push(shared);
        const held = await readMetas(shared);
        collected += await collectGarbage(shared, held);
        for (const [rangeId, meta] of held) {
          metas.set(rangeId, meta);
          tables.set(rangeId, shared);
        }
      }
      const rangesDir = join(dataDir, RANGE_TABLES_DIR);
      await mkdir(rangesDir, { recursive: true });
      for (const name of (await readdir(rangesDir)).sort()) {
        const dir = join(rangesDir, name);
        if (name.endsWith(DROPPED_SUFFIX)) {
          await rm(dir, { recursive: true, force: true });
          continue;
        }
        const rangeId = Number(name);
        if (!/^\d+$/.test(name) || !Number.isSafeInteger(rangeId)) {
          throw new Error(`unexpected entry ${dir} in the range tables directory`);
        }
        const store = await LevelTableStore.open(dir, options.level);
        opened.push(store);
        const held = await readMetas(store);
        const meta = held.get(rangeId);
        if (held.size > (meta === undefined ? 0 : 1)) {
          throw new Error(`range database ${dir} holds the meta record of another range`);
        }
        if (meta === undefined) {
          // Created, never flushed (or dropped before its directory was renamed): garbage.
          opened.pop();
          await store.close();
          await removeRangeDir(dir);
          collected++;
          continue;
        }
        if (metas.has(rangeId)) {
          throw new Error(`range ${rangeId} has a meta record in ${sharedDir} and in ${dir}`);
        }
        collected += await collectGarbage(store, held);
        metas.set(rangeId, meta);
        tables.set(rangeId, store);
      }
      return new NodeStorage(dataDir, tables, shared, metas, options, collected);
    } catch (e) {
      await Promise.all(opened.map((t) => t.close().catch(() => {})));
      throw e;
    }
  }

  /** Ranges with a durable checkpoint on this node. */
  persistedRangeIds(): RangeId[] {
    return [...this.metas.keys()].sort((a, b) => a - b);
  }

  /** Where recovery of `rangeId` replays the log from (exclusive). */
  checkpointLsn(rangeId: RangeId): Lsn {
    return (
      this.ranges.get(rangeId)?.checkpointLsn ?? this.metas.get(rangeId)?.checkpointLsn ?? ZERO_LSN
    );
  }

  /**
   * The range's store, created empty if the node has no state for it. A new range gets a
   * database of its own, usable at once (it opens in the background; `openRange` waits for it).
   */
  range(rangeId: RangeId): RangeStore {
    if (this.closed) throw new ClosedError('node storage');
    let r = this.ranges.get(rangeId);
    if (r === undefined) {
      r = new RangeStore(
        rangeId,
        this.tablesOf(rangeId),
        this.metas.get(rangeId) ?? EMPTY_META,
        this.options,
      );
      this.ranges.set(rangeId, r);
    }
    return r;
  }

  /** `range`, once the range's database is open (a failed open throws here). */
  async openRange(rangeId: RangeId): Promise<RangeStore> {
    const r = this.range(rangeId);
    const t = this.tables.get(rangeId);
    if (t instanceof OpeningTableStore) await t.ready;
    return r;
  }

  private tablesOf(rangeId: RangeId): TableStore {
    let t = this.tables.get(rangeId);
    if (t === undefined) {
      t = new OpeningTableStore(LevelTableStore.open(this.rangeDir(rangeId), this.options.level));
      this.tables.set(rangeId, t);
    }
    return t;
  }

  private rangeDir(rangeId: RangeId): string {
    return join(this.dataDir, RANGE_TABLES_DIR, String(rangeId));
  }

  async exportSnapshot(rangeId: RangeId, options?: SnapshotExportOptions): Promise<RangeSnapshot> {
    return (await this.openRange(rangeId)).exportSnapshot(options);
  }

  async importSnapshot(
    rangeId: RangeId,
    chunks: AsyncIterable<readonly SnapshotCell[]>,
    lsn: Lsn,
    checksum?: bigint,
  ): Promise<void> {
    await (await this.openRange(rangeId)).importSnapshot(chunks, lsn, checksum);
  }

  /** RangeStore.beginImport: a snapshot import fed chunk by chunk as it arrives. */
  async beginImport(rangeId: RangeId, lsn: Lsn, checksum?: bigint): Promise<SnapshotImport> {
    return await (await this.openRange(rangeId)).beginImport(lsn, checksum);
  }

  /**
   * Deletes the range's data and meta record for good. A range with a database of its own loses
   * the database: its meta record is deleted first (durably), so a crash at any point leaves
   * either the range as it was or garbage that the next open deletes.
   */
  async dropRange(rangeId: RangeId): Promise<void> {
    const r = await this.openRange(rangeId);
    await r.drop();
    this.ranges.delete(rangeId);
    this.metas.delete(rangeId);
    const t = this.tables.get(rangeId);
    this.tables.delete(rangeId);
    if (t !== undefined && t !== this.shared) {
      await t.close();
      await removeRangeDir(this.rangeDir(rangeId));
    }
  }

  /** Flushes every open range (graceful shutdown shortens the next recovery). */
  async flushAll(): Promise<void> {
    await Promise.all([...this.ranges.values()].map((r) => r.flush()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.ranges.values()].map((r) => r.close()));
    const stores = new Set(this.tables.values());
    if (this.shared !== null) stores.add(this.shared);
    await Promise.all([...stores].map((t) => t.close()));
  }
}

async function readMetas(tables: TableStore): Promise<Map<RangeId, RangeMeta>> {
  const metas = new Map<RangeId, RangeMeta>();
  for await (const batch of tables.iterate({ gte: META_PREFIX_START, lt: META_PREFIX_END })) {
    for (const [k, v] of batch) metas.set(rangeIdOfMetaKey(k), decodeMeta(v));
  }
  return metas;
}

/** Renames a range database out of the way (atomically), then deletes it. */
async function removeRangeDir(dir: string): Promise<void> {
  const doomed = `${dir}.${Date.now()}${DROPPED_SUFFIX}`;
  await rename(dir, doomed);
  await rm(doomed, { recursive: true, force: true });
}

/** Deletes data of every (range, generation) that no meta record names; returns how many. */
async function collectGarbage(tables: TableStore, metas: Map<RangeId, RangeMeta>): Promise<number> {
  let collected = 0;
  let cursor = DATA_PREFIX_START;
  for (;;) {
    let first: Buffer | undefined;
    for await (const batch of tables.iterate({
      gte: cursor,
      lt: DATA_PREFIX_END,
      batchEntries: 1,
    })) {
      first = batch[0]?.[0];
      break;
    }
    if (first === undefined) return collected;
    const { rangeId, generation } = parseDataPrefix(first);
    const end = dataPrefixEnd(rangeId, generation);
    assert(Buffer.compare(end, cursor) > 0, 'garbage walk advances');
    if (metas.get(rangeId)?.generation !== generation) {
      await tables.clear(dataPrefix(rangeId, generation), end);
      collected++;
    }
    cursor = end;
  }
}
