import { describe, expect, it } from 'vitest';
import { type Lsn, lsn } from '../core/lsn.js';
import { ReceivedSnapshots } from './received-snapshots.js';

interface T {
  readonly lsn: Lsn;
  readonly name: string;
}

function inbox(keepMax = 2) {
  const dropped: string[] = [];
  const r = new ReceivedSnapshots<T>(keepMax, (rangeId, t) => dropped.push(`${rangeId}:${t.name}`));
  return { r, dropped };
}

const s = (seq: number): T => ({ lsn: lsn(1, seq), name: `s${seq}` });

describe('ReceivedSnapshots', () => {
  it('keeps at most keepMax per range, dropping the oldest', () => {
    const { r, dropped } = inbox(2);
    for (const seq of [10, 20, 30]) {
      r.add(1, s(seq));
      r.trim(1, null);
    }
    r.add(2, s(5));
    r.trim(2, null);
    expect(dropped).toEqual(['1:s10']);
    expect(r.count(1)).toBe(2);
    expect(r.count(2)).toBe(1);
    expect(() => r.take(1, lsn(1, 10))).toThrow(/to install was received and kept/);
  });

  it('never drops the snapshot the core holds, even past the bound', () => {
    // The core accepted s10; its install waits behind an earlier one while s20, s30, s40 arrive.
    const { r, dropped } = inbox(2);
    r.add(1, s(10));
    r.trim(1, lsn(1, 10));
    for (const seq of [20, 30, 40]) {
      r.add(1, s(seq));
      r.trim(1, lsn(1, 10));
    }
    expect(dropped).toEqual(['1:s20', '1:s30']);
    expect(r.count(1)).toBe(2);
    expect(r.take(1, lsn(1, 10)).name).toBe('s10');
    expect(r.count(1)).toBe(1);
  });

  it('take drops those received before the one taken, keeps the newer ones', () => {
    const { r, dropped } = inbox(3);
    for (const seq of [10, 20, 30]) r.add(1, s(seq));
    expect(r.take(1, lsn(1, 20)).name).toBe('s20');
    expect(dropped).toEqual(['1:s10']);
    expect(r.count(1)).toBe(1);
    expect(r.take(1, lsn(1, 30)).name).toBe('s30');
    expect(r.count(1)).toBe(0);
    expect(dropped).toEqual(['1:s10']);
  });
});
