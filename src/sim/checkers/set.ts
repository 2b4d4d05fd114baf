// Set / durability checker (TESTING.md §A.1 "Set checker", workload W2): unique elements are
// added; after the final heal and quiesce one read returns what is present. Every acknowledged
// add must be present (else it was lost), nothing may be present that was never attempted
// (phantom), and nothing whose add definitely failed may be present. Adds with an unknown
// outcome (`info`: attempted, neither acked nor failed) may land either way.

import { assert } from '../../core/assert.js';

export interface SetCheckInput {
  attempted: Iterable<string>;
  /** Adds that ended `ok`. */
  acked: Iterable<string>;
  /** Adds that ended `fail` (definitely not applied). */
  failed: Iterable<string>;
  /** The final read. */
  finalRead: Iterable<string>;
}

export interface SetCheckResult {
  ok: boolean;
  /** acked − final. */
  lost: string[];
  /** final − attempted. */
  phantom: string[];
  /** failed ∩ final: a "definite failure" that took effect. */
  failedButPresent: string[];
  /** Elements the final read returned more than once. */
  duplicated: string[];
  /** Unknown-outcome adds found present (allowed; reported for the record). */
  infoPresent: number;
  /** Unknown-outcome adds found absent (allowed). */
  infoAbsent: number;
}

export function checkSet(input: SetCheckInput): SetCheckResult {
  const attempted = new Set(input.attempted);
  const acked = new Set(input.acked);
  const failed = new Set(input.failed);
  for (const a of acked) {
    assert(attempted.has(a), `set: acked ${JSON.stringify(a)} was never attempted`);
    assert(!failed.has(a), `set: ${JSON.stringify(a)} is both acked and failed`);
  }
  for (const f of failed) {
    assert(attempted.has(f), `set: failed ${JSON.stringify(f)} was never attempted`);
  }
  const final = new Set<string>();
  const duplicated: string[] = [];
  for (const e of input.finalRead) {
    if (final.has(e)) duplicated.push(e);
    final.add(e);
  }
  const lost = [...acked].filter((e) => !final.has(e));
  const phantom = [...final].filter((e) => !attempted.has(e));
  const failedButPresent = [...failed].filter((e) => final.has(e));
  let infoPresent = 0;
  let infoAbsent = 0;
  for (const e of attempted) {
    if (acked.has(e) || failed.has(e)) continue;
    if (final.has(e)) infoPresent++;
    else infoAbsent++;
  }
  return {
    ok:
      lost.length === 0 &&
      phantom.length === 0 &&
      failedButPresent.length === 0 &&
      duplicated.length === 0,
    lost,
    phantom,
    failedButPresent,
    duplicated,
    infoPresent,
    infoAbsent,
  };
}
