// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slice-by-8, plus leveldb's mask.
// Owns: the checksum of every commit-log frame and payload (FORMAT.md). Pure, no I/O.
// Invariant: crc32c('123456789') === 0xE3069283 (the standard check value; see the test).

const POLY = 0x82f63b78;

// TABLE[k * 256 + b]: the CRC of byte b followed by k zero bytes (slice-by-8).
const TABLE = buildTable();

function buildTable(): Uint32Array {
  const t = new Uint32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    let c = t[b]!;
    for (let k = 1; k < 8; k++) {
      c = (c >>> 8) ^ t[c & 0xff]!;
      t[k * 256 + b] = c >>> 0;
    }
  }
  return t;
}

/** Extends `crc` (0 to start) over `data[start, end)`. */
export function crc32cUpdate(
  crc: number,
  data: Uint8Array,
  start = 0,
  end: number = data.length,
): number {
  const t = TABLE;
  let c = ~crc >>> 0;
  let i = start;
  // Slice-by-8: eight table look-ups per 8 input bytes instead of one per byte.
  const end8 = start + ((end - start) & ~7);
  while (i < end8) {
    const lo =
      (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c =
      t[7 * 256 + (lo & 0xff)]! ^
      t[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      t[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      t[4 * 256 + (lo >>> 24)]! ^
      t[3 * 256 + data[i + 4]!]! ^
      t[2 * 256 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
    i += 8;
  }
  while (i < end) {
    c = (c >>> 8) ^ t[(c ^ data[i]!) & 0xff]!;
    i++;
  }
  return ~c >>> 0;
}

export function crc32c(data: Uint8Array, start = 0, end: number = data.length): number {
  return crc32cUpdate(0, data, start, end);
}

const MASK_DELTA = 0xa282ead8;

/** leveldb's mask: a CRC stored inside checksummed data must not be the raw CRC. */
export function maskCrc(crc: number): number {
  return (((crc >>> 15) | (crc << 17)) + MASK_DELTA) >>> 0;
}

export function unmaskCrc(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
