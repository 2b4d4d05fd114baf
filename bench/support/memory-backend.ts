// An in-memory, single-replica KvBackend with skv's real version semantics (after the test double
// in src/rpc/kv-server.test.ts), behind the real gRPC edge: the benchmark's target while the skv
// server is not ready, and the ceiling of the client + edge path ever after (nothing is durable,
// nothing is replicated).
//
// Invariants: versions are the seq of the write that set them, strictly increasing; a
// conditional write that fails writes nothing; rows are kept in byte order for scans as a
// sorted main array plus a small sorted tail (bounded, merged into the main array when full), so
// that an insert costs O(tail) and a scan O(log n + rows).

import { SkvError } from '../../src/core/errors.js';
import type { ApplyResult, RowMutation } from '../../src/core/mutation.js';
import type {
  CallContext,
  CellValue,
  GetResult,
  KvBackend,
  RangeMapView,
  RowResult,
} from '../../src/rpc/backend.js';
import type { ValidGet, ValidReadRow, ValidScan } from '../../src/rpc/validate.js';

/** Sorted-tail length at which it is merged into the main key array. */
const TAIL_KEYS_MAX = 4096;
/** Rows per scan message. */
const SCAN_CHUNK_ROWS = 256;

interface StoredCell {
  readonly column: Buffer;
  readonly value: Buffer;
  readonly version: number;
}

interface StoredRow {
  readonly key: Buffer;
  readonly cells: Map<string, StoredCell>;
}

/** latin1 strings order exactly as their bytes do. */
const id = (b: Uint8Array): string =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

function lowerBound(keys: readonly string[], k: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class MemoryBackend implements KvBackend {
  private readonly rows = new Map<string, StoredRow>();
  private main: string[] = [];
  private tail: string[] = [];
  private seq = 0;
  private address = '';
  /** Writes applied (conditional failures excluded). */
  writes = 0;

  /** The address the range map reports for the one node; set once the server listens. */
  setAddress(address: string): void {
    this.address = address;
  }

  get rowCount(): number {
    return this.rows.size;
  }

  async get(req: ValidGet, _ctx: CallContext): Promise<GetResult> {
    const cell = this.rows.get(id(req.key))?.cells.get(id(req.column));
    return cell === undefined
      ? { found: false, value: Buffer.alloc(0), version: 0 }
      : { found: true, value: cell.value, version: cell.version };
  }

  async readRow(req: ValidReadRow, _ctx: CallContext): Promise<readonly CellValue[]> {
    const row = this.rows.get(id(req.key));
    if (row === undefined) return [];
    return this.cellsOf(row, req.columns);
  }

  async write(m: RowMutation, _ctx: CallContext): Promise<ApplyResult> {
    const rowId = id(m.key);
    const row = this.rows.get(rowId);
    const previous = m.writes.map((w) => row?.cells.get(id(w.column))?.version ?? 0);
    for (const [i, w] of m.writes.entries()) {
      if (w.expectedVersion !== undefined && w.expectedVersion !== previous[i]) {
        return {
          ok: false,
          reason: 'version-mismatch',
          writeIndex: i,
          actualVersion: previous[i]!,
        };
      }
    }
    const seq = ++this.seq;
    this.writes++;
    let target = row;
    if (target === undefined) {
      target = { key: Buffer.from(m.key), cells: new Map() };
      this.rows.set(rowId, target);
      this.addKey(rowId);
    }
    const versions = m.writes.map((w) => {
      const columnId = id(w.column);
      if (w.value === null) {
        target.cells.delete(columnId);
        return 0;
      }
      // Copy: a decoded value is a view into the whole request batch, which it would pin.
      target.cells.set(columnId, {
        column: Buffer.from(w.column),
        value: Buffer.from(w.value),
        version: seq,
      });
      return seq;
    });
    if (target.cells.size === 0) this.removeKey(rowId);
    return { ok: true, previousVersions: previous, versions };
  }

  async *scan(req: ValidScan, ctx: CallContext): AsyncIterable<readonly RowResult[]> {
    const start = id(req.start);
    const end = req.end === null ? null : id(req.end);
    let i = lowerBound(this.main, start);
    let j = lowerBound(this.tail, start);
    let chunk: RowResult[] = [];
    let sent = 0;
    // Snapshot the arrays: the scan walks the key order as of its start.
    const main = this.main;
    const tail = this.tail.slice();
    while (sent < req.limit) {
      const a = main[i];
      const b = tail[j];
      let k: string;
      if (a === undefined && b === undefined) break;
      if (b === undefined || (a !== undefined && a < b)) {
        k = a!;
        i++;
      } else {
        k = b;
        j++;
      }
      if (end !== null && k >= end) break;
      const row = this.rows.get(k);
      if (row === undefined) continue;
      chunk.push({ key: row.key, cells: this.cellsOf(row, req.columns) });
      sent++;
      if (chunk.length >= SCAN_CHUNK_ROWS) {
        if (performance.now() > ctx.deadlineMs) throw new SkvError('deadline-exceeded', 'scan');
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  async rangeMap(): Promise<RangeMapView> {
    return {
      version: 1,
      ranges: [
        {
          rangeId: 0,
          start: Buffer.alloc(0),
          end: null,
          members: ['mem0'],
          leader: 'mem0',
          epoch: 1,
        },
      ],
      nodes: [{ id: 'mem0', address: this.address, live: true }],
    };
  }

  private cellsOf(row: StoredRow, columns: readonly Uint8Array[]): CellValue[] {
    if (columns.length === 0) return [...row.cells.values()];
    const out: CellValue[] = [];
    for (const c of columns) {
      const cell = row.cells.get(id(c));
      if (cell !== undefined) out.push(cell);
    }
    return out;
  }

  private addKey(k: string): void {
    this.tail.splice(lowerBound(this.tail, k), 0, k);
    if (this.tail.length < TAIL_KEYS_MAX) return;
    // Merge into a fresh array so that scans holding the old one stay consistent.
    const merged: string[] = new Array(this.main.length + this.tail.length);
    let i = 0;
    let j = 0;
    let n = 0;
    while (i < this.main.length || j < this.tail.length) {
      const a = this.main[i];
      const b = this.tail[j];
      if (b === undefined || (a !== undefined && a < b)) {
        merged[n++] = a!;
        i++;
      } else {
        merged[n++] = b;
        j++;
      }
    }
    this.main = merged;
    this.tail = [];
  }

  private removeKey(k: string): void {
    this.rows.delete(k);
    const t = lowerBound(this.tail, k);
    if (this.tail[t] === k) {
      this.tail.splice(t, 1);
      return;
    }
    const m = lowerBound(this.main, k);
    if (this.main[m] === k) this.main = [...this.main.slice(0, m), ...this.main.slice(m + 1)];
  }
}
