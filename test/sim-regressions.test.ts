// Every bug the simulation found, pinned (etcd's test-robustness-issueNNNN practice). Each seed
// below failed before its fix (checked by reverting the fix) and must stay clean. The scripted
// scenarios that found bugs live in test/sim-scenarios.test.ts and are named there.

import { describe, expect, it } from 'vitest';
import { runSeed } from '../src/sim/cluster.js';

function clean(seed: number): void {
  const r = runSeed({ seed });
  expect(r.violations, `SIM_SEED=${seed}`).toEqual([]);
}

function cleanHarsh(seed: number): void {
  const r = runSeed({ seed, nemesisIntervalMs: [10, 80], faultPhaseMs: 6000 });
  expect(r.violations, `harsh SIM_SEED=${seed}`).toEqual([]);
}

function cleanBatched(seed: number): void {
  const r = runSeed({ seed, batchInputs: true });
  expect(r.violations, `SIM_SEED=${seed} SIM_BATCH=1`).toEqual([]);
}

describe('regressions found by the random simulation', () => {
  it('batched seeds 40, 61: a snapshot took the applied point from before the Ready applied its committed entries, so the snapshot and its LSN disagreed', () => {
    cleanBatched(40);
    cleanBatched(61);
  });

  it('batched seed 1622: a claim failed because a counted candidacy vanished while it was in flight, and the candidate never decided again on the remaining set (the election stalled for good)', () => {
    cleanBatched(1622);
  });

  it('seeds 5, 17: a candidate took the fence epoch carried by a nack as its current epoch, then asserted on its own successful claim', () => {
    clean(5);
    clean(17);
  });

  it('seeds 16, 20: a restarted replica served timeline reads from what local recovery replayed (less than it had applied before the crash, the commit hint is not forced) before catching up, so its reads went back in time', () => {
    clean(16);
    clean(20);
  });

  it('seeds 1, 4: the retransmit timer was reset by heartbeat acks, so a follower holding a divergent suffix was never repaired (no convergence after heal)', () => {
    clean(1);
    clean(4);
  });

  it('seeds 10913, 14243: a follower installing a snapshot dropped entries after the snapshot point that it had already acked (a commit durable on one log)', () => {
    clean(10913);
    clean(14243);
  });

  it('seeds 12259, 10120: a commit counted the ack of a follower that lost its disk afterwards (the durability invariant now counts a lost copy; the loss is the one tolerated failure)', () => {
    clean(12259);
    clean(10120);
  });

  it('harsh seed 50612: the nemesis counted a rebuild as over when the promotion was not durable yet, then lost a second disk (two non-voters: the cohort correctly stops)', () => {
    cleanHarsh(50612);
  });

  it('harsh seed 50692: many indeterminate writes made the linearizability search time out; never-committed info puts are now resolved as failed', () => {
    cleanHarsh(50692);
  });
});
