// The nemesis of a Jepsen run: a seeded random schedule of faults, each with its heal, injected
// one at a time (so at most one node is ever crashed or damaged, and f = 1 holds — except the
// power cut, below), each followed by a bounded wait for recovery (every node up, writes
// acknowledged in every range, restarted replicas caught up) before the next. The first five
// faults of a 'mixed' schedule are one each of kill, pause, partition, log damage and power cut
// (in seeded order); then any category. A 'power-cuts' schedule (the durability sanity run) draws
// only power cuts, nine in ten of them with a lost disk; with emulated flush latencies, one node
// comes back from each cut on a fast disk and two on slow ones, and a cut with a lost disk waits
// (boundedly) for the fast node to lead a range and takes its disk.
//
// Every node runs with SKV_TEST_POWER_LOSS=1 (src/log/power-loss-fs.ts): its commit log keeps
// unsynced writes in process memory, so EVERY SIGKILL below is a power cut of that node (it loses
// what was written and not yet fdatasync'd), not just a process crash.
//
//   kill       SIGKILL a random node or a range leader, restart after 3–6 s; or restart a node with
//              a crash failpoint armed (follower-after-force-before-ack, catch-up) and restart
//              it clean once it died
//   pause      SIGSTOP a range leader for the session timeout + 1–2 s, then SIGCONT
//   partition  iptables (net.ts): leader from its followers, leader from ZooKeeper, one-way,
//              bridge, one node isolated; 2–5 s, then flush
//   link       the peer-link proxy (proxy.ts): delay, blackhole, reset; or iptables random loss
//   damage     kill a node, damage its log (torn / lost-tail / bitflip), restart; a node that
//              refuses to start (corruption) is restarted with an emptied data dir (rebuild)
//   zookeeper  SIGKILL ZooKeeper, restart after 1–3 s
//   power      the documented exception to "one node at a time": SIGKILL all three nodes in the
//              same instant (a correlated outage, DESIGN.md §5 rule 8, S§8.1: acknowledged writes
//              must survive it), restart them all after 1–3 s; or the same plus a lost disk: the
//              leader of a random range restarts with an emptied data dir (rebuild as non-voter,
//              PML§5.1). One permanent failure and a transient outage: inside the failure model.
// Every fault is recorded (FaultRecord) with its start, heal and recovery time.

import { statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { SkvClient } from '../../src/client/index.js';
import { POWER_LOSS_SYNC_MS_ENV } from '../../src/log/power-loss-fs.js';
import type { Prng } from '../../src/sim/prng.js';
import type { TestCluster, TestNode } from '../support/cluster.js';
import { waitUntil } from '../support/wait.js';
import { damageLog, type LogDamageKind } from './log-damage.js';
import {
  dropBothWays,
  dropOneWay,
  healNetwork,
  lossy,
  NODE_PORT,
  nodeHost,
  PROXY_PORT,
  proxyHost,
  ZK_HOST,
} from './net.js';
import { LinkProxy } from './proxy.js';
import {
  type FaultCategory,
  type FaultRecord,
  type ScheduleKind,
  SESSION_TIMEOUT_MS,
} from './report.js';

/** One probe key prefix per range (split keys h, p). */
const RANGE_PROBE_PREFIXES = ['a', 'i', 'q'];
const RECOVERY_WAIT_MS_MAX = 30_000;
const NODE_START_WAIT_MS_MAX = 20_000;
const CATCH_UP_WAIT_MS_MAX = 20_000;
/** The schedule leaves this much time before the end for the last fault to heal. */
const TAIL_MS = 12_000;
/** How long a power cut with a lost disk waits for the node on the fast disk to lead a range. */
const FAST_LEADER_WAIT_MS = 15_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface LogLine {
  msg?: string;
  [k: string]: unknown;
}

export interface CohortStatus {
  rangeId: number;
  role: string;
  voter: boolean;
  timelineReadable: boolean;
  currentEpoch: number;
  fenceEpoch: number;
  leaderHint: string | null;
  lastLsn: { epoch: number; seq: number };
  durableSeq: number;
  commitSeq: number;
  appliedSeq: number;
  serving: boolean;
  digest: { lsn: { epoch: number; seq: number }; checksum: string };
}

export class Nemesis {
  readonly faults: FaultRecord[] = [];
  /** Windows with exactly one node down (killed / refusing to start), for the availability check. */
  readonly oneDownWindows: { from: number; to: number }[] = [];
  readonly unexpectedExits: {
    node: string;
    atMs: number;
    code: number | null;
    signal: string | null;
    tail: string;
  }[] = [];
  readonly damageOutcomes: { kind: string; node: string; detail: string; outcome: string }[] = [];
  readonly notes: string[] = [];
  probeClient: SkvClient | null = null;
  lastHealMs = 0;
  private readonly proxies = new Map<string, LinkProxy>();
  private readonly paused = new Set<string>();
  /** Nodes the nemesis took down on purpose (no unexpected-exit report for them). */
  private readonly down = new Set<string>();
  private probeSeq = 0;
  private readonly spawnOffsets = new Map<string, number>();

  constructor(
    private readonly cluster: TestCluster,
    private readonly rng: Prng,
    private readonly now: () => number,
    options: { schedule?: ScheduleKind; powerLossSyncMsMax?: number } = {},
  ) {
    this.schedule = options.schedule ?? 'mixed';
    this.powerLossSyncMsMax = options.powerLossSyncMsMax ?? 0;
  }

  private readonly schedule: ScheduleKind;
  /** > 0: every power cut gives each node a disk whose flush takes 0..this ms (see powerCut). */
  private readonly powerLossSyncMsMax: number;
  /** Environment each node gets on every spawn by the nemesis (its emulated disk's speed). */
  private readonly nodeEnv = new Map<string, Record<string, string>>();

  async startProxies(): Promise<void> {
    const n = this.cluster.nodes.length;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (i === j) continue;
        const p = new LinkProxy(
          `n${i}->n${j}`,
          { host: proxyHost(i, j), port: PROXY_PORT },
          { host: nodeHost(j), port: NODE_PORT },
          nodeHost(i),
        );
        await p.start();
        this.proxies.set(`${i}->${j}`, p);
      }
    }
  }

  /** Nodes a client may talk to now (running and not paused). */
  reachableNodes(): { id: string; address: string }[] {
    return this.cluster.nodes
      .filter((n) => n.process !== null && !this.paused.has(n.id) && !this.down.has(n.id))
      .map((n) => ({ id: n.id, address: n.address }));
  }

  private index(id: string): number {
    return this.cluster.nodes.findIndex((n) => n.id === id);
  }

  private host(id: string): string {
    return nodeHost(this.index(id));
  }

  /** The leader of a random range, or a random node when nobody answers. */
  private async leaderOrRandom(): Promise<{ id: string; what: string }> {
    try {
      const map = await this.cluster.rangeMap(1000);
      const withLeader = map.ranges.filter((r) => r.leader !== '');
      if (withLeader.length > 0) {
        const r = this.rng.pick(withLeader);
        return { id: r.leader, what: `leader of range ${r.rangeId}` };
      }
    } catch {
      // fall through
    }
    return { id: this.rng.pick(this.cluster.nodes).id, what: 'random node (no leader known)' };
  }

  /**
   * The power cut's lost disk: with emulated flush latencies, the node on the fast disk once it
   * leads a range — the adversarial choice: its acknowledged writes are the ones its followers
   * (on slow disks) may not have forced yet. Each node is the preferred leader of one range and
   * takes it over after --leader-handoff-ms (5 s) once caught up, so the cut waits for that (up to
   * FAST_LEADER_WAIT_MS; a cut at a random moment found the fast node leading in about one cut of
   * fifteen). Otherwise the leader of a random range.
   */
  private async lostDiskVictim(): Promise<{ id: string; what: string }> {
    const speeds = this.cluster.nodes.map((n) =>
      Number(this.nodeEnv.get(n.id)?.[POWER_LOSS_SYNC_MS_ENV]),
    );
    if (speeds.some((x) => !Number.isFinite(x))) return await this.leaderOrRandom();
    const fastest = Math.min(...speeds);
    const fast = this.cluster.nodes[speeds.indexOf(fastest)]!.id;
    const since = this.now();
    const led = await waitUntil(
      `${fast} (fast disk) leads a range`,
      async () => {
        const map = await this.cluster.rangeMap(1000);
        const led = map.ranges.filter((r) => r.leader === fast);
        return led.length > 0 ? led : null;
      },
      FAST_LEADER_WAIT_MS,
      200,
    ).catch(() => null);
    if (led !== null) {
      const r = this.rng.pick(led);
      const waited = Math.round(this.now() - since);
      return {
        id: fast,
        what: `leader of range ${r.rangeId}, on the fast disk (${fastest} ms), after ${waited} ms`,
      };
    }
    return await this.leaderOrRandom();
  }

  private randomNode(): TestNode {
    return this.rng.pick(this.cluster.nodes);
  }

  // ---- the schedule ----------------------------------------------------------------------------

  async runSchedule(durationMs: number): Promise<void> {
    const start = this.now();
    const end = start + durationMs;
    const first: FaultCategory[] = [];
    const later: FaultCategory[] = [];
    switch (this.schedule) {
      case 'mixed':
        first.push('kill', 'pause', 'partition', 'damage', 'power');
        later.push(
          'kill',
          'kill',
          'pause',
          'partition',
          'partition',
          'damage',
          'link',
          'link',
          'zookeeper',
          'power',
        );
        break;
      case 'power-cuts':
        later.push('power');
        break;
    }
    for (let i = first.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1);
      [first[i], first[j]] = [first[j]!, first[i]!];
    }
    await sleep(3000);
    let n = 0;
    while (this.now() < end - TAIL_MS) {
      const category = first[n] ?? this.rng.pick(later);
      n++;
      await this.inject(category);
      await this.settle();
      await sleep(300 + this.rng.int(700));
    }
    await this.healAll();
    this.lastHealMs = this.now();
    const rec = await this.probeAllRanges();
    this.notes.push(
      `final heal: writes in every range after ${rec === null ? 'never' : `${Math.round(rec)} ms`}`,
    );
    this.finalRecoveryMs = rec;
    const left = end - this.now();
    if (left > 0) await sleep(left);
  }

  finalRecoveryMs: number | null = null;

  private record(category: FaultCategory, kind: string, target: string, detail = ''): FaultRecord {
    const f: FaultRecord = {
      category,
      kind,
      target,
      startMs: this.now(),
      healMs: 0,
      recoveredMs: null,
      detail,
    };
    this.faults.push(f);
    return f;
  }

  private async healed(f: FaultRecord): Promise<void> {
    f.healMs = this.now();
    this.lastHealMs = f.healMs;
    f.recoveredMs = await this.probeAllRanges();
  }

  private async inject(category: FaultCategory): Promise<void> {
    switch (category) {
      case 'kill':
        if (this.rng.chance(0.25)) return await this.crashAtFailpoint();
        return await this.kill();
      case 'pause':
        return await this.pause();
      case 'partition':
        return await this.partition();
      case 'damage':
        return await this.damage();
      case 'link':
        return await this.link();
      case 'zookeeper':
        return await this.zookeeper();
      case 'power':
        return await this.powerCut(this.rng.chance(this.schedule === 'power-cuts' ? 0.9 : 0.5));
    }
  }

  private async kill(): Promise<void> {
    const t = this.rng.chance(0.5)
      ? await this.leaderOrRandom()
      : { id: this.randomNode().id, what: 'random node' };
    const f = this.record('kill', `SIGKILL ${t.what}`, t.id);
    this.down.add(t.id);
    await this.cluster.kill(t.id);
    const from = this.now();
    await sleep(3000 + this.rng.int(3000));
    this.spawn(t.id);
    this.oneDownWindows.push({ from, to: this.now() });
    await this.healed(f);
  }

  private async crashAtFailpoint(): Promise<void> {
    const node = this.randomNode();
    const point = this.rng.pick(['follower-after-force-before-ack', 'catch-up']);
    const f = this.record('kill', `crash at failpoint ${point}`, node.id);
    this.down.add(node.id);
    await this.cluster.kill(node.id);
    this.spawn(node.id, { SKV_FAILPOINTS: `${point}=crash` });
    const p = node.process;
    const died = await new Promise<boolean>((resolve) => {
      if (p === null) return resolve(false);
      const timer = setTimeout(() => resolve(false), 10_000);
      p.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    const from = this.now();
    f.detail = died
      ? 'the node crashed at the failpoint'
      : 'the failpoint did not fire within 10 s';
    await this.cluster.kill(node.id);
    await sleep(500 + this.rng.int(1000));
    this.spawn(node.id);
    if (died) this.oneDownWindows.push({ from, to: this.now() });
    await this.healed(f);
  }

  private async pause(): Promise<void> {
    const t = await this.leaderOrRandom();
    const holdMs = SESSION_TIMEOUT_MS + 1000 + this.rng.int(1000);
    const f = this.record('pause', `SIGSTOP ${t.what} for ${holdMs} ms`, t.id);
    this.paused.add(t.id);
    this.cluster.pause(t.id);
    await sleep(holdMs);
    this.cluster.resume(t.id);
    this.paused.delete(t.id);
    await this.healed(f);
  }

  private async partition(): Promise<void> {
    const t = await this.leaderOrRandom();
    const others = this.cluster.nodes.filter((n) => n.id !== t.id).map((n) => n.id);
    const kind = this.rng.pick([
      'leader-from-followers',
      'leader-from-zk',
      'one-way',
      'bridge',
      'isolate',
    ]);
    let detail = '';
    switch (kind) {
      case 'leader-from-followers':
        for (const o of others) await dropBothWays(this.host(t.id), this.host(o));
        detail = `${t.id} (${t.what}) cut from ${others.join(', ')}`;
        break;
      case 'leader-from-zk':
        await dropBothWays(this.host(t.id), ZK_HOST);
        detail = `${t.id} (${t.what}) cut from ZooKeeper`;
        break;
      case 'one-way': {
        const o = this.rng.pick(others);
        const [a, b] = this.rng.chance(0.5) ? [t.id, o] : [o, t.id];
        await dropOneWay(this.host(a), this.host(b));
        detail = `packets ${a} -> ${b} dropped (${t.id} is ${t.what})`;
        break;
      }
      case 'bridge': {
        const [a, c] = others as [string, string];
        await dropBothWays(this.host(a), this.host(c));
        detail = `${a} and ${c} cut from each other, ${t.id} (${t.what}) sees both`;
        break;
      }
      case 'isolate':
        for (const o of others) await dropBothWays(this.host(t.id), this.host(o));
        await dropBothWays(this.host(t.id), ZK_HOST);
        detail = `${t.id} (${t.what}) cut from peers and ZooKeeper`;
        break;
    }
    const holdMs = 2000 + this.rng.int(3000);
    const f = this.record('partition', `partition ${kind}`, t.id, `${detail}; ${holdMs} ms`);
    await sleep(holdMs);
    await healNetwork();
    await this.healed(f);
  }

  private linksOf(id: string, peer?: string): LinkProxy[] {
    const i = this.index(id);
    const out: LinkProxy[] = [];
    for (const [k, p] of this.proxies) {
      const [a, b] = k.split('->').map(Number) as [number, number];
      const other = a === i ? b : b === i ? a : -1;
      if (other < 0) continue;
      if (peer !== undefined && other !== this.index(peer)) continue;
      out.push(p);
    }
    return out;
  }

  private async link(): Promise<void> {
    const t = await this.leaderOrRandom();
    const peer = this.rng.pick(this.cluster.nodes.filter((n) => n.id !== t.id)).id;
    const kind = this.rng.pick(['delay', 'blackhole', 'reset', 'lossy']);
    let detail = '';
    let holdMs = 2000 + this.rng.int(3000);
    switch (kind) {
      case 'delay': {
        const ms = 100 + this.rng.int(300);
        for (const p of this.linksOf(t.id)) p.setMode({ kind: 'delay', ms });
        detail = `every peer link of ${t.id} (${t.what}) delayed ${ms} ms each way`;
        break;
      }
      case 'blackhole':
        for (const p of this.linksOf(t.id, peer)) p.setMode({ kind: 'blackhole' });
        detail = `links ${t.id} <-> ${peer} blackholed`;
        break;
      case 'reset':
        for (const p of this.linksOf(t.id)) p.setMode({ kind: 'reset' });
        holdMs = 1000 + this.rng.int(1000);
        detail = `every peer link of ${t.id} (${t.what}) reset`;
        break;
      case 'lossy':
        await lossy(this.host(t.id), this.host(peer), 0.3);
        detail = `30 % of packets ${t.id} <-> ${peer} dropped`;
        break;
    }
    const f = this.record('link', `link ${kind}`, t.id, `${detail}; ${holdMs} ms`);
    await sleep(holdMs);
    for (const p of this.proxies.values()) p.setMode({ kind: 'pass' });
    await healNetwork();
    await this.healed(f);
  }

  private async damage(): Promise<void> {
    const node = this.randomNode();
    const kind = this.rng.pick<LogDamageKind>(['torn', 'lost-tail', 'bitflip']);
    const f = this.record('damage', `log ${kind}`, node.id);
    this.down.add(node.id);
    await this.cluster.kill(node.id);
    const from = this.now();
    const d = await damageLog(path.join(node.dataDir, 'log'), kind, this.rng);
    f.detail =
      d === null
        ? 'nothing to damage'
        : `${path.basename(d.file)} @${d.offset} (${d.bytes} B): ${d.detail}`;
    this.spawn(node.id);
    const started = await this.waitStarted(node.id);
    let outcome: string;
    if (started.ok) {
      outcome = started.note === '' ? 'started' : `started; ${started.note}`;
    } else {
      outcome = `refused to start: ${started.note}`;
      this.markSpawn(node.id);
      await this.cluster.restart(node.id, { wipe: true, env: this.nodeEnv.get(node.id) ?? {} });
      const again = await this.waitStarted(node.id);
      outcome += again.ok
        ? '; restarted with an emptied data dir (rebuild as non-voter)'
        : `; rebuild failed too: ${again.note}`;
    }
    this.down.delete(node.id);
    this.oneDownWindows.push({ from, to: this.now() });
    this.damageOutcomes.push({ kind, node: node.id, detail: f.detail, outcome });
    f.detail += ` -> ${outcome}`;
    await this.healed(f);
  }

  /**
   * All nodes SIGKILLed in the same instant (each a power cut: SKV_TEST_POWER_LOSS), restarted
   * together after 1–3 s; with `lostDisk`, the leader of a random range (picked before the cut)
   * restarts with an emptied data dir and must rebuild as a non-voter from the other two.
   */
  private async powerCut(lostDisk: boolean): Promise<void> {
    const victim = lostDisk ? await this.lostDiskVictim() : null;
    const f = this.record(
      'power',
      lostDisk ? 'power cut + lost disk' : 'power cut',
      victim === null ? 'all' : `all; ${victim.id} lost its disk`,
    );
    for (const n of this.cluster.nodes) this.down.add(n.id);
    // kill() signals synchronously before its first await: all three die in the same tick.
    await Promise.all(this.cluster.nodes.map((n) => this.cluster.kill(n.id)));
    const outageMs = 1000 + this.rng.int(2000);
    // With emulated flush latencies, the machines come back with disks of different speeds: a
    // leader on a fast disk with followers on slow ones is where an ack before the follower's
    // force can lose an acknowledged write (these VMs fdatasync in ~0.25 ms, too fast to tell).
    const disks: string[] = [];
    if (this.powerLossSyncMsMax > 0) {
      // One node gets a fast disk (up to a tenth of the maximum), the others slow ones (half the
      // maximum and up).
      const max = this.powerLossSyncMsMax;
      const fast = this.rng.int(this.cluster.nodes.length);
      for (const [i, n] of this.cluster.nodes.entries()) {
        const ms =
          i === fast
            ? this.rng.int(Math.floor(max / 10) + 1)
            : Math.ceil(max / 2) + this.rng.int(Math.floor(max / 2) + 1);
        this.nodeEnv.set(n.id, { [POWER_LOSS_SYNC_MS_ENV]: String(ms) });
        disks.push(`${n.id} ${ms} ms`);
      }
    }
    await sleep(outageMs);
    for (const n of this.cluster.nodes) {
      this.markSpawn(n.id);
      const env = this.nodeEnv.get(n.id) ?? {};
      if (n.id === victim?.id) await this.cluster.restart(n.id, { wipe: true, env });
      else this.cluster.spawn(n, env);
    }
    this.down.clear();
    const outcomes: string[] = [];
    for (const n of this.cluster.nodes) {
      const started = await this.waitStarted(n.id);
      if (!started.ok) outcomes.push(`${n.id} did not start: ${started.note}`);
    }
    f.detail =
      `outage ${outageMs} ms` +
      (victim === null
        ? ''
        : `; ${victim.id} (${victim.what}) restarted with an emptied data dir`) +
      (disks.length === 0 ? '' : `; flush latency from now on ${disks.join(', ')}`) +
      (outcomes.length === 0 ? '; all restarted' : `; ${outcomes.join(' | ')}`);
    await this.healed(f);
  }

  private async zookeeper(): Promise<void> {
    const f = this.record('zookeeper', 'SIGKILL ZooKeeper', 'zookeeper');
    await this.cluster.zk.zk.kill();
    await sleep(1000 + this.rng.int(2000));
    await this.cluster.zk.zk.restart();
    await this.healed(f);
  }

  // ---- processes and their logs ----------------------------------------------------------------

  private spawn(id: string, env: Record<string, string> = {}): void {
    const node = this.cluster.node(id);
    this.markSpawn(id);
    this.cluster.spawn(node, { ...this.nodeEnv.get(id), ...env });
    this.down.delete(id);
  }

  /** Where this life's log lines start (taken before the spawn). */
  private markSpawn(id: string): void {
    const node = this.cluster.node(id);
    let size = 0;
    try {
      size = statSync(node.logFile).size;
    } catch {
      size = 0;
    }
    this.spawnOffsets.set(id, size);
  }

  private async logLines(id: string, from: number): Promise<{ lines: LogLine[]; end: number }> {
    const node = this.cluster.node(id);
    const buf = await readFile(node.logFile).catch(() => Buffer.alloc(0));
    const lines: LogLine[] = [];
    for (const text of buf.subarray(Math.min(from, buf.length)).toString('utf8').split('\n')) {
      if (text.trim() === '') continue;
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        lines.push({ msg: text });
      }
    }
    return { lines, end: buf.length };
  }

  /** Waits for 'node started' in this life's log, or the process's exit. */
  private async waitStarted(id: string): Promise<{ ok: boolean; note: string }> {
    await sleep(50);
    const deadline = this.now() + NODE_START_WAIT_MS_MAX;
    const from = this.spawnOffsets.get(id) ?? 0;
    while (this.now() < deadline) {
      const { lines } = await this.logLines(id, from);
      const notable = lines
        .filter((l) => /torn|corrupt|rebuild|non-voter/i.test(JSON.stringify(l)))
        .map((l) => String(l.msg ?? '') + (l.error === undefined ? '' : `: ${String(l.error)}`));
      if (lines.some((l) => l.msg === 'node started'))
        return { ok: true, note: notable.join(' | ') };
      const p = this.cluster.node(id).process;
      if (p === null || p.exitCode !== null || p.signalCode !== null) {
        const last = lines
          .slice(-3)
          .map((l) => `${String(l.msg ?? '')} ${String(l.error ?? '')}`.trim());
        return { ok: false, note: (notable.length > 0 ? notable : last).join(' | ').slice(0, 600) };
      }
      await sleep(100);
    }
    return { ok: false, note: `no 'node started' within ${NODE_START_WAIT_MS_MAX} ms` };
  }

  /** Every cohort's status from the node's SIGUSR2 status line, or null when it does not answer. */
  async status(id: string, timeoutMs = 2000): Promise<CohortStatus[] | null> {
    const node = this.cluster.node(id);
    const p = node.process;
    if (p === null || p.exitCode !== null || this.paused.has(id)) return null;
    const from = (await stat(node.logFile).catch(() => ({ size: 0 }))).size;
    const since = this.spawnOffsets.get(id) ?? 0;
    // SIGUSR2 before the handler exists would kill the node: only once it has started.
    const { lines } = await this.logLines(id, since);
    if (!lines.some((l) => l.msg === 'node started')) return null;
    p.kill('SIGUSR2');
    const deadline = this.now() + timeoutMs;
    while (this.now() < deadline) {
      await sleep(50);
      const got = await this.logLines(id, from);
      const line = got.lines.find((l) => l.msg === 'status');
      if (line !== undefined) return line.cohorts as CohortStatus[];
    }
    return null;
  }

  /** Checks processes the nemesis did not stop; restarts and reports any that died. */
  private async reapUnexpected(): Promise<void> {
    for (const n of this.cluster.nodes) {
      const p = n.process;
      if (this.down.has(n.id) || p === null) continue;
      if (p.exitCode !== null || (p.signalCode !== null && p.signalCode !== 'SIGSTOP')) {
        const { lines } = await this.logLines(n.id, this.spawnOffsets.get(n.id) ?? 0);
        const tail = lines
          .slice(-4)
          .map((l) => `${String(l.msg ?? '')} ${String(l.error ?? '')}`)
          .join(' | ');
        this.unexpectedExits.push({
          node: n.id,
          atMs: this.now(),
          code: p.exitCode,
          signal: p.signalCode,
          tail,
        });
        this.spawn(n.id);
      }
    }
  }

  /** After a heal: every node up, writes in every range, restarted replicas caught up. */
  private async settle(): Promise<void> {
    await this.reapUnexpected();
    const deadline = this.now() + CATCH_UP_WAIT_MS_MAX;
    while (this.now() < deadline) {
      let all = true;
      for (const n of this.cluster.nodes) {
        const st = await this.status(n.id);
        if (st === null || !st.every((c) => c.voter && c.timelineReadable)) {
          all = false;
          break;
        }
      }
      if (all) return;
      await this.reapUnexpected();
      await sleep(200);
    }
    this.notes.push(
      `t=${Math.round(this.now())}: replicas not all caught up within ${CATCH_UP_WAIT_MS_MAX} ms`,
    );
  }

  /** ms until one write in every range was acknowledged (null: not within the bound). */
  async probeAllRanges(): Promise<number | null> {
    const client = this.probeClient;
    if (client === null) return null;
    const from = this.now();
    const deadline = from + RECOVERY_WAIT_MS_MAX;
    for (const prefix of RANGE_PROBE_PREFIXES) {
      for (;;) {
        if (this.now() > deadline) return null;
        try {
          const key = `${prefix}probe-${this.probeSeq++}`;
          await client.put(key, 'v', key, { timeoutMs: 1000 });
          break;
        } catch {
          await client.rangeMap({ timeoutMs: 500 }).catch(() => undefined);
          await sleep(50);
        }
      }
    }
    return this.now() - from;
  }

  async healAll(): Promise<void> {
    for (const p of this.proxies.values()) p.setMode({ kind: 'pass' });
    await healNetwork();
    for (const id of [...this.paused]) {
      this.cluster.resume(id);
      this.paused.delete(id);
    }
    if (!this.cluster.zk.zk.running) await this.cluster.zk.zk.restart();
    for (const n of this.cluster.nodes) if (n.process === null) this.spawn(n.id);
    this.down.clear();
  }

  async stop(): Promise<void> {
    await healNetwork().catch(() => undefined);
    for (const p of this.proxies.values()) await p.stop();
  }
}
