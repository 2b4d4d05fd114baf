// The memtable: a sorted map from cell key (FORMAT.md `cell-key` bytes as a latin1 string, so JS
// string order equals byte order) to the cell's newest state in memory, including tombstones.
//
// Structure: a hash map from key to cell holds the current state, and serves point lookups and
// puts. Key order is kept lazily, in a list of sorted chunks of at most CHUNK_ENTRIES_MAX
// entries (a two-level B-tree, as Python's sortedcontainers): a put only notes its key as
// pending, and the pending keys are sorted and merged into the chunks when something needs the
// order (a view: scans, row reads, digests, snapshot export) or when PENDING_KEYS_MAX of them
// have gathered. A put at 10 M rows inserts a new key nearly every time; kept in order one by one,
// each cost ~19 string comparisons over a large heap and a splice of ~128 array slots (a fifth
// of a node's main-thread time during writes at 10 M, BENCHMARKS.md "Size"); merged in bulk, a
// key costs its share of one sort and one pass. A flush needs no order at all (`freeze`,
// `cells`): the LevelDB batch it writes sorts itself.
//
// Chunks are never changed once built: a merge builds new chunks for the ones it touches and a
// new chunk list. So a view, which holds a chunk list, is O(1) once merged and never changes.
//
// Invariants: the chunks' keys strictly increase across the chunk list; no empty chunk; every
// key is in byKey, and is in the chunks with byKey's cell unless it is pending; sizeBytes is the
// sum of entrySizeBytes over byKey. Not durable: the commit log is the durability for everything
// in here (S§4.2).

import { assert } from '../core/assert.js';

export interface MemCell {
  readonly key: Uint8Array;
  readonly column: Uint8Array;
  /** null: a tombstone, which shadows older layers. */
  readonly value: Uint8Array | null;
  /** The seq of the record that wrote this state (also for tombstones). */
  readonly version: number;
}

/** A memtable's contents as the read path sees them: a view, or a frozen memtable. */
export interface MemLayer {
  readonly sizeBytes: number;
  readonly count: number;
  get(cellKey: string): MemCell | undefined;
  /** Entries with from <= key < to (to null: no upper bound), in key order. */
  entries(from: string, to: string | null): Generator<[string, MemCell]>;
}

/** A memtable that takes no more puts: what a flush writes. */
export interface FrozenMemtable extends MemLayer {
  /** Every entry once, in no particular order (cheaper than `entries`: no sort). */
  cells(): IterableIterator<[string, MemCell]>;
}

const CHUNK_ENTRIES_MAX = 256;
/** A merge fills the chunks it builds to this, so that the next merges rarely split them. */
const CHUNK_ENTRIES_FILL = 192;
/**
 * Pending keys merged at once at most: bounds the event-loop stall of a merge (a sort of this
 * many keys and one pass over the chunks) for a view taken after a long run of puts.
 */
const PENDING_KEYS_MAX = 32_768;
/** A rough per-entry overhead (objects, array slots) so small cells still count. */
const ENTRY_OVERHEAD_BYTES = 96;

interface Chunk {
  readonly keys: readonly string[];
  readonly cells: readonly MemCell[];
}

/**
 * What an entry takes, roughly: the cell key (a string, 2 bytes a character), its row key and
 * column once more (together about as long as the cell key), the value and the overhead.
 */
export function entrySizeBytes(cellKey: string, value: Uint8Array | null): number {
  return ENTRY_OVERHEAD_BYTES + cellKey.length * 3 + (value?.length ?? 0);
}

/** Index of the first element of `a` at or after `from` that is >= k (a.length if none). */
function lowerBound(a: readonly string[], k: string, from = 0): number {
  let lo = from;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The chunk at or after `from` that holds k if present: the last one whose first key <= k
 * (`from` if none). From a later chunk it gallops first, so a merge's pass over sorted keys
 * costs O(log distance) each; from 0 (lookups) it is a plain binary search.
 */
function chunkFor(chunks: readonly Chunk[], k: string, from = 0): number {
  let lo = from;
  let hi = chunks.length;
  if (from > 0) {
    hi = from + 1;
    let step = 1;
    while (hi < chunks.length && chunks[hi]!.keys[0]! <= k) {
      lo = hi;
      step *= 2;
      hi = lo + step;
    }
    hi = Math.min(hi, chunks.length);
  }
  // chunks[lo] qualifies (or lo === from); the answer is in [lo, hi).
  let a = lo + 1;
  while (a < hi) {
    const mid = (a + hi) >>> 1;
    if (chunks[mid]!.keys[0]! <= k) a = mid + 1;
    else hi = mid;
  }
  return a - 1;
}

/** An immutable, ordered view of a memtable at one instant. */
export class MemView implements MemLayer {
  constructor(
    private readonly chunks: readonly Chunk[],
    readonly sizeBytes: number,
    readonly count: number,
  ) {}

  get(cellKey: string): MemCell | undefined {
    if (this.chunks.length === 0) return undefined;
    const c = this.chunks[chunkFor(this.chunks, cellKey)]!;
    const i = lowerBound(c.keys, cellKey);
    return c.keys[i] === cellKey ? c.cells[i] : undefined;
  }

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

export class Memtable implements FrozenMemtable {
  /** The current state of every key: puts and point lookups. */
  private readonly byKey = new Map<string, MemCell>();
  /** Key order, up to date except for the pending keys. Never mutated, only replaced. */
  private chunks: readonly Chunk[] = [];
  /** Keys put since the last merge: new keys, and keys whose cell in the chunks is stale. */
  private pending = new Set<string>();
  private frozen = false;
  private sizeBytesNow = 0;

  constructor(private readonly pendingKeysMax = PENDING_KEYS_MAX) {}

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
    assert(!this.frozen, 'put on a frozen memtable');
    const old = this.byKey.get(cellKey);
    this.byKey.set(cellKey, cell);
    this.pending.add(cellKey);
    this.sizeBytesNow +=
      entrySizeBytes(cellKey, cell.value) -
      (old === undefined ? 0 : entrySizeBytes(cellKey, old.value));
    if (this.pending.size >= this.pendingKeysMax) this.merge();
    return old;
  }

  /** An immutable view of the current contents; later puts do not change it. */
  view(): MemView {
    this.merge();
    return new MemView(this.chunks, this.sizeBytesNow, this.byKey.size);
  }

  /** Takes no more puts from now on; reads and `cells` go on. */
  freeze(): FrozenMemtable {
    this.frozen = true;
    return this;
  }

  entries(from: string, to: string | null): Generator<[string, MemCell]> {
    return this.view().entries(from, to);
  }

  cells(): IterableIterator<[string, MemCell]> {
    assert(this.frozen, 'cells() of a memtable still taking puts');
    return this.byKey.entries();
  }

  /** Sorts the pending keys into the chunks: builds the chunks they touch anew, keeps the rest. */
  private merge(): void {
    if (this.pending.size === 0) return;
    const keys = Array.from(this.pending).sort();
    this.pending = new Set();
    const old = this.chunks;
    const out: Chunk[] = [];
    if (old.length === 0) {
      this.mergeChunk(out, undefined, keys, 0, keys.length);
      this.chunks = out;
      return;
    }
    let next = 0; // the first old chunk not yet passed on
    let i = 0;
    while (i < keys.length) {
      const ci = chunkFor(old, keys[i]!, next);
      for (; next < ci; next++) out.push(old[next]!);
      const bound = ci + 1 < old.length ? old[ci + 1]!.keys[0]! : null;
      let j = i + 1;
      while (j < keys.length && (bound === null || keys[j]! < bound)) j++;
      this.mergeChunk(out, old[ci], keys, i, j);
      next = ci + 1;
      i = j;
    }
    for (; next < old.length; next++) out.push(old[next]!);
    this.chunks = out;
  }

  /** Appends to `out` the chunk(s) holding `c`'s entries and keys[i, j), cells from byKey. */
  private mergeChunk(
    out: Chunk[],
    c: Chunk | undefined,
    keys: readonly string[],
    i: number,
    j: number,
  ): void {
    const ck = c?.keys ?? [];
    const cc = c?.cells ?? [];
    const mk: string[] = [];
    const mc: MemCell[] = [];
    // Few new keys per chunk, as a rule: find each by binary search, copy the runs between.
    let a = 0;
    for (; i < j; i++) {
      const k = keys[i]!;
      const at = lowerBound(ck, k, a);
      for (; a < at; a++) {
        mk.push(ck[a]!);
        mc.push(cc[a]!);
      }
      if (ck[a] === k) a++;
      mk.push(k);
      mc.push(this.byKey.get(k)!);
    }
    for (; a < ck.length; a++) {
      mk.push(ck[a]!);
      mc.push(cc[a]!);
    }
    if (mk.length <= CHUNK_ENTRIES_MAX) {
      out.push({ keys: mk, cells: mc });
      return;
    }
    const parts = Math.ceil(mk.length / CHUNK_ENTRIES_FILL);
    const size = Math.ceil(mk.length / parts);
    for (let s = 0; s < mk.length; s += size) {
      out.push({ keys: mk.slice(s, s + size), cells: mc.slice(s, s + size) });
    }
  }
}
