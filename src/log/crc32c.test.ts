import { describe, expect, it } from 'vitest';
import { crc32c, crc32cUpdate, maskCrc, unmaskCrc } from './crc32c.js';

function bitwiseCrc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

describe('crc32c', () => {
  it('matches the standard check value for "123456789"', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('matches the RFC 3720 test vectors (32 zero bytes, 32 0xff bytes)', () => {
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
  });

  it('slice-by-8 equals the bitwise definition at every length and offset', () => {
    const data = new Uint8Array(300);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
    for (let start = 0; start < 9; start++) {
      for (let end = start; end <= data.length; end += 13) {
        expect(crc32c(data, start, end)).toBe(bitwiseCrc32c(data.subarray(start, end)));
      }
    }
  });

  it('can be computed incrementally', () => {
    const data = Buffer.from('hello, shared commit log');
    expect(crc32cUpdate(crc32c(data, 0, 5), data, 5)).toBe(crc32c(data));
  });

  it('mask round-trips and changes the value', () => {
    for (const v of [0, 1, 0xe3069283, 0xffffffff]) {
      expect(unmaskCrc(maskCrc(v))).toBe(v);
      expect(maskCrc(v)).not.toBe(v);
    }
  });
});
