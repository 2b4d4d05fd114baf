// Input validation for the public API (DESIGN.md §2): bad input gets INVALID_ARGUMENT and changes
// nothing. Every request is checked in full before anything is proposed.

import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { InvalidArgumentError } from '../core/errors.js';
import {
  BATCH_ITEMS_MAX,
  COLUMN_SIZE_BYTES_MAX,
  KEY_SIZE_BYTES_MAX,
  ROW_COLUMNS_MAX,
  SCAN_ROWS_MAX,
  VALUE_SIZE_BYTES_MAX,
} from '../core/limits.js';
import type { ColumnWrite, RowMutation } from '../core/mutation.js';
import {
  Consistency,
  type DeleteRequest,
  type GetRequest,
  type PutRequest,
  type ReadRowRequest,
  type ScanRequest,
  type WriteRowRequest,
} from './generated/skv/v1/kv.js';

/** Versions are seqs: below 2^53 so they stay exact as numbers. */
const VERSION_MAX = BigInt(Number.MAX_SAFE_INTEGER);

export function validateKey(key: Uint8Array | undefined, what = 'key'): Uint8Array {
  if (key === undefined || key.length === 0) throw new InvalidArgumentError(`${what} is empty`);
  if (key.length > KEY_SIZE_BYTES_MAX) {
    throw new InvalidArgumentError(
      `${what} is ${key.length} bytes; the limit is ${KEY_SIZE_BYTES_MAX}`,
    );
  }
  return key;
}

export function validateColumn(column: Uint8Array | undefined): Uint8Array {
  const c = column ?? new Uint8Array(0);
  if (c.length > COLUMN_SIZE_BYTES_MAX) {
    throw new InvalidArgumentError(
      `column is ${c.length} bytes; the limit is ${COLUMN_SIZE_BYTES_MAX}`,
    );
  }
  return c;
}

export function validateValue(value: Uint8Array | undefined): Uint8Array {
  const v = value ?? new Uint8Array(0);
  if (v.length > VALUE_SIZE_BYTES_MAX) {
    throw new InvalidArgumentError(
      `value is ${v.length} bytes; the limit is ${VALUE_SIZE_BYTES_MAX}`,
    );
  }
  return v;
}

export function validateVersion(version: bigint | undefined): number | undefined {
  if (version === undefined) return undefined;
  if (version < 0n || version > VERSION_MAX) {
    throw new InvalidArgumentError(`expected_version ${version} is out of range`);
  }
  return Number(version);
}

export function validateConsistency(c: Consistency | number | undefined): Consistency {
  const value = c ?? Consistency.STRONG;
  if (value !== Consistency.STRONG && value !== Consistency.TIMELINE) {
    throw new InvalidArgumentError(`unknown consistency ${String(value)}`);
  }
  return value;
}

export interface ValidGet {
  readonly key: Uint8Array;
  readonly column: Uint8Array;
  readonly consistency: Consistency;
}

export function validateGet(req: GetRequest): ValidGet {
  return {
    key: validateKey(req.key),
    column: validateColumn(req.column),
    consistency: validateConsistency(req.consistency),
  };
}

export function putToMutation(req: PutRequest): RowMutation {
  const expectedVersion = validateVersion(req.expectedVersion);
  const write: ColumnWrite = {
    column: validateColumn(req.column),
    value: validateValue(req.value),
    ...(expectedVersion === undefined ? {} : { expectedVersion }),
  };
  return { key: validateKey(req.key), writes: [write] };
}

export function deleteToMutation(req: DeleteRequest): RowMutation {
  const expectedVersion = validateVersion(req.expectedVersion);
  const write: ColumnWrite = {
    column: validateColumn(req.column),
    value: null,
    ...(expectedVersion === undefined ? {} : { expectedVersion }),
  };
  return { key: validateKey(req.key), writes: [write] };
}

export function writeRowToMutation(req: WriteRowRequest): RowMutation {
  const key = validateKey(req.key);
  if (req.writes.length === 0)
    throw new InvalidArgumentError('a row write needs at least one column');
  if (req.writes.length > ROW_COLUMNS_MAX) {
    throw new InvalidArgumentError(
      `a row write touches ${req.writes.length} columns; the limit is ${ROW_COLUMNS_MAX}`,
    );
  }
  const seen = new Set<string>();
  const writes = req.writes.map((w): ColumnWrite => {
    const column = validateColumn(w.column);
    const id = Buffer.from(column).toString('latin1');
    if (seen.has(id)) throw new InvalidArgumentError('a row write names a column twice');
    seen.add(id);
    const expectedVersion = validateVersion(w.expectedVersion);
    const value = w.value === undefined ? null : validateValue(w.value);
    return expectedVersion === undefined ? { column, value } : { column, value, expectedVersion };
  });
  let bytes = key.length;
  for (const w of writes) bytes += w.column.length + (w.value?.length ?? 0);
  if (bytes > 16 * VALUE_SIZE_BYTES_MAX) {
    throw new InvalidArgumentError(`a row write of ${bytes} bytes is too large`);
  }
  return { key, writes };
}

export interface ValidReadRow {
  readonly key: Uint8Array;
  readonly columns: readonly Uint8Array[];
  readonly consistency: Consistency;
}

export function validateReadRow(req: ReadRowRequest): ValidReadRow {
  if (req.columns.length > ROW_COLUMNS_MAX) {
    throw new InvalidArgumentError(`a row read names over ${ROW_COLUMNS_MAX} columns`);
  }
  return {
    key: validateKey(req.key),
    columns: req.columns.map(validateColumn),
    consistency: validateConsistency(req.consistency),
  };
}

export interface ValidScan {
  readonly start: Uint8Array;
  /** null: to the end of the key space. */
  readonly end: Uint8Array | null;
  readonly limit: number;
  readonly consistency: Consistency;
  readonly columns: readonly Uint8Array[];
}

export function validateScan(req: ScanRequest, defaultLimit: number): ValidScan {
  const start = req.start ?? new Uint8Array(0);
  if (start.length > KEY_SIZE_BYTES_MAX) throw new InvalidArgumentError('scan start is too long');
  const end =
    req.end === undefined || req.end.length === 0 ? null : validateKey(req.end, 'scan end');
  if (end !== null && Buffer.compare(Buffer.from(start), Buffer.from(end)) > 0) {
    throw new InvalidArgumentError('scan start is after scan end');
  }
  if (req.limit > SCAN_ROWS_MAX) {
    throw new InvalidArgumentError(`scan limit ${req.limit} is over ${SCAN_ROWS_MAX}`);
  }
  return {
    start,
    end,
    limit: req.limit === 0 ? defaultLimit : req.limit,
    consistency: validateConsistency(req.consistency),
    columns: req.columns.map(validateColumn),
  };
}

export function validateBatchSize(n: number): void {
  if (n > BATCH_ITEMS_MAX) {
    throw new InvalidArgumentError(`a batch of ${n} items is over the limit of ${BATCH_ITEMS_MAX}`);
  }
}

/**
 * The number of requests (field 1, length-delimited) in an encoded SessionRequestBatch, read
 * without decoding them: a walk over the top-level fields, no allocation per request, so a
 * frame of a million empty requests is refused in milliseconds (issue #8). Throws on bytes that
 * are not a protobuf message.
 */
export function sessionFrameRequestCount(frame: Uint8Array): number {
  const reader = new BinaryReader(frame);
  let count = 0;
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 1 && wireType === WireType.LengthDelimited) count++;
    reader.skip(wireType, fieldNo);
  }
  return count;
}
