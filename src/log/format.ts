// The commit-log record format (FORMAT.md is the grammar; keep the two in step).
// Owns: the closed union of public records, the 40-byte frame, encode/decode with both CRCs.
// Pure: no I/O. Decoding never throws on bad bytes; it returns a reason, and the caller decides
// between "torn tail" and "corruption" (only the recovery scan has the context for that).

import { assert, unreachable } from '../core/assert.js';
import { InvalidArgumentError } from '../core/errors.js';
import { isValidRangeId, type RangeId } from '../core/ids.js';
import { LOG_RECORD_PAYLOAD_BYTES_MAX } from '../core/limits.js';
import { EPOCH_MAX, type Lsn } from '../core/lsn.js';
import { crc32c, maskCrc } from './crc32c.js';

export type LogRecord =
  | {
      readonly type: 'entry';
      readonly cohort: RangeId;
      readonly lsn: Lsn;
      /** Opaque to the log (the replication layer's data/barrier tag), 0..255. */
      readonly kind: number;
      readonly payload: Uint8Array;
    }
  | { readonly type: 'commit'; readonly cohort: RangeId; readonly lsn: Lsn }
  | {
      readonly type: 'truncate';
      readonly cohort: RangeId;
      readonly afterSeq: number;
      /** The cohort's last LSN after the truncation: `lsn.seq === afterSeq`. */
      readonly lsn: Lsn;
    }
  | { readonly type: 'base'; readonly cohort: RangeId; readonly lsn: Lsn };

export type LogRecordType = LogRecord['type'];

export const FRAME_BYTES = 40;
export const FRAME_MAGIC = 0x6b73;
export const FORMAT_VERSION = 1;

export const TYPE_ENTRY = 1;
export const TYPE_COMMIT = 2;
export const TYPE_TRUNCATE = 3;
export const TYPE_BASE = 4;
export const TYPE_BATCH = 16;
export const TYPE_SEGMENT = 17;

const SEQ_HIGH_MAX = 0x1f_ffff; // 2^53 - 1 has high word 0x1FFFFF
const EMPTY_PAYLOAD_CRC = maskCrc(crc32c(new Uint8Array(0)));

function typeCode(type: LogRecordType): number {
  switch (type) {
    case 'entry':
      return TYPE_ENTRY;
    case 'commit':
      return TYPE_COMMIT;
    case 'truncate':
      return TYPE_TRUNCATE;
    case 'base':
      return TYPE_BASE;
    default:
      return unreachable(type, 'log record type');
  }
}

function writeU64(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32LE(value % 0x1_0000_0000, offset);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), offset + 4);
}

function readU64(buf: Uint8Array, offset: number): number | null {
  const lo = readU32(buf, offset);
  const hi = readU32(buf, offset + 4);
  if (hi > SEQ_HIGH_MAX) return null;
  return hi * 0x1_0000_0000 + lo;
}

function readU32(buf: Uint8Array, offset: number): number {
  return (
    (buf[offset]! |
      (buf[offset + 1]! << 8) |
      (buf[offset + 2]! << 16) |
      (buf[offset + 3]! << 24)) >>>
    0
  );
}

function isSeq(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isEpoch(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= EPOCH_MAX;
}

/** Throws InvalidArgumentError when a record cannot be written as given. */
export function validateRecord(r: LogRecord): void {
  if (!isValidRangeId(r.cohort)) throw new InvalidArgumentError(`bad cohort id ${r.cohort}`);
  if (!isEpoch(r.lsn.epoch) || !isSeq(r.lsn.seq)) {
    throw new InvalidArgumentError(`bad LSN ${r.lsn.epoch}.${r.lsn.seq}`);
  }
  switch (r.type) {
    case 'entry':
      if (!Number.isInteger(r.kind) || r.kind < 0 || r.kind > 255) {
        throw new InvalidArgumentError(`entry kind ${r.kind} is not a u8`);
      }
      if (r.lsn.seq < 1) throw new InvalidArgumentError('entry seq must be >= 1');
      if (r.payload.length > LOG_RECORD_PAYLOAD_BYTES_MAX) {
        throw new InvalidArgumentError(
          `entry payload of ${r.payload.length} bytes is over the limit`,
        );
      }
      return;
    case 'truncate':
      if (!isSeq(r.afterSeq) || r.lsn.seq !== r.afterSeq) {
        throw new InvalidArgumentError(
          'truncate: lsn must be the last remaining LSN (seq = afterSeq)',
        );
      }
      return;
    case 'commit':
    case 'base':
      return;
    default:
      unreachable(r, 'log record');
  }
}

function writeFrame(
  buf: Buffer,
  at: number,
  type: number,
  payloadLength: number,
  payloadCrc: number,
  cohort: number,
  epoch: number,
  seq: number,
  aux: number,
): void {
  buf.writeUInt16LE(FRAME_MAGIC, at + 4);
  buf.writeUInt8(FORMAT_VERSION, at + 6);
  buf.writeUInt8(type, at + 7);
  buf.writeUInt32LE(payloadLength, at + 8);
  buf.writeUInt32LE(payloadCrc, at + 12);
  buf.writeUInt32LE(cohort, at + 16);
  buf.writeUInt32LE(epoch, at + 20);
  writeU64(buf, at + 24, seq);
  writeU64(buf, at + 32, aux);
  buf.writeUInt32LE(maskCrc(crc32c(buf, at + 4, at + FRAME_BYTES)), at);
}

export function encodedRecordBytes(r: LogRecord): number {
  return FRAME_BYTES + (r.type === 'entry' ? r.payload.length : 0);
}

/** Encodes a validated record into `buf` at `at`; returns the bytes written. */
export function encodeRecordInto(r: LogRecord, buf: Buffer, at: number): number {
  switch (r.type) {
    case 'entry': {
      buf.set(r.payload, at + FRAME_BYTES);
      const crc = maskCrc(crc32c(r.payload));
      writeFrame(
        buf,
        at,
        TYPE_ENTRY,
        r.payload.length,
        crc,
        r.cohort,
        r.lsn.epoch,
        r.lsn.seq,
        r.kind,
      );
      return FRAME_BYTES + r.payload.length;
    }
    case 'commit':
    case 'base':
      writeFrame(
        buf,
        at,
        typeCode(r.type),
        0,
        EMPTY_PAYLOAD_CRC,
        r.cohort,
        r.lsn.epoch,
        r.lsn.seq,
        0,
      );
      return FRAME_BYTES;
    case 'truncate':
      writeFrame(
        buf,
        at,
        TYPE_TRUNCATE,
        0,
        EMPTY_PAYLOAD_CRC,
        r.cohort,
        r.lsn.epoch,
        r.lsn.seq,
        r.afterSeq,
      );
      return FRAME_BYTES;
    default:
      return unreachable(r, 'log record');
  }
}

export function encodeRecord(r: LogRecord): Buffer {
  const buf = Buffer.alloc(encodedRecordBytes(r));
  encodeRecordInto(r, buf, 0);
  return buf;
}

export function writeBatchFrame(
  buf: Buffer,
  at: number,
  batchNo: number,
  recordCount: number,
  bodyBytes: number,
): void {
  assert(recordCount <= 0xffff_ffff, 'batch record count fits u32');
  writeFrame(buf, at, TYPE_BATCH, 0, EMPTY_PAYLOAD_CRC, recordCount, 0, batchNo, bodyBytes);
}

export function encodeSegmentFrame(segmentNo: number, segmentSizeBytes: number): Buffer {
  const buf = Buffer.alloc(FRAME_BYTES);
  writeFrame(buf, 0, TYPE_SEGMENT, 0, EMPTY_PAYLOAD_CRC, 0, 0, segmentNo, segmentSizeBytes);
  return buf;
}

/** A frame header whose header CRC verified. */
export interface Frame {
  readonly type: number;
  readonly payloadLength: number;
  readonly payloadCrc: number;
  readonly cohort: number;
  readonly epoch: number;
  readonly seq: number;
  readonly aux: number;
}

export type FrameResult =
  | { readonly ok: true; readonly frame: Frame }
  | { readonly ok: false; readonly reason: string };

/** Decodes the 40-byte frame at `at` (checks magic, version, header CRC, field ranges). */
export function decodeFrame(buf: Uint8Array, at: number): FrameResult {
  if (at + FRAME_BYTES > buf.length) return { ok: false, reason: 'frame cut short' };
  if ((buf[at + 4]! | (buf[at + 5]! << 8)) !== FRAME_MAGIC)
    return { ok: false, reason: 'bad magic' };
  if (buf[at + 6] !== FORMAT_VERSION) return { ok: false, reason: 'unknown format version' };
  if (readU32(buf, at) !== maskCrc(crc32c(buf, at + 4, at + FRAME_BYTES))) {
    return { ok: false, reason: 'header checksum mismatch' };
  }
  const seq = readU64(buf, at + 24);
  const aux = readU64(buf, at + 32);
  if (seq === null || aux === null) return { ok: false, reason: 'u64 field out of range' };
  const type = buf[at + 7]!;
  const frame: Frame = {
    type,
    payloadLength: readU32(buf, at + 8),
    payloadCrc: readU32(buf, at + 12),
    cohort: readU32(buf, at + 16),
    epoch: readU32(buf, at + 20),
    seq,
    aux,
  };
  switch (type) {
    case TYPE_ENTRY:
      if (frame.payloadLength > LOG_RECORD_PAYLOAD_BYTES_MAX || frame.aux > 255 || seq < 1) {
        return { ok: false, reason: 'entry fields out of range' };
      }
      break;
    case TYPE_TRUNCATE:
      if (frame.payloadLength !== 0 || frame.aux !== seq) {
        return { ok: false, reason: 'truncate fields out of range' };
      }
      break;
    case TYPE_COMMIT:
    case TYPE_BASE:
    case TYPE_BATCH:
    case TYPE_SEGMENT:
      if (frame.payloadLength !== 0) return { ok: false, reason: 'unexpected payload' };
      break;
    default:
      return { ok: false, reason: `unknown record type ${type}` };
  }
  return { ok: true, frame };
}

export type RecordResult =
  | { readonly ok: true; readonly record: LogRecord; readonly bytes: number }
  | { readonly ok: false; readonly reason: string };

/**
 * Decodes one public record at `at` (frame + payload, both CRCs). The entry payload is a view
 * into `buf` (no copy): copy it if `buf` is reused.
 */
export function decodeRecord(buf: Uint8Array, at: number): RecordResult {
  const fr = decodeFrame(buf, at);
  if (!fr.ok) return fr;
  const f = fr.frame;
  const end = at + FRAME_BYTES + f.payloadLength;
  if (end > buf.length) return { ok: false, reason: 'payload cut short' };
  if (maskCrc(crc32c(buf, at + FRAME_BYTES, end)) !== f.payloadCrc) {
    return { ok: false, reason: 'payload checksum mismatch' };
  }
  const lsn = { epoch: f.epoch, seq: f.seq };
  const bytes = FRAME_BYTES + f.payloadLength;
  switch (f.type) {
    case TYPE_ENTRY:
      return {
        ok: true,
        bytes,
        record: {
          type: 'entry',
          cohort: f.cohort,
          lsn,
          kind: f.aux,
          payload: buf.subarray(at + FRAME_BYTES, end),
        },
      };
    case TYPE_COMMIT:
      return { ok: true, bytes, record: { type: 'commit', cohort: f.cohort, lsn } };
    case TYPE_BASE:
      return { ok: true, bytes, record: { type: 'base', cohort: f.cohort, lsn } };
    case TYPE_TRUNCATE:
      return {
        ok: true,
        bytes,
        record: { type: 'truncate', cohort: f.cohort, afterSeq: f.aux, lsn },
      };
    default:
      return { ok: false, reason: `frame type ${f.type} where a record was expected` };
  }
}
