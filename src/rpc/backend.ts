// The port the public gRPC edge calls: what a node (or a test double) must provide to serve the
// KV API. Requests arrive validated; the backend routes them (local leader, forward, timeline
// replica) and reports expected failures as SkvError (a NotLeaderError carries the leader's
// address so the edge can put it in `skv-leader`).

import { SkvError } from '../core/errors.js';
import type { ApplyResult, RowMutation } from '../core/mutation.js';
import type { ValidGet, ValidReadRow, ValidScan } from './validate.js';

export interface CallContext {
  /** Absolute deadline on `performance.now()`'s clock. */
  readonly deadlineMs: number;
  /** The request was forwarded by another node: answer it here, never forward it again. */
  readonly forwarded?: boolean;
}

export interface CellValue {
  readonly column: Uint8Array;
  readonly value: Uint8Array;
  readonly version: number;
}

export interface GetResult {
  readonly found: boolean;
  readonly value: Uint8Array;
  readonly version: number;
}

export interface RowResult {
  readonly key: Uint8Array;
  readonly cells: readonly CellValue[];
}

export interface RangeMapView {
  readonly version: number;
  readonly ranges: readonly {
    readonly rangeId: number;
    readonly start: Uint8Array;
    /** null: the end of the key space. */
    readonly end: Uint8Array | null;
    readonly members: readonly string[];
    readonly leader: string | null;
    readonly epoch: number;
  }[];
  readonly nodes: readonly {
    readonly id: string;
    readonly address: string;
    readonly live: boolean;
  }[];
}

/** One node's own view of itself (the NodeStatus RPC, the status page). */
export interface NodeStatusView {
  readonly nodeId: string;
  readonly address: string;
  readonly sessionState: string;
  readonly uptimeMs: number;
  readonly cohorts: readonly {
    readonly rangeId: number;
    readonly role: 'follower' | 'candidate' | 'leader';
    readonly voter: boolean;
    readonly epoch: number;
    readonly lastLsn: { readonly epoch: number; readonly seq: number };
    readonly durableSeq: number;
    readonly committedSeq: number;
    /** Applied to the store (what a timeline read at this replica sees). */
    readonly appliedSeq: number;
    readonly memtableBytes: number;
    /** Leader only: entries the furthest follower lags behind (0 elsewhere). */
    readonly followerLagEntries: number;
  }[];
}

export interface WriteOptions {
  /** Whether the answer needs each written column's previous version (default true). */
  readonly previousVersions?: boolean;
}

export interface KvBackend {
  get(req: ValidGet, ctx: CallContext): Promise<GetResult>;
  readRow(req: ValidReadRow, ctx: CallContext): Promise<readonly CellValue[]>;
  /**
   * Resolves once the mutation is committed and applied (ok or version-mismatch). With
   * `previousVersions` false the result's previousVersions may be wrong (reported as 0 for
   * cells the store did not read): the caller's answer does not carry them.
   */
  write(mutation: RowMutation, ctx: CallContext, options?: WriteOptions): Promise<ApplyResult>;
  /** Rows in key order over [start, end), crossing ranges, at most `limit` rows in all. */
  scan(req: ValidScan, ctx: CallContext): AsyncIterable<readonly RowResult[]>;
  rangeMap(): Promise<RangeMapView>;
  /** Optional: a backend without it answers NodeStatus with an internal error. */
  nodeStatus?(): Promise<NodeStatusView>;
}

export class NotLeaderError extends SkvError {
  override readonly name = 'NotLeaderError';
  constructor(
    message: string,
    readonly leaderAddress: string | null,
  ) {
    super('not-leader', message);
  }
}
