import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRowMutation, encodeRowMutation, type RowMutation } from './mutation.js';

const bytes = fc.uint8Array({ maxLength: 64 });
const mutation: fc.Arbitrary<RowMutation> = fc.record({
  key: fc.uint8Array({ minLength: 1, maxLength: 64 }),
  writes: fc.array(
    fc.record(
      {
        column: bytes,
        value: fc.option(bytes, { nil: null }),
        expectedVersion: fc.nat(),
      },
      { requiredKeys: ['column', 'value'] },
    ),
    { maxLength: 8 },
  ),
});

describe('row mutation codec', () => {
  it('round-trips every mutation', () => {
    fc.assert(
      fc.property(mutation, (m) => {
        const back = decodeRowMutation(encodeRowMutation(m));
        expect(Buffer.from(back.key)).toEqual(Buffer.from(m.key));
        expect(back.writes.length).toBe(m.writes.length);
        back.writes.forEach((w, i) => {
          const orig = m.writes[i]!;
          expect(Buffer.from(w.column)).toEqual(Buffer.from(orig.column));
          expect(w.value === null ? null : Buffer.from(w.value)).toEqual(
            orig.value === null ? null : Buffer.from(orig.value),
          );
          expect(w.expectedVersion).toBe(orig.expectedVersion);
        });
      }),
    );
  });

  it('rejects a truncated encoding', () => {
    const enc = encodeRowMutation({
      key: Buffer.from('k'),
      writes: [{ column: Buffer.from('c'), value: Buffer.from('v') }],
    });
    for (let cut = 0; cut < enc.length; cut++) {
      expect(() => decodeRowMutation(enc.subarray(0, cut))).toThrow(RangeError);
    }
  });
});
