// The simulator's in-memory state machine: what storage does in the real node (DESIGN.md §2,
// src/core/mutation.ts). One register per (row, column) with a version; a mutation applies at
// its record's seq, in LSN order, atomically per row: every conditional write is checked first
// and if any fails nothing is written. A column's version is the seq of the record that wrote
// it; an absent column has version 0. Barrier entries change nothing.

import { assert } from '../core/assert.js';
import { type ApplyResult, decodeRowMutation } from '../core/mutation.js';
import type { Entry } from '../replication/types.js';

export interface Cell {
  readonly value: string;
  readonly version: number;
}

const decoder = new TextDecoder();

export function cellKey(row: string, column: string): string {
  return `${row}/${column}`;
}

export class ApplyModel {
  private cells = new Map<string, Cell>();
  appliedSeq = 0;

  get(key: string): Cell | undefined {
    return this.cells.get(key);
  }

  apply(entry: Entry): ApplyResult | null {
    const seq = entry.lsn.seq;
    assert(seq === this.appliedSeq + 1, `apply in order: ${seq} after ${this.appliedSeq}`);
    this.appliedSeq = seq;
    if (entry.kind === 'barrier') return null;
    const m = decodeRowMutation(entry.payload);
    const row = decoder.decode(m.key);
    const previousVersions: number[] = [];
    for (let i = 0; i < m.writes.length; i++) {
      const w = m.writes[i]!;
      const current = this.cells.get(cellKey(row, decoder.decode(w.column)))?.version ?? 0;
      if (w.expectedVersion !== undefined && w.expectedVersion !== current) {
        return { ok: false, reason: 'version-mismatch', writeIndex: i, actualVersion: current };
      }
      previousVersions.push(current);
    }
    const versions: number[] = [];
    for (const w of m.writes) {
      const k = cellKey(row, decoder.decode(w.column));
      if (w.value === null) {
        this.cells.delete(k);
        versions.push(0);
      } else {
        this.cells.set(k, { value: decoder.decode(w.value), version: seq });
        versions.push(seq);
      }
    }
    return { ok: true, previousVersions, versions };
  }

  /** A deterministic serialisation (the simulator's "range snapshot"). */
  serialize(): Uint8Array {
    const cells = [...this.cells.entries()].sort((a, b) =>
      a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0,
    );
    return new TextEncoder().encode(JSON.stringify({ appliedSeq: this.appliedSeq, cells }));
  }

  static deserialize(bytes: Uint8Array): ApplyModel {
    const parsed = JSON.parse(decoder.decode(bytes)) as {
      appliedSeq: number;
      cells: [string, Cell][];
    };
    const m = new ApplyModel();
    m.appliedSeq = parsed.appliedSeq;
    for (const [k, c] of parsed.cells) m.cells.set(k, c);
    return m;
  }

  digest(): string {
    return decoder.decode(this.serialize());
  }
}
