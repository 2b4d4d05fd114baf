// Layer 1 of TESTING.md: the deterministic simulation of a 3-node cohort under faults (crashes
// with lost and torn unsynced writes, lost disks, partitions of peers and of ZooKeeper, one-way
// cuts, pauses longer than the session, drops, duplicates, session expiry), in safety mode (the
// faults phase) then liveness mode (everything healed: progress must resume and the replicas
// converge), with the invariants and checkers of src/sim/cluster.ts.
//
//   npm test                      runs SIM_SEEDS_DEFAULT seeds (1..N)
//   SIM_SEEDS=5000 npx vitest run test/sim.test.ts     a longer run
//   SIM_SEED=1234 npx vitest run test/sim.test.ts      replays one seed exactly
//   SIM_SEED_START=10000          moves the window of seeds
//   SIM_HARSH_SEEDS=1000          harsh-profile seeds (50000..), SIM_HARSH=1 with SIM_SEED replays one
//   SIM_BATCHED_SEEDS=3000        seeds (100000..) whose nodes step inputs in batches as the real
//                                 driver does; SIM_BATCH=1 with SIM_SEED replays one
//   SIM_BALANCED_SEEDS=1000       batched seeds (200000..) with leader balancing on (hand-overs to
//                                 the preferred member); SIM_BALANCE=1 with SIM_SEED replays one
// A failing seed is printed with its violations; replay it with SIM_SEED.

import { describe, expect, it } from 'vitest';
import { runSeed, type SimOptions, type SimReport } from '../src/sim/cluster.js';

const SIM_SEEDS_DEFAULT = 2000;
const single = process.env.SIM_SEED;
const count = Number(process.env.SIM_SEEDS ?? SIM_SEEDS_DEFAULT);
const start = Number(process.env.SIM_SEED_START ?? 1);
const seeds =
  single !== undefined ? [Number(single)] : Array.from({ length: count }, (_, i) => start + i);
/** Seeds per test case: small enough to report progress, large enough to amortise setup. */
const CHUNK = 40;

/** The seeds of a profile's own sweep: `first`.. (none when SIM_SEED replays one seed). */
function profileSeeds(countVariable: string, countDefault: number, first: number): number[] {
  if (single !== undefined) return [];
  const n = Number(process.env[countVariable] ?? countDefault);
  return Array.from({ length: n }, (_, i) => first + i);
}

function describeFailure(r: SimReport): string {
  return `seed ${r.seed} (replay: SIM_SEED=${r.seed} npx vitest run test/sim.test.ts)\n  ${r.violations.join('\n  ')}`;
}

type Profile = Omit<SimOptions, 'seed'>;
const HARSH: Profile = { nemesisIntervalMs: [10, 80], faultPhaseMs: 6000 };
const BATCHED: Profile = { batchInputs: true };
/** Hand over after 300 virtual ms of leading (ticks are 10 ms): many hand-overs per seed. */
const BALANCED: Profile = {
  batchInputs: true,
  balance: { handoffAfterTicks: 30, handoffTimeoutTicks: 10, abstainTicks: 20 },
};

describe('deterministic simulation of one cohort', () => {
  const totals = { seeds: 0, ops: 0, okOps: 0, timeline: 0, events: 0, handoffs: 0 };

  /** One test case per CHUNK seeds of a profile; every failing seed is printed for replay. */
  function sweep(
    seedList: readonly number[],
    profile: Profile,
    name: (first: number, last: number) => string,
    vacuousBelow: number,
  ): void {
    for (let i = 0; i < seedList.length; i += CHUNK) {
      const chunk = seedList.slice(i, i + CHUNK);
      it(name(chunk[0]!, chunk[chunk.length - 1]!), () => {
        const failures: string[] = [];
        for (const seed of chunk) {
          let r: SimReport;
          try {
            r = runSeed({ seed, ...profile });
          } catch (e) {
            failures.push(`seed ${seed} threw: ${(e as Error).stack ?? String(e)}`);
            continue;
          }
          totals.seeds += 1;
          totals.ops += r.ops;
          totals.okOps += r.okOps;
          totals.timeline += r.timelineReads;
          totals.events += r.events;
          totals.handoffs += r.paths.handoffs ?? 0;
          // Vacuity guard (TESTING.md B.3): a run where nothing succeeded proves nothing.
          if (r.okOps < vacuousBelow)
            failures.push(`seed ${seed}: only ${r.okOps} ok ops (vacuous)`);
          if (r.violations.length > 0) failures.push(describeFailure(r));
        }
        if (failures.length > 0) console.error(failures.join('\n'));
        expect(failures).toEqual([]);
      });
    }
  }

  sweep(
    seeds,
    {
      ...(process.env.SIM_HARSH === '1' ? HARSH : {}),
      ...(process.env.SIM_BATCH === '1' ? BATCHED : {}),
      ...(process.env.SIM_BALANCE === '1' ? BALANCED : {}),
    },
    (a, b) => `seeds ${a}..${b}: safety under faults, then liveness after heal`,
    50,
  );

  // A harsher nemesis (a fault every 10-80 ms for 6 s): fewer seeds, more faults per seed.
  const harsh = profileSeeds('SIM_HARSH_SEEDS', 200, 50_000);
  sweep(harsh, HARSH, (a, b) => `harsh seeds ${a}..${b} (replay: SIM_SEED=n SIM_HARSH=1)`, 0);

  // The real driver (src/server/cohort.ts) steps the inputs of one event-loop turn together and
  // drains once; these seeds run the nodes that way (a Ready then mixes writes, acks, ticks and
  // coordinator events, which unbatched seeds never do).
  const batched = profileSeeds('SIM_BATCHED_SEEDS', 1000, 100_000);
  sweep(
    batched,
    BATCHED,
    (a, b) => `batched seeds ${a}..${b} (replay: SIM_SEED=n SIM_BATCH=1)`,
    50,
  );

  // Leader balancing: a non-preferred leader refuses writes, waits for the preferred member to
  // match its log, resigns and abstains; ties go to the preferred member.
  const balanced = profileSeeds('SIM_BALANCED_SEEDS', 400, 200_000);
  sweep(
    balanced,
    BALANCED,
    (a, b) => `balanced seeds ${a}..${b} (replay: SIM_SEED=n SIM_BALANCE=1)`,
    50,
  );

  it('a seed replays exactly (same schedule, same history, same outcome)', () => {
    const a = runSeed({ seed: 4242 });
    const b = runSeed({ seed: 4242 });
    expect(b).toEqual(a);
  });

  it('summary', () => {
    console.log(
      `simulated ${totals.seeds} seeds: ${totals.ops} client ops (${totals.okOps} ok), ${totals.timeline} timeline reads, ${totals.events} events, ${totals.handoffs} leader hand-overs`,
    );
    expect(totals.seeds).toBe(seeds.length + harsh.length + batched.length + balanced.length);
    // Vacuity guard: the balanced seeds must actually hand leadership over.
    if (balanced.length > 0) expect(totals.handoffs).toBeGreaterThan(balanced.length / 2);
  });
});
