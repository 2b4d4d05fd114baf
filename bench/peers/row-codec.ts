// How a benchmark row is stored in a peer that has no columns (etcd: one key per row; ZooKeeper:
// one znode per row): the row's columns encoded in one value, so that writing a whole row is one
// atomic put / setData, and reading it is one get / getData, as in skv (one request per row).
//
// Grammar (all integers big-endian):
//   row  := cell*
//   cell := nameLength:u8 name:utf8[nameLength] valueLength:u32 value:byte[valueLength]
// Cells appear in the order written; a name appears at most once. With the row shape
// (one column `field0`, a 100-byte value) a row is 1 + 6 + 4 + 100 = 111 bytes.

import { SkvError } from '../../src/core/errors.js';
import type { Field } from '../target.js';

const NAME_BYTES_MAX = 255;

export function encodeRow(cells: Iterable<readonly [string, Uint8Array]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of cells) {
    const nameBytes = Buffer.from(name, 'utf8');
    if (nameBytes.length > NAME_BYTES_MAX) {
      throw new SkvError('invalid-argument', `column name longer than ${NAME_BYTES_MAX} bytes`);
    }
    const head = Buffer.allocUnsafe(1 + nameBytes.length + 4);
    head.writeUInt8(nameBytes.length, 0);
    nameBytes.copy(head, 1);
    head.writeUInt32BE(value.byteLength, 1 + nameBytes.length);
    parts.push(head, Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  }
  return Buffer.concat(parts);
}

export function encodeFields(fields: readonly Field[]): Buffer {
  return encodeRow(fields.map((f) => [f.column, f.value] as const));
}

/** The row's cells by column name; throws `corruption` on a malformed row. */
export function decodeRow(row: Uint8Array): Map<string, Buffer> {
  const buf = Buffer.from(row.buffer, row.byteOffset, row.byteLength);
  const cells = new Map<string, Buffer>();
  let at = 0;
  while (at < buf.length) {
    if (at + 1 > buf.length) throw malformed(at);
    const nameLength = buf.readUInt8(at);
    const valueAt = at + 1 + nameLength + 4;
    if (valueAt > buf.length) throw malformed(at);
    const name = buf.toString('utf8', at + 1, at + 1 + nameLength);
    const valueLength = buf.readUInt32BE(at + 1 + nameLength);
    if (valueAt + valueLength > buf.length) throw malformed(at);
    cells.set(name, buf.subarray(valueAt, valueAt + valueLength));
    at = valueAt + valueLength;
  }
  return cells;
}

/** The row after overwriting `fields` (the other columns kept). */
export function mergeRow(existing: Uint8Array | null, fields: readonly Field[]): Buffer {
  const cells: Map<string, Uint8Array> =
    existing === null ? new Map<string, Uint8Array>() : decodeRow(existing);
  for (const f of fields) cells.set(f.column, f.value);
  return encodeRow(cells);
}

/** Whether the write replaces every column the row can have (no read needed to merge). */
export function coversRow(fields: readonly Field[], columnsPerRow: number): boolean {
  return fields.length >= columnsPerRow;
}

function malformed(at: number): SkvError {
  return new SkvError('corruption', `malformed benchmark row at byte ${at}`);
}
