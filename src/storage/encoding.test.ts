import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  dataPrefix,
  dataPrefixEnd,
  decodeCellKey,
  decodeMeta,
  decodeSnapshotChunk,
  encodeCellKey,
  encodeMeta,
  encodeRowKeyPrefix,
  encodeRowStart,
  encodeSnapshotChunk,
  GENERATION_MAX,
} from './encoding.js';

const bytes = fc.uint8Array({ maxLength: 6 }).map((a) => Buffer.from(a));
// Bias towards the bytes the escaping is about.
const edgy = fc
  .array(fc.constantFrom(0x00, 0x01, 0xff, 0xfe, 0x61), { maxLength: 5 })
  .map((a) => Buffer.from(a));
const anyBytes = fc.oneof(bytes, edgy);

function cmpPair(a: [Buffer, Buffer], b: [Buffer, Buffer]): number {
  return Buffer.compare(a[0], b[0]) || Buffer.compare(a[1], b[1]);
}

describe('cell key encoding', () => {
  it('preserves (rowKey, column) order bytewise, including 0x00 and 0xff bytes', () => {
    fc.assert(
      fc.property(anyBytes, anyBytes, anyBytes, anyBytes, (k1, c1, k2, c2) => {
        const expected = Math.sign(cmpPair([k1, c1], [k2, c2]));
        const got = Math.sign(Buffer.compare(encodeCellKey(k1, c1), encodeCellKey(k2, c2)));
        expect(got).toBe(expected);
      }),
      { numRuns: 3000 },
    );
  });

  it('round-trips through decodeCellKey', () => {
    fc.assert(
      fc.property(anyBytes, anyBytes, (k, c) => {
        const d = decodeCellKey(encodeCellKey(k, c));
        expect(d.key.equals(k)).toBe(true);
        expect(d.column.equals(c)).toBe(true);
      }),
    );
  });

  it('row bounds bracket exactly the cells of keys in [start, end)', () => {
    fc.assert(
      fc.property(anyBytes, anyBytes, anyBytes, anyBytes, (k, c, start, end) => {
        const ck = encodeCellKey(k, c);
        const inRange = Buffer.compare(k, start) >= 0 && Buffer.compare(k, end) < 0;
        const lo = encodeRowKeyPrefix(start);
        const hi = encodeRowStart(end);
        const inBounds = Buffer.compare(ck, lo) >= 0 && Buffer.compare(ck, hi) < 0;
        expect(inBounds).toBe(inRange);
      }),
      { numRuns: 3000 },
    );
  });

  it('generation prefixes do not overlap, also at the last generation', () => {
    expect(Buffer.compare(dataPrefixEnd(3, 7), dataPrefix(3, 8))).toBe(0);
    expect(Buffer.compare(dataPrefixEnd(3, GENERATION_MAX), dataPrefix(4, 0))).toBe(0);
    const inside = Buffer.concat([dataPrefix(3, 7), Buffer.alloc(10, 0xff)]);
    expect(Buffer.compare(inside, dataPrefixEnd(3, 7))).toBeLessThan(0);
  });

  it('meta and snapshot chunks round-trip', () => {
    const m = {
      generation: 9,
      checkpointLsn: { epoch: 3, seq: 2 ** 40 + 5 },
      checksum: 2n ** 64n - 3n,
    };
    expect(decodeMeta(encodeMeta(m))).toEqual(m);
    // A range that does not keep its checksum: tag 0x02, and no checksum comes back.
    const none = { ...m, checksum: null };
    expect(encodeMeta(none)[0]).toBe(0x02);
    expect(decodeMeta(encodeMeta(none))).toEqual(none);
    const bad = encodeMeta(m);
    bad[0] = 0x03;
    expect(() => decodeMeta(bad)).toThrow(/bad range meta/);
    const cells = [
      { key: Buffer.from([0]), column: Buffer.from('c'), value: Buffer.alloc(0), version: 1 },
      { key: Buffer.from('k'), column: Buffer.alloc(0), value: Buffer.from('v'), version: 2 ** 50 },
    ];
    const back = decodeSnapshotChunk(encodeSnapshotChunk(cells));
    expect(back.map((c) => [c.key, c.column, c.value, c.version])).toEqual(
      cells.map((c) => [c.key, c.column, c.value, c.version]),
    );
    expect(() => decodeSnapshotChunk(encodeSnapshotChunk(cells).subarray(0, 20))).toThrow(
      /truncated/,
    );
  });
});
