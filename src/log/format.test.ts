import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import {
  decodeFrame,
  decodeRecord,
  encodeRecord,
  encodeSegmentFrame,
  FRAME_BYTES,
  type LogRecord,
  validateRecord,
  writeBatchFrame,
} from './format.js';

const lsnArb = fc.record({
  epoch: fc.integer({ min: 0, max: 0xffff_ffff }),
  seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
});
const cohortArb = fc.integer({ min: 0, max: 0xffff_ffff });
const recordArb: fc.Arbitrary<LogRecord> = fc.oneof(
  fc.record({
    type: fc.constant('entry' as const),
    cohort: cohortArb,
    lsn: lsnArb,
    kind: fc.integer({ min: 0, max: 255 }),
    payload: fc.uint8Array({ maxLength: 200 }),
  }),
  fc.record({ type: fc.constant('commit' as const), cohort: cohortArb, lsn: lsnArb }),
  fc.record({ type: fc.constant('base' as const), cohort: cohortArb, lsn: lsnArb }),
  fc
    .record({ cohort: cohortArb, lsn: lsnArb })
    .map((r) => ({ type: 'truncate' as const, ...r, afterSeq: r.lsn.seq })),
);

function normalise(r: LogRecord): unknown {
  return r.type === 'entry' ? { ...r, payload: Array.from(r.payload) } : r;
}

describe('record format', () => {
  it('round-trips every record type', () => {
    fc.assert(
      fc.property(recordArb, (r) => {
        validateRecord(r);
        const buf = encodeRecord(r);
        const d = decodeRecord(buf, 0);
        expect(d.ok).toBe(true);
        if (!d.ok) return;
        expect(d.bytes).toBe(buf.length);
        expect(normalise(d.record)).toEqual(normalise(r));
      }),
    );
  });

  it('detects every truncation point of a record', () => {
    const r: LogRecord = {
      type: 'entry',
      cohort: 7,
      lsn: { epoch: 2, seq: 22 },
      kind: 1,
      payload: Buffer.from('a payload that spans some bytes'),
    };
    const buf = encodeRecord(r);
    for (let cut = 0; cut < buf.length; cut++) {
      // Cut short, and also "cut then zero-filled" as a preallocated segment would look.
      expect(decodeRecord(buf.subarray(0, cut), 0).ok).toBe(false);
      const zeroed = Buffer.alloc(buf.length);
      buf.copy(zeroed, 0, 0, cut);
      expect(decodeRecord(zeroed, 0).ok).toBe(false);
    }
  });

  it('detects a flipped bit anywhere in the header or payload', () => {
    fc.assert(
      fc.property(recordArb, fc.nat(), fc.integer({ min: 0, max: 7 }), (r, pos, bit) => {
        const buf = encodeRecord(r);
        const i = pos % buf.length;
        buf[i] = buf[i]! ^ (1 << bit);
        expect(decodeRecord(buf, 0).ok).toBe(false);
      }),
    );
  });

  it('an all-zero frame is not a valid frame', () => {
    expect(decodeFrame(new Uint8Array(FRAME_BYTES), 0).ok).toBe(false);
  });

  it('batch and segment frames decode but are not public records', () => {
    const b = Buffer.alloc(FRAME_BYTES);
    writeBatchFrame(b, 0, 9, 3, 120);
    const f = decodeFrame(b, 0);
    expect(f.ok && f.frame.seq === 9 && f.frame.cohort === 3 && f.frame.aux === 120).toBe(true);
    expect(decodeRecord(b, 0).ok).toBe(false);
    expect(decodeFrame(encodeSegmentFrame(5, 1 << 20), 0).ok).toBe(true);
  });

  it('rejects records it cannot represent', () => {
    const bad: LogRecord[] = [
      { type: 'entry', cohort: 1, lsn: { epoch: 1, seq: 0 }, kind: 0, payload: new Uint8Array() },
      { type: 'entry', cohort: 1, lsn: { epoch: 1, seq: 1 }, kind: 256, payload: new Uint8Array() },
      { type: 'entry', cohort: -1, lsn: { epoch: 1, seq: 1 }, kind: 0, payload: new Uint8Array() },
      { type: 'commit', cohort: 1, lsn: { epoch: 2 ** 32, seq: 1 } },
      { type: 'truncate', cohort: 1, afterSeq: 5, lsn: { epoch: 1, seq: 6 } },
    ];
    for (const r of bad) expect(() => validateRecord(r)).toThrow(InvalidArgumentError);
  });
});
