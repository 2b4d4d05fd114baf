// RangeStore: the storage of one key range on one node (DESIGN.md §1, §2; S§4.2).
//
// Owns the range's active memtable, at most one frozen memtable being flushed, the range's
// generation in the node's TableStore, `lastAppliedLsn`, and the range checksum.
//
// Invariants:
// - Mutations are applied one at a time, in LSN order; a record at or below lastAppliedLsn is
//   ignored (replay after a crash is idempotent). Everything an apply changes (memtable,
//   lastAppliedLsn, checksum) changes synchronously after its last await, so a view captured at
//   any instant is the state at exactly one LSN.
// - A column's version is the seq of the record that last wrote it; absent = 0 (core/mutation.ts).
// - checksum = sum over live cells of cellHash (FORMAT.md), kept incrementally while it is cheap,
//   and otherwise computed by a scan when asked for. An apply that need not answer with previous
//   versions (a follower's, a recovery's, a leader's put) and has no condition does not read
//   the tables for a cell it finds in no memtable: the cell's key goes to `unsubtracted`, and
//   the tables' cell (if any) is read later, by the flush of that memtable (before it writes) or
//   by `digest`/`exportSnapshot`. A table cell under such a key cannot change before that flush
//   writes (only the flush of a memtable holding the key does), so a read at any time before it
//   sees the old cell. The hashes read are summed and subtracted from `checksumNow` all at once
//   when the set is settled; until then `checksumNow` still counts those table cells. Once more
//   than CHECKSUM_UNREAD_KEYS_MAX keys wait, the store gives the incremental checksum up
//   (`checksumNow` null) instead of reading a table cell for every write (one random read per
//   write at 10 M rows cost a quarter of the write throughput, BENCHMARKS.md); `digest` and
//   `exportSnapshot` then sum a scan of one read view, and flushes write meta records without a
//   checksum. An import sets it again. Only `digest`, `exportSnapshot` and the flush's meta
//   record expose the checksum, and each settles the pending keys first.
// - Import, drop and the start of a flush never overlap: they run in the serial queue or
//   synchronously, and import/drop wait for a running flush.
//
// Durability contract: nothing here is durable until a flush: one atomic batch writes the frozen
// memtable and the range's meta record (checkpoint LSN + checksum), then TableStore.flushToTables
// puts it in table files, and only then is `checkpointLsn` advanced and `onCheckpoint` called,
// which lets the commit log GC behind it (TESTING.md B.5: LevelDB's WAL is not trusted). A failed
// flush is fail-stop: the store refuses all further calls.

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { assert } from '../core/assert.js';
import { ClosedError, CorruptionError, InvalidArgumentError, SkvError } from '../core/errors.js';
import type { RangeId } from '../core/ids.js';
import { SCAN_ROWS_DEFAULT, SCAN_ROWS_MAX } from '../core/limits.js';
import { compareLsn, type Lsn } from '../core/lsn.js';
import type { ApplyResult, RowMutation } from '../core/mutation.js';
import { cellHash, checksumAdd, checksumSub } from './checksum.js';
import {
  DATA_VALUE_HEADER_BYTES,
  dataPrefix,
  dataPrefixEnd,
  decodeCellKey,
  encodeCellKey,
  encodeDataValue,
  encodeDataValueInto,
  encodeMeta,
  encodeRowKeyPrefix,
  encodeRowStart,
  GENERATION_MAX,
  metaKey,
  type RangeMeta,
  type SnapshotCell,
} from './encoding.js';
import {
  entrySizeBytes,
  type FrozenMemtable,
  type MemCell,
  type MemLayer,
  Memtable,
} from './memtable.js';
import { cellFromTable, type ReadView, viewCellBatches, viewCells, viewGet } from './read-view.js';
import type { TableOp, TableStore } from './table-store.js';

/** Pending calls in a range's serial queue (applies, imports, drops) at most. */
export const APPLY_QUEUE_DEPTH_MAX = 10_000;
/** A snapshot chunk carries at most this many cells... */
export const SNAPSHOT_CHUNK_CELLS_MAX = 4096;
/** ...and about this many bytes (one cell may exceed it). */
export const SNAPSHOT_CHUNK_BYTES_MAX = 1024 * 1024;
export const MEMTABLE_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;

/** Table reads started when an apply was queued (see `prefetchTables`). */
interface Prefetch {
  readonly tableEpoch: number;
  readonly reads: ReadonlyMap<string, Promise<MemCell | undefined>>;
}
/** Cells encoded for a flush between two turns of the event loop. */
const FLUSH_SLICE_CELLS = 4096;
/**
 * Unread keys (see `unsubtracted`) read in one batch when settling; one batch is in flight per
 * memtable at a time.
 */
export const SETTLE_READS_MAX = 1024;
/**
 * Keys written without a table read that the store will still read to keep the checksum; past
 * this many, the incremental checksum is given up (see the file comment).
 */
export const CHECKSUM_UNREAD_KEYS_MAX = 1024;
/** Initial size of a flush's scratch buffers (they grow for a larger cell). */
const FLUSH_SCRATCH_BYTES = 64 * 1024;

export interface Cell {
  readonly column: Uint8Array;
  readonly value: Uint8Array;
  readonly version: number;
}

export interface Row {
  readonly key: Uint8Array;
  readonly cells: readonly Cell[];
}

export type GetResult =
  | { readonly found: true; readonly value: Uint8Array; readonly version: number }
  | { readonly found: false; readonly version: 0 };

/** ApplyResult, or: the record is at or below lastAppliedLsn and was ignored (replay). */
export type StoreApplyResult =
  | ApplyResult
  | { readonly ok: false; readonly reason: 'already-applied' };

export interface ScanOptions {
  /** Rows at most; default SCAN_ROWS_DEFAULT, at most SCAN_ROWS_MAX. */
  readonly limit?: number;
  /** Only these columns; rows with none of them are skipped. */
  readonly columns?: readonly Uint8Array[];
}

export interface ScanResult {
  readonly rows: Row[];
  /** Set when the limit cut the scan: the next row key, to resume from. */
  readonly resumeKey: Uint8Array | null;
  /** The LSN the result is consistent at. */
  readonly lsn: Lsn;
}

export interface Digest {
  readonly lsn: Lsn;
  readonly checksum: bigint;
}

/** A range's cells at one LSN, streamed in bounded chunks; close() if not read to the end. */
export interface RangeSnapshot extends Digest {
  readonly rangeId: RangeId;
  chunks(): AsyncGenerator<SnapshotCell[]>;
  close(): Promise<void>;
}

export interface ApplyOptions {
  /**
   * Whether the result must carry each written column's previous version (default true). When
   * false, an unconditional write of values only does not read the tables for cells in no
   * memtable, and reports 0 as their previous version.
   */
  readonly previousVersions?: boolean;
}

/** A snapshot import under way (RangeStore.beginImport). */
export interface SnapshotImport {
  /** Writes the next chunk of cells (in key order, after the previous chunk's). */
  add(chunk: readonly SnapshotCell[]): Promise<void>;
  /** Switches the range to the cells added, at the import's LSN. */
  commit(): Promise<void>;
  /** Drops the cells added; the range is unchanged. */
  abort(): Promise<void>;
}

interface StagedImport {
  /** No more chunks (aborted, failed or superseded); its cells stay ours to clear. */
  dead: boolean;
  /** The chunks' writes, one after another. */
  tail: Promise<void>;
}

export interface SnapshotExportOptions {
  /** At most SNAPSHOT_CHUNK_CELLS_MAX. */
  readonly chunkCellsMax?: number;
  /** At most SNAPSHOT_CHUNK_BYTES_MAX. */
  readonly chunkBytesMax?: number;
}

export interface RangeStoreOptions {
  readonly memtableSizeBytesMax?: number;
  /** Unread keys per batch of table reads (default SETTLE_READS_MAX; for tests). */
  readonly settleBatchKeys?: number;
  /** See CHECKSUM_UNREAD_KEYS_MAX (the default; for tests). */
  readonly checksumUnreadKeysMax?: number;
  /** Called after each durable checkpoint, in LSN order: the log may GC behind `lsn`. */
  readonly onCheckpoint?: (rangeId: RangeId, lsn: Lsn) => void;
  /** Called once when a flush fails; the store is unusable afterwards (fail-stop). */
  readonly onFatal?: (rangeId: RangeId, error: Error) => void;
}

function cellKeyOf(key: Uint8Array, column: Uint8Array): string {
  return encodeCellKey(key, column).toString('latin1');
}

function toGetResult(c: MemCell | undefined): GetResult {
  return c === undefined || c.value === null
    ? { found: false, version: 0 }
    : { found: true, value: c.value, version: c.version };
}

/** What a record's writes take in an empty memtable (see `activeAppliedBytes`). */
function recordBytes(keys: readonly string[], m: RowMutation): number {
  let n = 0;
  for (let i = 0; i < keys.length; i++) {
    const w = m.writes[i]!;
    n += entrySizeBytes(keys[i]!, w.value);
  }
  return n;
}

/**
 * The cells one memtable wrote without reading the tables (see the file comment): the keys not
 * read yet, and the sum of the table cells' hashes read so far for the others.
 */
class Unread {
  readonly keys = new Set<string>();
  sum = 0n;
  /** The batch of reads in flight (never rejects: a failed read fails the store). */
  reading: Promise<void> | null = null;
}

/** The checksum of the range's cells as `view` sees them (FORMAT.md "Checksum"). */
async function scanChecksum(view: ReadView): Promise<bigint> {
  let sum = 0n;
  for await (const { cell } of viewCells(view, '', null)) sum = checksumAdd(sum, hashOf(cell));
  return sum;
}

function hashOf(c: MemCell): bigint {
  return hashAt(c.key, c.column, c);
}

/** The hash of `c`, a live cell of row `key` and `column`. */
function hashAt(key: Uint8Array, column: Uint8Array, c: MemCell): bigint {
  assert(c.value !== null, 'hash of a live cell');
  return cellHash(key, column, c.value, c.version);
}

/**
 * A cell an apply wrote, as the memtable keeps it: the value and version, and the cell key the
 * memtable files it under, which holds the row key and column; those two are decoded from it
 * only when something asks (scans, row reads, snapshots, digests), never on the write path. A
 * cell as a plain object kept three buffers (row key, column, value), and at 10 M rows, where
 * nearly every write adds a cell, the memtables' objects set the cost of V8's major collections
 * (BENCHMARKS.md "Size").
 */
class WrittenCell implements MemCell {
  constructor(
    private readonly cellKey: string,
    readonly value: Buffer | null,
    readonly version: number,
  ) {}

  get key(): Buffer {
    return decodeCellKey(Buffer.from(this.cellKey, 'latin1')).key;
  }

  get column(): Buffer {
    return decodeCellKey(Buffer.from(this.cellKey, 'latin1')).column;
  }
}

export class RangeStore {
  private generation: number;
  private active = new Memtable();
  /**
   * What the records applied into `active` would take in an empty memtable: every write counted
   * as new, overwrites of a hot cell and refused conditions included. A flush starts once this
   * or the memtable reaches the limit, so the log tail after the checkpoint (which recovery
   * replays and the replica keeps in memory) stays bounded when a workload rewrites a few cells
   * and the memtable itself never fills.
   */
  private activeAppliedBytes = 0;
  private frozen: FrozenMemtable | null = null;
  /**
   * Cells written into `active` while in no memtable and without reading the tables: the
   * tables' cell (if any) is still counted in `checksumNow`. The flush of `active` takes them
   * over (see the file comment).
   */
  private unsubtracted = new Unread();
  private lastApplied: Lsn;
  /** The range checksum at `lastApplied` (less `unsubtracted`'s table cells); null: not kept. */
  private checksumNow: bigint | null;
  private checkpoint: Lsn;
  /** Bumped whenever the tables' contents for this range change (flush done, import). */
  private tableEpoch = 0;
  private serialTail: Promise<void> = Promise.resolve();
  private serialDepth = 0;
  private flushing: Promise<void> | null = null;
  /** Snapshot imports under way (beginImport), each in a generation of its own. */
  private readonly stages = new Set<StagedImport>();
  private lastStagedGeneration = 0;
  private exclusive = false;
  private fatal: Error | null = null;
  private closed = false;
  private readonly memtableSizeBytesMax: number;
  private readonly settleBatchKeys: number;
  private readonly checksumUnreadKeysMax: number;

  constructor(
    readonly rangeId: RangeId,
    private readonly tables: TableStore,
    meta: RangeMeta,
    private readonly options: RangeStoreOptions = {},
  ) {
    this.generation = meta.generation;
    this.lastApplied = meta.checkpointLsn;
    this.checkpoint = meta.checkpointLsn;
    this.checksumNow = meta.checksum;
    this.memtableSizeBytesMax = options.memtableSizeBytesMax ?? MEMTABLE_SIZE_BYTES_DEFAULT;
    assert(this.memtableSizeBytesMax > 0, 'memtable limit');
    this.settleBatchKeys = options.settleBatchKeys ?? SETTLE_READS_MAX;
    assert(this.settleBatchKeys > 0, 'settle batch');
    this.checksumUnreadKeysMax = options.checksumUnreadKeysMax ?? CHECKSUM_UNREAD_KEYS_MAX;
  }

  get lastAppliedLsn(): Lsn {
    return this.lastApplied;
  }

  /** The LSN whose state is in table files; recovery replays the log after it. */
  get checkpointLsn(): Lsn {
    return this.checkpoint;
  }

  /** Bytes held by the active and the frozen memtable. */
  get memtableBytes(): number {
    return this.active.sizeBytes + (this.frozen?.sizeBytes ?? 0);
  }

  get isFlushing(): boolean {
    return this.flushing !== null;
  }

  /**
   * The applied point and the checksum at it: settles cells written without a table read, or,
   * when the store does not keep the checksum, sums a scan of the range (as long as the range
   * is large; applies go on meanwhile).
   */
  async digest(): Promise<Digest> {
    const { view, checksum } = await this.settledView();
    await view.snapshot.close();
    return { lsn: view.lsn, checksum };
  }

  /**
   * A view captured in the serial queue right after settling, and its exact checksum: the kept
   * one, or (not kept) the sum of a scan of the same view. The caller closes the view.
   */
  private async settledView(): Promise<{ view: ReadView; checksum: bigint }> {
    const view = await this.serial(async () => {
      await this.settleChecksum();
      return this.captureView();
    });
    try {
      return { view, checksum: view.checksum ?? (await scanChecksum(view)) };
    } catch (e) {
      await view.snapshot.close();
      throw e;
    }
  }

  /**
   * Makes `checksumNow` exact: waits for a running flush (which settles its memtable's cells)
   * and settles the active memtable's unread cells. In the serial queue only, so no apply adds
   * to them meanwhile; a flush that starts meanwhile takes them over and settles them itself.
   */
  private async settleChecksum(): Promise<void> {
    for (;;) {
      while (this.flushing !== null) await this.flushing;
      this.checkUsable();
      if (this.checksumNow === null) return;
      const unread = this.unsubtracted;
      const sub = await this.readUnread(unread, this.generation);
      this.checkUsable();
      if (this.unsubtracted !== unread || this.checksumNow === null) continue;
      this.checksumNow = checksumSub(this.checksumNow, sub);
      this.unsubtracted = new Unread();
      return;
    }
  }

  /** Reads every key of `unread` (in `generation`) and returns the sum of the cells' hashes. */
  private async readUnread(unread: Unread, generation: number): Promise<bigint> {
    for (;;) {
      if (unread.reading !== null) await unread.reading;
      else if (unread.keys.size > 0) this.startUnreadBatch(unread, generation);
      else return unread.sum;
      this.checkUsable();
    }
  }

  /**
   * Starts reading a batch of `unread`'s keys, sorted, unless a batch is in flight. The keys
   * leave the set now and their hashes join `unread.sum` when read; a failed read fails the
   * store (their hashes would be lost).
   */
  private startUnreadBatch(unread: Unread, generation: number): void {
    if (unread.reading !== null || unread.keys.size === 0) return;
    const batch: string[] = [];
    for (const k of unread.keys) {
      batch.push(k);
      if (batch.length === this.settleBatchKeys) break;
    }
    for (const k of batch) unread.keys.delete(k);
    batch.sort();
    unread.reading = Promise.all(batch.map((k) => this.readTable(k, generation))).then(
      (cells) => {
        let sum = unread.sum;
        for (const c of cells) if (c !== undefined) sum = checksumAdd(sum, hashOf(c));
        unread.sum = sum;
        unread.reading = null;
      },
      (e: unknown) => {
        this.fail(e);
        unread.reading = null;
      },
    );
  }

  // ---- reads ----------------------------------------------------------------------------------

  async get(key: Uint8Array, column: Uint8Array): Promise<GetResult> {
    this.checkUsable();
    const cellKey = cellKeyOf(key, column);
    const mem = this.memCell(cellKey);
    if (mem !== undefined) return toGetResult(mem);
    // Not in a memtable now. A single cell needs no table snapshot: the tables hold what
    // memtables held and flushed, so a read after this instant returns the cell as of this
    // instant or a later one (the state only moves forward; everything applied is committed).
    // Without a snapshot the read joins the adapter's batched reads. Only an import, which
    // switches generations and clears the old one, could make it go back: then read again at
    // one view.
    const generation = this.generation;
    const c = await this.readTable(cellKey, generation);
    if (generation !== this.generation) {
      return this.withView(async (view) => toGetResult(await viewGet(view, cellKey)));
    }
    this.checkUsable();
    return toGetResult(c);
  }

  /** The row's live cells (all of them, or only `columns`), atomically at one LSN. */
  async readRow(key: Uint8Array, columns: readonly Uint8Array[] | 'all'): Promise<Cell[]> {
    return this.withView(async (view) => {
      const out: Cell[] = [];
      if (columns === 'all') {
        const start = encodeRowStart(key);
        const end = Buffer.from(start);
        end[end.length - 1] = (end[end.length - 1] ?? 0) + 1;
        for await (const { cell } of viewCells(
          view,
          start.toString('latin1'),
          end.toString('latin1'),
        )) {
          out.push({ column: cell.column, value: cell.value!, version: cell.version });
        }
        return out;
      }
      const found = await Promise.all(columns.map((c) => viewGet(view, cellKeyOf(key, c))));
      for (const c of found) {
        if (c !== undefined && c.value !== null) {
          out.push({ column: c.column, value: c.value, version: c.version });
        }
      }
      return out;
    });
  }

  /** Rows with start <= key < end (end null: to the end), in key order, at one LSN. */
  async scan(
    start: Uint8Array,
    end: Uint8Array | null,
    options: ScanOptions = {},
  ): Promise<ScanResult> {
    const limit = options.limit ?? SCAN_ROWS_DEFAULT;
    if (!Number.isInteger(limit) || limit < 1 || limit > SCAN_ROWS_MAX) {
      throw new InvalidArgumentError(`scan limit must be 1..${SCAN_ROWS_MAX}`);
    }
    const wanted =
      options.columns === undefined
        ? null
        : new Set(options.columns.map((c) => Buffer.from(c).toString('latin1')));
    return this.withView(async (view) => {
      const rows: Row[] = [];
      let rowKey: Buffer | null = null;
      let cells: Cell[] = [];
      const from = encodeRowKeyPrefix(start).toString('latin1');
      const to = end === null ? null : encodeRowStart(end).toString('latin1');
      for await (const batch of viewCellBatches(view, from, to)) {
        for (const { cell } of batch) {
          // Each read once: a memtable cell decodes them from its cell key on every read.
          const key = cell.key;
          const column = cell.column;
          if (rowKey === null || !rowKey.equals(key)) {
            if (rowKey !== null && cells.length > 0) rows.push({ key: rowKey, cells });
            if (rows.length === limit) return { rows, resumeKey: Buffer.from(key), lsn: view.lsn };
            rowKey = Buffer.from(key);
            cells = [];
          }
          if (wanted === null || wanted.has(Buffer.from(column).toString('latin1'))) {
            cells.push({ column, value: cell.value!, version: cell.version });
          }
        }
      }
      if (rowKey !== null && cells.length > 0) rows.push({ key: rowKey, cells });
      return { rows, resumeKey: null, lsn: view.lsn };
    });
  }

  private captureView(): ReadView {
    const layers: MemLayer[] = [this.active.view()];
    if (this.frozen !== null) layers.push(this.frozen);
    return {
      lsn: this.lastApplied,
      checksum: this.checksumNow,
      prefix: dataPrefix(this.rangeId, this.generation),
      prefixEnd: dataPrefixEnd(this.rangeId, this.generation),
      layers,
      tables: this.tables,
      snapshot: this.tables.snapshot(),
    };
  }

  private async withView<T>(fn: (view: ReadView) => Promise<T>): Promise<T> {
    this.checkUsable();
    const view = this.captureView();
    try {
      return await fn(view);
    } finally {
      await view.snapshot.close();
    }
  }

  // ---- writes ---------------------------------------------------------------------------------

  /** Applies the record at `lsn` (S§5.1: conditions checked in LSN order, all or nothing). */
  apply(lsn: Lsn, mutation: RowMutation, options: ApplyOptions = {}): Promise<StoreApplyResult> {
    const blind = isBlind(mutation, options);
    const prefetched = blind ? null : this.prefetchTables(mutation);
    return this.serial(() => this.applyNow(lsn, mutation, prefetched, blind));
  }

  /**
   * `apply` at once, without a promise or a turn of the event loop, when it can run at once:
   * nothing queued ahead of it, no backpressure wait, and every cell it must read (none for a
   * blind write) in a memtable. Returns null, having changed nothing, when it cannot: the caller
   * then calls `apply`. The outcome is the one `apply` would give.
   */
  applyAtOnce(lsn: Lsn, m: RowMutation, options: ApplyOptions = {}): StoreApplyResult | null {
    if (this.serialDepth > 0 || this.exclusive || this.fatal !== null || this.closed) return null;
    if (this.backpressured()) return null;
    if (compareLsn(lsn, this.lastApplied) <= 0) return { ok: false, reason: 'already-applied' };
    assert(lsn.seq > this.lastApplied.seq, 'seqs increase with LSNs (versions must increase)');
    const keys = m.writes.map((w) => cellKeyOf(m.key, w.column));
    if (isBlind(m, options)) return this.applyRead(lsn, m, keys, this.blindOlds(keys));
    const olds: (MemCell | undefined)[] = [];
    for (const k of keys) {
      const mem = this.memCell(k);
      if (mem === undefined) return null;
      olds.push(live(mem));
    }
    return this.applyRead(lsn, m, keys, olds);
  }

  /** The active memtable has outgrown its limit twice over while a flush runs. */
  private backpressured(): boolean {
    return this.active.sizeBytes > 2 * this.memtableSizeBytesMax && this.flushing !== null;
  }

  /**
   * A blind apply's old cells: memtables only, without an await. A cell in neither joins
   * `unsubtracted` (its table cell, if any, is subtracted from the checksum later).
   */
  private blindOlds(keys: readonly string[]): (MemCell | undefined)[] {
    const keeping = this.checksumNow !== null;
    return keys.map((k) => {
      const mem = this.memCell(k);
      if (mem === undefined && keeping) this.unsubtracted.keys.add(k);
      return live(mem);
    });
  }

  /**
   * The record at `lsn` has nothing for the store (a leader's barrier): only the applied point
   * moves, in order with the applies, so the next checkpoint covers the record.
   */
  skip(lsn: Lsn): Promise<void> {
    return this.serial(async () => {
      if (compareLsn(lsn, this.lastApplied) <= 0) return;
      assert(lsn.seq > this.lastApplied.seq, 'seqs increase with LSNs');
      this.checkUsable();
      this.lastApplied = lsn;
    });
  }

  /**
   * Applies are serial, so a cell found in no memtable used to cost one table read per apply,
   * one after the other (an insert-heavy load ran at ~2.7k applies/s). Those reads start here,
   * when the apply is queued, and run side by side. A prefetched value is used only if no
   * flush or import changed the tables since (`tableEpoch`) and the cell is still in no
   * memtable: then nothing can have written it to the tables in between (a flush writes only
   * cells a memtable holds), so the value read is the one a read at apply time would see.
   */
  private prefetchTables(m: RowMutation): Prefetch | null {
    if (this.fatal !== null || this.closed || this.exclusive) return null;
    let reads: Map<string, Promise<MemCell | undefined>> | null = null;
    for (const w of m.writes) {
      const k = cellKeyOf(m.key, w.column);
      if (this.memCell(k) !== undefined) continue;
      reads ??= new Map();
      if (reads.has(k)) continue;
      const read = this.readTable(k);
      read.catch(() => {}); // awaited by the apply, which reports a failure
      reads.set(k, read);
    }
    return reads === null ? null : { tableEpoch: this.tableEpoch, reads };
  }

  private async applyNow(
    lsn: Lsn,
    m: RowMutation,
    prefetched: Prefetch | null = null,
    blind = false,
  ): Promise<StoreApplyResult> {
    if (compareLsn(lsn, this.lastApplied) <= 0) return { ok: false, reason: 'already-applied' };
    assert(lsn.seq > this.lastApplied.seq, 'seqs increase with LSNs (versions must increase)');
    // Backpressure: the active memtable may outgrow its limit while a flush runs, but boundedly.
    while (this.backpressured()) await this.flushing;
    this.checkUsable();
    const keys = m.writes.map((w) => cellKeyOf(m.key, w.column));
    // Layers are consulted synchronously per key; the table read that may follow cannot be
    // overtaken: applies are serialised and a flush only writes cells that a memtable shadows.
    const olds = blind
      ? this.blindOlds(keys)
      : await Promise.all(keys.map((k) => this.readLatest(k, prefetched)));
    this.checkUsable();
    return this.applyRead(lsn, m, keys, olds);
  }

  /**
   * The synchronous rest of an apply, once the old cells under its keys are read: memtable,
   * checksum and lastApplied move together.
   */
  private applyRead(
    lsn: Lsn,
    m: RowMutation,
    keys: readonly string[],
    olds: readonly (MemCell | undefined)[],
  ): StoreApplyResult {
    const keeping = this.checksumNow !== null;
    // Counted whether the conditions hold or not: a refused record is in the log tail too.
    this.activeAppliedBytes += recordBytes(keys, m);

    // All conditions against the row as it was before this record (0 = absent).
    for (let i = 0; i < m.writes.length; i++) {
      const expected = m.writes[i]!.expectedVersion;
      if (expected === undefined) continue;
      const actual = olds[i]?.version ?? 0;
      if (actual !== expected) {
        this.lastApplied = lsn;
        if (this.flushDue()) this.startFlush();
        return { ok: false, reason: 'version-mismatch', writeIndex: i, actualVersion: actual };
      }
    }
    const previousVersions: number[] = [];
    const versions: number[] = [];
    const current = new Map<string, MemCell | undefined>();
    let sum = this.checksumNow ?? 0n;
    for (let i = 0; i < m.writes.length; i++) {
      const w = m.writes[i]!;
      const k = keys[i]!;
      if (!current.has(k)) current.set(k, olds[i]);
      previousVersions.push(olds[i]?.version ?? 0);
      const before = current.get(k);
      // Hashed with the write's own key and column: the cell key is the same (no decoding).
      if (before !== undefined && keeping) sum = checksumSub(sum, hashAt(m.key, w.column, before));
      const cell = new WrittenCell(k, w.value === null ? null : Buffer.from(w.value), lsn.seq);
      if (cell.value !== null && keeping) sum = checksumAdd(sum, hashAt(m.key, w.column, cell));
      current.set(k, cell.value === null ? undefined : cell);
      this.active.put(k, cell);
      versions.push(cell.value === null ? 0 : lsn.seq);
    }
    if (keeping) this.checksumNow = sum;
    this.lastApplied = lsn;
    if (this.unsubtracted.keys.size > this.checksumUnreadKeysMax) {
      // Reading a table cell for each of these (and every later such write) would cost a random
      // read per write; a digest sums a scan instead.
      this.checksumNow = null;
      this.unsubtracted = new Unread();
    }
    if (this.flushDue()) this.startFlush();
    return { ok: true, previousVersions, versions };
  }

  /** The cell's newest state in a memtable (a tombstone included); undefined if in neither. */
  private memCell(cellKey: string): MemCell | undefined {
    return this.active.get(cellKey) ?? this.frozen?.get(cellKey);
  }

  /** The newest live state of a cell (tombstones read as absent). */
  private async readLatest(
    cellKey: string,
    prefetched: Prefetch | null = null,
  ): Promise<MemCell | undefined> {
    const mem = this.memCell(cellKey);
    if (mem !== undefined) return live(mem);
    if (prefetched !== null && prefetched.tableEpoch === this.tableEpoch) {
      const read = prefetched.reads.get(cellKey);
      if (read !== undefined) return await read;
    }
    return await this.readTable(cellKey);
  }

  /** The cell as the tables hold it now (in `generation`, by default the current one). */
  private async readTable(
    cellKey: string,
    generation = this.generation,
  ): Promise<MemCell | undefined> {
    const ck = Buffer.from(cellKey, 'latin1');
    const v = await this.tables.get(Buffer.concat([dataPrefix(this.rangeId, generation), ck]));
    return v === undefined ? undefined : cellFromTable(ck, v);
  }

  // ---- flush ----------------------------------------------------------------------------------

  /**
   * Flushes everything applied so far and resolves with the new checkpoint LSN once it is in
   * table files. Applies and reads go on meanwhile.
   */
  async flush(): Promise<Lsn> {
    this.checkUsable();
    const target = this.lastApplied;
    for (;;) {
      this.checkUsable();
      if (compareLsn(this.checkpoint, target) >= 0) break;
      if (this.flushing !== null) {
        await this.flushing;
        continue;
      }
      if (this.exclusive) {
        await this.serial(async () => undefined);
        continue;
      }
      this.startFlush();
      // Nothing left to flush: an import replaced the state with an older checkpoint.
      if (this.flushing === null) break;
    }
    return this.checkpoint;
  }

  private flushDue(): boolean {
    const max = this.memtableSizeBytesMax;
    return this.active.sizeBytes > max || this.activeAppliedBytes > max;
  }

  private startFlush(): void {
    if (this.flushing !== null || this.exclusive || this.fatal !== null || this.closed) return;
    if (this.active.count === 0 && compareLsn(this.checkpoint, this.lastApplied) === 0) return;
    const frozen = this.active.freeze();
    const unsubtracted = this.unsubtracted;
    this.active = new Memtable();
    this.unsubtracted = new Unread();
    this.activeAppliedBytes = 0;
    this.frozen = frozen;
    const lsn = this.lastApplied;
    const checksum = this.checksumNow;
    const generation = this.generation;
    this.flushing = this.settleFrozen(unsubtracted, generation)
      .then((sub) =>
        this.writeFrozen(frozen, {
          generation,
          checkpointLsn: lsn,
          checksum: checksum === null ? null : checksumSub(checksum, sub),
        }),
      )
      .then(() => {
        this.frozen = null;
        this.tableEpoch++;
        this.checkpoint = lsn;
        this.options.onCheckpoint?.(this.rangeId, lsn);
      })
      .catch((e: unknown) => this.fail(e))
      .finally(() => {
        this.flushing = null;
        if (this.flushDue()) this.startFlush();
      });
  }

  /**
   * Subtracts from `checksumNow` the tables' cells under the frozen memtable's unread keys
   * (reading those not read yet), and returns their sum: the checksum at the freeze counted
   * them too.
   */
  private async settleFrozen(unread: Unread, generation: number): Promise<bigint> {
    const sub = await this.readUnread(unread, generation);
    if (this.checksumNow !== null) this.checksumNow = checksumSub(this.checksumNow, sub);
    return sub;
  }

  private async writeFrozen(frozen: FrozenMemtable, meta: RangeMeta): Promise<void> {
    const prefix = dataPrefix(this.rangeId, meta.generation);
    // Every cell is encoded into two scratch buffers and handed to the batch, which copies it:
    // a memtable holds hundreds of thousands of cells, and a Buffer per key and per value (all
    // alive until the write) cost the node seconds of garbage collection per flush at 10 M rows.
    let key = Buffer.allocUnsafeSlow(FLUSH_SCRATCH_BYTES);
    let value = Buffer.allocUnsafeSlow(FLUSH_SCRATCH_BYTES);
    prefix.copy(key, 0);
    const batch = this.tables.batch();
    try {
      let n = 0;
      for (const [k, cell] of frozen.cells()) {
        if (prefix.length + k.length > key.length) {
          key = Buffer.allocUnsafeSlow(2 * (prefix.length + k.length));
          prefix.copy(key, 0);
        }
        const keyBytes = prefix.length + key.write(k, prefix.length, 'latin1');
        if (cell.value === null) {
          batch.del(key.subarray(0, keyBytes));
        } else {
          if (DATA_VALUE_HEADER_BYTES + cell.value.length > value.length) {
            value = Buffer.allocUnsafeSlow(2 * (DATA_VALUE_HEADER_BYTES + cell.value.length));
          }
          const valueBytes = encodeDataValueInto(value, cell.version, cell.value);
          batch.put(key.subarray(0, keyBytes), value.subarray(0, valueBytes));
        }
        // Let applies and pings run meanwhile (the frozen memtable does not change; the batch is
        // still one atomic write).
        if (++n % FLUSH_SLICE_CELLS === 0) await yieldToEventLoop();
      }
      batch.put(metaKey(this.rangeId), encodeMeta(meta));
      // Unlogged: the commit log covers these cells until flushToTables below has put the
      // batch in a synced table, and only then is the checkpoint reported.
      await batch.write({ unlogged: true });
    } catch (err) {
      await batch.close().catch(() => {});
      throw err;
    }
    await this.tables.flushToTables();
  }

  // ---- snapshots ------------------------------------------------------------------------------

  /** The range's cells at one LSN, in bounded chunks (DESIGN.md §5 rule 5). */
  async exportSnapshot(options: SnapshotExportOptions = {}): Promise<RangeSnapshot> {
    // A checksum not kept costs one more pass over the view (a transfer is rare; a write is not).
    const { view, checksum } = await this.settledView();
    return this.exportView(view, checksum, options);
  }

  private exportView(
    view: ReadView,
    checksum: bigint,
    options: SnapshotExportOptions,
  ): RangeSnapshot {
    const cellsMax = Math.min(
      options.chunkCellsMax ?? SNAPSHOT_CHUNK_CELLS_MAX,
      SNAPSHOT_CHUNK_CELLS_MAX,
    );
    const bytesMax = Math.min(
      options.chunkBytesMax ?? SNAPSHOT_CHUNK_BYTES_MAX,
      SNAPSHOT_CHUNK_BYTES_MAX,
    );
    assert(cellsMax > 0 && bytesMax > 0, 'snapshot chunk bounds');
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await view.snapshot.close();
    };
    async function* chunks(): AsyncGenerator<SnapshotCell[]> {
      assert(!closed, 'snapshot chunks read after close');
      try {
        let chunk: SnapshotCell[] = [];
        let bytes = 0;
        for await (const { cell } of viewCells(view, '', null)) {
          // Each read once: a memtable cell decodes them from its cell key on every read.
          const key = cell.key;
          const column = cell.column;
          const value = cell.value!;
          chunk.push({ key, column, value, version: cell.version });
          bytes += key.length + column.length + value.length + 20;
          if (chunk.length >= cellsMax || bytes >= bytesMax) {
            yield chunk;
            chunk = [];
            bytes = 0;
          }
        }
        if (chunk.length > 0) yield chunk;
      } finally {
        await close();
      }
    }
    return { rangeId: this.rangeId, lsn: view.lsn, checksum, chunks, close };
  }

  /**
   * Replaces the range's contents with the snapshot's cells at `lsn`, atomically: the cells go
   * to a fresh generation, then one meta write switches to it. If `checksum` is given and the
   * cells do not sum to it, nothing changes and a CorruptionError is thrown.
   */
  async importSnapshot(
    chunks: AsyncIterable<readonly SnapshotCell[]>,
    lsn: Lsn,
    checksum?: bigint,
  ): Promise<void> {
    const staged = await this.beginImport(lsn, checksum);
    try {
      for await (const chunk of chunks) await staged.add(chunk);
    } catch (e) {
      await staged.abort();
      throw e;
    }
    await staged.commit();
  }

  /**
   * Starts replacing the range's contents with a snapshot's cells at `lsn`, chunk by chunk as
   * they arrive: `add` writes a chunk (cells in key order) to a fresh generation that nothing
   * reads, so a receiver holds one chunk, not the range; `commit` checks that the cells sum to
   * `checksum` (if given; else a CorruptionError and nothing changes) and switches to them with
   * one meta write, atomically; `abort` drops them. The range serves and applies meanwhile (a
   * commit discards what was applied since: the snapshot is the newer state). Several imports
   * may be staged at once, each in a generation of its own; once one commits, the older ones'
   * calls fail (their state is older than the range's).
   */
  beginImport(lsn: Lsn, checksum?: bigint): Promise<SnapshotImport> {
    return this.serial(async () => {
      const next = Math.max(this.generation, this.lastStagedGeneration) + 1;
      assert(next <= GENERATION_MAX, 'range generation overflow');
      this.lastStagedGeneration = next;
      const prefix = dataPrefix(this.rangeId, next);
      const prefixEnd = dataPrefixEnd(this.rangeId, next);
      const stage: StagedImport = { dead: false, tail: Promise.resolve() };
      this.stages.add(stage);
      await this.tables.clear(prefix, prefixEnd);
      let sum = 0n;
      let last: Buffer | null = null;
      const live = () => {
        this.checkUsable();
        // A newer import committed first: this one is older than the range's state.
        if (stage.dead || !this.stages.has(stage) || this.generation >= next) {
          throw new SkvError('unavailable', `range ${this.rangeId}: the snapshot import ended`);
        }
      };
      const write = async (chunk: readonly SnapshotCell[]) => {
        live();
        if (chunk.length > SNAPSHOT_CHUNK_CELLS_MAX) {
          throw new InvalidArgumentError(`snapshot chunk over ${SNAPSHOT_CHUNK_CELLS_MAX} cells`);
        }
        const ops: TableOp[] = [];
        for (const c of chunk) {
          if (c.version <= 0 || c.version > lsn.seq) {
            throw new CorruptionError(`snapshot cell version ${c.version} outside 1..${lsn.seq}`);
          }
          const ck = encodeCellKey(c.key, c.column);
          if (last !== null && Buffer.compare(last, ck) >= 0) {
            throw new CorruptionError('snapshot cells out of order');
          }
          last = ck;
          sum = checksumAdd(sum, cellHash(c.key, c.column, c.value, c.version));
          ops.push({
            type: 'put',
            key: Buffer.concat([prefix, ck]),
            value: encodeDataValue(c.version, c.value),
          });
        }
        await this.tables.write(ops);
      };
      const drop = async () => {
        stage.dead = true;
        // Committed, or dropped already: nothing of ours to clear.
        if (!this.stages.delete(stage) || this.generation === next) return;
        await this.tables.clear(prefix, prefixEnd);
      };
      return {
        add: (chunk) => {
          const run = stage.tail.then(() => write(chunk));
          // A failed chunk ends the import (the cells after it would not sum or be in order).
          stage.tail = run.catch(async (e: unknown) => {
            await drop();
            throw e;
          });
          return run;
        },
        abort: async () => {
          stage.dead = true;
          await stage.tail.catch(() => {});
          await drop();
        },
        commit: async () => {
          await stage.tail;
          await this.serial(() =>
            this.exclusively(async () => {
              live();
              if (checksum !== undefined && sum !== checksum) {
                await drop();
                throw new CorruptionError(`snapshot checksum ${sum} != expected ${checksum}`);
              }
              this.stages.delete(stage);
              await this.switchTo(next, lsn, sum);
            }),
          );
        },
      };
    });
  }

  /** Makes the staged generation `next`, at `lsn` with checksum `sum`, the range's contents. */
  private async switchTo(next: number, lsn: Lsn, sum: bigint): Promise<void> {
    try {
      await this.tables.write([
        {
          type: 'put',
          key: metaKey(this.rangeId),
          value: encodeMeta({ generation: next, checkpointLsn: lsn, checksum: sum }),
        },
      ]);
      await this.tables.flushToTables();
    } catch (e) {
      // The meta write's outcome is unknown: fail-stop (a restart reads whichever meta is there).
      this.fail(e);
      throw e;
    }
    const old = this.generation;
    // Switch synchronously: readers capture either the old generation with its memtables or the
    // new one with empty memtables.
    this.generation = next;
    this.tableEpoch++;
    this.active = new Memtable();
    this.unsubtracted = new Unread();
    this.activeAppliedBytes = 0;
    this.frozen = null;
    this.lastApplied = lsn;
    this.checkpoint = lsn;
    this.checksumNow = sum;
    this.options.onCheckpoint?.(this.rangeId, lsn);
    // Readers of the old generation hold table snapshots, so deleting under them is safe.
    await this.tables.clear(dataPrefix(this.rangeId, old), dataPrefixEnd(this.rangeId, old));
  }

  /** Deletes the range's data and meta record; the store is closed afterwards. */
  drop(): Promise<void> {
    return this.serial(() =>
      this.exclusively(async () => {
        // Imports under way end (their cells are leftovers, collected at the next open).
        this.stages.clear();
        await this.tables.write([{ type: 'del', key: metaKey(this.rangeId) }]);
        await this.tables.flushToTables();
        this.closed = true;
        const g = this.generation;
        await this.tables.clear(dataPrefix(this.rangeId, g), dataPrefixEnd(this.rangeId, g));
      }),
    );
  }

  /** Waits for queued work and a running flush; unflushed state stays in the commit log. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.serialTail;
    await this.backgroundDone();
    this.closed = true;
  }

  // ---- plumbing -------------------------------------------------------------------------------

  /**
   * Waits until no flush runs and no batch of settling reads is in flight (a batch reads the
   * current generation's tables, which import and drop change).
   */
  private async backgroundDone(): Promise<void> {
    while (this.flushing !== null || this.unsubtracted.reading !== null) {
      await (this.flushing ?? this.unsubtracted.reading);
    }
  }

  private async exclusively<T>(fn: () => Promise<T>): Promise<T> {
    this.exclusive = true;
    try {
      await this.backgroundDone();
      this.checkUsable();
      return await fn();
    } finally {
      this.exclusive = false;
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    this.checkUsable();
    if (this.serialDepth >= APPLY_QUEUE_DEPTH_MAX) {
      return Promise.reject(new SkvError('overloaded', `range ${this.rangeId}: apply queue full`));
    }
    this.serialDepth++;
    const run = this.serialTail.then(() => fn());
    const done = () => {
      this.serialDepth--;
    };
    // The tail never rejects: a failed call fails its own caller only.
    this.serialTail = run.then(done, done);
    return run;
  }

  private fail(e: unknown): void {
    if (this.fatal !== null) return;
    this.fatal = e instanceof Error ? e : new Error(String(e));
    this.options.onFatal?.(this.rangeId, this.fatal);
  }

  private checkUsable(): void {
    if (this.fatal !== null) {
      throw new SkvError('io-error', `range ${this.rangeId} failed: ${this.fatal.message}`, {
        cause: this.fatal,
      });
    }
    if (this.closed) throw new ClosedError(`range ${this.rangeId} store`);
  }
}

/** A memtable cell as a read sees it: a tombstone reads as absent. */
function live(c: MemCell | undefined): MemCell | undefined {
  return c?.value === null ? undefined : c;
}

/** No condition, no delete, and no previous versions wanted: an apply that needs no table read. */
function isBlind(m: RowMutation, options: ApplyOptions): boolean {
  return (
    options.previousVersions === false &&
    m.writes.every((w) => w.expectedVersion === undefined && w.value !== null)
  );
}
