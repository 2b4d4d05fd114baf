// One replica of one cohort: the replication protocol of DESIGN.md §5 as a pure, synchronous
// state machine (etcd-raft shape). Inputs go in through `step` (ticks are inputs too); outputs
// come out as one `Ready` batch whose ordering contract is written in ./types.ts. No await, no
// timers, no clock, no randomness, no I/O: the driver (src/server, or src/sim) does those.
//
// Owns: the in-memory log of the cohort after its snapshot base, the commit and apply points,
// the leader's per-follower progress, pending client writes and strong reads, and this node's
// part in elections.
//
// Invariants (asserted):
// - log[i].lsn.seq === base.seq + 1 + i; epochs never decrease along the log;
// - base.seq <= appliedSeq <= commitSeq <= lastSeq; commitSeq never decreases;
// - an entry at or below commitSeq is never truncated or contradicted by a leader;
// - at most one leader per epoch (a leader receiving a leader message of its own epoch asserts).
//
// Durability contract: the replica never assumes a write is durable until the driver says so with
// `append-durable`; acks, candidacies and promoted voter status go out only in `afterDurable`.
//
// Safety argument, in short (PAPER-NOTES §4.4 plus the gaps of §4.6):
// - Epoch = Raft term, LSN = (term, index), commit = "majority durable and an entry of the
//   leader's epoch (its barrier) committed" (Raft §5.4.2; closes PAPER-NOTES §4.6-2).
// - A candidacy is a vote: before publishing its last LSN a node durably raises fenceEpoch to
//   round + 1, so it accepts nothing more from any leader of an epoch <= round and its published
//   LSN stays true. The winner bumps the epoch from the round's version in one ZooKeeper multi
//   that also creates the leader znode and checks the counted candidates' incarnations; any two
//   counted candidates intersect every 2-of-3 ack quorum, so the winner's log (max last LSN)
//   holds every committed entry (Raft's Leader Completeness argument).
// - Log matching: every propose carries prevLsn; a follower accepts only on a match.
// - A node that lost its disk (PML §5.1) lost its promises too: it rejoins as a non-voter (its
//   acks and heartbeat acks do not count, it publishes no candidacy) and bumps its incarnation so
//   a lingering candidacy of its previous life can no longer be claimed on; it becomes a voter
//   only after seeing an entry proposed after its rebuild began commit (which needed a voter
//   majority without it, so that leader was legitimate then), and then fences that epoch.

import { assert, unreachable } from '../core/assert.js';
import type { NodeId } from '../core/ids.js';
import { formatLsn, type Lsn, lsnEquals, ZERO_LSN } from '../core/lsn.js';
import { decideElection } from './election.js';
import {
  type AckMessage,
  type Candidate,
  type ClientReply,
  type CommittedEntry,
  type CoordinatorOp,
  DEFAULT_LIMITS,
  DEFAULT_TIMING,
  type Entry,
  type HardState,
  type HeartbeatAckMessage,
  type HeartbeatMessage,
  type Input,
  type LeaderBalance,
  type LeaderInfo,
  type Message,
  type NackMessage,
  type ProposeMessage,
  type Ready,
  type RejectedMessage,
  type ReplicaConfig,
  type ReplicaLimits,
  type ReplicaTiming,
  type RestoredState,
  type SnapshotMessage,
  type UnsafeSwitches,
} from './types.js';

export type Role = 'follower' | 'candidate' | 'leader';

/** A failed hand-over doubles the wait before the next, up to this many times the first. */
const HANDOFF_BACKOFF_MAX = 64;

interface Progress {
  /** Next seq to send. */
  nextSeq: number;
  /** Highest seq known durable on the follower and equal to our log. */
  matchSeq: number;
  /** The follower said it is a voter (PML §5.1). */
  voter: boolean;
  lastAckTick: number;
  /** Last tick matchSeq advanced: no progress for a while means lost messages (retransmit). */
  lastProgressTick: number;
  lastSendTick: number;
  /** A snapshot was requested for it and not acked yet. */
  snapshotPending: boolean;
  /**
   * The seq before the first entry of the current probe (takeover, retransmit, nack): what is in
   * flight counts from max(matchSeq, probeFloor), so a probe from the commit point of a long log
   * is not mistaken for a huge backlog while no match is known yet.
   */
  probeFloor: number;
}

interface PendingRead {
  readonly requestId: number;
  /** The leader's commit seq when the read arrived (read-index). */
  readonly readSeq: number;
  /** Confirmation round it rides on (0: not yet assigned). */
  round: number;
  confirmed: boolean;
  readonly startTick: number;
}

export interface ReplicaStatus {
  readonly self: NodeId;
  readonly role: Role;
  readonly voter: boolean;
  readonly currentEpoch: number;
  readonly fenceEpoch: number;
  readonly leaderHint: NodeId | null;
  readonly baseLsn: Lsn;
  readonly lastLsn: Lsn;
  readonly durableSeq: number;
  readonly commitSeq: number;
  readonly appliedSeq: number;
  /** Leader only: seq of its barrier (0 when none). */
  readonly barrierSeq: number;
  /** Leader whose barrier is committed (it accepts client writes and strong reads). */
  readonly serving: boolean;
  /**
   * This process may serve timeline reads (S§3) from its applied state. False after a restart
   * (the commit hint is not forced, so local recovery may replay less than was applied before
   * the crash) until it has applied everything its leader had logged when it first heard from
   * it: then it is at least as new as before the crash, and timeline reads never go back.
   */
  readonly timelineReadable: boolean;
}

interface Outbox {
  hardState: HardState | null;
  installSnapshot: { lsn: Lsn; data: Uint8Array } | null;
  truncateAfterSeq: number | null;
  entries: Entry[];
  commitLsn: Lsn | null;
  committed: CommittedEntry[];
  messages: Message[];
  replies: ClientReply[];
  coordinator: CoordinatorOp[];
  snapshotsToSend: { to: NodeId; lsn: Lsn; epoch: number }[];
  /** Followers that need a snapshot; its LSN is fixed in `ready`, after this Ready's applies. */
  snapshotTargets: NodeId[];
  afterMessages: Message[];
  afterCoordinator: CoordinatorOp[];
  rejected: RejectedMessage[];
  wrote: boolean;
}

function emptyOutbox(): Outbox {
  return {
    hardState: null,
    installSnapshot: null,
    truncateAfterSeq: null,
    entries: [],
    commitLsn: null,
    committed: [],
    messages: [],
    replies: [],
    coordinator: [],
    snapshotsToSend: [],
    snapshotTargets: [],
    afterMessages: [],
    afterCoordinator: [],
    rejected: [],
    wrote: false,
  };
}

const EMPTY_PAYLOAD = new Uint8Array(0);

export class Replica {
  readonly self: NodeId;
  private readonly peers: readonly NodeId[];
  private readonly members: readonly NodeId[];
  private readonly limits: ReplicaLimits;
  private readonly timing: ReplicaTiming;
  private readonly unsafe: UnsafeSwitches;

  // --- persistent state (mirrored from the disk) ---
  private hard: HardState;
  private base: Lsn;
  private log: Entry[];

  // --- volatile state ---
  private role: Role = 'follower';
  private currentEpoch: number;
  private leaderHint: NodeId | null = null;
  private commitSeq: number;
  private appliedSeq: number;
  private durableSeq: number;
  /** Highest seq known to equal the current epoch's leader log (follower side). */
  private verifiedSeq: number;
  private ticks = 0;

  // --- leader state ---
  private progress = new Map<NodeId, Progress>();
  private barrierSeq = 0;
  private pendingWrites = new Map<number, number>(); // seq -> requestId
  private pendingReads: PendingRead[] = [];
  private readRound = 0;
  private lastHeartbeatTick = 0;
  private lastNoopTick = 0;
  /** Tick this replica last became leader. */
  private leaderSinceTick = 0;

  // --- leader balancing (types.ts LeaderBalance) ---
  private readonly balance: LeaderBalance | null;
  /** The member that wins election ties and is handed leadership: members[0]; null: off. */
  private readonly preferred: NodeId | null;
  /** Leader handing over to the preferred member: since this tick (writes are refused). */
  private handoffStartTick: number | null = null;
  /** Ticks to lead before handing over; doubles each time a hand-over comes back to us. */
  private handoffWaitTicks = 0;
  private lastHandoffTick: number | null = null;
  /** No candidacy before this tick (after resigning to hand over). */
  private abstainUntilTick = 0;

  // --- coordinator view ---
  private sessionUp = false;
  /** undefined: not known yet (no election decision may be based on it). */
  private leaderZnode: LeaderInfo | null | undefined = undefined;
  private epochZnode: { epoch: number; version: number } | undefined = undefined;
  private candidacyRound: number | null = null;
  private claimInFlight = false;
  /**
   * The newest epoch known to exist: the coordinator's epoch znode, our own claims, our log.
   * Kept across session loss (an epoch, once claimed, stays claimed).
   */
  private epochKnown = 0;
  /** The latest leader message ignored for coming from beyond `epochKnown` (see there). */
  private earlyLeaderMessage: ProposeMessage | HeartbeatMessage | SnapshotMessage | null = null;
  /** The latest candidate set the coordinator reported, to decide again after a failed claim. */
  private seenCandidates: { round: number; candidates: readonly Candidate[] } | null = null;
  private lastClaimSignature: string | null = null;

  // --- timeline reads after a restart ---
  private timelineReadable = false;
  private timelineTarget: { epoch: number; seq: number } | null = null;

  // --- non-voter rebuild (PML §5.1) ---
  private promoteTarget: { epoch: number; seq: number } | null = null;

  private out: Outbox = emptyOutbox();
  private readyTaken = false;

  constructor(config: ReplicaConfig, restored: RestoredState) {
    assert(config.members.length === 3, 'a cohort has 3 members');
    assert(config.members.includes(config.self), 'self is a cohort member');
    assert(new Set(config.members).size === 3, 'cohort members are distinct');
    this.self = config.self;
    this.members = [...config.members];
    this.peers = config.members.filter((m) => m !== config.self);
    this.limits = { ...DEFAULT_LIMITS, ...config.limits };
    this.timing = { ...DEFAULT_TIMING, ...config.timing };
    this.unsafe = config.unsafe ?? {};
    this.balance = config.balance ?? null;
    this.preferred = this.balance === null ? null : this.members[0]!;
    this.handoffWaitTicks = this.balance?.handoffAfterTicks ?? 0;
    this.hard = { ...restored.hardState };
    this.base = restored.baseLsn;
    this.log = [...restored.entries];
    this.log.forEach((e, i) => {
      assert(e.lsn.seq === this.base.seq + 1 + i, 'restored log is contiguous');
      const prev = i === 0 ? this.base : this.log[i - 1]!.lsn;
      assert(e.lsn.epoch >= prev.epoch, 'restored log epochs never decrease');
    });
    const last = this.lastLsn();
    // S§6.1 local recovery: entries up to the commit hint are replayed (emitted as committed by
    // the first Ready); the applied state restored by the driver is the snapshot base.
    this.commitSeq = Math.max(this.base.seq, Math.min(restored.commitSeq, last.seq));
    this.appliedSeq = this.base.seq;
    this.durableSeq = last.seq;
    this.verifiedSeq = this.commitSeq;
    this.currentEpoch = Math.max(last.epoch, this.base.epoch);
    this.epochKnown = this.currentEpoch;
  }

  // ===========================================================================================
  // Public surface

  status(): ReplicaStatus {
    return {
      self: this.self,
      role: this.role,
      voter: this.hard.voter,
      currentEpoch: this.currentEpoch,
      fenceEpoch: this.hard.fenceEpoch,
      leaderHint: this.role === 'leader' ? this.self : this.leaderHint,
      baseLsn: this.base,
      lastLsn: this.lastLsn(),
      durableSeq: this.durableSeq,
      commitSeq: this.commitSeq,
      appliedSeq: this.appliedSeq,
      barrierSeq: this.barrierSeq,
      serving: this.role === 'leader' && this.barrierCommitted(),
      timelineReadable: this.checkTimelineReadable(),
    };
  }

  private checkTimelineReadable(): boolean {
    if (this.timelineReadable) return true;
    const t = this.timelineTarget;
    const caughtUp =
      (this.role === 'leader' && this.barrierCommitted() && this.appliedSeq >= this.commitSeq) ||
      (t !== null && t.epoch === this.currentEpoch && this.appliedSeq >= t.seq);
    if (caughtUp) this.timelineReadable = true;
    return this.timelineReadable;
  }

  /** LSN of the entry at `seq`, when the log still holds it (or it is the base). */
  lsnAt(seq: number): Lsn | null {
    if (seq === 0) return ZERO_LSN;
    if (seq === this.base.seq) return this.base;
    if (seq < this.base.seq) return null;
    const e = this.log[seq - this.base.seq - 1];
    return e === undefined ? null : e.lsn;
  }

  /** The entry at `seq` if it is in the in-memory log. */
  entryAt(seq: number): Entry | null {
    if (seq <= this.base.seq) return null;
    return this.log[seq - this.base.seq - 1] ?? null;
  }

  /** Leader: how many entries the furthest follower lags behind the log's end (0 otherwise). */
  followerLag(): number {
    let lag = 0;
    for (const l of this.followerLags().values()) lag = Math.max(lag, l);
    return lag;
  }

  /** Leader only (empty otherwise): per follower, the entries of this log it has not matched. */
  followerLags(): ReadonlyMap<NodeId, number> {
    const lags = new Map<NodeId, number>();
    if (this.role !== 'leader') return lags;
    const last = this.lastLsn().seq;
    for (const [peer, p] of this.progress) lags.set(peer, Math.max(0, last - p.matchSeq));
    return lags;
  }

  lastLsn(): Lsn {
    const last = this.log[this.log.length - 1];
    return last === undefined ? this.base : last.lsn;
  }

  step(input: Input): void {
    switch (input.type) {
      case 'tick':
        this.onTick();
        break;
      case 'client-write':
        this.onClientWrite(input.requestId, input.payload);
        break;
      case 'client-read':
        this.onClientRead(input.requestId);
        break;
      case 'message':
        this.onMessage(input.message);
        break;
      case 'append-durable':
        this.onAppendDurable(input.lsn);
        break;
      case 'log-compacted':
        this.onLogCompacted(input.lsn);
        break;
      case 'session':
        this.onSession(input.state);
        break;
      case 'leader-znode':
        this.onLeaderZnode(input.leader);
        break;
      case 'epoch-znode':
        this.epochZnode = { epoch: input.epoch, version: input.version };
        this.epochKnown = Math.max(this.epochKnown, input.epoch);
        if (this.earlyLeaderMessage !== null && this.earlyLeaderMessage.epoch <= this.epochKnown) {
          const early = this.earlyLeaderMessage;
          this.earlyLeaderMessage = null;
          this.onLeaderMessage(early);
        }
        if (this.candidacyRound !== null && this.candidacyRound < input.epoch) {
          // That round is over: its winner claimed an epoch. Our fence stays. If our own claim
          // is in flight it may be the one that moved the epoch: only its result can tell us
          // (a leader znode naming us could be a previous life's claim), so wait for it.
          const maybeOurs = this.claimInFlight && input.epoch === this.candidacyRound + 1;
          if (!maybeOurs) this.leaveCandidacy();
        }
        this.maybeStandForElection();
        break;
      case 'candidates':
        this.onCandidates(input.round, input.candidates);
        break;
      case 'claim-result':
        this.onClaimResult(input.round, input.epoch, input.ok);
        break;
      default:
        unreachable(input, 'input');
    }
  }

  hasReady(): boolean {
    const o = this.out;
    return (
      o.wrote ||
      o.hardState !== null ||
      o.committed.length > 0 ||
      o.messages.length > 0 ||
      o.replies.length > 0 ||
      o.coordinator.length > 0 ||
      o.snapshotsToSend.length > 0 ||
      o.snapshotTargets.length > 0 ||
      o.afterMessages.length > 0 ||
      o.afterCoordinator.length > 0 ||
      o.rejected.length > 0 ||
      o.commitLsn !== null ||
      this.appliedSeq < this.commitSeq ||
      this.readServable()
    );
  }

  /**
   * A pending read can be served now. Reads take rounds and read points in arrival order and are
   * confirmed in round order, so if any can be served, the first can. Without this, a read
   * confirmed by a heartbeat ack that produced no other output waited for the next tick's
   * heartbeat (100 ms) to be served: every strong read on an idle leader took ~100 ms.
   */
  private readServable(): boolean {
    const r = this.pendingReads[0];
    return r !== undefined && r.confirmed && this.appliedSeq >= r.readSeq;
  }

  /**
   * The LSN of a snapshot this replica accepted whose Ready has not been taken yet (a later one
   * it accepts replaces it). The host keeps that snapshot's data until the Ready installs it.
   */
  snapshotToInstall(): Lsn | null {
    return this.readyTaken ? null : (this.out.installSnapshot?.lsn ?? null);
  }

  /** The outputs accumulated since the last `advance`. Call `advance` once they are handled. */
  ready(): Ready {
    assert(!this.readyTaken, 'ready() called twice without advance()');
    if (this.proposePending) {
      this.proposePending = false;
      for (const p of this.peers) this.sendAppend(p);
    }
    this.emitCommitted();
    this.resolveSnapshots();
    this.serveConfirmedReads();
    this.maybeFinishHandoff();
    const o = this.out;
    this.readyTaken = true;
    const mustSync =
      o.hardState !== null ||
      o.installSnapshot !== null ||
      o.truncateAfterSeq !== null ||
      o.entries.length > 0;
    return {
      hardState: o.hardState,
      installSnapshot: o.installSnapshot,
      truncateAfterSeq: o.truncateAfterSeq,
      entries: o.entries,
      mustSync,
      commitLsn: o.commitLsn,
      committed: o.committed,
      messages: o.messages,
      replies: o.replies,
      coordinator: o.coordinator,
      snapshotsToSend: o.snapshotsToSend,
      afterDurable: { messages: o.afterMessages, coordinator: o.afterCoordinator },
      lastLsn: this.lastLsn(),
      rejected: o.rejected,
    };
  }

  advance(): void {
    assert(this.readyTaken, 'advance() without ready()');
    this.readyTaken = false;
    this.out = emptyOutbox();
  }

  // ===========================================================================================
  // Client requests

  private onClientWrite(requestId: number, payload: Uint8Array): void {
    if (this.role !== 'leader') {
      this.out.replies.push({ type: 'not-leader', requestId, leaderHint: this.leaderHint });
      return;
    }
    // DESIGN.md §5 rule 4: no client write before the barrier is committed. Nor while handing
    // over: the log must stop growing for the preferred member to match it.
    if (!this.barrierCommitted() || this.handoffStartTick !== null) {
      this.out.replies.push({ type: 'unavailable', requestId });
      return;
    }
    if (this.lastLsn().seq - this.commitSeq >= this.limits.uncommittedEntriesMax) {
      this.out.replies.push({ type: 'overloaded', requestId });
      return;
    }
    const entry: Entry = {
      lsn: { epoch: this.currentEpoch, seq: this.lastLsn().seq + 1 },
      kind: 'data',
      payload,
    };
    this.appendLocal(entry);
    this.pendingWrites.set(entry.lsn.seq, requestId);
    // S§5: propose to both followers in parallel with the local force — in this Ready, so every
    // write stepped before it rides in one propose per follower (see `ready`).
    this.proposePending = true;
  }

  /** Client writes appended since the last Ready that are not proposed yet. */
  private proposePending = false;

  // Strong reads use READ-INDEX, not leases: no clock is trusted (SIGSTOP, skew), see DESIGN.md
  // §5 rule 6. Why it is linearizable: the read records readSeq = commitSeq when it arrives;
  // a heartbeat sent AFTER that is acked by a voter follower F still in our epoch (not fenced
  // past it, not joined a newer one). A newer leader can only have committed anything once its
  // barrier is durable on a majority — itself plus us or F. We have not joined it (we are still
  // leader), and F had not at the time it acked (joining is sticky: the barrier is in F's durable
  // log and a candidacy raises F's durable fence). So at the moment F acked, which is after the
  // read arrived, no write newer than our commitSeq was committed anywhere; serving from an
  // applied state >= readSeq returns a state that existed during the read. A leader serves no
  // strong read before its own barrier is committed (its commitSeq might miss older commits).
  private onClientRead(requestId: number): void {
    if (this.unsafe.followerStrongReads === true) {
      this.out.replies.push({ type: 'read-ready', requestId, seq: this.appliedSeq });
      return;
    }
    if (this.role !== 'leader') {
      this.out.replies.push({ type: 'not-leader', requestId, leaderHint: this.leaderHint });
      return;
    }
    if (!this.barrierCommitted()) {
      this.out.replies.push({ type: 'unavailable', requestId });
      return;
    }
    if (this.pendingReads.length >= this.limits.pendingReadsMax) {
      this.out.replies.push({ type: 'overloaded', requestId });
      return;
    }
    this.pendingReads.push({
      requestId,
      readSeq: this.commitSeq,
      round: 0,
      confirmed: false,
      startTick: this.ticks,
    });
    this.maybeStartReadRound();
  }

  /** Batch every read without a round into one new confirmation round (one heartbeat each). */
  private maybeStartReadRound(): void {
    const unassigned = this.pendingReads.filter((r) => r.round === 0);
    if (unassigned.length === 0) return;
    const inFlight = this.pendingReads.some((r) => r.round !== 0 && !r.confirmed);
    if (inFlight) return;
    this.readRound += 1;
    for (const r of unassigned) r.round = this.readRound;
    this.broadcastHeartbeat();
  }

  private serveConfirmedReads(): void {
    if (this.pendingReads.length === 0) return;
    const keep: PendingRead[] = [];
    for (const r of this.pendingReads) {
      if (r.confirmed && this.appliedSeq >= r.readSeq) {
        this.out.replies.push({ type: 'read-ready', requestId: r.requestId, seq: this.appliedSeq });
      } else {
        keep.push(r);
      }
    }
    this.pendingReads = keep;
  }

  // ===========================================================================================
  // Ticks

  private onTick(): void {
    this.ticks += 1;
    if (this.role !== 'leader') {
      if (this.ticks === this.abstainUntilTick) this.maybeStandForElection();
      return;
    }
    if (this.ticks - this.lastHeartbeatTick >= this.timing.heartbeatIntervalTicks) {
      this.broadcastHeartbeat();
    }
    const last = this.lastLsn().seq;
    for (const peer of this.peers) {
      const p = this.progress.get(peer)!;
      const behind = p.matchSeq < last || p.snapshotPending;
      const waitTicks = p.snapshotPending
        ? this.timing.snapshotRetryTicks
        : this.timing.retransmitTicks;
      if (
        behind &&
        this.ticks - p.lastProgressTick >= waitTicks &&
        this.ticks - p.lastSendTick >= waitTicks
      ) {
        // Lost messages (a broken connection loses what was in flight): probe again from the
        // match, or, when no match is known yet (a takeover whose first proposes went
        // unanswered), from our commit point as the takeover does — a probe from 1 would send a
        // snapshot of the whole range to a follower that may hold all but the last few entries.
        this.probe(p, p.matchSeq > 0 ? p.matchSeq + 1 : this.commitProbeSeq());
        p.snapshotPending = false;
        this.sendAppend(peer);
      }
    }
    this.maybeProposeNoopForNonVoter();
    const keep: PendingRead[] = [];
    for (const r of this.pendingReads) {
      if (this.ticks - r.startTick >= this.timing.readTimeoutTicks) {
        this.out.replies.push({ type: 'unavailable', requestId: r.requestId });
      } else {
        keep.push(r);
      }
    }
    this.pendingReads = keep;
    this.maybeStartHandoff();
  }

  // ===========================================================================================
  // Leader balancing (types.ts LeaderBalance)

  private maybeStartHandoff(): void {
    const b = this.balance;
    const preferred = this.preferred;
    if (b === null || preferred === null || b.handoffAfterTicks <= 0 || preferred === this.self) {
      return;
    }
    if (this.handoffStartTick !== null) {
      if (this.ticks - this.handoffStartTick >= b.handoffTimeoutTicks) {
        // The preferred member did not catch up in time: lead on, try again later.
        this.handoffStartTick = null;
        this.leaderSinceTick = this.ticks;
        this.handoffWaitTicks = this.nextHandoffWait();
      }
      return;
    }
    if (!this.sessionUp || !this.barrierCommitted()) return;
    if (this.ticks - this.leaderSinceTick < this.handoffWaitTicks) return;
    // Both followers must be live voters: after we resign, the preferred member needs the third
    // one's candidacy to win the round while we abstain (with a member down, a hand-over would
    // leave the range leaderless until the abstention ends). Balance waits for a healthy cohort.
    for (const peer of this.peers) {
      const q = this.progress.get(peer)!;
      if (!q.voter || this.ticks - q.lastAckTick > this.timing.retransmitTicks) return;
    }
    const p = this.progress.get(preferred)!;
    const caughtUp =
      !p.snapshotPending && this.lastLsn().seq - p.matchSeq <= this.limits.uncommittedEntriesMax;
    if (caughtUp) this.handoffStartTick = this.ticks;
  }

  /** Hand over once the preferred member holds our whole log and all of it is committed. */
  private maybeFinishHandoff(): void {
    const b = this.balance;
    const preferred = this.preferred;
    if (this.handoffStartTick === null || this.role !== 'leader') return;
    if (b === null || preferred === null) return;
    const last = this.lastLsn().seq;
    const p = this.progress.get(preferred)!;
    if (p.matchSeq < last || this.commitSeq < last || this.pendingWrites.size > 0) return;
    this.lastHandoffTick = this.ticks;
    this.abstainUntilTick = this.ticks + b.abstainTicks;
    this.stepDown(preferred);
  }

  private nextHandoffWait(): number {
    const base = this.balance?.handoffAfterTicks ?? 0;
    return Math.min(this.handoffWaitTicks * 2, base * HANDOFF_BACKOFF_MAX);
  }

  private broadcastHeartbeat(): void {
    this.lastHeartbeatTick = this.ticks;
    const commitLsn = this.lsnAt(this.commitSeq);
    assert(commitLsn !== null, 'leader holds its commit point');
    for (const to of this.peers) {
      const hb: HeartbeatMessage = {
        type: 'heartbeat',
        from: this.self,
        to,
        epoch: this.currentEpoch,
        round: this.readRound,
        commitSeq: this.commitSeq,
        commitLsn,
        leaderLastSeq: this.lastLsn().seq,
      };
      this.out.messages.push(hb);
    }
  }

  // ===========================================================================================
  // Messages

  /** The lowest epoch this replica accepts a message from (rule 2 and the candidacy fence). */
  private reject(m: Message, reason: string): void {
    this.out.rejected.push({ from: m.from, type: m.type, reason });
  }

  private minEpoch(): number {
    return Math.max(this.currentEpoch, this.hard.fenceEpoch);
  }

  private onMessage(m: Message): void {
    assert(m.to === this.self, 'message delivered to its addressee');
    if (!this.members.includes(m.from) || m.from === this.self) return;
    switch (m.type) {
      case 'propose':
      case 'heartbeat':
      case 'snapshot':
        this.onLeaderMessage(m);
        break;
      case 'ack':
      case 'nack':
      case 'heartbeat-ack':
        this.onFollowerMessage(m);
        break;
      default:
        unreachable(m, 'message');
    }
  }

  private onLeaderMessage(m: ProposeMessage | HeartbeatMessage | SnapshotMessage): void {
    if (m.epoch < this.minEpoch()) {
      // A deposed leader: tell it the epoch we are in so it steps down (nothing else happens).
      if (m.type !== 'snapshot') {
        const nack: NackMessage = {
          type: 'nack',
          from: this.self,
          to: m.from,
          epoch: this.minEpoch(),
          rejectedPrevSeq: 0,
          lastSeq: this.lastLsn().seq,
          commitSeq: this.commitSeq,
        };
        this.out.messages.push(nack);
      }
      return;
    }
    if (m.epoch === this.currentEpoch && this.role === 'leader') {
      this.reject(m, `a second leader in our epoch ${m.epoch}`);
      return;
    }
    // An epoch is claimed in the coordinator before its leader sends anything, so a leader
    // message from beyond the newest epoch we know of is either early (its znode event is on
    // the way: drop it, the leader retransmits) or forged; joining it would fence us against
    // every real leader until the coordinator's epoch caught up.
    if (m.epoch > this.epochKnown) {
      // Keep the latest one: if the epoch shows up, handling it at once (an ack or a nack)
      // spares the leader a retransmit timeout in its takeover.
      this.earlyLeaderMessage = m;
      return;
    }
    this.joinEpoch(m.epoch, m.from);
    switch (m.type) {
      case 'propose':
        this.onPropose(m);
        break;
      case 'heartbeat':
        this.onHeartbeat(m);
        break;
      case 'snapshot':
        this.onSnapshot(m);
        break;
      default:
        unreachable(m, 'leader message');
    }
  }

  /** Become (or stay) a follower of `leader` in `epoch` (>= minEpoch, checked by the caller). */
  private joinEpoch(epoch: number, leader: NodeId): void {
    if (epoch > this.currentEpoch || this.role !== 'follower') {
      if (this.role === 'leader') this.stepDown();
      if (epoch > this.currentEpoch) {
        this.currentEpoch = epoch;
        this.verifiedSeq = this.commitSeq;
        this.promoteTarget = null;
      }
      this.role = 'follower';
      this.candidacyRound = null;
      this.claimInFlight = false;
    }
    this.leaderHint = leader;
  }

  private onPropose(m: ProposeMessage): void {
    this.notePromoteTarget(m.epoch, m.leaderLastSeq);
    const prev = m.prevLsn;
    if (prev.seq >= this.base.seq) {
      const local = this.lsnAt(prev.seq);
      if (local === null || !lsnEquals(local, prev)) {
        if (prev.seq <= this.commitSeq && local !== null) {
          this.reject(m, `prev ${formatLsn(prev)} contradicts our committed ${formatLsn(local)}`);
          return;
        }
        const nack: NackMessage = {
          type: 'nack',
          from: this.self,
          to: m.from,
          epoch: this.currentEpoch,
          rejectedPrevSeq: prev.seq,
          lastSeq: this.lastLsn().seq,
          commitSeq: this.commitSeq,
        };
        this.out.messages.push(nack);
        return;
      }
    }
    // Validate before changing anything: entries follow prev one by one, and none contradicts
    // a committed entry (S§6.1.1 truncates only uncommitted suffixes).
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i]!;
      if (e.lsn.seq !== prev.seq + 1 + i) {
        this.reject(m, `entry ${i} has seq ${e.lsn.seq}, not ${prev.seq + 1 + i}`);
        return;
      }
      if (e.lsn.seq > this.base.seq && e.lsn.seq <= this.commitSeq) {
        const local = this.lsnAt(e.lsn.seq);
        if (local !== null && !lsnEquals(local, e.lsn)) {
          this.reject(m, `entry ${formatLsn(e.lsn)} contradicts our committed ${formatLsn(local)}`);
          return;
        }
      }
    }
    // prev matches (or lies inside our snapshot base, which is committed and thus equal), and
    // the entries follow it one by one (validated above).
    for (const e of m.entries) {
      const s = e.lsn.seq;
      if (s <= this.base.seq) continue;
      const local = this.lsnAt(s);
      if (local !== null && lsnEquals(local, e.lsn)) continue; // duplicate (App. B)
      if (local !== null) {
        // S§6.1.1: a suffix the leader does not have is logically truncated.
        assert(s > this.commitSeq, `leader ${m.from} contradicts committed entry ${s}`);
        this.truncateAfter(s - 1);
      }
      assert(s === this.lastLsn().seq + 1, 'append extends the log');
      this.appendLocal(e);
    }
    const matchSeq = Math.max(this.base.seq, prev.seq + m.entries.length);
    this.verifiedSeq = Math.max(this.verifiedSeq, matchSeq);
    this.learnCommit(m.commitSeq, m.commitLsn);
    const ack: AckMessage = {
      type: 'ack',
      from: this.self,
      to: m.from,
      epoch: this.currentEpoch,
      matchSeq,
      voter: this.hard.voter,
    };
    // S§5: the follower forces the record BEFORE it acks.
    if (this.unsafe.ackBeforeDurable === true) this.out.messages.push(ack);
    else this.out.afterMessages.push(ack);
  }

  private onHeartbeat(m: HeartbeatMessage): void {
    this.notePromoteTarget(m.epoch, m.leaderLastSeq);
    this.learnCommit(m.commitSeq, m.commitLsn);
    const ack: HeartbeatAckMessage = {
      type: 'heartbeat-ack',
      from: this.self,
      to: m.from,
      epoch: this.currentEpoch,
      round: m.round,
      lastLsn: this.lastLsn(),
      commitSeq: this.commitSeq,
      voter: this.hard.voter,
    };
    this.out.messages.push(ack);
  }

  private onSnapshot(m: SnapshotMessage): void {
    const have = this.lsnAt(m.lsn.seq);
    if (have !== null && !lsnEquals(have, m.lsn) && m.lsn.seq <= this.commitSeq) {
      this.reject(
        m,
        `snapshot at ${formatLsn(m.lsn)} contradicts our committed ${formatLsn(have)}`,
      );
      return;
    }
    if (have !== null && lsnEquals(have, m.lsn)) {
      // We hold the snapshot's last entry: by log matching our prefix equals the leader's, and
      // entries after it may already be acked — keep them (Raft §7), just learn the commit.
      this.verifiedSeq = Math.max(this.verifiedSeq, m.lsn.seq);
      this.learnCommit(m.lsn.seq, m.lsn);
    } else if (m.lsn.seq > this.commitSeq) {
      // Catch-up by snapshot (S§6.1: ship the range when the log does not reach back).
      this.out.installSnapshot = { lsn: m.lsn, data: m.data };
      // Anything queued in this Ready is superseded by the snapshot.
      this.out.entries = [];
      this.out.truncateAfterSeq = null;
      this.out.committed = [];
      this.out.wrote = true;
      this.base = m.lsn;
      this.log = [];
      this.commitSeq = m.lsn.seq;
      this.appliedSeq = m.lsn.seq;
      this.durableSeq = 0;
      this.verifiedSeq = m.lsn.seq;
      this.out.commitLsn = m.lsn;
    }
    const local = this.lsnAt(m.lsn.seq);
    if (local !== null) assert(lsnEquals(local, m.lsn), 'snapshot matches our committed log');
    const ack: AckMessage = {
      type: 'ack',
      from: this.self,
      to: m.from,
      epoch: this.currentEpoch,
      matchSeq: m.lsn.seq,
      voter: this.hard.voter,
    };
    this.out.afterMessages.push(ack);
    this.maybePromote();
  }

  /** Follower: advance the commit point, never past what is verified equal to the leader's. */
  private learnCommit(leaderCommitSeq: number, leaderCommitLsn: Lsn): void {
    let target = Math.min(leaderCommitSeq, this.verifiedSeq);
    const local = this.lsnAt(leaderCommitSeq);
    if (local !== null && lsnEquals(local, leaderCommitLsn)) {
      // Log matching: equal LSN at that seq means an equal prefix.
      target = leaderCommitSeq;
      this.verifiedSeq = Math.max(this.verifiedSeq, leaderCommitSeq);
    }
    target = Math.min(target, this.lastLsn().seq);
    this.setCommit(target);
    this.maybePromote();
  }

  private setCommit(seq: number): void {
    if (seq <= this.commitSeq) return;
    this.commitSeq = seq;
    this.out.commitLsn = this.lsnAt(seq);
  }

  private notePromoteTarget(epoch: number, leaderLastSeq: number): void {
    if (
      !this.timelineReadable &&
      (this.timelineTarget === null || this.timelineTarget.epoch !== epoch)
    ) {
      this.timelineTarget = { epoch, seq: leaderLastSeq };
    }
    if (this.hard.voter) return;
    if (this.promoteTarget === null || this.promoteTarget.epoch !== epoch) {
      // An entry the leader had not proposed yet when we (re)started rebuilding.
      this.promoteTarget = { epoch, seq: leaderLastSeq + 1 };
    }
  }

  private maybePromote(): void {
    if (this.hard.voter || this.promoteTarget === null) return;
    if (this.promoteTarget.epoch !== this.currentEpoch) return;
    if (this.commitSeq < this.promoteTarget.seq) return;
    // PML §5.1: we have caught up and seen an entry proposed after our rebuild began commit, by a
    // voter majority without us. Fence that epoch and vote again.
    this.hard = { fenceEpoch: Math.max(this.hard.fenceEpoch, this.currentEpoch), voter: true };
    this.out.hardState = { ...this.hard };
    this.promoteTarget = null;
    this.maybeStandForElection();
  }

  private onFollowerMessage(m: AckMessage | NackMessage | HeartbeatAckMessage): void {
    if (m.epoch > this.currentEpoch) {
      // The follower has joined (or promised) a newer epoch: we are deposed. We do not join that
      // epoch here (it may be a fence value no leader holds yet); its leader will contact us.
      if (this.role === 'leader') this.stepDown();
      return;
    }
    if (m.epoch < this.currentEpoch || this.role !== 'leader') return;
    const p = this.progress.get(m.from);
    assert(p !== undefined, 'progress for every peer');
    p.lastAckTick = this.ticks;
    switch (m.type) {
      case 'ack': {
        if (m.matchSeq > this.lastLsn().seq) {
          this.reject(m, `ack of ${m.matchSeq} beyond our last entry ${this.lastLsn().seq}`);
          break;
        }
        p.voter = m.voter;
        if (m.matchSeq > p.matchSeq) {
          p.matchSeq = m.matchSeq;
          p.lastProgressTick = this.ticks;
        }
        if (p.nextSeq <= p.matchSeq) p.nextSeq = p.matchSeq + 1;
        if (p.snapshotPending && p.matchSeq >= this.base.seq) p.snapshotPending = false;
        this.maybeCommit();
        this.sendAppend(m.from);
        break;
      }
      case 'nack': {
        this.noteFollowerTail(p, m.lastSeq);
        if (m.rejectedPrevSeq <= p.matchSeq) break; // stale: we know it matches further
        // A nack of a propose sent before the snapshot was chosen: the snapshot answers it. (Each
        // such nack used to cancel the pending snapshot and choose a new one: at 10 M rows a
        // leader started dozens of transfers of a whole range per second to one follower.)
        if (p.snapshotPending) break;
        const next =
          m.lastSeq < m.rejectedPrevSeq
            ? m.lastSeq + 1
            : Math.min(m.rejectedPrevSeq, Math.max(m.commitSeq, p.matchSeq) + 1);
        this.probe(p, Math.max(p.matchSeq + 1, next));
        p.snapshotPending = false;
        this.sendAppend(m.from);
        break;
      }
      case 'heartbeat-ack': {
        p.voter = m.voter;
        this.noteFollowerTail(p, m.lastLsn.seq);
        if (m.voter && m.round > 0) {
          for (const r of this.pendingReads)
            if (r.round !== 0 && r.round <= m.round) r.confirmed = true;
          this.maybeStartReadRound();
        }
        // A follower that restarted, lost messages or holds a divergent suffix: resend from
        // what it really has. Duplicates are ignored by LSN on the follower (App. B).
        if (!p.snapshotPending && p.matchSeq < this.lastLsn().seq) {
          const local = this.lsnAt(m.lastLsn.seq);
          const sameTail = local !== null && lsnEquals(local, m.lastLsn);
          const from = sameTail ? m.lastLsn.seq + 1 : Math.max(m.commitSeq, p.matchSeq) + 1;
          if (from < p.nextSeq) this.probe(p, Math.max(p.matchSeq + 1, from));
        }
        this.sendAppend(m.from);
        break;
      }
      default:
        unreachable(m, 'follower message');
    }
  }

  /**
   * PML §5.1: a rebuilding non-voter votes again only after an entry proposed after its rebuild
   * began commits. In an idle cohort none would ever come, so once it has caught up the leader
   * proposes a no-op (a `barrier`-kind entry; rate-limited, only when nothing is in flight).
   */
  private maybeProposeNoopForNonVoter(): void {
    if (!this.barrierCommitted()) return;
    const last = this.lastLsn().seq;
    if (this.commitSeq !== last) return;
    if (this.ticks - this.lastNoopTick < this.timing.retransmitTicks) return;
    const waiting = this.peers.some((peer) => {
      const p = this.progress.get(peer)!;
      return !p.voter && p.matchSeq >= last;
    });
    if (!waiting) return;
    this.lastNoopTick = this.ticks;
    this.appendLocal({
      lsn: { epoch: this.currentEpoch, seq: last + 1 },
      kind: 'barrier',
      payload: EMPTY_PAYLOAD,
    });
    for (const peer of this.peers) this.sendAppend(peer);
  }

  /**
   * A follower never loses an entry it acked (acks follow durability, and a leader never makes
   * it truncate a matching entry), so a tail below its match point means it lost its disk
   * (PML §5.1). Nacks and heartbeat acks go out after any ack sent for the same entries, so this
   * is not a reordering artefact. Forget the match point and catch it up from scratch.
   */
  private noteFollowerTail(p: Progress, followerLastSeq: number): void {
    if (followerLastSeq >= p.matchSeq) return;
    p.matchSeq = 0;
    this.probe(p, Math.min(p.nextSeq, followerLastSeq + 1));
    p.snapshotPending = false;
  }

  // ===========================================================================================
  // Leader: replication and commit

  private sendAppend(to: NodeId): void {
    if (this.role !== 'leader') return;
    const p = this.progress.get(to);
    assert(p !== undefined, 'progress for every peer');
    const last = this.lastLsn().seq;
    // A follower waiting for a snapshot gets nothing else until it acks it (or the retry tick
    // gives up on it): proposes past the snapshot's point would arrive first and be nacked.
    if (p.snapshotPending) return;
    if (p.nextSeq <= this.base.seq) {
      // The log no longer reaches back far enough: ship the applied state (S§6.1).
      p.snapshotPending = true;
      p.lastSendTick = this.ticks;
      this.out.snapshotTargets.push(to);
      return;
    }
    // Bound what is in flight to one follower (catch-up flow control).
    const inflightMax = this.limits.entriesPerMessageMax * 4;
    const inflightFloor = Math.max(p.matchSeq, p.probeFloor);
    while (p.nextSeq <= last && p.nextSeq - 1 - inflightFloor < inflightMax) {
      const from = p.nextSeq;
      let to_ = Math.min(last, from + this.limits.entriesPerMessageMax - 1);
      let bytes = this.log[from - this.base.seq - 1]!.payload.length;
      for (let seq = from + 1; seq <= to_; seq++) {
        bytes += this.log[seq - this.base.seq - 1]!.payload.length;
        if (bytes > this.limits.messageBytesMax) {
          to_ = seq - 1;
          break;
        }
      }
      const entries = this.log.slice(from - this.base.seq - 1, to_ - this.base.seq);
      const prevLsn = this.lsnAt(from - 1);
      assert(prevLsn !== null, 'prev entry is in the log');
      const commitLsn = this.lsnAt(this.commitSeq);
      assert(commitLsn !== null, 'commit point is in the log');
      const msg: ProposeMessage = {
        type: 'propose',
        from: this.self,
        to,
        epoch: this.currentEpoch,
        prevLsn,
        entries,
        commitSeq: this.commitSeq,
        commitLsn,
        leaderLastSeq: last,
      };
      this.out.messages.push(msg);
      p.nextSeq = to_ + 1;
      p.lastSendTick = this.ticks;
    }
  }

  /**
   * The driver snapshots its applied state once this Ready's committed entries are applied, so
   * the snapshot's LSN is the applied point AFTER `emitCommitted`, not the one current when the
   * need was found (inputs stepped together may have advanced it since).
   */
  private resolveSnapshots(): void {
    const targets = this.out.snapshotTargets;
    if (targets.length === 0) return;
    this.out.snapshotTargets = [];
    if (this.role !== 'leader') return;
    for (const to of targets) {
      const p = this.progress.get(to);
      if (p === undefined || !p.snapshotPending) continue;
      if (this.out.snapshotsToSend.some((x) => x.to === to)) continue;
      const lsn = this.lsnAt(this.appliedSeq);
      assert(lsn !== null && this.appliedSeq >= this.base.seq, 'applied state is in the log');
      this.probe(p, this.appliedSeq + 1);
      this.out.snapshotsToSend.push({ to, lsn, epoch: this.currentEpoch });
    }
  }

  /** Where a probe starts when no match is known: just past our commit point (or base). */
  private commitProbeSeq(): number {
    return Math.max(this.base.seq, this.commitSeq) + 1;
  }

  /** Send to `p` from `seq` on (a probe: in-flight accounting restarts there). */
  private probe(p: Progress, seq: number): void {
    p.nextSeq = seq;
    p.probeFloor = seq - 1;
  }

  private barrierCommitted(): boolean {
    return this.unsafe.skipBarrier === true || this.commitSeq >= this.barrierSeq;
  }

  /** S§5: committed = durable on the leader and on one voter follower (2 of 3). */
  private maybeCommit(): void {
    if (this.role !== 'leader') return;
    let best = 0;
    for (const peer of this.peers) {
      const p = this.progress.get(peer)!;
      if (p.voter && p.matchSeq > best) best = p.matchSeq;
    }
    const n = Math.min(best, this.durableSeq);
    if (n <= this.commitSeq) return;
    // Raft §5.4.2 / PAPER-NOTES §4.6-2: only an entry of our own epoch commits by counting
    // replicas; older entries commit with it. Our first such entry is the barrier.
    if (this.unsafe.skipBarrier !== true && n < this.barrierSeq) return;
    this.setCommit(n);
    this.maybeStartReadRound();
  }

  private emitCommitted(): void {
    let budget = this.limits.applyBatchMax;
    while (this.appliedSeq < this.commitSeq && budget > 0) {
      const seq = this.appliedSeq + 1;
      const entry = this.entryAt(seq);
      assert(entry !== null, `committed entry ${seq} is in the log`);
      const requestId = this.pendingWrites.get(seq);
      if (requestId !== undefined) {
        this.pendingWrites.delete(seq);
        this.out.committed.push({ entry, requestId });
      } else {
        this.out.committed.push({ entry });
      }
      this.appliedSeq = seq;
      budget -= 1;
    }
  }

  private appendLocal(e: Entry): void {
    const last = this.lastLsn();
    assert(e.lsn.seq === last.seq + 1, 'append is contiguous');
    assert(e.lsn.epoch >= last.epoch, 'epochs never decrease along the log');
    this.log.push(e);
    this.out.entries.push(e);
    this.out.wrote = true;
  }

  private truncateAfter(seq: number): void {
    assert(seq >= this.commitSeq, 'never truncate committed entries');
    assert(seq >= this.base.seq, 'truncate inside the log');
    this.log.length = seq - this.base.seq;
    // Entries queued in this Ready beyond seq are void too.
    this.out.entries = this.out.entries.filter((e) => e.lsn.seq <= seq);
    this.out.truncateAfterSeq =
      this.out.truncateAfterSeq === null ? seq : Math.min(this.out.truncateAfterSeq, seq);
    this.out.wrote = true;
    this.durableSeq = Math.min(this.durableSeq, seq);
    this.verifiedSeq = Math.min(this.verifiedSeq, seq);
  }

  private onAppendDurable(lsn: Lsn): void {
    const local = this.lsnAt(lsn.seq);
    if (local === null || !lsnEquals(local, lsn)) return; // superseded by a truncation/snapshot
    if (lsn.seq > this.durableSeq) this.durableSeq = lsn.seq;
    this.maybeCommit();
  }

  private onLogCompacted(to: Lsn): void {
    let lsn = to;
    // Not past a snapshot a follower is being sent: it goes on from the snapshot's point (its
    // nextSeq), and a log that no longer reaches back there would need yet another snapshot.
    if (this.role === 'leader') {
      for (const p of this.progress.values()) {
        if (!p.snapshotPending || p.nextSeq - 1 >= lsn.seq) continue;
        const at = this.lsnAt(p.nextSeq - 1);
        if (at !== null) lsn = at;
      }
    }
    if (lsn.seq <= this.base.seq) return;
    assert(lsn.seq <= this.appliedSeq, 'compaction only behind the applied point');
    const local = this.lsnAt(lsn.seq);
    assert(local !== null && lsnEquals(local, lsn), 'compaction point is in the log');
    this.log = this.log.slice(lsn.seq - this.base.seq);
    this.base = lsn;
  }

  private stepDown(handoffTo?: NodeId): void {
    assert(this.role === 'leader', 'only a leader steps down');
    if (this.sessionUp) {
      this.out.coordinator.push({
        type: 'resign-leadership',
        epoch: this.currentEpoch,
        ...(handoffTo === undefined ? {} : { handoffTo }),
      });
    }
    this.role = 'follower';
    this.leaderHint = null;
    this.handoffStartTick = null;
    for (const requestId of this.pendingWrites.values()) {
      this.out.replies.push({ type: 'outcome-unknown', requestId });
    }
    this.pendingWrites.clear();
    for (const r of this.pendingReads)
      this.out.replies.push({ type: 'unavailable', requestId: r.requestId });
    this.pendingReads = [];
    this.progress.clear();
    this.barrierSeq = 0;
    this.verifiedSeq = this.commitSeq;
  }

  // ===========================================================================================
  // Election (S§7 through the coordinator; rounds = epoch counter value)

  private onSession(state: 'established' | 'lost'): void {
    switch (state) {
      case 'established':
        this.sessionUp = true;
        break;
      case 'lost':
        // Our ephemerals (candidacy, leader znode) are gone with the session.
        this.sessionUp = false;
        if (this.role === 'leader') this.stepDown();
        if (this.role === 'candidate') this.role = 'follower';
        this.candidacyRound = null;
        this.claimInFlight = false;
        this.lastClaimSignature = null;
        this.seenCandidates = null;
        this.leaderZnode = undefined;
        this.epochZnode = undefined;
        break;
      default:
        unreachable(state, 'session state');
    }
  }

  private onLeaderZnode(leader: LeaderInfo | null): void {
    this.leaderZnode = leader;
    if (leader === null) {
      // Our own znode cannot vanish while our session lives: if it did, the session is gone.
      if (this.role === 'leader') this.stepDown();
      this.maybeStandForElection();
      return;
    }
    if (
      this.role === 'leader' &&
      (leader.nodeId !== this.self || leader.epoch !== this.currentEpoch)
    ) {
      if (leader.epoch >= this.currentEpoch) this.stepDown();
    }
    if (leader.nodeId !== this.self && leader.epoch >= this.currentEpoch) {
      this.leaderHint = leader.nodeId;
      if (this.role === 'candidate' && leader.epoch >= this.hard.fenceEpoch) {
        this.role = 'follower';
        this.candidacyRound = null;
        this.claimInFlight = false;
      }
    }
  }

  private maybeStandForElection(): void {
    if (!this.sessionUp || this.leaderZnode !== null || this.epochZnode === undefined) return;
    if (this.leaderZnode === undefined) return;
    if (!this.hard.voter || this.role === 'leader') return;
    if (this.ticks < this.abstainUntilTick) return;
    const round = this.epochZnode.epoch;
    if (this.candidacyRound === round) return;
    // Freeze: from now on nothing of an epoch <= round is accepted, so the LSN we publish stays
    // true (the fence is durable before the candidacy is published: a promise, like a vote).
    this.role = 'candidate';
    this.candidacyRound = round;
    this.claimInFlight = false;
    this.lastClaimSignature = null;
    if (this.hard.fenceEpoch < round + 1) {
      this.hard = { ...this.hard, fenceEpoch: round + 1 };
      this.out.hardState = { ...this.hard };
    }
    this.out.afterCoordinator.push({ type: 'publish-candidacy', round, lastLsn: this.lastLsn() });
  }

  private onCandidates(round: number, candidates: readonly Candidate[]): void {
    this.seenCandidates = { round, candidates };
    if (this.role !== 'candidate' || this.candidacyRound !== round) return;
    if (this.epochZnode === undefined || this.epochZnode.epoch !== round) return;
    const decision = decideElection(candidates, this.members, this.preferred);
    if (decision === null || decision.winner.nodeId !== this.self) return;
    // Our candidacy is only ours if the LSN matches (a lingering one from a previous life of
    // this node with a different log is not acted on).
    if (!lsnEquals(decision.winner.lastLsn, this.lastLsn())) return;
    const counted = decision.counted.map((c) => ({ nodeId: c.nodeId, incarnation: c.incarnation }));
    const signature = JSON.stringify(counted);
    if (this.claimInFlight || this.lastClaimSignature === signature) return;
    this.claimInFlight = true;
    this.lastClaimSignature = signature;
    this.out.coordinator.push({
      type: 'claim-leadership',
      round,
      fromVersion: this.epochZnode.version,
      epoch: round + 1,
      candidates: counted,
    });
  }

  private leaveCandidacy(): void {
    this.candidacyRound = null;
    this.claimInFlight = false;
    this.lastClaimSignature = null;
    if (this.role === 'candidate') this.role = 'follower';
  }

  private onClaimResult(round: number, epoch: number, ok: boolean): void {
    if (this.candidacyRound !== round || this.role !== 'candidate' || !this.claimInFlight) return;
    this.claimInFlight = false;
    if (!ok) {
      if (this.epochZnode !== undefined && this.epochZnode.epoch > round) {
        this.leaveCandidacy();
        this.maybeStandForElection();
        return;
      }
      // The round goes on. The candidate set may have changed while the claim was in flight
      // (a counted candidacy vanished: that is why the claim failed); no further change need
      // ever come, so decide again on the latest set seen (a set already claimed on is skipped).
      const seen = this.seenCandidates;
      if (seen !== null && seen.round === round) this.onCandidates(round, seen.candidates);
      return;
    }
    assert(epoch >= this.hard.fenceEpoch && epoch > this.currentEpoch, 'claimed epoch is new');
    this.becomeLeader(epoch);
  }

  // S§6.2 takeover, Raft-shaped: the log is replicated from each follower's match point, which
  // catches followers up to our commit seq, re-proposes our unresolved tail with its old LSNs
  // (App. B), and then the new-epoch barrier. Nothing commits before the barrier does.
  private becomeLeader(epoch: number): void {
    this.role = 'leader';
    this.leaderSinceTick = this.ticks;
    this.handoffStartTick = null;
    if (this.balance !== null) {
      // Leading again soon after handing over: the preferred member could not take it (down,
      // cut off from ZooKeeper): wait longer before the next try, so writes are not refused
      // over and over.
      const recent =
        this.lastHandoffTick !== null &&
        this.ticks - this.lastHandoffTick < 2 * this.balance.handoffAfterTicks;
      this.handoffWaitTicks = recent ? this.nextHandoffWait() : this.balance.handoffAfterTicks;
    }
    this.currentEpoch = epoch;
    this.epochKnown = Math.max(this.epochKnown, epoch);
    this.leaderHint = this.self;
    this.candidacyRound = null;
    this.verifiedSeq = this.commitSeq;
    const last = this.lastLsn().seq;
    this.progress.clear();
    for (const peer of this.peers) {
      this.progress.set(peer, {
        nextSeq: last + 1,
        probeFloor: last,
        matchSeq: 0,
        voter: false,
        lastAckTick: this.ticks,
        lastProgressTick: this.ticks,
        lastSendTick: this.ticks,
        snapshotPending: false,
      });
    }
    this.pendingWrites.clear();
    this.pendingReads = [];
    if (this.unsafe.skipBarrier === true) {
      this.barrierSeq = 0;
      // Without a barrier the followers still need the tail: probe from the start of it.
      for (const peer of this.peers) {
        this.probe(this.progress.get(peer)!, this.commitSeq + 1);
        this.sendAppend(peer);
      }
    } else {
      const barrier: Entry = {
        lsn: { epoch, seq: last + 1 },
        kind: 'barrier',
        payload: EMPTY_PAYLOAD,
      };
      this.barrierSeq = barrier.lsn.seq;
      this.appendLocal(barrier);
      for (const peer of this.peers) {
        this.probe(this.progress.get(peer)!, this.commitProbeSeq());
        this.sendAppend(peer);
      }
    }
    this.broadcastHeartbeat();
  }
}
