// The election decision (S§7, DESIGN.md §5 rule 3) as a pure function, so every node applies
// exactly the same rule to the same candidate list.
//
// Rule: among the candidates of one round, one entry per node (a node that republished after a
// restart keeps its highest last LSN and its lowest sequence number: while it is a candidate its
// log cannot change, so both entries carry the same LSN anyway); at least 2 distinct cohort
// members must be present (a majority of 3); the highest last LSN wins (epoch first, then seq:
// Raft's up-to-date rule); ties go to the LOWEST ZooKeeper sequence number, i.e. the candidate
// that published first — deterministic, and it favours a node that has been waiting longest.
// With leader balancing on, a tie goes to the cohort's preferred member first (types.ts
// `LeaderBalance`); every member must then use the same preference, or a tie could leave each
// tied candidate waiting for the other to claim.

import type { NodeId } from '../core/ids.js';
import { compareLsn } from '../core/lsn.js';
import type { Candidate } from './types.js';

export interface ElectionDecision {
  readonly winner: Candidate;
  /** The candidates whose promises the decision relies on (one per node). */
  readonly counted: readonly Candidate[];
}

export function decideElection(
  candidates: readonly Candidate[],
  members: readonly NodeId[],
  preferred: NodeId | null = null,
): ElectionDecision | null {
  const perNode = new Map<NodeId, Candidate>();
  for (const c of candidates) {
    if (!members.includes(c.nodeId)) continue;
    const seen = perNode.get(c.nodeId);
    if (seen === undefined) {
      perNode.set(c.nodeId, c);
      continue;
    }
    const byLsn = compareLsn(c.lastLsn, seen.lastLsn);
    const lastLsn = byLsn > 0 ? c.lastLsn : seen.lastLsn;
    const first = c.seq < seen.seq ? c : seen;
    perNode.set(c.nodeId, { ...first, lastLsn });
  }
  const majority = Math.floor(members.length / 2) + 1;
  if (perNode.size < majority) return null;
  const counted = [...perNode.values()].sort((a, b) => a.seq - b.seq);
  let winner = counted[0]!;
  for (const c of counted) {
    const byLsn = compareLsn(c.lastLsn, winner.lastLsn);
    if (byLsn > 0) {
      winner = c;
    } else if (byLsn === 0 && winner.nodeId !== preferred) {
      if (c.nodeId === preferred || c.seq < winner.seq) winner = c;
    }
  }
  return { winner, counted };
}
