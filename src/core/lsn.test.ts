import { describe, expect, it } from 'vitest';
import { compareLsn, formatLsn, lsn, maxLsn, parseLsn } from './lsn.js';

describe('Lsn', () => {
  it('orders by epoch first, then seq (S§7: newest epoch, then longest log)', () => {
    expect(compareLsn(lsn(2, 1), lsn(1, 99))).toBe(1);
    expect(compareLsn(lsn(1, 21), lsn(1, 22))).toBe(-1);
    expect(compareLsn(lsn(3, 7), lsn(3, 7))).toBe(0);
    expect(maxLsn(lsn(1, 22), lsn(2, 21))).toEqual(lsn(2, 21));
  });

  it('formats and parses as e.seq', () => {
    expect(formatLsn(lsn(2, 30))).toBe('2.30');
    expect(parseLsn('2.30')).toEqual(lsn(2, 30));
    expect(() => parseLsn('2-30')).toThrow(TypeError);
  });
});
