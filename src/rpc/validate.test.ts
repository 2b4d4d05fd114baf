import { Metadata, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, SkvError } from '../core/errors.js';
import { KEY_SIZE_BYTES_MAX, VALUE_SIZE_BYTES_MAX } from '../core/limits.js';
import { SessionRequestBatch } from './generated/skv/v1/kv.js';
import { reasonOf, toGrpcError } from './status.js';
import {
  deleteToMutation,
  putToMutation,
  sessionFrameRequestCount,
  validateGet,
  validateScan,
  writeRowToMutation,
} from './validate.js';

const b = (s: string) => Buffer.from(s);

describe('public request validation', () => {
  it('rejects an empty key', () => {
    expect(() => putToMutation({ key: b(''), column: b('c'), value: b('v') })).toThrow(
      InvalidArgumentError,
    );
  });

  it('accepts a key of exactly 4 KiB and rejects one byte more', () => {
    const ok = Buffer.alloc(KEY_SIZE_BYTES_MAX, 1);
    expect(putToMutation({ key: ok, column: b('c'), value: b('v') }).key.length).toBe(
      KEY_SIZE_BYTES_MAX,
    );
    expect(() =>
      putToMutation({
        key: Buffer.alloc(KEY_SIZE_BYTES_MAX + 1, 1),
        column: b('c'),
        value: b('v'),
      }),
    ).toThrow(/limit is 4096/);
  });

  it('rejects a value over 1 MiB', () => {
    expect(() =>
      putToMutation({ key: b('k'), column: b('c'), value: Buffer.alloc(VALUE_SIZE_BYTES_MAX + 1) }),
    ).toThrow(InvalidArgumentError);
  });

  it('rejects an unknown consistency enum value', () => {
    expect(() => validateGet({ key: b('k'), column: b('c'), consistency: 7 as never })).toThrow(
      /unknown consistency/,
    );
  });

  it('carries expected_version into the mutation, 0 meaning only-if-absent', () => {
    const m = putToMutation({ key: b('k'), column: b('c'), value: b('v'), expectedVersion: 0n });
    expect(m.writes[0]?.expectedVersion).toBe(0);
    const d = deleteToMutation({ key: b('k'), column: b('c'), expectedVersion: 12n });
    expect(d.writes[0]).toMatchObject({ value: null, expectedVersion: 12 });
  });

  it('rejects a row write that names a column twice or none', () => {
    expect(() => writeRowToMutation({ key: b('k'), writes: [] })).toThrow(InvalidArgumentError);
    expect(() =>
      writeRowToMutation({
        key: b('k'),
        writes: [
          { column: b('c'), value: b('1') },
          { column: b('c'), value: b('2') },
        ],
      }),
    ).toThrow(/twice/);
  });

  it('rejects a scan whose start is after its end', () => {
    expect(() =>
      validateScan({ start: b('z'), end: b('a'), limit: 0, consistency: 0, columns: [] }, 10),
    ).toThrow(InvalidArgumentError);
    expect(
      validateScan({ start: b('a'), end: b(''), limit: 0, consistency: 0, columns: [] }, 10),
    ).toMatchObject({ end: null, limit: 10 });
  });
});

describe('error mapping', () => {
  it('maps codes to gRPC statuses with the reason in metadata', () => {
    const e = toGrpcError(new SkvError('version-mismatch', 'nope'));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(reasonOf(e.metadata)).toBe('version-mismatch');
    const n = toGrpcError(new SkvError('not-leader', 'go away'), '127.0.0.1:7001');
    expect(n.code).toBe(status.UNAVAILABLE);
    expect(n.metadata.get('skv-leader')).toEqual(['127.0.0.1:7001']);
    expect(toGrpcError(new Error('boom')).code).toBe(status.INTERNAL);
    expect(reasonOf(new Metadata())).toBeNull();
  });
});

describe('sessionFrameRequestCount', () => {
  it('counts the requests of a frame without decoding them', () => {
    const frame = SessionRequestBatch.encode({
      requests: Array.from({ length: 3 }, (_, i) => ({
        id: BigInt(i + 1),
        timeoutMs: 5,
        forwarded: false,
        op: {
          $case: 'put',
          value: { key: Buffer.from('k'), column: Buffer.alloc(0), value: Buffer.from('v') },
        },
      })),
    }).finish();
    expect(sessionFrameRequestCount(frame)).toBe(3);
    expect(sessionFrameRequestCount(new Uint8Array(0))).toBe(0);
  });

  it('counts a million empty requests in one pass', () => {
    const flood = Buffer.alloc(2_000_000);
    for (let i = 0; i < flood.length; i += 2) flood[i] = 0x0a;
    expect(sessionFrameRequestCount(flood)).toBe(1_000_000);
  });

  it('throws on bytes that are not a protobuf message (truncated, unknown wire type)', () => {
    expect(() => sessionFrameRequestCount(Buffer.from([0x0a, 0x05, 0x01]))).toThrow();
    expect(() => sessionFrameRequestCount(Buffer.from([0x0f, 0xff]))).toThrow();
  });
});
