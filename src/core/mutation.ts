// A row mutation: what one replicated data record carries (DESIGN.md §2). One mutation touches
// one row and is atomic: at apply time, in LSN order, every column's condition is checked
// against the row's current state; if any fails nothing is written (S§5.1: the outcome is the
// same on every replica because every replica applies in LSN order).
//
// A column's version is the seq of the record that last wrote it (seqs increase strictly within
// a cohort, across epochs), so versions are strictly increasing per column and identical on
// every replica. An absent column has version 0.
//
// Binary format (little-endian), see the grammar:
//   mutation   := u32 keyLen, key, u32 count, write{count}
//   write      := u8 flags, u32 columnLen, column, [u32 valueLen, value] (flags & HAS_VALUE),
//                 [f64 expectedVersion] (flags & HAS_EXPECTED)
// A write without a value is a delete.

import { assert } from './assert.js';

export interface ColumnWrite {
  readonly column: Uint8Array;
  /** null: delete the column. */
  readonly value: Uint8Array | null;
  /** Set: the mutation applies only if the column's current version equals it (0 = absent). */
  readonly expectedVersion?: number;
}

export interface RowMutation {
  readonly key: Uint8Array;
  readonly writes: readonly ColumnWrite[];
}

/** The outcome of applying a mutation at its record's seq. */
export type ApplyResult =
  | {
      readonly ok: true;
      /** Per write: the version the column had before (0 = absent). */
      readonly previousVersions: readonly number[];
      /** Per write: the column's version after (the record's seq; 0 for a delete). */
      readonly versions: readonly number[];
    }
  | {
      readonly ok: false;
      readonly reason: 'version-mismatch';
      /** Index of the first write whose condition failed, and what the column really had. */
      readonly writeIndex: number;
      readonly actualVersion: number;
    };

const HAS_VALUE = 1;
const HAS_EXPECTED = 2;

export function encodeRowMutation(m: RowMutation): Uint8Array {
  let size = 8 + m.key.length;
  for (const w of m.writes) {
    size += 1 + 4 + w.column.length;
    if (w.value !== null) size += 4 + w.value.length;
    if (w.expectedVersion !== undefined) size += 8;
  }
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  at = buf.writeUInt32LE(m.key.length, at);
  buf.set(m.key, at);
  at += m.key.length;
  at = buf.writeUInt32LE(m.writes.length, at);
  for (const w of m.writes) {
    const flags =
      (w.value !== null ? HAS_VALUE : 0) | (w.expectedVersion !== undefined ? HAS_EXPECTED : 0);
    at = buf.writeUInt8(flags, at);
    at = buf.writeUInt32LE(w.column.length, at);
    buf.set(w.column, at);
    at += w.column.length;
    if (w.value !== null) {
      at = buf.writeUInt32LE(w.value.length, at);
      buf.set(w.value, at);
      at += w.value.length;
    }
    if (w.expectedVersion !== undefined) at = buf.writeDoubleLE(w.expectedVersion, at);
  }
  assert(at === size, 'mutation encoding size');
  return buf;
}

export function decodeRowMutation(bytes: Uint8Array): RowMutation {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number) => {
    if (at + n > buf.length) throw new RangeError('truncated row mutation');
  };
  need(4);
  const keyLen = buf.readUInt32LE(at);
  at += 4;
  need(keyLen);
  const key = buf.subarray(at, at + keyLen);
  at += keyLen;
  need(4);
  const count = buf.readUInt32LE(at);
  at += 4;
  const writes: ColumnWrite[] = [];
  for (let i = 0; i < count; i++) {
    need(5);
    const flags = buf.readUInt8(at);
    at += 1;
    const columnLen = buf.readUInt32LE(at);
    at += 4;
    need(columnLen);
    const column = buf.subarray(at, at + columnLen);
    at += columnLen;
    let value: Uint8Array | null = null;
    if (flags & HAS_VALUE) {
      need(4);
      const valueLen = buf.readUInt32LE(at);
      at += 4;
      need(valueLen);
      value = buf.subarray(at, at + valueLen);
      at += valueLen;
    }
    let expectedVersion: number | undefined;
    if (flags & HAS_EXPECTED) {
      need(8);
      expectedVersion = buf.readDoubleLE(at);
      at += 8;
    }
    writes.push(
      expectedVersion === undefined ? { column, value } : { column, value, expectedVersion },
    );
  }
  if (at !== buf.length) throw new RangeError('trailing bytes after row mutation');
  return { key, writes };
}
