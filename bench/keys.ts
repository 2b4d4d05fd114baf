// Record keys, field names and values of the benchmark's rows.
//
// Keys are 16 bytes ("user" + 12 hex digits), the size the goals are stated for. With
// `hashed` order (YCSB's default insertorder=hashed) the key number goes through a bijection on
// 48 bits first, so consecutive inserts land all over the key space yet never collide (YCSB's
// FNV hash of the key number can collide once truncated to 16 bytes); `ordered` keeps them in
// insert order, which makes scans walk the newest records.
//
// Values are views into one random pool (no allocation per operation): the bytes are random,
// so nothing downstream can compress them away, and the seed fixes them.

import { assert } from '../src/core/assert.js';
import type { Random } from './random.js';

export type KeyOrder = 'hashed' | 'ordered';

export const KEY_NUMBER_MAX = 2 ** 48;
const KEY_PREFIX = 'user';
const TWO24 = 16777216;
const MASK24 = TWO24 - 1;
// Odd 48-bit multipliers, split in 24-bit halves, for the bijection.
const C1_HI = 0x9e3779;
const C1_LO = 0xb97f4b;
const C2_HI = 0xbf5847;
const C2_LO = 0x6d1ce5;

/** (x * c) mod 2^48 with x and c given in 24-bit halves; every product stays below 2^53. */
function mulMod48(xh: number, xl: number, ch: number, cl: number): number {
  const low = xl * cl; // < 2^48
  const high = (Math.floor(low / TWO24) + xh * cl + xl * ch) % TWO24;
  return high * TWO24 + (low % TWO24);
}

/** A bijection on [0, 2^48): multiply by an odd constant, xor-shift by 24, multiply again. */
export function scramble48(n: number): number {
  assert(Number.isSafeInteger(n) && n >= 0 && n < KEY_NUMBER_MAX, 'key number out of range');
  let x = mulMod48(Math.floor(n / TWO24), n % TWO24, C1_HI, C1_LO);
  // x ^= x >>> 24: the high half is unchanged, so this is invertible.
  let hi = Math.floor(x / TWO24);
  x = hi * TWO24 + (((x % TWO24) ^ hi) & MASK24);
  x = mulMod48(Math.floor(x / TWO24), x % TWO24, C2_HI, C2_LO);
  hi = Math.floor(x / TWO24);
  return hi * TWO24 + (((x % TWO24) ^ hi) & MASK24);
}

export function keyName(n: number, order: KeyOrder): string {
  const v = order === 'hashed' ? scramble48(n) : n;
  return KEY_PREFIX + v.toString(16).padStart(12, '0');
}

/**
 * Split keys that cut the `hashed` key space into `ranges` even ranges (for `skv cluster init
 * --split-keys` / `skv dev --split-keys`). The default even split works on the first two key
 * bytes, which are "us" for every benchmark key, so without these one range takes every key
 * and one cohort does all the work. `ordered` keys start at 0 and stay in the first range.
 */
export function hashedKeySplits(ranges: number): string[] {
  assert(Number.isSafeInteger(ranges) && ranges >= 1, 'ranges');
  return Array.from({ length: ranges - 1 }, (_, i) =>
    keyName(Math.floor(((i + 1) * KEY_NUMBER_MAX) / ranges), 'ordered'),
  );
}

export function fieldName(i: number): string {
  return `field${i}`;
}

/** Random bytes to slice values from; sized so that views rarely overlap in a short window. */
export class ValuePool {
  private readonly pool: Buffer;

  constructor(
    private readonly random: Random,
    readonly valueSizeBytes: number,
    poolSizeBytes = 1 << 20,
  ) {
    assert(valueSizeBytes >= 0, 'value size must be >= 0');
    const size = Math.max(poolSizeBytes, valueSizeBytes * 2);
    this.pool = Buffer.allocUnsafe(size);
    for (let i = 0; i + 4 <= size; i += 4) this.pool.writeUInt32LE(random.nextUint32(), i);
  }

  next(): Buffer {
    const at = this.random.nextInt(this.pool.length - this.valueSizeBytes + 1);
    return this.pool.subarray(at, at + this.valueSizeBytes);
  }
}
