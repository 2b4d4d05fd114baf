// One simulated node process hosting one cohort replica: the driver of the pure core
// (src/replication) over the simulated disk, network and ZooKeeper. It implements the Ready
// ordering contract of src/replication/types.ts exactly once:
//   write (hard state, snapshot base, truncate, entries, commit hint) -> apply committed entries
//   and answer clients -> send messages / coordinator ops / snapshots -> when everything written
//   so far is durable: send afterDurable messages, run afterDurable coordinator ops, then step
//   `append-durable`.
// Boot = local recovery from the disk (S§6.1) + the incarnation check of PML §5.1: a node whose
// marker in ZooKeeper says it had data but whose disk is empty bumps its incarnation and rejoins
// as a non-voter. A process can crash (unsynced writes partly lost, maybe torn), restart, lose
// its disk, or pause (SIGSTOP: it processes nothing, sends no pings, and resumes later).

import { AssertionError, assert } from '../core/assert.js';
import type { NodeId } from '../core/ids.js';
import { type Lsn, lsnEquals, ZERO_LSN } from '../core/lsn.js';
import type { ApplyResult } from '../core/mutation.js';
import { Replica } from '../replication/replica.js';
import type {
  CoordinatorOp,
  Entry,
  HardState,
  Input,
  Message,
  RejectedMessage,
  ReplicaConfig,
} from '../replication/types.js';
import { ApplyModel, type Cell } from './apply-model.js';
import type { DiskRecord, SimDisk } from './disk.js';
import type { EventLoop } from './event-loop.js';
import type { Prng } from './prng.js';
import type { SimZooKeeper, ZkView } from './zookeeper.js';

export type NodeReply =
  | { readonly kind: 'write-ok'; readonly result: ApplyResult | null }
  | { readonly kind: 'read-ok'; readonly cell: Cell | undefined }
  | { readonly kind: 'fail'; readonly reason: string; readonly leaderHint: NodeId | null }
  | { readonly kind: 'unknown' };

export interface NodeHooks {
  /** Every entry applied by any replica, in order (committed-prefix invariant). */
  onApply(node: SimNode, entry: Entry): void;
  /** After each Ready is handled (leader-per-epoch and durability invariants). */
  onAfterReady(node: SimNode): void;
  sendPeer(m: Message): void;
  /** The core dropped a peer message no correct peer sends (a protocol bug in the simulation). */
  onRejected(node: SimNode, rejected: RejectedMessage): void;
  /** An assertion failed in this process (it crashes: fail-stop). */
  onAssertion(node: SimNode, error: AssertionError): void;
}

export interface SimNodeOptions {
  readonly id: NodeId;
  readonly replicaConfig: Omit<ReplicaConfig, 'self'>;
  readonly tickMs: number;
  /** Checkpoint the applied state and drop older log entries after this many applied entries. */
  readonly compactEveryEntries: number;
  /**
   * Step inputs as the real driver does (src/server/cohort.ts): inputs that arrive in one instant
   * are queued, stepped together and drained once, so several writes, acks and ticks share one
   * Ready. Off: every input is stepped and drained on its own.
   */
  readonly batchInputs?: boolean;
}

interface PendingClient {
  readonly key: string;
  readonly reply: (r: NodeReply) => void;
}

export class SimNode {
  readonly id: NodeId;
  up = false;
  /** Bumped at every boot and crash: callbacks of an older life are ignored. */
  lifetime = 0;
  boots = 0;
  replica: Replica | null = null;
  model: ApplyModel | null = null;
  private pausedUntil = -1;
  private pausedQueue: (() => void)[] = [];
  private sessionId: number | null = null;
  private incarnation = 0;
  private pendingView: ZkView | null = null;
  private wasNonVoter = false;
  private pendingClients = new Map<number, PendingClient>();
  private nextRequestId = 1;
  private baseSeq = 0;
  private compacting = false;
  private lastAppliedLsn: Lsn = ZERO_LSN;
  /** What the protocol did here, for reports and for tests that a path was exercised. */
  readonly stats = {
    truncations: 0,
    snapshotsSent: 0,
    snapshotsInstalled: 0,
    promotions: 0,
    compactions: 0,
    electionsWon: 0,
    handoffs: 0,
  };

  constructor(
    private readonly opts: SimNodeOptions,
    readonly disk: SimDisk,
    private readonly loop: EventLoop,
    private readonly zk: SimZooKeeper,
    private readonly rng: Prng,
    private readonly hooks: NodeHooks,
  ) {
    this.id = opts.id;
  }

  get paused(): boolean {
    return this.pausedUntil > this.loop.now();
  }

  // ===========================================================================================
  // Life cycle

  boot(): void {
    assert(!this.up, 'boot a node that is down');
    this.up = true;
    this.lifetime += 1;
    this.boots += 1;
    const life = this.lifetime;
    const alive = () => this.lifetime === life && this.up;
    this.zk.connect(this.id, {
      alive,
      onOpen: (sid) => this.inLife(life, () => this.onSessionOpen(sid, true)),
      onView: (v) => this.inLife(life, () => this.onView(v)),
      onExpired: () => this.inLife(life, () => this.onSessionExpired()),
    });
  }

  crash(opts: { tearProbability: number; wipe: boolean }): void {
    if (!this.up) return;
    this.up = false;
    this.lifetime += 1;
    this.replica = null;
    this.model = null;
    this.sessionId = null;
    this.pendingView = null;
    this.pendingClients.clear();
    this.inbox = [];
    this.pausedQueue = [];
    this.pausedUntil = -1;
    this.compacting = false;
    this.disk.crash(this.rng, { tearProbability: opts.tearProbability });
    if (opts.wipe) this.disk.wipe();
  }

  pause(durationMs: number): void {
    if (!this.up) return;
    this.pausedUntil = this.loop.now() + durationMs;
    const life = this.lifetime;
    this.loop.after(durationMs, () => {
      if (this.lifetime !== life) return;
      const q = this.pausedQueue;
      this.pausedQueue = [];
      for (const fn of q) fn();
    });
  }

  /** Run `fn` in this process if it is still the same life; defer it while paused. */
  private inLife(life: number, fn: () => void): void {
    if (this.lifetime !== life || !this.up) return;
    if (this.paused) {
      this.pausedQueue.push(() => this.inLife(life, fn));
      return;
    }
    fn();
  }

  /** A delivery from the network to this process. */
  deliver(fn: () => void): void {
    this.inLife(this.lifetime, fn);
  }

  private onSessionOpen(sid: number, firstOfLife: boolean): void {
    this.sessionId = sid;
    if (firstOfLife && this.replica === null) {
      this.zkRequest({ op: 'get-incarnation' }, (r) => {
        if (!r.ok) return; // session expired during boot: the re-open path restarts it
        this.recoverAndStart(r.value ?? 0);
      });
      return;
    }
    this.step({ type: 'session', state: 'established' });
  }

  private onSessionExpired(): void {
    if (this.sessionId === null) return;
    this.sessionId = null;
    if (this.replica !== null) this.step({ type: 'session', state: 'lost' });
    const life = this.lifetime;
    // A new session, transparently (the coordination adapter does the same).
    this.zk.connect(this.id, {
      alive: () => this.lifetime === life && this.up,
      onOpen: (sid) => this.inLife(life, () => this.onSessionOpen(sid, this.replica === null)),
      onView: (v) => this.inLife(life, () => this.onView(v)),
      onExpired: () => this.inLife(life, () => this.onSessionExpired()),
    });
  }

  private zkRequest(
    req: Parameters<SimZooKeeper['request']>[1],
    onResponse: Parameters<SimZooKeeper['request']>[2],
  ): void {
    if (this.sessionId === null) return;
    const life = this.lifetime;
    this.zk.request(this.sessionId, req, (r) => this.inLife(life, () => onResponse(r)));
  }

  /** S§6.1 local recovery, then PML §5.1: decide whether we are a voter. */
  private recoverAndStart(markerIncarnation: number): void {
    const rec = this.disk.recover();
    const life = this.lifetime;
    if (rec.hard !== null) {
      this.incarnation = Math.max(markerIncarnation, 1);
      if (markerIncarnation === 0) this.zkRequest({ op: 'set-incarnation', value: 1 }, () => {});
      this.startReplica(rec.hard, life);
      return;
    }
    if (markerIncarnation > 0) {
      // Lost disk: our previous life's promises are gone. Bump the incarnation first (so a
      // lingering candidacy of that life can no longer be claimed on), then rebuild as a
      // non-voter.
      const inc = markerIncarnation + 1;
      this.zkRequest({ op: 'set-incarnation', value: inc }, (r) => {
        if (!r.ok) return;
        this.incarnation = inc;
        const hard: HardState = { fenceEpoch: 0, voter: false };
        this.disk.write([{ t: 'hard', hard }]);
        this.disk.afterDurable(() => this.inLife(life, () => this.startReplica(hard, life)));
      });
      return;
    }
    // A fresh node: durable hard state first, then the marker (so "marker but empty disk"
    // really means a lost disk).
    const hard: HardState = { fenceEpoch: 0, voter: true };
    this.disk.write([{ t: 'hard', hard }]);
    this.disk.afterDurable(() =>
      this.inLife(life, () => {
        this.zkRequest({ op: 'set-incarnation', value: 1 }, (r) => {
          if (!r.ok) return;
          this.incarnation = 1;
          this.startReplica(hard, life);
        });
      }),
    );
  }

  private startReplica(hard: HardState, life: number): void {
    if (this.lifetime !== life || this.replica !== null) return;
    const rec = this.disk.recover();
    const base = rec.base?.lsn ?? ZERO_LSN;
    this.model = rec.base === null ? new ApplyModel() : ApplyModel.deserialize(rec.base.state);
    assert(this.model.appliedSeq === base.seq, 'snapshot state matches its base');
    this.baseSeq = base.seq;
    this.lastAppliedLsn = base;
    let commitSeq = base.seq;
    if (rec.commitLsn !== null) {
      const e = rec.entries.find((x) => x.lsn.seq === rec.commitLsn!.seq);
      if (e !== undefined) {
        assert(lsnEquals(e.lsn, rec.commitLsn), `${this.id}: commit hint contradicts the log`);
        commitSeq = e.lsn.seq;
      }
      // A hint whose entry is gone (cannot happen with in-order writes) is ignored: replaying
      // less is always safe, the leader tells us the rest.
    }
    this.wasNonVoter = !(rec.hard ?? hard).voter;
    this.replica = new Replica(
      { ...this.opts.replicaConfig, self: this.id },
      { hardState: rec.hard ?? hard, baseLsn: base, entries: rec.entries, commitSeq },
    );
    this.failStop(() => this.drain());
    if (this.replica === null) return;
    if (this.sessionId !== null) {
      this.step({ type: 'session', state: 'established' });
      if (this.pendingView !== null) {
        const v = this.pendingView;
        this.pendingView = null;
        this.onView(v);
      }
    }
    this.scheduleTick(life);
    this.schedulePing(life);
  }

  private scheduleTick(life: number): void {
    this.loop.after(this.opts.tickMs, () => {
      if (this.lifetime !== life) return;
      if (!this.paused) this.step({ type: 'tick' });
      this.scheduleTick(life);
    });
  }

  private schedulePing(life: number): void {
    this.loop.after(Math.floor(this.zk.sessionTimeoutMs / 3), () => {
      if (this.lifetime !== life) return;
      if (!this.paused && this.sessionId !== null) this.zk.ping(this.sessionId);
      this.schedulePing(life);
    });
  }

  private onView(v: ZkView): void {
    if (this.replica === null) {
      this.pendingView = v;
      return;
    }
    // Leader first: an epoch that moved arrives together with its leader (one multi), and a node
    // must not see "new epoch, no leader" and stand for election against the new leader.
    this.step({ type: 'leader-znode', leader: v.leader });
    this.step({ type: 'epoch-znode', epoch: v.epoch, version: v.epochVersion });
    this.step({ type: 'candidates', round: v.epoch, candidates: v.candidates });
  }

  // ===========================================================================================
  // Inputs

  step(input: Input): void {
    const r = this.replica;
    if (r === null) return;
    if (this.opts.batchInputs !== true) {
      this.failStop(() => {
        r.step(input);
        this.drain();
      });
      return;
    }
    this.inbox.push(input);
    if (this.inbox.length > 1) return;
    const life = this.lifetime;
    // A zero-delay event runs after everything already scheduled for this instant: the analogue
    // of the driver's microtask flush.
    this.loop.after(0, () =>
      this.inLife(life, () => {
        const inputs = this.inbox;
        this.inbox = [];
        const rep = this.replica;
        if (rep === null) return;
        this.failStop(() => {
          for (const i of inputs) rep.step(i);
          this.drain();
        });
      }),
    );
  }

  private inbox: Input[] = [];

  /** A broken invariant inside this process is fail-stop: report it, crash the process. */
  private failStop(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof AssertionError)) throw e;
      this.hooks.onAssertion(this, e);
      this.crash({ tearProbability: 0, wipe: false });
    }
  }

  clientWrite(key: string, payload: Uint8Array, reply: (r: NodeReply) => void): void {
    if (this.replica === null) return; // booting: the client times out
    const id = this.nextRequestId++;
    this.pendingClients.set(id, { key, reply });
    this.step({ type: 'client-write', requestId: id, payload });
  }

  clientStrongRead(key: string, reply: (r: NodeReply) => void): void {
    if (this.replica === null) return;
    const id = this.nextRequestId++;
    this.pendingClients.set(id, { key, reply });
    this.step({ type: 'client-read', requestId: id });
  }

  /** Timeline read: any replica, from its applied state (S§3). */
  timelineRead(key: string): { cell: Cell | undefined; appliedSeq: number } | null {
    if (this.model === null || this.replica === null) return null;
    if (!this.replica.status().timelineReadable) return null;
    return { cell: this.model.get(key), appliedSeq: this.model.appliedSeq };
  }

  // ===========================================================================================
  // The Ready contract

  private drain(): void {
    const r = this.replica;
    if (r === null) return;
    const life = this.lifetime;
    let rounds = 0;
    while (r.hasReady()) {
      rounds += 1;
      assert(rounds < 10_000, 'drain converges');
      const rd = r.ready();
      const model = this.model!;
      const writes: DiskRecord[] = [];
      if (rd.hardState !== null) {
        writes.push({ t: 'hard', hard: rd.hardState });
        if (rd.hardState.voter && this.wasNonVoter) this.stats.promotions += 1;
        this.wasNonVoter = !rd.hardState.voter;
      }
      if (rd.installSnapshot !== null) {
        const snap = rd.installSnapshot;
        writes.push({ t: 'base', lsn: snap.lsn, state: snap.data });
        writes.push({ t: 'truncate', afterSeq: snap.lsn.seq });
        this.model = ApplyModel.deserialize(snap.data);
        this.stats.snapshotsInstalled += 1;
        assert(this.model.appliedSeq === snap.lsn.seq, 'snapshot state at its LSN');
        this.baseSeq = snap.lsn.seq;
        this.lastAppliedLsn = snap.lsn;
      }
      if (rd.truncateAfterSeq !== null) {
        writes.push({ t: 'truncate', afterSeq: rd.truncateAfterSeq });
        this.stats.truncations += 1;
      }
      for (const e of rd.entries) writes.push({ t: 'entry', entry: e });
      if (rd.commitLsn !== null) writes.push({ t: 'commit', lsn: rd.commitLsn });
      this.disk.write(writes);

      const m = this.model ?? model;
      for (const c of rd.committed) {
        const result = m.apply(c.entry);
        this.lastAppliedLsn = c.entry.lsn;
        this.hooks.onApply(this, c.entry);
        if (c.requestId !== undefined) {
          const p = this.pendingClients.get(c.requestId);
          if (p !== undefined) {
            this.pendingClients.delete(c.requestId);
            p.reply({ kind: 'write-ok', result });
          }
        }
      }
      for (const msg of rd.messages) this.hooks.sendPeer(msg);
      for (const rep of rd.replies) {
        const p = this.pendingClients.get(rep.requestId);
        if (p === undefined) continue;
        this.pendingClients.delete(rep.requestId);
        switch (rep.type) {
          case 'read-ready':
            assert(m.appliedSeq >= rep.seq, 'read served from an applied state >= its index');
            p.reply({ kind: 'read-ok', cell: m.get(p.key) });
            break;
          case 'not-leader':
            p.reply({ kind: 'fail', reason: 'not-leader', leaderHint: rep.leaderHint });
            break;
          case 'unavailable':
          case 'overloaded':
            p.reply({ kind: 'fail', reason: rep.type, leaderHint: null });
            break;
          case 'outcome-unknown':
            p.reply({ kind: 'unknown' });
            break;
          default: {
            const never: never = rep;
            throw new Error(`unknown reply ${JSON.stringify(never)}`);
          }
        }
      }
      for (const op of rd.coordinator) this.coordinatorOp(op);
      for (const s of rd.snapshotsToSend) {
        assert(m.appliedSeq === s.lsn.seq, 'snapshot of the applied state at its LSN');
        this.stats.snapshotsSent += 1;
        this.hooks.sendPeer({
          type: 'snapshot',
          from: this.id,
          to: s.to,
          epoch: s.epoch,
          lsn: s.lsn,
          data: m.serialize(),
        });
      }
      for (const x of rd.rejected) this.hooks.onRejected(this, x);
      const after = rd.afterDurable;
      const last = rd.lastLsn;
      const mustSync = rd.mustSync;
      if (mustSync || after.messages.length > 0 || after.coordinator.length > 0) {
        this.disk.afterDurable(() =>
          this.inLife(life, () => {
            for (const msg of after.messages) this.hooks.sendPeer(msg);
            for (const op of after.coordinator) this.coordinatorOp(op);
            if (mustSync) this.step({ type: 'append-durable', lsn: last });
          }),
        );
      }
      r.advance();
      this.hooks.onAfterReady(this);
    }
    this.maybeCompact();
  }

  private coordinatorOp(op: CoordinatorOp): void {
    switch (op.type) {
      case 'publish-candidacy':
        this.zkRequest(
          {
            op: 'publish-candidacy',
            round: op.round,
            lastLsn: op.lastLsn,
            incarnation: this.incarnation,
          },
          () => {},
        );
        break;
      case 'claim-leadership':
        this.zkRequest(
          { op: 'claim', fromVersion: op.fromVersion, epoch: op.epoch, candidates: op.candidates },
          (res) => {
            if (res.ok) this.stats.electionsWon += 1;
            this.step({ type: 'claim-result', round: op.round, epoch: op.epoch, ok: res.ok });
          },
        );
        break;
      case 'resign-leadership':
        if (op.handoffTo !== undefined) this.stats.handoffs += 1;
        this.zkRequest({ op: 'resign', epoch: op.epoch }, () => {});
        break;
      default: {
        const never: never = op;
        throw new Error(`unknown coordinator op ${JSON.stringify(never)}`);
      }
    }
  }

  /** Checkpoint (a `base` record with the applied state) and let the core drop older entries. */
  private maybeCompact(): void {
    const model = this.model;
    if (model === null || this.compacting) return;
    if (model.appliedSeq - this.baseSeq < this.opts.compactEveryEntries) return;
    const lsn = this.lastAppliedLsn;
    assert(lsn.seq === model.appliedSeq, 'last applied LSN tracks the model');
    this.compacting = true;
    this.stats.compactions += 1;
    this.disk.write([{ t: 'base', lsn, state: model.serialize() }]);
    const life = this.lifetime;
    this.disk.afterDurable(() =>
      this.inLife(life, () => {
        this.compacting = false;
        this.baseSeq = Math.max(this.baseSeq, lsn.seq);
        this.step({ type: 'log-compacted', lsn });
        this.disk.compactDurable();
      }),
    );
  }
}
