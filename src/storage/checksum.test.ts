import { describe, expect, it } from 'vitest';
import { cellHash, checksumAdd, checksumSub } from './checksum.js';

const b = (s: string) => Buffer.from(s);

describe('cell hash and range checksum', () => {
  it('depends on every field and on where the field boundaries are', () => {
    const base = cellHash(b('key'), b('col'), b('value'), 7);
    expect(cellHash(b('key'), b('col'), b('value'), 7)).toBe(base);
    expect(cellHash(b('kez'), b('col'), b('value'), 7)).not.toBe(base);
    expect(cellHash(b('key'), b('cok'), b('value'), 7)).not.toBe(base);
    expect(cellHash(b('key'), b('col'), b('valuf'), 7)).not.toBe(base);
    expect(cellHash(b('key'), b('col'), b('value'), 8)).not.toBe(base);
    expect(cellHash(b('key'), b('col'), b('value'), 7 + 2 ** 32)).not.toBe(base);
    // Moving a byte from the key to the column changes the hash (lengths are hashed).
    expect(cellHash(b('ke'), b('ycol'), b('value'), 7)).not.toBe(base);
    expect(cellHash(b(''), b(''), b(''), 0)).not.toBe(cellHash(b(''), b(''), Buffer.alloc(1), 0));
  });

  it('spreads over 64 bits without collisions over many similar cells', () => {
    const seen = new Set<bigint>();
    for (let i = 0; i < 20_000; i++) seen.add(cellHash(b(`user${i}`), b('c'), b('v'), i));
    expect(seen.size).toBe(20_000);
    const highs = new Set([...seen].slice(0, 1000).map((h) => h >> 32n));
    expect(highs.size).toBeGreaterThan(990);
  });

  it('sums order-independently and subtracts back', () => {
    const hs = [1, 2, 3].map((i) => cellHash(b(`k${i}`), b('c'), b('v'), i));
    const ab = hs.reduce((s, h) => checksumAdd(s, h), 0n);
    const ba = [...hs].reverse().reduce((s, h) => checksumAdd(s, h), 0n);
    expect(ab).toBe(ba);
    expect(checksumSub(checksumAdd(ab, hs[0]!), hs[0]!)).toBe(ab);
  });
});
