// The order-independent range checksum (FORMAT.md "Checksum"): sum mod 2^64 of a 64-bit hash of
// every live cell. Replicas that applied the same records hold the same sum whatever their
// flush history, and apply updates it in O(1) from the old and new cell. Pure, no I/O.

import { createHash } from 'node:crypto';

const MASK_64 = (1n << 64n) - 1n;

export function cellHash(
  key: Uint8Array,
  column: Uint8Array,
  value: Uint8Array,
  version: number,
): bigint {
  const head = Buffer.allocUnsafe(8);
  const h = createHash('sha256');
  head.writeUInt32BE(key.length, 0);
  h.update(head.subarray(0, 4));
  h.update(key);
  head.writeUInt32BE(column.length, 0);
  h.update(head.subarray(0, 4));
  h.update(column);
  head.writeUInt32BE(Math.floor(version / 2 ** 32), 0);
  head.writeUInt32BE(version >>> 0, 4);
  h.update(head);
  h.update(value);
  return h.digest().readBigUInt64BE(0);
}

export function checksumAdd(sum: bigint, h: bigint): bigint {
  return (sum + h) & MASK_64;
}

export function checksumSub(sum: bigint, h: bigint): bigint {
  return (sum - h) & MASK_64;
}
