import { describe, expect, it } from 'vitest';
import { SeqIndex } from './seq-index.js';

function loc(seq: number, segment = 1, epoch = 1) {
  return { segment, offset: seq * 100, length: 50 + (seq % 7), epoch };
}

describe('SeqIndex', () => {
  it('returns the location of every live seq and null outside', () => {
    const ix = new SeqIndex(10);
    for (let s = 10; s < 10_000; s++)
      ix.push(s, loc(s, 1 + Math.floor(s / 1000), s < 5000 ? 1 : 2));
    expect(ix.firstSeq).toBe(10);
    expect(ix.lastSeq).toBe(9999);
    for (const s of [10, 11, 4095, 4096, 4999, 5000, 9999]) {
      expect(ix.get(s)).toEqual(loc(s, 1 + Math.floor(s / 1000), s < 5000 ? 1 : 2));
    }
    expect(ix.get(9)).toBeNull();
    expect(ix.get(10_000)).toBeNull();
  });

  it('rejects a gap in seqs', () => {
    const ix = new SeqIndex(1);
    ix.push(1, loc(1));
    expect(() => ix.push(3, loc(3))).toThrow(/index push/);
  });

  it('truncation voids the suffix and a new epoch can reuse the seqs (App. B: 1.22 then 2.22)', () => {
    const ix = new SeqIndex(1);
    for (let s = 1; s <= 22; s++) ix.push(s, loc(s, 1, 1));
    ix.truncateAfter(21);
    expect(ix.lastSeq).toBe(21);
    expect(ix.get(22)).toBeNull();
    ix.push(22, { segment: 2, offset: 7, length: 60, epoch: 2 });
    expect(ix.get(22)).toEqual({ segment: 2, offset: 7, length: 60, epoch: 2 });
    expect(ix.epochAt(21)).toBe(1);
  });

  it('truncation below the first live seq empties it and sets the next seq', () => {
    const ix = new SeqIndex(50);
    for (let s = 50; s <= 60; s++) ix.push(s, loc(s));
    ix.truncateAfter(20);
    expect(ix.size).toBe(0);
    expect(ix.firstSeq).toBe(21);
    ix.push(21, loc(21));
    expect(ix.get(21)).toEqual(loc(21));
  });

  it('dropBefore frees whole chunks and keeps later lookups right', () => {
    const ix = new SeqIndex(1);
    const n = 4096 * 70;
    for (let s = 1; s <= n; s++) ix.push(s, loc(s, 1 + Math.floor(s / 10_000)));
    ix.dropBefore(4096 * 66 + 5);
    expect(ix.firstSeq).toBe(4096 * 66 + 5);
    expect(ix.chunkCount).toBeLessThanOrEqual(5);
    expect(ix.get(4096 * 66 + 4)).toBeNull();
    for (const s of [4096 * 66 + 5, 4096 * 68, n]) {
      expect(ix.get(s)).toEqual(loc(s, 1 + Math.floor(s / 10_000)));
    }
    ix.push(n + 1, loc(n + 1, 99));
    expect(ix.get(n + 1)).toEqual(loc(n + 1, 99));
  });
});
