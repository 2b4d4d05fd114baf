// The order-independent range checksum (FORMAT.md "Checksum"): sum mod 2^64 of a 64-bit hash of
// every live cell. Replicas that applied the same records hold the same sum whatever their
// flush history, and apply updates it in O(1) from the old and new cell. Pure, no I/O.
//
// The cell hash is two independent 32-bit MurmurHash3 (x86_32) streams over the cell's fields
// with different seeds, joined into 64 bits. It detects divergence between replicas (not an
// adversary): the apply path computes it twice per written column, so it must be cheap — a
// SHA-256 per cell cost about 5% of a node's CPU under a write load.

const MASK_64 = (1n << 64n) - 1n;
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const SEED_HI = 0x9747b28c;
const SEED_LO = 0x2f1b6a53;

/** One MurmurHash3 x86_32 state: mix 32-bit words in, finalise with the byte count. */
class Murmur32 {
  h: number;
  length = 0;
  private tail = 0;
  private tailBytes = 0;

  constructor(seed: number) {
    this.h = seed | 0;
  }

  private mixWord(k: number): void {
    let k1 = Math.imul(k, C1);
    k1 = (k1 << 15) | (k1 >>> 17);
    k1 = Math.imul(k1, C2);
    let h = this.h ^ k1;
    h = (h << 13) | (h >>> 19);
    this.h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }

  word(w: number): void {
    // Fields are word-aligned: any pending tail bytes are flushed as their own word first.
    this.flushTail();
    this.mixWord(w | 0);
    this.length += 4;
  }

  bytes(b: Uint8Array): void {
    this.flushTail();
    const n = b.length;
    const whole = n & ~3;
    let i = 0;
    for (; i < whole; i += 4) {
      this.mixWord(b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
    }
    let t = 0;
    let s = 0;
    for (; i < n; i++, s += 8) t |= b[i]! << s;
    this.tail = t;
    this.tailBytes = n - whole;
    this.length += n;
  }

  private flushTail(): void {
    if (this.tailBytes === 0) return;
    let k1 = Math.imul(this.tail, C1);
    k1 = (k1 << 15) | (k1 >>> 17);
    k1 = Math.imul(k1, C2);
    this.h ^= k1;
    this.tail = 0;
    this.tailBytes = 0;
  }

  digest(): number {
    this.flushTail();
    let h = this.h ^ this.length;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
  }
}

function stream(
  seed: number,
  key: Uint8Array,
  column: Uint8Array,
  value: Uint8Array,
  version: number,
): number {
  const m = new Murmur32(seed);
  m.word(key.length);
  m.bytes(key);
  m.word(column.length);
  m.bytes(column);
  m.word(Math.floor(version / 2 ** 32));
  m.word(version >>> 0);
  m.word(value.length);
  m.bytes(value);
  return m.digest();
}

export function cellHash(
  key: Uint8Array,
  column: Uint8Array,
  value: Uint8Array,
  version: number,
): bigint {
  const hi = stream(SEED_HI, key, column, value, version);
  const lo = stream(SEED_LO, key, column, value, version);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export function checksumAdd(sum: bigint, h: bigint): bigint {
  return (sum + h) & MASK_64;
}

export function checksumSub(sum: bigint, h: bigint): bigint {
  return (sum - h) & MASK_64;
}
