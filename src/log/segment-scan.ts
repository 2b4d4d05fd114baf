// Recovery scan of one segment image (FORMAT.md "Recovery"). Pure: works on the bytes of a
// segment file already in memory and returns what it found; the caller (open) decides with the
// context of the whole log whether a bad spot is a torn tail or corruption.
// Invariant it checks: a valid segment is segmentFrame, batches with consecutive numbers, zeros.

import {
  decodeFrame,
  decodeRecord,
  FORMAT_VERSION,
  FRAME_BYTES,
  FRAME_MAGIC,
  type LogRecord,
  TYPE_BATCH,
  TYPE_SEGMENT,
} from './format.js';

export const SECTOR_BYTES = 512;

export interface ScannedRecord {
  readonly record: LogRecord;
  readonly offset: number;
  readonly bytes: number;
}

export interface ScannedBatch {
  readonly batchNo: number;
  readonly offset: number;
  readonly bytes: number;
  readonly records: readonly ScannedRecord[];
}

export interface BadSpot {
  readonly offset: number;
  readonly reason: string;
  /** Declared end of the damaged batch when its frame was readable, else null. */
  readonly declaredEnd: number | null;
  /** The damaged batch's number and record count when its frame was readable, else null. */
  readonly batchNo: number | null;
  readonly recordsDeclared: number | null;
  /** Records of the damaged batch that decoded intact before the damage. */
  readonly recordsIntact: number;
}

export type SegmentScan =
  | {
      readonly ok: true;
      readonly segmentSizeBytes: number;
      readonly batches: readonly ScannedBatch[];
      /** End of the written region: where the next batch would go. */
      readonly endOffset: number;
      /** Last byte that is not zero (-1 if the whole file is zero). */
      readonly lastNonZero: number;
      readonly bad: BadSpot | null;
    }
  | { readonly ok: false; readonly offset: number; readonly reason: string };

const ZERO_CHUNK = new Uint8Array(64 * 1024);

function isZero(buf: Uint8Array, start: number, end: number): boolean {
  for (let p = start; p < end; p += ZERO_CHUNK.length) {
    const len = Math.min(ZERO_CHUNK.length, end - p);
    if (Buffer.compare(buf.subarray(p, p + len), ZERO_CHUNK.subarray(0, len)) !== 0) return false;
  }
  return true;
}

/** Index of the last non-zero byte at or after `from`, or from - 1. */
export function lastNonZeroByte(buf: Uint8Array, from = 0): number {
  let end = buf.length;
  while (end > from) {
    const start = Math.max(from, end - ZERO_CHUNK.length);
    if (!isZero(buf, start, end)) {
      for (let i = end - 1; i >= start; i--) if (buf[i] !== 0) return i;
    }
    end = start;
  }
  return from - 1;
}

/** Scans a whole segment image. `expectBatchNo` is the number the first batch must have (or null). */
export function scanSegment(
  buf: Uint8Array,
  segmentNo: number,
  expectBatchNo: number | null,
): SegmentScan {
  const head = decodeFrame(buf, 0);
  if (!head.ok) return { ok: false, offset: 0, reason: `segment frame: ${head.reason}` };
  if (head.frame.type !== TYPE_SEGMENT || head.frame.seq !== segmentNo) {
    return { ok: false, offset: 0, reason: 'segment frame does not name this segment' };
  }
  const segmentSizeBytes = head.frame.aux;
  const lastNonZero = lastNonZeroByte(buf);
  const batches: ScannedBatch[] = [];
  let pos = FRAME_BYTES;
  let expect = expectBatchNo;
  let bad: BadSpot | null = null;

  while (pos + FRAME_BYTES <= buf.length) {
    if (isZero(buf, pos, pos + FRAME_BYTES)) {
      // End of the written region, unless something was written after it.
      if (lastNonZero >= pos) bad = frameless(pos, 'data after a zero frame');
      break;
    }
    const fr = decodeFrame(buf, pos);
    if (!fr.ok || fr.frame.type !== TYPE_BATCH) {
      bad = frameless(pos, fr.ok ? 'expected a batch frame' : fr.reason);
      break;
    }
    const batchNo = fr.frame.seq;
    const count = fr.frame.cohort;
    const bodyBytes = fr.frame.aux;
    const end = pos + FRAME_BYTES + bodyBytes;
    if (expect !== null && batchNo !== expect) {
      // A checksummed frame with the wrong number is not a torn write: batches went missing.
      return { ok: false, offset: pos, reason: `batch ${batchNo} where ${expect} was expected` };
    }
    if (end > segmentSizeBytes) {
      return { ok: false, offset: pos, reason: 'batch extends past the segment size' };
    }
    const records: ScannedRecord[] = [];
    let p = pos + FRAME_BYTES;
    let why: string | null = null;
    for (let i = 0; i < count; i++) {
      if (p >= end) {
        why = 'batch body shorter than its record count';
        break;
      }
      const r = decodeRecord(buf.subarray(0, end), p);
      if (!r.ok) {
        why = `record at ${p}: ${r.reason}`;
        break;
      }
      records.push({ record: r.record, offset: p, bytes: r.bytes });
      p += r.bytes;
    }
    if (why === null && p !== end) why = 'batch body longer than its records';
    if (why !== null) {
      bad = {
        offset: pos,
        reason: why,
        declaredEnd: end,
        batchNo,
        recordsDeclared: count,
        recordsIntact: records.length,
      };
      break;
    }
    batches.push({ batchNo, offset: pos, bytes: end - pos, records });
    expect = batchNo + 1;
    pos = end;
  }
  if (bad === null && pos + FRAME_BYTES > buf.length && lastNonZero >= pos) {
    bad = frameless(pos, 'trailing bytes shorter than a frame');
  }
  return { ok: true, segmentSizeBytes, batches, endOffset: pos, lastNonZero, bad };
}

/** A bad spot where no readable batch frame starts. */
function frameless(offset: number, reason: string): BadSpot {
  return {
    offset,
    reason,
    declaredEnd: null,
    batchNo: null,
    recordsDeclared: null,
    recordsIntact: 0,
  };
}

const BATCH_FRAME_SIGNATURE = Buffer.from([
  FRAME_MAGIC & 0xff,
  FRAME_MAGIC >> 8,
  FORMAT_VERSION,
  TYPE_BATCH,
]);

/** True if a valid batch frame starts anywhere after `from` (evidence of later writes). */
export function hasBatchFrameAfter(buf: Uint8Array, from: number): boolean {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  let i = b.indexOf(BATCH_FRAME_SIGNATURE, from + 1 + 4);
  while (i !== -1) {
    const at = i - 4;
    if (at > from) {
      const fr = decodeFrame(buf, at);
      if (fr.ok && fr.frame.type === TYPE_BATCH) return true;
    }
    i = b.indexOf(BATCH_FRAME_SIGNATURE, i + 1);
  }
  return false;
}

/**
 * FORMAT.md rule 3: does the damage at `bad` look like an incomplete write? (Its tail is missing,
 * or a whole sector inside it is still zero, or its frame is cut short.)
 */
export function looksIncomplete(buf: Uint8Array, bad: BadSpot, lastNonZero: number): boolean {
  const limit = bad.declaredEnd ?? lastNonZero + 1;
  if (bad.declaredEnd !== null && lastNonZero + 1 < bad.declaredEnd) return true;
  if (bad.declaredEnd === null && lastNonZero + 1 < bad.offset + FRAME_BYTES) return true;
  const stop = Math.min(limit, lastNonZero + 1);
  for (
    let s = Math.ceil(bad.offset / SECTOR_BYTES) * SECTOR_BYTES;
    s + SECTOR_BYTES <= stop;
    s += SECTOR_BYTES
  ) {
    if (isZero(buf, s, s + SECTOR_BYTES)) return true;
  }
  return false;
}
