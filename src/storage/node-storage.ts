// NodeStorage: the storage engine of one node: one TableStore (one LevelDB under
// `<dataDir>/sstables`) shared by every range the node replicates, and one RangeStore per range.
//
// Open: loads each range's meta record (generation, checkpoint LSN, checksum) and deletes data of
// any (range, generation) no meta record names: leftovers of an interrupted import or drop
// (FORMAT.md). Recovery then replays the commit log after each range's `checkpointLsn`; that is
// the caller's job.
//
// Durability contract: see RangeStore. A checkpoint is reported through `onCheckpoint` only after
// the range's data and meta record are in LevelDB table files.

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
import {
  type RangeSnapshot,
  RangeStore,
  type RangeStoreOptions,
  type SnapshotExportOptions,
  type SnapshotImport,
} from './range-store.js';
import type { TableLevelStats, TableStore } from './table-store.js';

export interface NodeStorageOptions extends RangeStoreOptions {
  readonly level?: LevelTableStoreOptions;
}

const EMPTY_META: RangeMeta = { generation: 0, checkpointLsn: ZERO_LSN, checksum: 0n };

export class NodeStorage {
  private readonly ranges = new Map<RangeId, RangeStore>();
  private closed = false;

  private constructor(
    private readonly tables: TableStore,
    private readonly metas: Map<RangeId, RangeMeta>,
    private readonly options: NodeStorageOptions,
    /** Data prefixes deleted at open as garbage (for tests and logs). */
    readonly garbageCollectedAtOpen: number,
  ) {}

  static async open(dataDir: string, options: NodeStorageOptions = {}): Promise<NodeStorage> {
    const tables = await LevelTableStore.open(join(dataDir, 'sstables'), options.level);
    try {
      const metas = new Map<RangeId, RangeMeta>();
      for await (const batch of tables.iterate({ gte: META_PREFIX_START, lt: META_PREFIX_END })) {
        for (const [k, v] of batch) metas.set(rangeIdOfMetaKey(k), decodeMeta(v));
      }
      const collected = await collectGarbage(tables, metas);
      return new NodeStorage(tables, metas, options, collected);
    } catch (e) {
      await tables.close();
      throw e;
    }
  }

  /** The shared table store's LSM levels (for metrics). */
  tableLevels(): TableLevelStats[] {
    return this.tables.levelStats();
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

  /** The range's store, created empty if the node has no state for it. */
  range(rangeId: RangeId): RangeStore {
    if (this.closed) throw new ClosedError('node storage');
    let r = this.ranges.get(rangeId);
    if (r === undefined) {
      r = new RangeStore(rangeId, this.tables, this.metas.get(rangeId) ?? EMPTY_META, this.options);
      this.ranges.set(rangeId, r);
    }
    return r;
  }

  exportSnapshot(rangeId: RangeId, options?: SnapshotExportOptions): Promise<RangeSnapshot> {
    return this.range(rangeId).exportSnapshot(options);
  }

  importSnapshot(
    rangeId: RangeId,
    chunks: AsyncIterable<readonly SnapshotCell[]>,
    lsn: Lsn,
    checksum?: bigint,
  ): Promise<void> {
    return this.range(rangeId).importSnapshot(chunks, lsn, checksum);
  }

  /** RangeStore.beginImport: a snapshot import fed chunk by chunk as it arrives. */
  beginImport(rangeId: RangeId, lsn: Lsn, checksum?: bigint): Promise<SnapshotImport> {
    return this.range(rangeId).beginImport(lsn, checksum);
  }

  async dropRange(rangeId: RangeId): Promise<void> {
    const r = this.range(rangeId);
    await r.drop();
    this.ranges.delete(rangeId);
    this.metas.delete(rangeId);
  }

  /** Flushes every open range (graceful shutdown shortens the next recovery). */
  async flushAll(): Promise<void> {
    await Promise.all([...this.ranges.values()].map((r) => r.flush()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.ranges.values()].map((r) => r.close()));
    await this.tables.close();
  }
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
