// Lost acknowledged writes, checked directly against the final state (TESTING.md §A.1 "nothing
// lost"). The linearizability checker already covers this when the history ends with reads; this
// check needs only the state read after heal + quiesce, and names the lost write.
//
// Rule for every acknowledged put P (ok, and not a failed conditional) on key k:
// - the final value of k is P's value; or
// - P was superseded: some other write W on k (put or delete, ok or info; never fail) may be
//   linearized after P, i.e. W did not return before P was called (an info W never returned).
//   When both versions are known, the final version decides instead: final.version > P.version
//   means superseded, final.version < P.version means the final state is OLDER than an acked
//   write, which is a loss whatever else happened.
// The final value must also have been written by some put that did not fail (else: phantom).
// A key absent from `finalState` reads as absent.

import type { HistoryOp } from './history.js';

export interface FinalCell {
  value: string;
  version?: number;
}

export interface LostAck {
  opId: number;
  key: string;
  value: string;
  version?: number;
  final: FinalCell | null;
}

export interface LostAcksResult {
  ok: boolean;
  lost: LostAck[];
  /** Final values that no non-failed put wrote. */
  phantoms: { key: string; value: string }[];
}

function appliedOk(op: HistoryOp): boolean {
  return (
    op.outcome === 'ok' && !(op.expectedVersion !== undefined && op.result?.succeeded === false)
  );
}

export function checkNoLostAcks(
  history: readonly HistoryOp[],
  finalState: ReadonlyMap<string, FinalCell | null>,
): LostAcksResult {
  const writesByKey = new Map<string, HistoryOp[]>();
  for (const op of history) {
    if (op.f === 'get' || op.outcome === 'fail') continue;
    if (op.outcome === 'ok' && !appliedOk(op)) continue; // a failed conditional wrote nothing
    const list = writesByKey.get(op.key) ?? [];
    list.push(op);
    writesByKey.set(op.key, list);
  }

  const lost: LostAck[] = [];
  for (const [key, writes] of writesByKey) {
    const final = finalState.get(key) ?? null;
    for (const p of writes) {
      if (p.f !== 'put' || p.outcome !== 'ok') continue;
      if (final !== null && final.value === p.value) continue;
      const pVersion = p.result?.version;
      let superseded: boolean;
      if (final !== null && final.version !== undefined && pVersion !== undefined) {
        superseded = final.version > pVersion;
      } else {
        superseded = writes.some(
          (w) =>
            w !== p &&
            (final === null ? w.f === 'delete' : w.f === 'put') &&
            (w.outcome === 'info' || w.ret >= p.call),
        );
      }
      if (!superseded) {
        const entry: LostAck = { opId: p.id, key, value: p.value ?? '', final };
        if (pVersion !== undefined) entry.version = pVersion;
        lost.push(entry);
      }
    }
  }

  const phantoms: { key: string; value: string }[] = [];
  for (const [key, final] of finalState) {
    if (final === null) continue;
    const writes = writesByKey.get(key) ?? [];
    if (!writes.some((w) => w.f === 'put' && w.value === final.value)) {
      phantoms.push({ key, value: final.value });
    }
  }
  return { ok: lost.length === 0 && phantoms.length === 0, lost, phantoms };
}
