// The SSTable port: what the storage engine needs from an ordered, durable key-value store
// (LevelDB via classic-level in production; storage/level/ is its only adapter).
//
// Contract: `write` applies one batch atomically; `flushToTables` returns only once every batch
// whose `write` resolved before the call is in table files (not only in the store's own WAL,
// which classic-level's LevelDB silently drops on damage: TESTING.md B.5), and throws if that
// could not be done. A snapshot is taken synchronously and pins the store's state at that
// instant for gets and iterators that name it.

export type TableOp =
  | { readonly type: 'put'; readonly key: Buffer; readonly value: Buffer }
  | { readonly type: 'del'; readonly key: Buffer };

/**
 * A batch filled one operation at a time and applied atomically by `write`. The adapter copies
 * each key and value when it is added, so the caller may reuse its buffers at once (a flush
 * encodes hundreds of thousands of cells through one scratch buffer instead of allocating each).
 */
export interface TableBatch {
  put(key: Buffer, value: Buffer): void;
  del(key: Buffer): void;
  /**
   * Applies every operation added, all or nothing. The batch is done after it. `unlogged`: the
   * store may keep the batch in memory only until `flushToTables` (a crash before that loses it
   * whole), for a caller whose own log covers it until then.
   */
  write(options?: { readonly unlogged?: boolean }): Promise<void>;
  /** Drops the batch unwritten. */
  close(): Promise<void>;
}

export interface TableSnapshot {
  close(): Promise<void>;
}

/** One level of the store's LSM tree, and the compaction work that wrote into it so far. */
export interface TableLevelStats {
  readonly level: number;
  readonly files: number;
  readonly bytes: number;
  /** Cumulative since the store opened: compactions that produced this level's tables. */
  readonly compactionSeconds: number;
  readonly compactionReadBytes: number;
  readonly compactionWrittenBytes: number;
}

export interface TableIterateOptions {
  readonly gte: Buffer;
  readonly lt: Buffer;
  readonly snapshot?: TableSnapshot;
  /** Entries per yielded batch (bounded by the adapter). */
  readonly batchEntries?: number;
}

export interface TableStore {
  /**
   * With a snapshot: the value as of that snapshot. Without: the value at some instant between
   * the call and its result (an adapter may gather such gets into one batched read).
   */
  get(key: Buffer, snapshot?: TableSnapshot): Promise<Buffer | undefined>;
  snapshot(): TableSnapshot;
  /** Entries with gte <= key < lt, in key order, in bounded batches. */
  iterate(options: TableIterateOptions): AsyncGenerator<Array<[Buffer, Buffer]>>;
  write(ops: readonly TableOp[]): Promise<void>;
  batch(): TableBatch;
  /** Deletes every key in [gte, lt). Not atomic. */
  clear(gte: Buffer, lt: Buffer): Promise<void>;
  flushToTables(): Promise<void>;
  /** The LSM tree's levels (those with tables or compaction work), read synchronously. */
  levelStats(): TableLevelStats[];
  close(): Promise<void>;
}
