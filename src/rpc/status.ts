// The one table that maps skv error codes to gRPC status codes (DESIGN.md §2). The stable reason
// travels in the `skv-reason` metadata key; the leader's address, when known, in `skv-leader`.

import { Metadata, status } from '@grpc/grpc-js';
import { SkvError, type SkvErrorCode } from '../core/errors.js';

export const REASON_METADATA_KEY = 'skv-reason';
export const LEADER_METADATA_KEY = 'skv-leader';

const STATUS_BY_CODE: Record<SkvErrorCode, status> = {
  'invalid-argument': status.INVALID_ARGUMENT,
  'version-mismatch': status.FAILED_PRECONDITION,
  'not-leader': status.UNAVAILABLE,
  unavailable: status.UNAVAILABLE,
  'deadline-exceeded': status.DEADLINE_EXCEEDED,
  corruption: status.DATA_LOSS,
  'io-error': status.INTERNAL,
  closed: status.UNAVAILABLE,
  overloaded: status.RESOURCE_EXHAUSTED,
  'not-found': status.NOT_FOUND,
  'already-exists': status.ALREADY_EXISTS,
  unauthenticated: status.UNAUTHENTICATED,
  internal: status.INTERNAL,
};

const CODE_BY_REASON = new Map<string, SkvErrorCode>(
  Object.keys(STATUS_BY_CODE).map((code) => [code, code as SkvErrorCode]),
);

export function grpcStatusOf(code: SkvErrorCode): status {
  return STATUS_BY_CODE[code];
}

export interface GrpcErrorShape {
  code: status;
  details: string;
  metadata: Metadata;
}

/** Turns any thrown value into the gRPC error a handler reports. */
export function toGrpcError(err: unknown, leaderAddress?: string): GrpcErrorShape {
  const metadata = new Metadata();
  if (err instanceof SkvError) {
    metadata.set(REASON_METADATA_KEY, err.code);
    if (leaderAddress !== undefined && leaderAddress !== '') {
      metadata.set(LEADER_METADATA_KEY, leaderAddress);
    }
    return { code: grpcStatusOf(err.code), details: err.message, metadata };
  }
  metadata.set(REASON_METADATA_KEY, 'internal');
  const message = err instanceof Error ? err.message : String(err);
  return { code: status.INTERNAL, details: message, metadata };
}

/** The skv reason carried by a gRPC error's metadata, or null. */
export function reasonOf(metadata: Metadata | undefined): SkvErrorCode | null {
  const value = metadata?.get(REASON_METADATA_KEY)[0];
  if (typeof value !== 'string') return null;
  return CODE_BY_REASON.get(value) ?? null;
}
