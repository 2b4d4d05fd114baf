// A simulated 3-node cohort under test: the nodes (src/sim/node.ts), the network, the disks, the
// ZooKeeper, the clients that record a history, the nemesis that injects faults, and the
// invariants checked while it runs (TESTING.md "Recommended test design", layer 1):
// - at most one leader per epoch, and at most one serving (write-accepting) leader per epoch;
// - the committed prefix never changes (every replica applies the same entry at each seq);
// - an entry is committed only when it is durable on >= 2 logs;
// - timeline reads return only committed values and never go back in time per replica life;
// and, at the end: caught-up replicas have identical state, every acknowledged write is in the
// committed log, and strong operations are linearizable (src/sim/checkers).
// Everything is driven by one seeded PRNG and a virtual clock, so a seed replays exactly.

import { assert } from '../core/assert.js';
import type { NodeId } from '../core/ids.js';
import { type Lsn, lsnEquals } from '../core/lsn.js';
import { decodeRowMutation, encodeRowMutation } from '../core/mutation.js';
import type {
  Entry,
  LeaderBalance,
  Message,
  ReplicaLimits,
  ReplicaTiming,
  UnsafeSwitches,
} from '../replication/types.js';
import { ApplyModel, cellKey } from './apply-model.js';
import { checkReplicasEqual } from './checkers/convergence.js';
import { type HistoryOp, HistoryRecorder } from './checkers/history.js';
import { checkLinearizable } from './checkers/linearizability.js';
import { checkNoLostAcks, type FinalCell } from './checkers/lost-acks.js';
import {
  type TimelineRead as CheckerTimelineRead,
  type CommittedWrite,
  checkTimelineReads,
} from './checkers/timeline.js';
import { SimDisk } from './disk.js';
import { EventLoop } from './event-loop.js';
import { type NetworkFaults, SimNetwork } from './network.js';
import { type NodeReply, SimNode } from './node.js';
import { Prng } from './prng.js';
import { SimZooKeeper, ZK_ENDPOINT } from './zookeeper.js';

export interface SimOptions {
  readonly seed: number;
  readonly unsafe?: UnsafeSwitches;
  /** Virtual ms of the fault phase. */
  readonly faultPhaseMs?: number;
  /** Virtual ms of the healed phase (liveness: progress must resume). */
  readonly healPhaseMs?: number;
  readonly clients?: number;
  readonly sessionTimeoutMs?: number;
  readonly timing?: Partial<ReplicaTiming>;
  readonly limits?: Partial<ReplicaLimits>;
  readonly compactEveryEntries?: number;
  /** Faults on (default) or a quiet network and no nemesis (scripted scenarios). */
  readonly nemesis?: boolean;
  readonly network?: Partial<NetworkFaults>;
  /** Client request timeout (the op becomes `info`). */
  readonly clientTimeoutMs?: number;
  /**
   * Live invariants to skip (to show what the end-to-end checkers alone catch): 'durable-on-two'
   * (commit only when durable on >= 2 logs).
   */
  readonly skipInvariants?: readonly 'durable-on-two'[];
  /** Virtual ms between two nemesis actions (default [40, 250]; smaller is harsher). */
  readonly nemesisIntervalMs?: readonly [number, number];
  /** Rotate to a fresh key after this many ops on one (TESTING.md B.3: <= 200 per key). */
  readonly opsPerKeyMax?: number;
  readonly keys?: number;
  /** Step inputs in batches per instant, as the real driver does (SimNodeOptions.batchInputs). */
  readonly batchInputs?: boolean;
  /** Leader balancing (off by default: the pinned regression seeds replay without it). */
  readonly balance?: LeaderBalance;
}

export interface TimelineRead {
  readonly node: NodeId;
  readonly life: number;
  readonly key: string;
  readonly value: string | null;
  readonly version: number;
  readonly appliedSeq: number;
  readonly at: number;
}

export interface SimReport {
  readonly seed: number;
  readonly violations: string[];
  readonly ops: number;
  readonly okOps: number;
  readonly okWrites: number;
  readonly okWritesAfterHeal: number;
  readonly timelineReads: number;
  readonly faults: Record<string, number>;
  readonly epochs: number;
  readonly committedSeq: number;
  readonly events: number;
  /** Protocol paths exercised, summed over the nodes. */
  readonly paths: Record<string, number>;
  readonly linearizability: {
    ok: boolean;
    illegalKeys: string[];
    unknownKeys: string[];
    keysChecked: number;
  };
}

const NODE_IDS: readonly NodeId[] = ['n0', 'n1', 'n2'];
const enc = new TextEncoder();
const dec = new TextDecoder();

interface ClientState {
  readonly name: string;
  process: number;
  leaderGuess: NodeId | null;
  busy: boolean;
  lastVersion: Map<string, number>;
}

export class SimCluster {
  readonly loop = new EventLoop();
  readonly rng: Prng;
  readonly net: SimNetwork;
  readonly zk: SimZooKeeper;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly history = new HistoryRecorder(1_000_000);
  readonly timeline: TimelineRead[] = [];
  readonly violations: string[] = [];
  readonly faults: Record<string, number> = {};
  private readonly opts: Required<
    Pick<
      SimOptions,
      | 'faultPhaseMs'
      | 'healPhaseMs'
      | 'clients'
      | 'sessionTimeoutMs'
      | 'clientTimeoutMs'
      | 'opsPerKeyMax'
      | 'keys'
    >
  >;
  /** The committed log as observed by applies: seq -> entry. */
  readonly committed = new Map<number, Entry>();
  private leaders = new Map<number, NodeId>();
  private checkedCommit = new Map<string, number>();
  private clients: ClientState[] = [];
  private nextProcess = 0;
  private valueCounter = 0;
  private keyNames: string[] = [];
  private keyOps = new Map<string, number>();
  private nextKey = 0;
  private stopClients = false;
  private healAt = Number.POSITIVE_INFINITY;
  private okWritesAfterHeal = 0;
  private lastTimelineSeq = new Map<string, number>();
  private wipedRebuilding = new Set<NodeId>();
  /** Armed: crash the leader and a follower right after the leader's next commit. */
  private failpointCommit = false;
  /** Disks whose fsyncs are slow for a while (a hiccup: widens every crash window). */
  private slowDisks = new Set<NodeId>();

  constructor(readonly options: SimOptions) {
    this.rng = new Prng(options.seed);
    const quiet = options.nemesis === false;
    this.net = new SimNetwork(this.loop, this.rng, {
      dropProbability: 0,
      duplicateProbability: quiet ? 0 : 0.01,
      delayMsMin: 1,
      delayMsMax: quiet ? 2 : 8,
      ...options.network,
    });
    this.opts = {
      faultPhaseMs: options.faultPhaseMs ?? 3000,
      healPhaseMs: options.healPhaseMs ?? 3000,
      clients: options.clients ?? 4,
      sessionTimeoutMs: options.sessionTimeoutMs ?? 400,
      clientTimeoutMs: options.clientTimeoutMs ?? 600,
      opsPerKeyMax: options.opsPerKeyMax ?? 120,
      keys: options.keys ?? 3,
    };
    this.zk = new SimZooKeeper(this.loop, this.net, this.opts.sessionTimeoutMs);
    // Vary the bounds per seed so batching, back-pressure and snapshot paths all get exercised
    // (quiet scripted runs keep the defaults).
    const vary = options.nemesis !== false;
    const variedLimits = vary
      ? {
          entriesPerMessageMax: this.rng.pick([2, 8, 64]),
          uncommittedEntriesMax: this.rng.pick([8, 64, 256]),
        }
      : {};
    const variedCompaction = vary ? this.rng.pick([8, 40, 200]) : 40;
    for (const id of NODE_IDS) {
      const disk = new SimDisk(
        (d, fn) => this.loop.after(d, fn),
        () => (this.slowDisks.has(id) ? this.rng.range(10, 80) : this.rng.range(1, 6)),
      );
      const node = new SimNode(
        {
          id,
          replicaConfig: {
            members: NODE_IDS,
            ...(options.unsafe === undefined ? {} : { unsafe: options.unsafe }),
            ...(options.timing === undefined ? {} : { timing: options.timing }),
            ...(options.balance === undefined ? {} : { balance: options.balance }),
            limits: options.limits ?? variedLimits,
          },
          tickMs: 10,
          compactEveryEntries: options.compactEveryEntries ?? variedCompaction,
          ...(options.batchInputs === true ? { batchInputs: true } : {}),
        },
        disk,
        this.loop,
        this.zk,
        this.rng,
        {
          onApply: (n, e) => this.onApply(n, e),
          onAfterReady: (n) => this.onAfterReady(n),
          sendPeer: (m) => this.sendPeer(m),
          onRejected: (n, x) => {
            this.count('rejected');
            this.violation(`${n.id} rejected a ${x.type} from ${x.from}: ${x.reason}`);
          },
          onAssertion: (n, e) => {
            this.count('assertion');
            this.violation(`assertion failed at ${n.id}: ${e.message}`);
          },
        },
      );
      this.nodes.set(id, node);
    }
    for (let i = 0; i < this.opts.keys; i++) this.keyNames.push(this.freshKey());
  }

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    assert(n !== undefined, `no node ${id}`);
    return n;
  }

  private count(fault: string): void {
    this.faults[fault] = (this.faults[fault] ?? 0) + 1;
  }

  violation(text: string): void {
    if (this.violations.length < 50) this.violations.push(`t=${this.loop.now()} ${text}`);
  }

  // ===========================================================================================
  // Wiring

  private sendPeer(m: Message): void {
    const to = this.node(m.to);
    // A connection reaches one process life: a restarted process gets none of the old data.
    const life = to.lifetime;
    this.net.send(
      m.from,
      m.to,
      () => to.deliver(() => to.step({ type: 'message', message: m })),
      () => to.up && to.lifetime === life,
    );
  }

  // ===========================================================================================
  // Invariants

  private onApply(n: SimNode, e: Entry): void {
    const seen = this.committed.get(e.lsn.seq);
    if (seen === undefined) {
      this.committed.set(e.lsn.seq, e);
      return;
    }
    if (!lsnEquals(seen.lsn, e.lsn) || !bytesEqual(seen.payload, e.payload)) {
      this.violation(
        `committed prefix changed at seq ${e.lsn.seq}: ${n.id} applied ${fmt(e.lsn)}, earlier ${fmt(seen.lsn)}`,
      );
    }
  }

  private onAfterReady(n: SimNode): void {
    const r = n.replica;
    if (r === null) return;
    const s = r.status();
    // A rebuild is over only once the promotion is durable (a crash may undo it).
    if (s.voter && n.disk.durableHard?.voter === true) this.wipedRebuilding.delete(n.id);
    if (s.role === 'leader') {
      const other = this.leaders.get(s.currentEpoch);
      if (other === undefined) this.leaders.set(s.currentEpoch, n.id);
      else if (other !== n.id)
        this.violation(`two leaders in epoch ${s.currentEpoch}: ${other}, ${n.id}`);
      if (this.failpointCommit && s.commitSeq > s.barrierSeq) {
        // Failpoint (TESTING.md N2): the leader and a follower crash right after a commit.
        this.failpointCommit = false;
        const follower = this.rng.pick(NODE_IDS.filter((x) => x !== n.id));
        this.count('failpoint-commit');
        this.loop.after(0, () => {
          for (const v of [n.id, follower]) {
            this.crash(v, { tearProbability: 0.5 });
            this.loop.after(this.rng.range(20, 700), () => this.restart(v));
          }
        });
      }
      if (this.options.skipInvariants?.includes('durable-on-two') === true) return;
      const k = `${n.id}/${n.lifetime}/${s.currentEpoch}`;
      const from = this.checkedCommit.get(k) ?? s.commitSeq;
      for (let seq = from + 1; seq <= s.commitSeq; seq++) {
        const lsn = r.lsnAt(seq);
        if (lsn === null) continue;
        let copies = 0;
        for (const other of this.nodes.values()) if (other.disk.hasDurable(lsn)) copies += 1;
        if (copies < 2) this.violation(`${n.id} committed ${fmt(lsn)} durable on ${copies} log(s)`);
      }
      this.checkedCommit.set(k, s.commitSeq);
    }
  }

  // ===========================================================================================
  // Clients (TESTING.md B.3: unique values, <= opsPerKeyMax ops per key, never retry blindly)

  private freshKey(): string {
    return cellKey(`row${this.nextKey++}`, 'c');
  }

  startClients(): void {
    for (let i = 0; i < this.opts.clients; i++) {
      const c: ClientState = {
        name: `c${i}`,
        process: this.nextProcess++,
        leaderGuess: null,
        busy: false,
        lastVersion: new Map(),
      };
      this.clients.push(c);
      this.loop.after(this.rng.range(0, 20), () => this.clientNext(c));
    }
  }

  private pickKey(): string {
    const i = this.rng.int(this.keyNames.length);
    const key = this.keyNames[i]!;
    const n = (this.keyOps.get(key) ?? 0) + 1;
    this.keyOps.set(key, n);
    if (n >= this.opts.opsPerKeyMax) this.keyNames[i] = this.freshKey();
    return key;
  }

  private clientNext(c: ClientState): void {
    if (this.stopClients || c.busy) return;
    const key = this.pickKey();
    const roll = this.rng.float();
    if (roll < 0.1) {
      this.timelineRead(c, key);
    } else if (roll < 0.45) {
      this.strongOp(c, key, { f: 'get' });
    } else if (roll < 0.7) {
      this.strongOp(c, key, { f: 'put' });
    } else if (roll < 0.85) {
      this.strongOp(c, key, { f: 'put', expected: this.expectedFor(c, key) });
    } else if (roll < 0.93) {
      this.strongOp(c, key, { f: 'delete' });
    } else {
      this.strongOp(c, key, { f: 'delete', expected: this.expectedFor(c, key) });
    }
  }

  private expectedFor(c: ClientState, key: string): number {
    if (this.rng.chance(0.2)) return 0;
    return c.lastVersion.get(key) ?? 0;
  }

  private target(c: ClientState): SimNode {
    const id = c.leaderGuess ?? this.rng.pick(NODE_IDS);
    return this.node(id);
  }

  private scheduleNext(c: ClientState): void {
    c.busy = false;
    this.loop.after(this.rng.range(0, 15), () => this.clientNext(c));
  }

  /** One request/response over the client network with a timeout (outcome unknown). */
  private call(
    c: ClientState,
    node: SimNode,
    send: (reply: (r: NodeReply) => void) => void,
    done: (r: NodeReply | 'timeout') => void,
  ): void {
    let finished = false;
    const finish = (r: NodeReply | 'timeout') => {
      if (finished) return;
      finished = true;
      done(r);
    };
    const once = { duplicates: false };
    this.net.send(
      c.name,
      node.id,
      () =>
        node.deliver(() =>
          send((r) =>
            this.net.send(
              node.id,
              c.name,
              () => finish(r),
              () => true,
              once,
            ),
          ),
        ),
      () => node.up,
      once,
    );
    this.loop.after(this.opts.clientTimeoutMs, () => finish('timeout'));
  }

  private strongOp(
    c: ClientState,
    key: string,
    op: { f: 'get' | 'put' | 'delete'; expected?: number; value?: string; node?: NodeId },
    onDone?: (op: HistoryOp) => void,
  ): void {
    c.busy = true;
    const node = op.node === undefined ? this.target(c) : this.node(op.node);
    const value =
      op.f === 'put' ? (op.value ?? `v${this.options.seed}.${this.valueCounter++}`) : undefined;
    const id = this.history.invoke(
      {
        process: c.process,
        key,
        f: op.f,
        ...(value === undefined ? {} : { value }),
        ...(op.expected === undefined ? {} : { expectedVersion: op.expected }),
      },
      this.loop.stamp(),
    );
    const [row, column] = key.split('/') as [string, string];
    const payload =
      op.f === 'get'
        ? null
        : encodeRowMutation({
            key: enc.encode(row),
            writes: [
              {
                column: enc.encode(column),
                value: value === undefined ? null : enc.encode(value),
                ...(op.expected === undefined ? {} : { expectedVersion: op.expected }),
              },
            ],
          });
    this.call(
      c,
      node,
      (reply) => {
        if (payload === null) node.clientStrongRead(key, reply);
        else node.clientWrite(key, payload, reply);
      },
      (r) => {
        const now = this.loop.stamp();
        if (r === 'timeout' || r.kind === 'unknown') {
          this.history.complete(id, 'info', now);
          c.process = this.nextProcess++;
          c.leaderGuess = null;
        } else if (r.kind === 'fail') {
          this.history.complete(id, 'fail', now);
          c.leaderGuess = r.leaderHint;
        } else if (r.kind === 'read-ok') {
          assert(op.f === 'get', 'read reply for a get');
          const cell = r.cell;
          this.history.complete(
            id,
            'ok',
            now,
            cell === undefined
              ? { found: false, version: 0 }
              : { found: true, value: cell.value, version: cell.version },
          );
          c.lastVersion.set(key, cell?.version ?? 0);
          c.leaderGuess = node.id;
        } else {
          const res = r.result;
          assert(res !== null, 'a data entry has an apply result');
          c.leaderGuess = node.id;
          if (!res.ok) {
            this.history.complete(id, 'ok', now, { succeeded: false });
            c.lastVersion.set(key, res.actualVersion);
          } else if (op.f === 'put') {
            this.history.complete(id, 'ok', now, { version: res.versions[0]! });
            c.lastVersion.set(key, res.versions[0]!);
            if (this.loop.now() >= this.healAt) this.okWritesAfterHeal += 1;
          } else {
            const prev = res.previousVersions[0]!;
            this.history.complete(id, 'ok', now, { found: prev > 0, version: prev });
            c.lastVersion.set(key, 0);
            if (this.loop.now() >= this.healAt) this.okWritesAfterHeal += 1;
          }
        }
        if (onDone === undefined) this.scheduleNext(c);
        else {
          c.busy = false;
          onDone(this.history.history()[id]!);
        }
      },
    );
  }

  /**
   * A scripted strong operation at a chosen node (scenario tests): runs the simulation until it
   * completes (or times out as `info`) and returns the recorded history op.
   */
  op(
    node: NodeId,
    f: 'get' | 'put' | 'delete',
    key: string,
    opts: { value?: string; expected?: number } = {},
  ): HistoryOp {
    const c: ClientState = {
      name: `s${this.nextProcess}`,
      process: this.nextProcess++,
      leaderGuess: node,
      busy: false,
      lastVersion: new Map(),
    };
    this.keyOps.set(key, (this.keyOps.get(key) ?? 0) + 1);
    let done: HistoryOp | null = null;
    this.strongOp(c, key, { f, node, ...opts }, (h) => {
      done = h;
    });
    this.runUntil(() => done !== null, this.opts.clientTimeoutMs + 100);
    assert(done !== null, 'a scripted op completes or times out');
    return done;
  }

  private timelineRead(c: ClientState, key: string): void {
    c.busy = true;
    const node = this.node(this.rng.pick(NODE_IDS));
    this.net.send(
      c.name,
      node.id,
      () =>
        node.deliver(() => {
          const r = node.timelineRead(key);
          if (r === null) return;
          this.checkTimeline({
            node: node.id,
            life: node.lifetime,
            key,
            value: r.cell?.value ?? null,
            version: r.cell?.version ?? 0,
            appliedSeq: r.appliedSeq,
            at: this.loop.stamp(),
          });
        }),
      () => node.up,
    );
    this.scheduleNext(c);
  }

  private checkTimeline(t: TimelineRead): void {
    this.timeline.push(t);
    if (t.value !== null) {
      const e = this.committed.get(t.version);
      if (e === undefined || !entryWrites(e, t.key, t.value)) {
        this.violation(
          `timeline read at ${t.node} saw ${t.key}=${t.value}@${t.version}, not committed`,
        );
      }
    }
    // Per replica, across its restarts (a restarted replica serves again only once caught up).
    const k = t.node;
    const before = this.lastTimelineSeq.get(k) ?? 0;
    if (t.appliedSeq < before) {
      this.violation(`timeline reads at ${t.node} went back in time: ${before} -> ${t.appliedSeq}`);
    }
    this.lastTimelineSeq.set(k, Math.max(before, t.appliedSeq));
  }

  // ===========================================================================================
  // Nemesis

  private upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.up);
  }

  crash(id: NodeId, opts: { wipe?: boolean; tearProbability?: number } = {}): void {
    const n = this.node(id);
    if (!n.up) return;
    this.count(opts.wipe === true ? 'crash+wipe' : 'crash');
    if (opts.wipe === true) this.wipedRebuilding.add(id);
    n.crash({ tearProbability: opts.tearProbability ?? 0, wipe: opts.wipe === true });
    this.net.breakAll(id);
  }

  restart(id: NodeId): void {
    const n = this.node(id);
    if (n.up) return;
    this.count('restart');
    n.boot();
  }

  isolate(id: NodeId, opts: { peers: boolean; zk: boolean }): void {
    this.count(`isolate${opts.peers ? '-peers' : ''}${opts.zk ? '-zk' : ''}`);
    for (const other of NODE_IDS) {
      if (other === id || !opts.peers) continue;
      this.net.block(id, other);
      this.net.block(other, id);
    }
    if (opts.zk) {
      this.net.block(id, ZK_ENDPOINT);
      this.net.block(ZK_ENDPOINT, id);
    }
  }

  cut(from: string, to: string): void {
    this.count('cut');
    this.net.block(from, to);
  }

  heal(): void {
    this.net.healAll();
  }

  private nemesisStep(): void {
    if (this.loop.now() >= this.opts.faultPhaseMs) return;
    const roll = this.rng.float();
    const ids = [...NODE_IDS];
    const victim = this.rng.pick(ids);
    const n = this.node(victim);
    if (roll < 0.25) {
      if (n.up) {
        // At most one lost disk at a time (f = 1 for permanent failures); others may be down.
        const wipe = this.wipedRebuilding.size === 0 && this.rng.chance(0.15);
        this.crash(victim, { wipe, tearProbability: 0.5 });
        this.loop.after(this.rng.range(20, 700), () => this.restart(victim));
      }
    } else if (roll < 0.4) {
      this.isolate(victim, { peers: true, zk: this.rng.chance(0.5) });
      this.loop.after(this.rng.range(50, 900), () => this.heal());
    } else if (roll < 0.5) {
      this.isolate(victim, { peers: false, zk: true });
      this.loop.after(this.rng.range(50, 900), () => this.heal());
    } else if (roll < 0.6) {
      const other = this.rng.pick(ids.filter((x) => x !== victim));
      this.cut(victim, other);
      if (this.rng.chance(0.5)) this.cut(other, victim);
      this.loop.after(this.rng.range(50, 900), () => this.heal());
    } else if (roll < 0.7) {
      if (n.up) {
        this.count('pause');
        n.pause(this.rng.range(50, 1200));
      }
    } else if (roll < 0.8) {
      this.count('drops');
      this.net.faults.dropProbability = this.rng.pick([0.02, 0.05, 0.1]);
      this.loop.after(this.rng.range(100, 600), () => {
        this.net.faults.dropProbability = 0;
      });
    } else if (roll < 0.84) {
      // A correlated outage (S§8.1, DESIGN.md §5 rule 8): every node at once, or the leader
      // and one follower. Acknowledged writes must survive it.
      const all = this.rng.chance(0.4);
      const leader = [...this.nodes.values()].find((x) => x.replica?.status().role === 'leader');
      const victims = all
        ? [...NODE_IDS]
        : [leader?.id ?? victim, this.rng.pick(ids.filter((x) => x !== (leader?.id ?? victim)))];
      this.count(all ? 'crash-all' : 'crash-two');
      for (const v of victims) {
        if (!this.node(v).up) continue;
        this.crash(v, { tearProbability: 0.5 });
        this.loop.after(this.rng.range(20, 700), () => this.restart(v));
      }
    } else if (roll < 0.855) {
      this.failpointCommit = true;
    } else if (roll < 0.87) {
      this.count('slow-disk');
      this.slowDisks.add(victim);
      this.loop.after(this.rng.range(100, 800), () => this.slowDisks.delete(victim));
    } else if (roll < 0.9) {
      // Crash the current leader, specifically.
      const leader = [...this.nodes.values()].find((x) => x.replica?.status().role === 'leader');
      if (leader !== undefined) {
        this.crash(leader.id, { tearProbability: 0.5 });
        const lid = leader.id;
        this.loop.after(this.rng.range(20, 700), () => this.restart(lid));
      }
    } else {
      this.heal();
      this.count('heal');
    }
    const [lo, hi] = this.options.nemesisIntervalMs ?? [40, 250];
    this.loop.after(this.rng.range(lo, hi), () => this.nemesisStep());
  }

  // ===========================================================================================
  // Runs

  bootAll(): void {
    for (const n of this.nodes.values()) if (!n.up) n.boot();
  }

  /** Run until `pred` holds or `deadlineMs` of virtual time passes; returns whether it held. */
  runUntil(pred: () => boolean, deadlineMs: number): boolean {
    const until = this.loop.now() + deadlineMs;
    if (pred()) return true;
    this.loop.runUntil(until, pred);
    return pred();
  }

  runFor(ms: number): void {
    this.loop.runUntil(this.loop.now() + ms);
  }

  leader(): SimNode | null {
    const serving = [...this.nodes.values()].filter(
      (n) => n.up && n.replica?.status().serving === true,
    );
    if (serving.length === 0) return null;
    return serving.reduce((a, b) =>
      a.replica!.status().currentEpoch >= b.replica!.status().currentEpoch ? a : b,
    );
  }

  converged(): boolean {
    const up = this.upNodes();
    if (up.length !== 3) return false;
    const leader = this.leader();
    if (leader === null) return false;
    const target = leader.replica!.status().commitSeq;
    return up.every((n) => {
      const s = n.replica?.status();
      return s?.voter === true && s.appliedSeq === target && s.commitSeq === target;
    });
  }

  /** The full randomized run: faults, then heal (liveness), then final reads and checks. */
  run(): SimReport {
    this.bootAll();
    this.startClients();
    if (this.options.nemesis !== false)
      this.loop.after(this.rng.range(100, 300), () => this.nemesisStep());
    this.runFor(this.opts.faultPhaseMs);
    // Heal: every fault ends, every node comes back.
    this.heal();
    this.slowDisks.clear();
    this.net.faults.dropProbability = 0;
    for (const id of NODE_IDS) this.restart(id);
    this.healAt = this.loop.now() + 2 * this.opts.sessionTimeoutMs + 500;
    this.runFor(this.opts.healPhaseMs);
    this.stopClients = true;
    const convergedInTime = this.runUntil(() => this.converged(), 5000);
    if (!convergedInTime) this.violation('liveness: replicas did not converge after heal');
    if (this.okWritesAfterHeal === 0) this.violation('liveness: no write succeeded after heal');
    if ((this.options.balance?.handoffAfterTicks ?? 0) > 0) {
      // Leader balancing: once healed, leadership ends at the preferred member.
      const preferred = NODE_IDS[0]!;
      if (!this.runUntil(() => this.leader()?.id === preferred, 5000)) {
        this.violation(
          `liveness: leadership did not return to the preferred member ${preferred} (leader: ${this.leader()?.id ?? 'none'})`,
        );
      }
    }
    this.runFor(this.opts.clientTimeoutMs + 50);
    this.finalReads();
    return this.report();
  }

  /** A strong read of every key ever used, at the leader, so lost writes show up. */
  finalReads(): void {
    const leader = this.leader();
    if (leader === null) return;
    const c: ClientState = {
      name: 'final',
      process: this.nextProcess++,
      leaderGuess: leader.id,
      busy: false,
      lastVersion: new Map(),
    };
    for (const key of this.keyOps.keys()) {
      let done = false;
      const id = this.history.invoke({ process: c.process, key, f: 'get' }, this.loop.stamp());
      this.call(
        c,
        leader,
        (reply) => leader.clientStrongRead(key, reply),
        (r) => {
          done = true;
          const now = this.loop.stamp();
          if (r !== 'timeout' && r.kind === 'read-ok') {
            this.history.complete(
              id,
              'ok',
              now,
              r.cell === undefined
                ? { found: false, version: 0 }
                : { found: true, value: r.cell.value, version: r.cell.version },
            );
          } else if (r === 'timeout' || r.kind === 'unknown') {
            this.history.complete(id, 'info', now);
          } else {
            this.history.complete(id, 'fail', now);
          }
        },
      );
      this.runUntil(() => done, this.opts.clientTimeoutMs + 100);
    }
  }

  /** Replays the observed committed log: what each committed write really wrote. */
  private committedWrites(): CommittedWrite[] | null {
    const model = new ApplyModel();
    const out: CommittedWrite[] = [];
    const max = Math.max(0, ...this.committed.keys());
    for (let seq = 1; seq <= max; seq++) {
      const e = this.committed.get(seq);
      if (e === undefined) return null; // a seq only ever shipped inside snapshots
      const res = model.apply(e);
      if (res === null || !res.ok) continue;
      decodeEntryWrites(e).forEach((w) => {
        const key = cellKey(w.row, w.column);
        out.push(w.value === null ? { key, version: seq } : { key, value: w.value, version: seq });
      });
    }
    return out;
  }

  checkFinalState(): void {
    const up = this.upNodes().filter((n) => n.replica !== null);
    const maxApplied = Math.max(0, ...up.map((n) => n.model!.appliedSeq));
    const caughtUp = up.filter((n) => n.model!.appliedSeq === maxApplied);
    const conv = checkReplicasEqual(new Map(caughtUp.map((n) => [n.id, n.model!.digest()])));
    if (caughtUp.length >= 2 && !conv.ok) {
      this.violation(`caught-up replicas differ in applied state: ${conv.divergent.join(', ')}`);
    }
    // The shared checkers (src/sim/checkers): lost acks against the final state, timeline reads.
    const leader = this.leader();
    if (leader !== null && this.converged()) {
      const finalState = new Map<string, FinalCell | null>();
      for (const key of this.keyOps.keys()) {
        const cell = leader.model!.get(key);
        finalState.set(
          key,
          cell === undefined ? null : { value: cell.value, version: cell.version },
        );
      }
      const lost = checkNoLostAcks(this.history.history(), finalState);
      if (!lost.ok) {
        this.violation(
          `lost acks: ${lost.lost.map((l) => `${l.key}=${l.value}`).join(', ')} phantoms: ${lost.phantoms.length}`,
        );
      }
    }
    const writes = this.committedWrites();
    if (writes !== null) {
      const reads: CheckerTimelineRead[] = this.timeline.map((t, id) => ({
        id,
        replica: t.node,
        key: t.key,
        found: t.value !== null,
        ...(t.value === null ? {} : { value: t.value, version: t.version }),
        call: t.at,
        ret: t.at,
      }));
      const tl = checkTimelineReads(reads, writes);
      if (!tl.ok) {
        this.violation(
          `timeline checker: ${tl.notCommitted.length} uncommitted, ${tl.wentBack.length} went back`,
        );
      }
    }
    // Every acknowledged write is in the committed log, at the version it was given.
    for (const op of this.history.history()) {
      if (op.outcome !== 'ok' || op.f !== 'put' || op.result?.version === undefined) continue;
      const e = this.committed.get(op.result.version);
      if (e === undefined || !entryWrites(e, op.key, op.value!)) {
        this.violation(
          `acknowledged put ${op.key}=${op.value}@${op.result.version} not in the committed log`,
        );
      }
      if (op.result.version > maxApplied) {
        this.violation(
          `acknowledged put ${op.value}@${op.result.version} beyond final state ${maxApplied}`,
        );
      }
    }
  }

  /**
   * The history for the linearizability checker, with indeterminate puts resolved (TESTING.md
   * B.3, etcd's patch_history): an `info` put whose unique value is in no committed entry never
   * took effect (no read can ever see it) and becomes `fail`. This keeps the search small when
   * faults leave many writes indeterminate.
   */
  strongHistory(): HistoryOp[] {
    const committedValues = new Set<string>();
    for (const e of this.committed.values()) {
      if (e.kind !== 'data') continue;
      for (const w of decodeEntryWrites(e)) {
        if (w.value !== null) committedValues.add(`${cellKey(w.row, w.column)}\u0000${w.value}`);
      }
    }
    return this.history
      .history()
      .map((op) =>
        op.outcome === 'info' &&
        op.f === 'put' &&
        !committedValues.has(`${op.key}\u0000${op.value}`)
          ? { ...op, outcome: 'fail' as const }
          : op,
      );
  }

  paths(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const n of this.nodes.values()) {
      for (const [k, v] of Object.entries(n.stats)) out[k] = (out[k] ?? 0) + v;
    }
    return out;
  }

  report(): SimReport {
    this.checkFinalState();
    const ops = this.strongHistory();
    const lin = checkLinearizable(ops, { timeoutMs: 10_000 });
    if (!lin.ok) {
      this.violation(
        `linearizability: illegal keys [${lin.illegalKeys.join(', ')}] unknown [${lin.unknownKeys.join(', ')}]`,
      );
    }
    const okOps = ops.filter((o) => o.outcome === 'ok').length;
    const okWrites = ops.filter((o) => o.outcome === 'ok' && o.f !== 'get').length;
    return {
      seed: this.options.seed,
      violations: [...this.violations],
      ops: ops.length,
      okOps,
      okWrites,
      okWritesAfterHeal: this.okWritesAfterHeal,
      timelineReads: this.timeline.length,
      faults: { ...this.faults },
      epochs: this.zk.currentEpoch(),
      committedSeq: Math.max(0, ...this.committed.keys()),
      events: this.loop.executed,
      paths: this.paths(),
      linearizability: {
        ok: lin.ok,
        illegalKeys: lin.illegalKeys,
        unknownKeys: lin.unknownKeys,
        keysChecked: lin.keysChecked,
      },
    };
  }
}

export function runSeed(options: SimOptions): SimReport {
  return new SimCluster(options).run();
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function fmt(l: Lsn): string {
  return `${l.epoch}.${l.seq}`;
}

/** Whether a committed data entry writes `value` to `key` (row/column). */
export function entryWrites(e: Entry, key: string, value: string): boolean {
  if (e.kind !== 'data') return false;
  const [row, column] = key.split('/') as [string, string];
  return decodeEntryWrites(e).some(
    (w) => w.row === row && w.column === column && w.value === value,
  );
}

function decodeEntryWrites(e: Entry): { row: string; column: string; value: string | null }[] {
  const m = decodeRowMutation(e.payload);
  const row = dec.decode(m.key);
  return m.writes.map((w) => ({
    row,
    column: dec.decode(w.column),
    value: w.value === null ? null : dec.decode(w.value),
  }));
}
