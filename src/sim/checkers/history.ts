// The client-operation history that every checker reads (TESTING.md §A.1, §B.3).
//
// One record per client operation: its invocation time, its completion time and one of three
// outcomes — `ok` (it happened, with this result), `fail` (it definitely did not happen) and
// `info` (unknown: timeout, lost connection, crash; it may take effect at any time after `call`).
// The type is deliberately independent of the simulator: the deterministic simulation records
// virtual milliseconds, the real-process fault suite records monotonic time from
// `process.hrtime` (µs or ms relative to the run's start). All timestamps of one history must
// come from ONE clock; a checker compares them only with each other.
//
// Invariants a well-formed history keeps (checked by `validateHistory`):
// - ids are unique; `call <= ret` for every op that is not `info`;
// - `put` carries the value it wrote, and written values are unique per key (so a read
//   identifies its write and indeterminate writes can be resolved);
// - an `ok` op carries the result its kind defines (below).

import { assert } from '../../core/assert.js';

export type Outcome = 'ok' | 'fail' | 'info';

export type HistoryOpKind = 'get' | 'put' | 'delete';

export interface HistoryResult {
  /** get / delete: whether the column existed. */
  found?: boolean;
  /** get: the value read. */
  value?: string;
  /**
   * get: the version read; put: the version the write was given; delete: the version the column
   * had BEFORE the delete (0 when it was absent) — DeleteResponse.version, see linearizability.ts.
   */
  version?: number;
  /** conditional put/delete: false when the expected version did not match (nothing written). */
  succeeded?: boolean;
}

export interface HistoryOp {
  id: number;
  /** The logical client. After an `info` op a client continues under a NEW process id. */
  process: number;
  /** Row key + column: one register per column. */
  key: string;
  f: HistoryOpKind;
  /** put: the unique value written. */
  value?: string;
  /** Set for a conditional put/delete (0 = "only if absent"). */
  expectedVersion?: number;
  /** Invocation time, taken before the request is sent. */
  call: number;
  /** Completion time, taken after the response is decoded; ignored when outcome is 'info'. */
  ret: number;
  outcome: Outcome;
  /**
   * ok results: get -> { found, value?, version }; put -> { version } or { succeeded: false }
   * when a conditional failed; delete -> { found, version } or { succeeded: false }.
   */
  result?: HistoryResult;
}

/** True when the op may change state (put or delete). */
export function isWrite(op: HistoryOp): boolean {
  return op.f === 'put' || op.f === 'delete';
}

/** True when a conditional op reported that its expected version did not match. */
export function conditionFailed(op: HistoryOp): boolean {
  return op.expectedVersion !== undefined && op.result?.succeeded === false;
}

/** Groups ops by key, keeping history order inside each key. */
export function groupByKey(ops: readonly HistoryOp[]): Map<string, HistoryOp[]> {
  const byKey = new Map<string, HistoryOp[]>();
  for (const op of ops) {
    let list = byKey.get(op.key);
    if (list === undefined) {
      list = [];
      byKey.set(op.key, list);
    }
    list.push(op);
  }
  return byKey;
}

/**
 * Throws (AssertionError) on a history the checkers cannot judge: duplicate ids, a return before
 * its call, a put without a value, two puts of the same value on one key, an ok op without the
 * result its kind needs. A malformed history is a harness bug, never a verdict on the system.
 */
export function validateHistory(ops: readonly HistoryOp[]): void {
  const ids = new Set<number>();
  const written = new Set<string>();
  for (const op of ops) {
    assert(!ids.has(op.id), `history: duplicate op id ${op.id}`);
    ids.add(op.id);
    assert(Number.isFinite(op.call), `history: op ${op.id} has no finite call time`);
    if (op.outcome !== 'info') {
      assert(
        Number.isFinite(op.ret) && op.ret >= op.call,
        `history: op ${op.id} returns (${op.ret}) before its call (${op.call})`,
      );
    }
    if (op.f === 'put') {
      assert(op.value !== undefined, `history: put ${op.id} has no value`);
      const k = `${op.key}\u0000${op.value}`;
      assert(!written.has(k), `history: value ${JSON.stringify(op.value)} written twice`);
      written.add(k);
    }
    if (op.outcome === 'ok' && !conditionFailed(op)) {
      const r = op.result;
      switch (op.f) {
        case 'get':
          assert(r?.found !== undefined, `history: ok get ${op.id} has no result.found`);
          if (r.found) assert(r.value !== undefined, `history: ok get ${op.id} found no value`);
          break;
        case 'put':
          break; // a version is expected but an ok put without one is still checkable
        case 'delete':
          break;
      }
    }
  }
}

/**
 * A small recorder for harnesses: ids in invocation order, timestamps from the caller's clock.
 * Bounded: it refuses more than `opsMax` ops so a runaway workload fails loudly, not by OOM.
 */
export class HistoryRecorder {
  private readonly ops: HistoryOp[] = [];
  private readonly open = new Map<number, HistoryOp>();

  constructor(private readonly opsMax = 10_000_000) {}

  invoke(
    op: Pick<HistoryOp, 'process' | 'key' | 'f' | 'value' | 'expectedVersion'>,
    callTime: number,
  ): number {
    assert(this.ops.length < this.opsMax, `history: more than ${this.opsMax} ops`);
    const id = this.ops.length;
    const rec: HistoryOp = { id, ...op, call: callTime, ret: callTime, outcome: 'info' };
    if (rec.value === undefined) delete rec.value;
    if (rec.expectedVersion === undefined) delete rec.expectedVersion;
    this.ops.push(rec);
    this.open.set(id, rec);
    return id;
  }

  /** Completes an op. `info` keeps the op open-ended: its return time is ignored. */
  complete(id: number, outcome: Outcome, retTime: number, result?: HistoryResult): void {
    const rec = this.open.get(id);
    assert(rec !== undefined, `history: op ${id} is not open`);
    this.open.delete(id);
    rec.outcome = outcome;
    rec.ret = retTime;
    if (result !== undefined) rec.result = result;
  }

  /** One op (a copy), without copying the whole history. */
  op(id: number): HistoryOp {
    const rec = this.ops[id];
    assert(rec !== undefined, `history: no op ${id}`);
    return { ...rec };
  }

  get size(): number {
    return this.ops.length;
  }

  /** Every op so far; ops still open are reported as `info` (their outcome is unknown). */
  history(): HistoryOp[] {
    return this.ops.map((op) => ({ ...op }));
  }
}
