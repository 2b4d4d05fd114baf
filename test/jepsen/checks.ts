// The end of a Jepsen run: quiesce, wait for the replicas to converge, final reads, stop the
// nodes, read their committed logs offline, and judge (TESTING.md checks C1–C6):
//   C1 registers linearizable: 0 illegal keys, 0 unknown (undecided) keys
//   C2 set: no acknowledged insert lost, no phantom, no definitely-failed insert present
//   W3 timeline reads only return committed values, never go back in time per replica
//   W4 counter within [ok increments, ok + unknown increments]
//   C3 every replica of every range has the same digest within CONVERGENCE_MS_MAX of the heal
//   C4 writes in every range within RECOVERY_MS_MAX of the last heal; ≥ 90 % of the ops invoked
//      while exactly one node was down succeeded
//   C6 no node exited unless the nemesis made it; committed logs agree where they overlap

import path from 'node:path';
import type { SkvClient } from '../../src/client/index.js';
import { checkReplicasEqual } from '../../src/sim/checkers/convergence.js';
import { checkCounter } from '../../src/sim/checkers/counter.js';
import { validateHistory } from '../../src/sim/checkers/history.js';
import { checkLinearizable } from '../../src/sim/checkers/linearizability.js';
import { checkSet } from '../../src/sim/checkers/set.js';
import { type CommittedWrite, checkTimelineReads } from '../../src/sim/checkers/timeline.js';
import type { TestCluster } from '../support/cluster.js';
import { type CommittedEntry, decodeCommitted, readCommitted } from './log-damage.js';
import type { Nemesis } from './nemesis.js';
import {
  CONVERGENCE_MS_MAX,
  type JepsenConfig,
  type JepsenReport,
  ONE_DOWN_OPS_MIN,
  ONE_DOWN_SUCCESS_MIN,
  RECOVERY_MS_MAX,
} from './report.js';
import type { Workloads } from './workloads.js';

const FINAL_READ_MS_MAX = 60_000;
const FINAL_READ_CONCURRENCY = 16;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function readWithRetry(
  client: SkvClient,
  key: string,
  deadline: number,
  now: () => number,
): Promise<{ found: boolean; value: string; version: number } | null> {
  while (now() < deadline) {
    try {
      const r = await client.get(key, 'v', { timeoutMs: 2000 });
      return { found: r.found, value: r.value.toString(), version: r.version };
    } catch {
      await client.rangeMap({ timeoutMs: 500 }).catch(() => undefined);
      await sleep(100);
    }
  }
  return null;
}

/** Each node's view of every range (its SIGUSR2 status) and its last log lines, compactly. */
async function stuckDiagnostics(cluster: TestCluster, nemesis: Nemesis): Promise<string[]> {
  const out: string[] = [];
  for (const n of cluster.nodes) {
    const st = await nemesis.status(n.id);
    out.push(
      `${n.id} status: ${
        st === null
          ? 'no answer'
          : st
              .map(
                (c) =>
                  `r${c.rangeId} ${c.role}${c.voter ? '' : ' non-voter'} epoch ${c.currentEpoch}/${c.fenceEpoch} hint ${c.leaderHint} last ${c.lastLsn.epoch}.${c.lastLsn.seq} durable ${c.durableSeq} commit ${c.commitSeq} applied ${c.appliedSeq}${c.serving ? ' serving' : ''}`,
              )
              .join('; ')
      }`,
    );
  }
  for (const n of cluster.nodes) {
    const lines = (await cluster.logLines(n.id)).filter((l) => l.msg !== 'status').slice(-12);
    for (const l of lines) {
      const { level: _l, time, pid: _p, node: _n, hostname: _h, ...rest } = l;
      out.push(
        `${n.id} ${typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : ''} ${JSON.stringify(rest).slice(0, 300)}`,
      );
    }
  }
  return out;
}

export async function runChecks(ctx: {
  config: JepsenConfig;
  cluster: TestCluster;
  nemesis: Nemesis;
  workloads: Workloads;
  client: SkvClient;
  now: () => number;
}): Promise<JepsenReport> {
  const { config, cluster, nemesis, workloads, client, now } = ctx;
  const failures: string[] = [];
  const figures: Record<string, unknown> = {};
  await workloads.stop();
  const quiescedMs = now();

  // C3: convergence.
  let converged: { ok: boolean; ms: number; digests: Record<string, Record<string, string>> } = {
    ok: false,
    ms: 0,
    digests: {},
  };
  while (now() - quiescedMs < CONVERGENCE_MS_MAX) {
    const byRange = new Map<number, Map<string, string>>();
    for (const n of cluster.nodes) {
      const st = await nemesis.status(n.id);
      for (const c of st ?? []) {
        const m = byRange.get(c.rangeId) ?? new Map<string, string>();
        m.set(n.id, `${c.digest.lsn.epoch}.${c.digest.lsn.seq}:${c.digest.checksum}`);
        byRange.set(c.rangeId, m);
      }
    }
    const digests = Object.fromEntries(
      [...byRange].map(([r, m]) => [String(r), Object.fromEntries(m)]),
    );
    const ok =
      byRange.size > 0 &&
      [...byRange.values()].every(
        (m) => m.size === cluster.nodes.length && checkReplicasEqual(m).ok,
      );
    converged = { ok, ms: now() - quiescedMs, digests };
    if (ok) break;
    await sleep(300);
  }
  figures.convergence = converged;
  if (!converged.ok) {
    failures.push(
      `C3: replicas did not converge within ${CONVERGENCE_MS_MAX} ms: ${JSON.stringify(converged.digests)}`,
    );
  }

  // Final reads: every attempted set key, the counter.
  const deadline = now() + FINAL_READ_MS_MAX;
  const present: string[] = [];
  let unread = 0;
  const keys = [...workloads.set.attempted];
  let next = 0;
  await Promise.all(
    Array.from({ length: FINAL_READ_CONCURRENCY }, async () => {
      while (next < keys.length) {
        const key = keys[next++]!;
        const r = await readWithRetry(client, key, deadline, now);
        if (r === null) unread++;
        else if (r.found) present.push(r.value === key ? key : `${key} holding ${r.value}`);
      }
    }),
  );
  if (unread > 0)
    failures.push(
      `final reads: ${unread} set keys could not be read within ${FINAL_READ_MS_MAX} ms`,
    );
  const counterRead = await readWithRetry(client, workloads.counter.key, deadline, now);
  if (unread > 0 || counterRead === null || nemesis.finalRecoveryMs === null) {
    // A range that stays unavailable after every heal: what each node thinks of each range, and
    // what the nodes logged last, while they still run (CI keeps only the test's output).
    figures.diagnostics = await stuckDiagnostics(cluster, nemesis);
  }

  // Stop the nodes (keep their data) and read the committed logs.
  await Promise.all(cluster.nodes.map((n) => cluster.kill(n.id)));
  const logs = new Map<string, Map<number, CommittedEntry[]>>();
  const bases = new Map<number, number>(); // range -> lowest BASE over the replicas
  for (const n of cluster.nodes) {
    const c = await readCommitted(path.join(n.dataDir, 'log'));
    logs.set(n.id, c.entries);
    for (const [r, b] of c.baseSeq) bases.set(r, Math.min(bases.get(r) ?? b, b));
  }

  // Committed logs agree wherever two replicas both know an entry committed.
  const disagreements: string[] = [];
  const canonical = new Map<string, CommittedEntry>(); // range/seq -> entry
  for (const [node, perRange] of logs) {
    for (const [rangeId, entries] of perRange) {
      for (const e of entries) {
        const k = `${rangeId}/${e.seq}`;
        const other = canonical.get(k);
        if (other === undefined) canonical.set(k, e);
        else if (
          other.epoch !== e.epoch ||
          Buffer.compare(Buffer.from(other.payload), Buffer.from(e.payload)) !== 0
        ) {
          disagreements.push(
            `range ${rangeId} seq ${e.seq}: ${node} has epoch ${e.epoch}, another replica epoch ${other.epoch}`,
          );
        }
      }
    }
  }
  figures.committedEntries = canonical.size;
  if (disagreements.length > 0)
    failures.push(`committed logs disagree: ${disagreements.slice(0, 5).join('; ')}`);

  // C1: linearizability. First resolve unknown puts (etcd's patch_history, TESTING.md B.3): with
  // every committed entry known (some replica's log reaches back to seq 1 in every range), an
  // `info` put whose unique value is in no committed entry never took effect and is dropped.
  const fullLogs = bases.size > 0 && [...bases.values()].every((b) => b === 0);
  const committedValues = new Set<string>();
  for (const e of canonical.values()) {
    for (const w of decodeCommitted([e])) {
      if (w.value !== undefined) committedValues.add(`${w.key}/${w.column}\u0000${w.value}`);
    }
  }
  const recorded = workloads.registerHistory.history();
  const history = fullLogs
    ? recorded.filter(
        (o) =>
          !(
            o.outcome === 'info' &&
            o.f === 'put' &&
            !committedValues.has(`${o.key}\u0000${o.value ?? ''}`)
          ),
      )
    : recorded;
  figures.infoPutsDropped = recorded.length - history.length;
  figures.logsComplete = fullLogs;
  validateHistory(history);
  const lin = checkLinearizable(history, { timeoutMs: 60_000 });
  figures.linearizability = {
    keys: lin.keysChecked,
    illegal: lin.illegalKeys,
    unknown: lin.unknownKeys,
    steps: lin.steps,
    infoOps: history.filter((o) => o.outcome === 'info').length,
  };
  if (lin.illegalKeys.length > 0) {
    const first = lin.failures[0];
    const ops = first === undefined ? [] : history.filter((o) => o.key === first.key);
    failures.push(
      `C1: ${lin.illegalKeys.length} register keys not linearizable (${lin.illegalKeys.slice(0, 3).join(', ')})`,
    );
    figures.firstIllegalKey = { failure: first, ops: ops.slice(0, 400) };
  }
  if (lin.unknownKeys.length > 0)
    failures.push(`C1: ${lin.unknownKeys.length} register keys undecided`);

  // C2: set.
  const set = checkSet({
    attempted: workloads.set.attempted,
    acked: workloads.set.acked,
    failed: workloads.set.failed,
    finalRead: present,
  });
  figures.set = {
    attempted: workloads.set.attempted.length,
    acked: workloads.set.acked.length,
    failed: workloads.set.failed.length,
    present: present.length,
    lost: set.lost.slice(0, 20),
    phantom: set.phantom.slice(0, 20),
    failedButPresent: set.failedButPresent.slice(0, 20),
    infoPresent: set.infoPresent,
    infoAbsent: set.infoAbsent,
    mismatches: workloads.setMismatches.slice(0, 20),
  };
  if (!set.ok) {
    failures.push(
      `C2: set lost ${set.lost.length}, phantom ${set.phantom.length}, failed-but-present ${set.failedButPresent.length}`,
    );
  }
  if (workloads.setMismatches.length > 0) {
    failures.push(
      `C2: ${workloads.setMismatches.length} put-if-absent of fresh keys found the key present`,
    );
  }

  // W3: timeline reads against the committed writes (logs + acknowledged register puts).
  const committed: CommittedWrite[] = [];
  for (const e of canonical.values()) {
    for (const w of decodeCommitted([e])) {
      committed.push({
        key: `${w.key}/${w.column}`,
        ...(w.value === undefined ? {} : { value: w.value }),
        version: w.version,
      });
    }
  }
  for (const op of history) {
    if (
      op.f === 'put' &&
      op.outcome === 'ok' &&
      op.result?.version !== undefined &&
      op.value !== undefined
    ) {
      committed.push({ key: op.key, value: op.value, version: op.result.version });
    }
  }
  const tl = checkTimelineReads(workloads.timelineReads, committed);
  figures.timeline = {
    reads: workloads.timelineReads.length,
    found: workloads.timelineReads.filter((r) => r.found).length,
    notCommitted: tl.notCommitted.slice(0, 10),
    wentBack: tl.wentBack.slice(0, 10),
  };
  if (!tl.ok) {
    failures.push(
      `W3: timeline reads: ${tl.notCommitted.length} not committed, ${tl.wentBack.length} went back in time`,
    );
  }

  // W4: counter.
  if (counterRead === null) {
    failures.push('W4: the counter could not be read');
  } else {
    const c = checkCounter({
      okIncrements: workloads.counter.okIncrements,
      infoIncrements: workloads.counter.infoIncrements,
      finalValue: counterRead.found ? Number(counterRead.value) : 0,
    });
    figures.counter = c;
    if (!c.ok)
      failures.push(`W4: counter ${c.reason}: ${c.finalValue} not in [${c.lower}, ${c.upper}]`);
  }

  // C4: liveness and availability.
  figures.finalRecoveryMs = nemesis.finalRecoveryMs;
  if (nemesis.finalRecoveryMs === null || nemesis.finalRecoveryMs > RECOVERY_MS_MAX) {
    failures.push(
      `C4: writes did not resume in every range within ${RECOVERY_MS_MAX} ms of the last heal`,
    );
  }
  const inWindow = workloads.marks.filter((m) =>
    nemesis.oneDownWindows.some((w) => m.call >= w.from && m.call < w.to),
  );
  const okInWindow = inWindow.filter((m) => m.outcome === 'ok').length;
  const oneDown = {
    windows: nemesis.oneDownWindows.length,
    windowMs: Math.round(nemesis.oneDownWindows.reduce((s, w) => s + (w.to - w.from), 0)),
    ops: inWindow.length,
    ok: okInWindow,
    ratio: inWindow.length === 0 ? null : okInWindow / inWindow.length,
  };
  figures.oneNodeDown = oneDown;
  if (
    oneDown.ratio !== null &&
    oneDown.ops >= ONE_DOWN_OPS_MIN &&
    oneDown.ratio < ONE_DOWN_SUCCESS_MIN
  ) {
    failures.push(
      `C4: only ${(oneDown.ratio * 100).toFixed(1)} % of ops succeeded with one node down`,
    );
  }

  // C6: unexpected exits.
  figures.unexpectedExits = nemesis.unexpectedExits;
  if (nemesis.unexpectedExits.length > 0) {
    failures.push(
      `C6: ${nemesis.unexpectedExits.length} unexpected node exits: ${nemesis.unexpectedExits.map((e) => `${e.node} (${e.code ?? e.signal}: ${e.tail})`).join('; ')}`,
    );
  }

  figures.ops = workloads.stats;
  figures.completedOps = workloads.completed;
  figures.damage = nemesis.damageOutcomes;
  figures.notes = nemesis.notes;
  const recovered = nemesis.faults.map((f) => f.recoveredMs).filter((x): x is number => x !== null);
  figures.recoveryMsMax = recovered.length === 0 ? null : Math.round(Math.max(...recovered));
  figures.faultCounts = nemesis.faults.reduce<Record<string, number>>((m, f) => {
    m[f.category] = (m[f.category] ?? 0) + 1;
    return m;
  }, {});
  return { config, ok: failures.length === 0, failures, faults: nemesis.faults, figures };
}
