// The in-memory index of one cohort's live entries: seq -> (segment, offset, length, epoch).
// Invariants: live seqs are contiguous [firstSeq, lastSeq]; live entries appear in the log in seq
// order, so their segment numbers are non-decreasing in seq (GC relies on this).
// Compactness (a node may hold tens of millions of entries): offset and length live in chunked
// Uint32Arrays (8 bytes per entry); segment and epoch change rarely, so they are run-length lists.
// Nothing here is durable: recovery rebuilds it from the log.

import { assert } from '../core/assert.js';

const CHUNK_ENTRIES = 4096;

/** Run-length list: value for every seq >= starts[i] until starts[i+1]. */
class RunList {
  private starts: number[] = [];
  private values: number[] = [];

  push(seq: number, value: number): void {
    const n = this.values.length;
    if (n > 0 && this.values[n - 1] === value) return;
    assert(n === 0 || this.starts[n - 1]! < seq, 'run list grows in seq order');
    this.starts.push(seq);
    this.values.push(value);
  }

  get(seq: number): number {
    // Binary search for the last run starting at or before seq.
    let lo = 0;
    let hi = this.starts.length - 1;
    assert(hi >= 0 && this.starts[0]! <= seq, 'run list covers seq');
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= seq) lo = mid;
      else hi = mid - 1;
    }
    return this.values[lo]!;
  }

  /** Forgets runs that start after `seq`. */
  dropAfter(seq: number): void {
    while (this.starts.length > 0 && this.starts[this.starts.length - 1]! > seq) {
      this.starts.pop();
      this.values.pop();
    }
  }

  /** Forgets runs that end before `seq` (the run covering seq stays, re-based to seq). */
  dropBefore(seq: number): void {
    let k = 0;
    while (k + 1 < this.starts.length && this.starts[k + 1]! <= seq) k++;
    if (k > 0) {
      this.starts.splice(0, k);
      this.values.splice(0, k);
    }
    if (this.starts.length > 0 && this.starts[0]! < seq) this.starts[0] = seq;
  }

  clear(): void {
    this.starts = [];
    this.values = [];
  }

  get runs(): number {
    return this.starts.length;
  }
}

export interface EntryLocation {
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
  readonly epoch: number;
}

export class SeqIndex {
  /** Seq of slot 0 of chunk 0. */
  private baseSeq: number;
  private chunks: (Uint32Array | undefined)[] = [];
  private readonly segments = new RunList();
  private readonly epochs = new RunList();
  private first: number;
  private last: number;

  /** An empty index whose next entry must be `nextSeq`. */
  constructor(nextSeq: number) {
    this.baseSeq = nextSeq;
    this.first = nextSeq;
    this.last = nextSeq - 1;
  }

  /** Oldest live seq (lastSeq + 1 when empty). */
  get firstSeq(): number {
    return this.first;
  }

  /** Newest live seq (firstSeq - 1 when empty). */
  get lastSeq(): number {
    return this.last;
  }

  get size(): number {
    return this.last - this.first + 1;
  }

  /** Empties the index; the next entry must be `nextSeq`. */
  reset(nextSeq: number): void {
    this.baseSeq = nextSeq;
    this.chunks = [];
    this.segments.clear();
    this.epochs.clear();
    this.first = nextSeq;
    this.last = nextSeq - 1;
  }

  push(seq: number, loc: EntryLocation): void {
    assert(seq === this.last + 1, `index push of seq ${seq} after ${this.last}`);
    if (this.size === 0) this.reset(seq);
    const slot = seq - this.baseSeq;
    const ci = Math.floor(slot / CHUNK_ENTRIES);
    let chunk = this.chunks[ci];
    if (chunk === undefined) {
      chunk = new Uint32Array(CHUNK_ENTRIES * 2);
      this.chunks[ci] = chunk;
    }
    const i = (slot % CHUNK_ENTRIES) * 2;
    chunk[i] = loc.offset;
    chunk[i + 1] = loc.length;
    this.segments.push(seq, loc.segment);
    this.epochs.push(seq, loc.epoch);
    this.last = seq;
  }

  has(seq: number): boolean {
    return seq >= this.first && seq <= this.last;
  }

  get(seq: number): EntryLocation | null {
    if (!this.has(seq)) return null;
    const slot = seq - this.baseSeq;
    const chunk = this.chunks[Math.floor(slot / CHUNK_ENTRIES)];
    assert(chunk !== undefined, 'live seq has a chunk');
    const i = (slot % CHUNK_ENTRIES) * 2;
    return {
      segment: this.segments.get(seq),
      offset: chunk[i]!,
      length: chunk[i + 1]!,
      epoch: this.epochs.get(seq),
    };
  }

  epochAt(seq: number): number | null {
    return this.has(seq) ? this.epochs.get(seq) : null;
  }

  segmentAt(seq: number): number | null {
    return this.has(seq) ? this.segments.get(seq) : null;
  }

  /** Voids every entry with seq > afterSeq (logical truncation). */
  truncateAfter(afterSeq: number): void {
    if (afterSeq >= this.last) return;
    if (afterSeq < this.first) {
      this.reset(afterSeq + 1);
      return;
    }
    this.last = afterSeq;
    this.segments.dropAfter(afterSeq);
    this.epochs.dropAfter(afterSeq);
    const keepChunks = Math.floor((afterSeq - this.baseSeq) / CHUNK_ENTRIES) + 1;
    this.chunks.length = Math.min(this.chunks.length, keepChunks);
  }

  /** Forgets entries below `seq` (their segments were garbage-collected). */
  dropBefore(seq: number): void {
    if (seq <= this.first) return;
    if (seq > this.last) {
      this.reset(this.last + 1);
      return;
    }
    this.first = seq;
    this.segments.dropBefore(seq);
    this.epochs.dropBefore(seq);
    const firstChunk = Math.floor((seq - this.baseSeq) / CHUNK_ENTRIES);
    for (let c = 0; c < firstChunk; c++) this.chunks[c] = undefined;
    // Re-base once many leading chunks are free, so the array does not grow without bound.
    if (firstChunk >= 64) {
      this.chunks.splice(0, firstChunk);
      this.baseSeq += firstChunk * CHUNK_ENTRIES;
    }
  }

  /** Memory held by offsets/lengths (for tests and stats). */
  get chunkCount(): number {
    let n = 0;
    for (const c of this.chunks) if (c !== undefined) n++;
    return n;
  }
}
