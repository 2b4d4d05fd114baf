// Replica convergence checker (TESTING.md check C3; FoundationDB's consistency check): after heal
// and quiesce, every replica of a range must hold identical data, compared by a digest of its
// contents. The digest's definition belongs to storage; here it is an opaque string.

export interface ConvergenceResult {
  ok: boolean;
  /** Replicas grouped by digest, largest group first. */
  groups: { digest: string; replicas: string[] }[];
  /** Replicas outside the largest group (all of them when there is a tie for largest). */
  divergent: string[];
  replicasCount: number;
}

/** `digests`: replica id -> digest, for ONE range. Fewer than two replicas proves nothing. */
export function checkReplicasEqual(
  digests: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
): ConvergenceResult {
  const entries = digests instanceof Map ? [...digests.entries()] : Object.entries(digests);
  const byDigest = new Map<string, string[]>();
  for (const [replica, digest] of entries) {
    const list = byDigest.get(digest) ?? [];
    list.push(replica);
    byDigest.set(digest, list);
  }
  const groups = [...byDigest.entries()]
    .map(([digest, replicas]) => ({ digest, replicas: replicas.sort() }))
    .sort((a, b) => b.replicas.length - a.replicas.length || (a.digest < b.digest ? -1 : 1));
  const tie = groups.length > 1 && groups[0]!.replicas.length === groups[1]!.replicas.length;
  const divergent = groups.slice(tie ? 0 : 1).flatMap((g) => g.replicas);
  return {
    ok: entries.length >= 2 && groups.length === 1,
    groups,
    divergent: groups.length === 1 ? [] : divergent.sort(),
    replicasCount: entries.length,
  };
}

/** Every range at once: rangeId -> (replica -> digest). Lists the ranges that differ. */
export function checkAllRangesConverged(
  byRange: ReadonlyMap<number, ReadonlyMap<string, string>>,
): { ok: boolean; divergentRanges: { rangeId: number; result: ConvergenceResult }[] } {
  const divergentRanges: { rangeId: number; result: ConvergenceResult }[] = [];
  for (const [rangeId, digests] of byRange) {
    const result = checkReplicasEqual(digests);
    if (!result.ok) divergentRanges.push({ rangeId, result });
  }
  return { ok: divergentRanges.length === 0, divergentRanges };
}
