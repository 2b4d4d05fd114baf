// Key choosers of YCSB's core workload (Cooper et al., SoCC 2010, §4.1), ported so that runs are
// comparable with published YCSB numbers: uniform, zipfian (Gray et al.'s "Quickly generating
// billion-record synthetic databases" method, as in YCSB's ZipfianGenerator), YCSB's *scrambled*
// zipfian (the popular items are spread over the key space by an FNV-64 hash rather than
// clustered at its start), and skewed-latest (recently inserted keys are the hottest).
//
// Invariants: every chooser returns an integer key number in [0, limit) where limit is the
// number of records known to exist; none allocates per call (the FNV hash runs on two 32-bit
// halves instead of BigInt).

import { assert } from '../src/core/assert.js';
import type { Random } from './random.js';

/** YCSB's default skew. */
export const ZIPFIAN_CONSTANT = 0.99;
/** YCSB's scrambled zipfian draws from this many items, then hashes into the key space. */
export const SCRAMBLED_ITEM_COUNT = 10_000_000_000;
/** zeta(SCRAMBLED_ITEM_COUNT, 0.99), precomputed by YCSB (ScrambledZipfianGenerator.ZETAN). */
export const SCRAMBLED_ZETAN = 26.46902820178302;
/** Record counts up to this keep the hash's modular reduction exact in doubles. */
export const KEY_SPACE_MAX = 2 ** 37;

export interface KeyChooser {
  /** A key number in [0, limit). */
  next(): number;
}

/** Sum of 1/i^theta for i in (st, n], added to `initial` (YCSB's ZipfianGenerator.zeta). */
export function zeta(st: number, n: number, theta: number, initial: number): number {
  let sum = initial;
  for (let i = st; i < n; i++) sum += 1 / (i + 1) ** theta;
  return sum;
}

/**
 * Zipfian over [0, items): item 0 is the most popular. `items` may grow between calls
 * (`nextBelow`), as the "latest" chooser needs: zeta is then extended incrementally.
 */
export class ZipfianGenerator {
  private readonly theta: number;
  private readonly alpha: number;
  private readonly zeta2theta: number;
  private readonly half: number;
  private countForZeta: number;
  private zetan: number;
  private eta: number;

  constructor(
    private readonly random: Random,
    items: number,
    options: { theta?: number; zetan?: number } = {},
  ) {
    assert(items >= 1, 'zipfian needs at least one item');
    this.theta = options.theta ?? ZIPFIAN_CONSTANT;
    assert(this.theta > 0 && this.theta < 1, 'zipfian theta must be in (0, 1)');
    this.alpha = 1 / (1 - this.theta);
    this.zeta2theta = zeta(0, 2, this.theta, 0);
    this.half = 0.5 ** this.theta;
    this.countForZeta = items;
    this.zetan = options.zetan ?? zeta(0, items, this.theta, 0);
    this.eta = this.etaFor(items);
  }

  private etaFor(items: number): number {
    return (1 - (2 / items) ** (1 - this.theta)) / (1 - this.zeta2theta / this.zetan);
  }

  /** An item in [0, items) for the item count given at construction. */
  next(): number {
    return this.nextBelow(this.countForZeta);
  }

  /** An item in [0, items); `items` may only grow (zeta is extended, never recomputed). */
  nextBelow(items: number): number {
    if (items !== this.countForZeta) {
      assert(items > this.countForZeta, 'zipfian item count may only grow');
      this.zetan = zeta(this.countForZeta, items, this.theta, this.zetan);
      this.countForZeta = items;
      this.eta = this.etaFor(items);
    }
    const u = this.random.nextDouble();
    const uz = u * this.zetan;
    if (uz < 1) return 0;
    if (uz < 1 + this.half) return Math.min(1, items - 1);
    const v = Math.floor(items * (this.eta * u - this.eta + 1) ** this.alpha);
    return Math.min(v, items - 1);
  }
}

/** Java `Math.abs(fnvhash64(v)) % n` exactly as YCSB's Utils.fnvhash64, without BigInt. */
export function fnvHash64Mod(v: number, n: number): number {
  assert(Number.isSafeInteger(v) && v >= 0, 'fnv input must be a non-negative safe integer');
  assert(n >= 1 && n <= KEY_SPACE_MAX, 'fnv modulus out of range');
  // State as two unsigned 32-bit halves: offset basis 0xcbf29ce484222325.
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  let vLo = v >>> 0;
  let vHi = Math.floor(v / 4294967296);
  for (let i = 0; i < 8; i++) {
    const octet = vLo & 0xff;
    vLo = ((vLo >>> 8) | ((vHi & 0xff) << 24)) >>> 0;
    vHi = vHi >>> 8;
    lo = (lo ^ octet) >>> 0;
    // h * 0x100000001b3 mod 2^64 = h * 0x1b3 + (h << 40).
    const loProduct = lo * 0x1b3;
    const carry = Math.floor(loProduct / 4294967296);
    const newLo = loProduct >>> 0;
    const newHi = (Math.imul(hi, 0x1b3) + carry + (lo << 8)) >>> 0;
    hi = newHi;
    lo = newLo;
  }
  // Java's Math.abs on the signed 64-bit value (two's complement negate when negative).
  if (hi >= 0x80000000) {
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
  }
  // (hi * 2^32 + lo) mod n, exact while n * 2^16 < 2^53.
  let r = hi % n;
  r = (r * 65536) % n;
  r = (r * 65536) % n;
  return (r + lo) % n;
}

export class UniformChooser implements KeyChooser {
  constructor(
    private readonly random: Random,
    private readonly limit: () => number,
  ) {}
  next(): number {
    return this.random.nextInt(this.limit());
  }
}

/**
 * YCSB's ScrambledZipfianGenerator: zipfian over 10^10 items (so the skew does not depend on
 * the record count), hashed into [0, items). Keys above the current limit (inserted later in the
 * run, not acknowledged yet) are redrawn, as YCSB's CoreWorkload does.
 */
export class ScrambledZipfianChooser implements KeyChooser {
  private readonly zipf: ZipfianGenerator;
  constructor(
    random: Random,
    private readonly items: number,
    private readonly limit: () => number,
  ) {
    assert(items >= 1 && items <= KEY_SPACE_MAX, 'scrambled zipfian item count out of range');
    this.zipf = new ZipfianGenerator(random, SCRAMBLED_ITEM_COUNT, { zetan: SCRAMBLED_ZETAN });
  }
  next(): number {
    const limit = this.limit();
    // Bounded redraw: after a few misses fall back to a key that certainly exists.
    for (let i = 0; i < 16; i++) {
      const k = fnvHash64Mod(this.zipf.next(), this.items);
      if (k < limit) return k;
    }
    return fnvHash64Mod(this.zipf.next(), Math.max(1, limit));
  }
}

/** YCSB's SkewedLatestGenerator: the newest acknowledged key is the most popular. */
export class LatestChooser implements KeyChooser {
  private readonly zipf: ZipfianGenerator;
  constructor(
    random: Random,
    private readonly limit: () => number,
  ) {
    this.zipf = new ZipfianGenerator(random, Math.max(1, limit()));
  }
  next(): number {
    const limit = this.limit();
    return limit - 1 - this.zipf.nextBelow(limit);
  }
}

/**
 * Hands out insert key numbers and tracks which have completed, so that readers only choose
 * keys below the first one still outstanding (YCSB's AcknowledgedCounterGenerator). The window
 * of outstanding inserts is bounded.
 */
export class AcknowledgedCounter {
  private nextValue: number;
  private limitValue: number;
  private readonly window: Uint8Array;

  constructor(
    start: number,
    private readonly windowSize = 1 << 16,
  ) {
    this.nextValue = start;
    this.limitValue = start;
    this.window = new Uint8Array(windowSize);
  }

  /** Keys [0, limit) have all been inserted (acknowledged, successfully or not). */
  get limit(): number {
    return this.limitValue;
  }

  /** Outstanding inserts; the caller must not take more than `windowSize`. */
  get outstanding(): number {
    return this.nextValue - this.limitValue;
  }

  take(): number {
    assert(this.outstanding < this.windowSize, 'too many outstanding inserts');
    return this.nextValue++;
  }

  acknowledge(value: number): void {
    assert(value >= this.limitValue && value < this.nextValue, 'acknowledged an unknown insert');
    this.window[value % this.windowSize] = 1;
    while (this.limitValue < this.nextValue && this.window[this.limitValue % this.windowSize]) {
      this.window[this.limitValue % this.windowSize] = 0;
      this.limitValue++;
    }
  }
}
