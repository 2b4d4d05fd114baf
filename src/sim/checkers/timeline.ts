// Timeline (follower) read checker (TESTING.md §B.3 "Only strong reads…", workload W3; DESIGN.md
// §1: timeline reads may be stale, never uncommitted). Timeline reads are not linearizable, so
// they get their own, weaker checks:
// 1. every value read was committed: it appears, with the same version when the read reports
//    one, among the committed writes (the final committed log, after heal + quiesce);
// 2. per replica and key, versions never go back: if read R1 on replica r returned before read
//    R2 on r was called, R2 must not see an older version than R1. A not-found read after a
//    found read of version v is legal only if a committed delete of that key has a version > v.
//
// `committedWrites` lists puts (with value) and deletes (no value) with their versions (seqs).

import { assert } from '../../core/assert.js';

export interface TimelineRead {
  id: number;
  replica: string;
  key: string;
  found: boolean;
  value?: string;
  version?: number;
  call: number;
  ret: number;
}

export interface CommittedWrite {
  key: string;
  /** undefined for a delete. */
  value?: string;
  version: number;
}

export interface TimelineResult {
  ok: boolean;
  /** Reads of a value (or value + version) that is not in the committed log. */
  notCommitted: TimelineRead[];
  /** Reads that saw an older state than an earlier read on the same replica. */
  wentBack: { read: TimelineRead; after: TimelineRead }[];
}

export function checkTimelineReads(
  reads: readonly TimelineRead[],
  committedWrites: readonly CommittedWrite[],
): TimelineResult {
  const committed = new Map<string, number[]>(); // key \0 value -> versions
  const maxDeleteVersion = new Map<string, number>();
  for (const w of committedWrites) {
    if (w.value === undefined) {
      maxDeleteVersion.set(w.key, Math.max(maxDeleteVersion.get(w.key) ?? 0, w.version));
      continue;
    }
    const k = `${w.key}\u0000${w.value}`;
    const list = committed.get(k) ?? [];
    list.push(w.version);
    committed.set(k, list);
  }

  const notCommitted: TimelineRead[] = [];
  for (const r of reads) {
    assert(r.ret >= r.call, `timeline: read ${r.id} returns before its call`);
    if (!r.found) continue;
    assert(r.value !== undefined, `timeline: found read ${r.id} has no value`);
    const versions = committed.get(`${r.key}\u0000${r.value}`);
    if (versions === undefined || (r.version !== undefined && !versions.includes(r.version))) {
      notCommitted.push(r);
    }
  }

  // Per (replica, key): sweep reads by call time; `best` is the read with the highest version
  // among those that returned before the current call.
  const groups = new Map<string, TimelineRead[]>();
  for (const r of reads) {
    const k = `${r.replica}\u0000${r.key}`;
    const list = groups.get(k) ?? [];
    list.push(r);
    groups.set(k, list);
  }
  const wentBack: { read: TimelineRead; after: TimelineRead }[] = [];
  for (const group of groups.values()) {
    const byCall = [...group].sort((a, b) => a.call - b.call);
    const byRet = [...group].sort((a, b) => a.ret - b.ret);
    let j = 0;
    let best: TimelineRead | null = null;
    for (const r of byCall) {
      while (j < byRet.length && byRet[j]!.ret < r.call) {
        const done = byRet[j]!;
        if (done.found && done.version !== undefined) {
          if (best === null || done.version > best.version!) best = done;
        }
        j++;
      }
      if (best === null) continue;
      const bestVersion = best.version!;
      if (r.found) {
        if (r.version !== undefined && r.version < bestVersion)
          wentBack.push({ read: r, after: best });
      } else if ((maxDeleteVersion.get(r.key) ?? 0) <= bestVersion) {
        wentBack.push({ read: r, after: best });
      }
    }
  }
  return { ok: notCommitted.length === 0 && wentBack.length === 0, notCommitted, wentBack };
}
