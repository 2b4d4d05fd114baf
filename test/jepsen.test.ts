// The Jepsen-style fault suite against real skv clusters (issue #5; TESTING.md Part B and layer 2
// of "Recommended test design"). Each schedule runs in its own private network namespace
// (test/jepsen/launch.ts → runner.ts): ZooKeeper + 3 `skv server` processes (the BUILT
// bin/skv.js: `npm run build` after changing src/), concurrent clients, a seeded fault schedule,
// and every check of test/jepsen/checks.ts. Every node runs in power-loss mode
// (SKV_TEST_POWER_LOSS=1, src/log/power-loss-fs.ts): a SIGKILL loses the unsynced log tail, as a
// power cut would, and the schedules include power cuts of all three nodes (one of them losing
// its disk). Then two sanity runs with a deliberately unsafe switch must FAIL a check, or the
// harness is too weak to notice: `--unsafe-follower-strong-reads` (linearizability) and
// `--unsafe-ack-before-durable` under power cuts + lost disks (durability).
//
// Skips LOUDLY (never passes silently) without root, `unshare -n`, iptables or ZooKeeper.
// SKV_JEPSEN=0 skips it on purpose; SKV_JEPSEN_KEEP=DIR keeps every runner log and report.
// Reports are summarised with the prefix "[jepsen]".

import { afterAll, describe, expect, it } from 'vitest';
import { jepsenProblem, runJepsen, summarize } from './jepsen/launch.js';
import { type JepsenReport, ONE_DOWN_SUCCESS_MIN } from './jepsen/report.js';

const SCHEDULE_MS = 90_000;
/** Four schedules; two of them with every node's sleep failpoints armed. */
const SLEEPY =
  'leader-after-force-before-propose=1%sleep(100);follower-after-force-before-ack=1%sleep(100);' +
  'takeover=sleep(300);epoch-write-after=sleep(200);catch-up=5%sleep(50)';
const SCHEDULES: { seed: number; failpoints: string }[] = [
  { seed: 5101, failpoints: '' },
  { seed: 5102, failpoints: SLEEPY },
  { seed: 5103, failpoints: '' },
  { seed: 5104, failpoints: SLEEPY },
];
const SANITY_MS = 30_000;
/**
 * The durability sanity run: only power cuts (most with a lost disk) under an insert-heavy load,
 * on emulated disks (after each cut one node flushes in 0..6 ms, two in 30..60 ms). The same
 * seed and schedule without the unsafe switch passes (the report of this change has the figures;
 * `npm run test:chaos -- --minutes 0.67 --seed 5198 --schedule power-cuts
 * --power-loss-sync-ms 60` reproduces it).
 */
const DURABILITY_SANITY = {
  seed: 5198,
  durationMs: 40_000,
  powerLossSyncMs: 60,
  attempts: 3,
} as const;
const RUN_TIMEOUT_MS = SCHEDULE_MS + 150_000;
const OPS_PER_SCHEDULE_MIN = 5000;
const FAULTS_MIN = 25;
const PER_CATEGORY_MIN = 3;

const problem = process.env.SKV_JEPSEN === '0' ? 'SKV_JEPSEN=0' : await jepsenProblem();
if (problem !== null) {
  console.warn(
    `\n[jepsen] ******** SKIPPING the Jepsen fault suite: ${problem} ********\n` +
      '[jepsen] (it needs root, `unshare -n`, iptables and ZooKeeper: .ci/run installs them)\n',
  );
}

const keepDir = process.env.SKV_JEPSEN_KEEP;
const reports: JepsenReport[] = [];

describe.skipIf(problem !== null)('jepsen: real clusters under a seeded fault schedule', () => {
  for (const s of SCHEDULES) {
    it(
      `schedule seed ${s.seed}${s.failpoints === '' ? '' : ' (sleep failpoints armed)'}: every check holds`,
      async () => {
        const report = await runJepsen(
          { seed: s.seed, durationMs: SCHEDULE_MS, serverArgs: [], failpoints: s.failpoints },
          { timeoutMs: RUN_TIMEOUT_MS, ...(keepDir === undefined ? {} : { keepDir }) },
        );
        console.log(`[jepsen] ${summarize(report)}`);
        reports.push(report);
        expect(report.skipped).toBeUndefined();
        // The whole summary in the message: CI's output keeps the failure, not always the log.
        expect(report.failures, summarize(report)).toEqual([]);
        expect(report.figures.completedOps as number).toBeGreaterThanOrEqual(OPS_PER_SCHEDULE_MIN);
      },
      RUN_TIMEOUT_MS + 10_000,
    );
  }

  it('the schedules together injected enough faults of every kind', () => {
    // Fails on its own when a schedule above failed to report.
    expect(reports.length).toBe(SCHEDULES.length);
    const counts: Record<string, number> = {};
    for (const r of reports)
      for (const f of r.faults) counts[f.category] = (counts[f.category] ?? 0) + 1;
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    console.log(`[jepsen] faults in all schedules: ${total} ${JSON.stringify(counts)}`);
    expect(total).toBeGreaterThanOrEqual(FAULTS_MIN);
    for (const c of ['kill', 'pause', 'partition', 'damage']) {
      expect(counts[c] ?? 0, c).toBeGreaterThanOrEqual(PER_CATEGORY_MIN);
    }
    // C4 over every schedule's one-node-down windows together (a single schedule's share is
    // judged only when it has ONE_DOWN_OPS_MIN ops).
    let ops = 0;
    let ok = 0;
    for (const r of reports) {
      const d = r.figures.oneNodeDown as { ops: number; ok: number } | undefined;
      ops += d?.ops ?? 0;
      ok += d?.ok ?? 0;
    }
    console.log(`[jepsen] one node down, all schedules: ${ok}/${ops} ops succeeded`);
    expect(ops).toBeGreaterThan(0);
    expect(ok / ops).toBeGreaterThanOrEqual(ONE_DOWN_SUCCESS_MIN);
  });

  it(
    'sanity: the same run with --unsafe-follower-strong-reads FAILS linearizability',
    async () => {
      const report = await runJepsen(
        {
          seed: 5199,
          durationMs: SANITY_MS,
          serverArgs: ['--unsafe-follower-strong-reads'],
          failpoints: '',
        },
        { timeoutMs: SANITY_MS + 150_000, ...(keepDir === undefined ? {} : { keepDir }) },
      );
      console.log(`[jepsen] ${summarize(report)}`);
      expect(report.ok).toBe(false);
      expect(report.failures.some((f) => f.startsWith('C1:'))).toBe(true);
    },
    SANITY_MS + 160_000,
  );

  it(
    'sanity: power cuts + lost disks with --unsafe-ack-before-durable FAIL durability',
    async () => {
      // A run catches the unsafe build when a cut comes while the node on the fast disk leads a
      // range; the nemesis waits for that before each cut with a lost disk (nemesis.ts,
      // lostDiskVictim). When it cut at random moments, the fast node led at one cut of fifteen
      // and the three attempts of one CI run all missed; with the wait, seeds 5198, 5199 and 5200
      // each lost 34, 103 and 96 acknowledged inserts. Up to ATTEMPTS runs with successive seeds,
      // and the harness passes this test only if one of them notices. Every attempt is printed.
      const caught: string[] = [];
      for (
        let attempt = 0;
        attempt < DURABILITY_SANITY.attempts && caught.length === 0;
        attempt++
      ) {
        let report: JepsenReport;
        try {
          report = await runJepsen(
            {
              seed: DURABILITY_SANITY.seed + attempt,
              durationMs: DURABILITY_SANITY.durationMs,
              serverArgs: ['--unsafe-ack-before-durable'],
              failpoints: '',
              schedule: 'power-cuts',
              powerLossSyncMs: DURABILITY_SANITY.powerLossSyncMs,
            },
            {
              timeoutMs: DURABILITY_SANITY.durationMs + 150_000,
              ...(keepDir === undefined ? {} : { keepDir }),
            },
          );
        } catch (err) {
          // The unsafe build can wedge a range for good: a follower refuses a leader whose log
          // contradicts what it had committed (CI at 476bbf0: n2 "prev 5.824 contradicts our
          // committed 4.824"), every wait of the run then runs to its bound, and the runner
          // misses its deadline. No report, no verdict: the next attempt decides.
          console.log(`[jepsen] attempt ${attempt + 1}: no report (${String(err).split('\n')[0]})`);
          continue;
        }
        console.log(`[jepsen] attempt ${attempt + 1}: ${summarize(report)}`);
        expect(report.skipped).toBeUndefined();
        // A lost acknowledged insert (C2) or a register that went back in time (C1).
        caught.push(...report.failures.filter((f) => f.startsWith('C2:') || f.startsWith('C1:')));
      }
      expect(caught.length).toBeGreaterThan(0);
    },
    (DURABILITY_SANITY.durationMs + 160_000) * DURABILITY_SANITY.attempts,
  );

  afterAll(() => {
    if (reports.length > 0)
      console.log(
        `[jepsen] ${reports.filter((r) => r.ok).length}/${reports.length} schedules passed`,
      );
  });
});
