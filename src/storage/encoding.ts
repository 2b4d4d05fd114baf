// Byte encodings of the storage layer; the grammar is in FORMAT.md beside this file.
//
// Owns: the order-preserving cell key (rowKey, column) -> bytes, the LevelDB key prefixes
// (meta / data per range and generation), the data and meta value formats, and the snapshot
// chunk format. Invariant: for any (k1, c1) < (k2, c2) in (bytewise rowKey, bytewise column)
// order, encodeCellKey(k1, c1) < encodeCellKey(k2, c2) bytewise, and the encoding is a
// bijection (decodeCellKey inverts it). Pure functions, no I/O.

import { assert } from '../core/assert.js';
import { CorruptionError } from '../core/errors.js';
import { isValidRangeId, type RangeId } from '../core/ids.js';
import type { Lsn } from '../core/lsn.js';

const ESCAPE = 0xff;
const TERMINATOR = 0x01;
const TAG_META = 0x00;
const TAG_DATA = 0x01;
const FORMAT_V1 = 0x01;
const TWO_32 = 2 ** 32;

export const GENERATION_MAX = 0xffff_fffe;
/** Data prefix length: tag, rangeId, generation. */
export const DATA_PREFIX_BYTES = 9;
/** A key where nothing is stored; flushes compact [FLUSH_RANGE_START, FLUSH_RANGE_END). */
export const FLUSH_RANGE_START: Buffer = Buffer.from([0xff]);
export const FLUSH_RANGE_END: Buffer = Buffer.from([0xff, 0xff]);
export const PROBE_KEY: Buffer = Buffer.concat([Buffer.from([0xfe]), Buffer.from('flush-probe')]);

function countZeros(b: Uint8Array): number {
  let n = 0;
  for (const x of b) if (x === 0) n++;
  return n;
}

function writeEscaped(out: Buffer, at: number, b: Uint8Array): number {
  for (const x of b) {
    out[at++] = x;
    if (x === 0) out[at++] = ESCAPE;
  }
  return at;
}

/** The escaped row key without terminator: a lower bound for every cell of rows >= key. */
export function encodeRowKeyPrefix(key: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(key.length + countZeros(key));
  const at = writeEscaped(out, 0, key);
  assert(at === out.length, 'escaped size');
  return out;
}

/** escaped(key) 0x00 0x01: every cell of row `key` starts with this, and only those cells. */
export function encodeRowStart(key: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(key.length + countZeros(key) + 2);
  let at = writeEscaped(out, 0, key);
  out[at++] = 0x00;
  out[at++] = TERMINATOR;
  assert(at === out.length, 'row start size');
  return out;
}

export function encodeCellKey(key: Uint8Array, column: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(key.length + countZeros(key) + 2 + column.length);
  let at = writeEscaped(out, 0, key);
  out[at++] = 0x00;
  out[at++] = TERMINATOR;
  out.set(column, at);
  at += column.length;
  assert(at === out.length, 'cell key size');
  return out;
}

export interface DecodedCellKey {
  readonly key: Buffer;
  readonly column: Buffer;
}

export function decodeCellKey(cell: Uint8Array): DecodedCellKey {
  const key: number[] = [];
  let i = 0;
  for (;;) {
    if (i >= cell.length) throw new CorruptionError('cell key without terminator');
    const x = cell[i]!;
    if (x !== 0) {
      key.push(x);
      i++;
      continue;
    }
    const next = cell[i + 1];
    if (next === ESCAPE) {
      key.push(0);
      i += 2;
      continue;
    }
    if (next === TERMINATOR) {
      i += 2;
      break;
    }
    throw new CorruptionError('bad escape in cell key');
  }
  return { key: Buffer.from(key), column: Buffer.from(cell.subarray(i)) };
}

export function metaKey(rangeId: RangeId): Buffer {
  assert(isValidRangeId(rangeId), 'range id');
  const b = Buffer.allocUnsafe(5);
  b[0] = TAG_META;
  b.writeUInt32BE(rangeId, 1);
  return b;
}

export const META_PREFIX_START: Buffer = Buffer.from([TAG_META]);
export const META_PREFIX_END: Buffer = Buffer.from([TAG_META + 1]);
export const DATA_PREFIX_START: Buffer = Buffer.from([TAG_DATA]);
export const DATA_PREFIX_END: Buffer = Buffer.from([TAG_DATA + 1]);

export function rangeIdOfMetaKey(k: Uint8Array): RangeId {
  if (k.length !== 5 || k[0] !== TAG_META) throw new CorruptionError('bad meta key');
  return Buffer.from(k.buffer, k.byteOffset, k.byteLength).readUInt32BE(1);
}

/** 0x01 rangeId generation: the prefix of every data key of one range generation. */
export function dataPrefix(rangeId: RangeId, generation: number): Buffer {
  assert(isValidRangeId(rangeId), 'range id');
  assert(Number.isInteger(generation) && generation >= 0 && generation <= GENERATION_MAX, 'gen');
  const b = Buffer.allocUnsafe(DATA_PREFIX_BYTES);
  b[0] = TAG_DATA;
  b.writeUInt32BE(rangeId, 1);
  b.writeUInt32BE(generation, 5);
  return b;
}

/** The first key after every data key of (rangeId, generation). */
export function dataPrefixEnd(rangeId: RangeId, generation: number): Buffer {
  if (generation < GENERATION_MAX) return dataPrefix(rangeId, generation + 1);
  // generation + 1 would not fit in u32: the next range id's generation 0 bounds it.
  if (rangeId < 0xffff_ffff) return dataPrefix(rangeId + 1, 0);
  return DATA_PREFIX_END;
}

export interface ParsedDataKey {
  readonly rangeId: RangeId;
  readonly generation: number;
}

export function parseDataPrefix(k: Uint8Array): ParsedDataKey {
  if (k.length < DATA_PREFIX_BYTES || k[0] !== TAG_DATA) throw new CorruptionError('bad data key');
  const b = Buffer.from(k.buffer, k.byteOffset, k.byteLength);
  return { rangeId: b.readUInt32BE(1), generation: b.readUInt32BE(5) };
}

function writeU64(b: Buffer, v: number, at: number): number {
  assert(Number.isSafeInteger(v) && v >= 0, 'u64 must be a safe non-negative integer');
  b.writeUInt32BE(Math.floor(v / TWO_32), at);
  b.writeUInt32BE(v >>> 0, at + 4);
  return at + 8;
}

function readU64(b: Buffer, at: number): number {
  const hi = b.readUInt32BE(at);
  if (hi >= 2 ** 21) throw new CorruptionError('u64 above 2^53');
  return hi * TWO_32 + b.readUInt32BE(at + 4);
}

export function encodeDataValue(version: number, value: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(DATA_VALUE_HEADER_BYTES + value.length);
  encodeDataValueInto(b, version, value);
  return b;
}

/** Bytes of a data value before the cell's value (format byte, u64 version). */
export const DATA_VALUE_HEADER_BYTES = 9;

/** encodeDataValue into the start of `target` (large enough); returns the bytes written. */
export function encodeDataValueInto(target: Buffer, version: number, value: Uint8Array): number {
  assert(version > 0, 'stored cells have a version');
  target[0] = FORMAT_V1;
  writeU64(target, version, 1);
  target.set(value, DATA_VALUE_HEADER_BYTES);
  return DATA_VALUE_HEADER_BYTES + value.length;
}

export interface StoredValue {
  readonly version: number;
  readonly value: Buffer;
}

export function decodeDataValue(v: Uint8Array): StoredValue {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (b.length < 9 || b[0] !== FORMAT_V1) throw new CorruptionError('bad data value');
  const version = readU64(b, 1);
  if (version === 0) throw new CorruptionError('stored cell with version 0');
  return { version, value: b.subarray(9) };
}

export interface RangeMeta {
  readonly generation: number;
  readonly checkpointLsn: Lsn;
  /** The range checksum at the checkpoint; null: not kept (FORMAT.md "Checksum"). */
  readonly checksum: bigint | null;
}

/** A meta record whose checksum field is not kept (written as 0). */
const META_NO_CHECKSUM = 0x02;

export function encodeMeta(m: RangeMeta): Buffer {
  const b = Buffer.allocUnsafe(1 + 4 + 4 + 8 + 8);
  b[0] = m.checksum === null ? META_NO_CHECKSUM : FORMAT_V1;
  b.writeUInt32BE(m.generation, 1);
  b.writeUInt32BE(m.checkpointLsn.epoch, 5);
  writeU64(b, m.checkpointLsn.seq, 9);
  b.writeBigUInt64BE(m.checksum ?? 0n, 17);
  return b;
}

export function decodeMeta(v: Uint8Array): RangeMeta {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (b.length !== 25 || (b[0] !== FORMAT_V1 && b[0] !== META_NO_CHECKSUM)) {
    throw new CorruptionError('bad range meta');
  }
  return {
    generation: b.readUInt32BE(1),
    checkpointLsn: { epoch: b.readUInt32BE(5), seq: readU64(b, 9) },
    checksum: b[0] === META_NO_CHECKSUM ? null : b.readBigUInt64BE(17),
  };
}

/** One live cell as it travels in a snapshot. */
export interface SnapshotCell {
  readonly key: Uint8Array;
  readonly column: Uint8Array;
  readonly value: Uint8Array;
  readonly version: number;
}

export function encodeSnapshotChunk(cells: readonly SnapshotCell[]): Buffer {
  let size = 4;
  for (const c of cells) size += 4 + c.key.length + 4 + c.column.length + 8 + 4 + c.value.length;
  const b = Buffer.allocUnsafe(size);
  let at = b.writeUInt32BE(cells.length, 0);
  for (const c of cells) {
    at = b.writeUInt32BE(c.key.length, at);
    b.set(c.key, at);
    at += c.key.length;
    at = b.writeUInt32BE(c.column.length, at);
    b.set(c.column, at);
    at += c.column.length;
    at = writeU64(b, c.version, at);
    at = b.writeUInt32BE(c.value.length, at);
    b.set(c.value, at);
    at += c.value.length;
  }
  assert(at === size, 'snapshot chunk size');
  return b;
}

export function decodeSnapshotChunk(bytes: Uint8Array): SnapshotCell[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number) => {
    if (at + n > b.length) throw new CorruptionError('truncated snapshot chunk');
  };
  need(4);
  const count = b.readUInt32BE(at);
  at += 4;
  const cells: SnapshotCell[] = [];
  const bytesOf = (): Buffer => {
    need(4);
    const n = b.readUInt32BE(at);
    at += 4;
    need(n);
    const out = b.subarray(at, at + n);
    at += n;
    return out;
  };
  for (let i = 0; i < count; i++) {
    const key = bytesOf();
    const column = bytesOf();
    need(8);
    const version = readU64(b, at);
    at += 8;
    const value = bytesOf();
    cells.push({ key, column, value, version });
  }
  if (at !== b.length) throw new CorruptionError('trailing bytes after snapshot chunk');
  return cells;
}
