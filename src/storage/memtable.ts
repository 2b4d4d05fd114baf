// The memtable: a sorted map from cell key (FORMAT.md `cell-key` bytes as a latin1 string, so JS
// string order equals byte order) to the cell's newest state in memory, including tombstones.
//
// Structure: a list of sorted chunks of at most CHUNK_ENTRIES_MAX entries (a two-level B-tree,
// as Python's sortedcontainers): O(log n) lookups, inserts move at most one chunk.
// Snapshots are O(1) and copy-on-write: `view()` hands out the current chunk list and bumps an
// epoch; a chunk (or the chunk list) created in an older epoch is copied before it is mutated,
// so a view never changes. Scans, snapshot export and flushes read views while applies go on.
//
// Invariants: keys strictly increasing across the chunk list; no empty chunk (except none at
// all); sizeBytes is the sum of entrySizeBytes over live entries. Not durable: the commit log
// is the durability for everything in here (S§4.2).

import { assert } from '../core/assert.js';

export interface MemCell {
  readonly key: Uint8Array;
  readonly column: Uint8Array;
  /** null: a tombstone, which shadows older layers. */
  readonly value: Uint8Array | null;
  /** The seq of the record that wrote this state (also for tombstones). */
  readonly version: number;
}

const CHUNK_ENTRIES_MAX = 256;
/** A rough per-entry overhead (objects, array slots) so small cells still count. */
const ENTRY_OVERHEAD_BYTES = 96;

interface Chunk {
  epoch: number;
  keys: string[];
  cells: MemCell[];
}

export function entrySizeBytes(cellKey: string, cell: MemCell): number {
  return (
    ENTRY_OVERHEAD_BYTES +
    cellKey.length * 2 +
    cell.key.length +
    cell.column.length +
    (cell.value?.length ?? 0)
  );
}

/** Index of the first element of `a` that is >= k (a.length if none). */
function lowerBound(a: readonly string[], k: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The chunk that holds k if present (the last chunk whose first key <= k; 0 if none). */
function chunkFor(chunks: readonly Chunk[], k: string): number {
  let lo = 0;
  let hi = chunks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (chunks[mid]!.keys[0]! <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo === 0 ? 0 : lo - 1;
}

function getIn(chunks: readonly Chunk[], k: string): MemCell | undefined {
  if (chunks.length === 0) return undefined;
  const c = chunks[chunkFor(chunks, k)]!;
  const i = lowerBound(c.keys, k);
  return c.keys[i] === k ? c.cells[i] : undefined;
}

/** An immutable, ordered view of a memtable at one instant. */
export class MemView {
  constructor(
    private readonly chunks: readonly Chunk[],
    readonly sizeBytes: number,
    readonly count: number,
  ) {}

  get(cellKey: string): MemCell | undefined {
    return getIn(this.chunks, cellKey);
  }

  /** Entries with from <= key < to (to null: no upper bound), in key order. */
  *entries(from: string, to: string | null): Generator<[string, MemCell]> {
    if (this.chunks.length === 0) return;
    let ci = chunkFor(this.chunks, from);
    let i = lowerBound(this.chunks[ci]!.keys, from);
    for (; ci < this.chunks.length; ci++, i = 0) {
      const c = this.chunks[ci]!;
      for (; i < c.keys.length; i++) {
        const k = c.keys[i]!;
        if (to !== null && k >= to) return;
        yield [k, c.cells[i]!];
      }
    }
  }
}

export class Memtable {
  private chunks: Chunk[] = [];
  /**
   * The same entries by key, for point lookups: every apply looks its cells up twice (prefetch,
   * then the old version), and a binary search over a few hundred thousand keys touches ~18
   * strings scattered over the heap, where a hash lookup touches one or two. Views (`view()`)
   * share the chunks only; this map always holds the current state.
   */
  private readonly byKey = new Map<string, MemCell>();
  private chunksShared = false;
  private epoch = 0;
  private sizeBytesNow = 0;

  get sizeBytes(): number {
    return this.sizeBytesNow;
  }

  get count(): number {
    return this.byKey.size;
  }

  get(cellKey: string): MemCell | undefined {
    return this.byKey.get(cellKey);
  }

  /** Inserts or replaces; returns the replaced entry. */
  put(cellKey: string, cell: MemCell): MemCell | undefined {
    this.byKey.set(cellKey, cell);
    if (this.chunksShared) {
      this.chunks = this.chunks.slice();
      this.chunksShared = false;
    }
    if (this.chunks.length === 0) {
      this.chunks.push({ epoch: this.epoch, keys: [cellKey], cells: [cell] });
      this.sizeBytesNow += entrySizeBytes(cellKey, cell);
      return undefined;
    }
    const ci = chunkFor(this.chunks, cellKey);
    let c = this.chunks[ci]!;
    if (c.epoch !== this.epoch) {
      c = { epoch: this.epoch, keys: c.keys.slice(), cells: c.cells.slice() };
      this.chunks[ci] = c;
    }
    const i = lowerBound(c.keys, cellKey);
    if (c.keys[i] === cellKey) {
      const old = c.cells[i]!;
      c.cells[i] = cell;
      this.sizeBytesNow += entrySizeBytes(cellKey, cell) - entrySizeBytes(cellKey, old);
      return old;
    }
    c.keys.splice(i, 0, cellKey);
    c.cells.splice(i, 0, cell);
    this.sizeBytesNow += entrySizeBytes(cellKey, cell);
    if (c.keys.length > CHUNK_ENTRIES_MAX) {
      const half = c.keys.length >>> 1;
      const right: Chunk = {
        epoch: this.epoch,
        keys: c.keys.splice(half),
        cells: c.cells.splice(half),
      };
      this.chunks.splice(ci + 1, 0, right);
    }
    assert(c.keys.length > 0, 'memtable chunk never empty');
    return undefined;
  }

  /** An immutable view of the current contents; later puts do not change it. */
  view(): MemView {
    this.chunksShared = true;
    this.epoch++;
    return new MemView(this.chunks, this.sizeBytesNow, this.byKey.size);
  }
}
