// The vocabulary of the cohort replication protocol (DESIGN.md §5): log entries, peer messages,
// the closed union of inputs a replica steps on, and the Ready batch of outputs it hands to its
// driver. Everything here is plain data (structured-clone friendly) so the same shapes go over
// the simulator's network and, later, the gRPC peer stream.
//
// Ordering contract of a Ready (etcd-raft style; the driver implements it once):
//   1. persist, in this order: `hardState`, `installSnapshot`, `truncateAfterSeq`, `entries`,
//      `commitLsn` (the last one is a hint and need not be forced, S§5 step 6);
//   2. apply `installSnapshot` then `committed` to the state machine, in order; for committed
//      entries with a `requestId` reply to the client from the ApplyResult;
//   3. send `messages`, `replies`, `coordinator` and build+send `snapshotsToSend` (from the
//      applied state reached in 2.);
//   4. once EVERYTHING written so far (this Ready's writes and every earlier one) is durable:
//      send `afterDurable.messages`, run `afterDurable.coordinator`, then step
//      `{ type: 'append-durable', lsn: lastAppendedLsn }`.
// Step 4 is what makes "a follower makes the record durable BEFORE it acks" (S§5) true, and what
// makes a published candidacy's last LSN a durable fact (S§7).

import type { NodeId } from '../core/ids.js';
import type { Lsn } from '../core/lsn.js';

export type EntryKind = 'data' | 'barrier';

export interface Entry {
  readonly lsn: Lsn;
  readonly kind: EntryKind;
  /** data: an encoded RowMutation (src/core/mutation.ts); barrier: empty. */
  readonly payload: Uint8Array;
}

/**
 * State that must be durable before any `afterDurable` output is acted on (like etcd-raft's
 * HardState). `fenceEpoch`: the replica accepts no message from an epoch below it — raised when
 * it publishes a candidacy (a promise, like a Raft vote) and when a non-voter is promoted.
 * `voter`: false while the replica rebuilds a lost disk (PML §5.1, PAPER-NOTES §4.6-3).
 */
export interface HardState {
  readonly fenceEpoch: number;
  readonly voter: boolean;
}

// ---------------------------------------------------------------------------------------------
// Peer messages. Every message carries the sender's epoch (rule 2: epoch fencing).

export interface ProposeMessage {
  readonly type: 'propose';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly epoch: number;
  /** LSN of the entry just before `entries` in the leader's log (seq 0 / epoch 0 = log start). */
  readonly prevLsn: Lsn;
  readonly entries: readonly Entry[];
  /** Leader's commit seq and the LSN of its entry there (lets a follower verify the prefix). */
  readonly commitSeq: number;
  readonly commitLsn: Lsn;
  /** Leader's last seq when sending (a rebuilding non-voter uses it, PML §5.1). */
  readonly leaderLastSeq: number;
}

export interface AckMessage {
  readonly type: 'ack';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly epoch: number;
  /** The follower's log equals the leader's up to and including this seq, and it is durable. */
  readonly matchSeq: number;
  /** A non-voter's ack never counts toward commit. */
  readonly voter: boolean;
}

export interface NackMessage {
  readonly type: 'nack';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly epoch: number;
  /** The prev seq that did not match. */
  readonly rejectedPrevSeq: number;
  readonly lastSeq: number;
  /** Everything up to here is committed on the follower, hence equal to the leader's log. */
  readonly commitSeq: number;
}

export interface HeartbeatMessage {
  readonly type: 'heartbeat';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly epoch: number;
  /** Read-index confirmation round (0: a plain commit message). */
  readonly round: number;
  readonly commitSeq: number;
  readonly commitLsn: Lsn;
  readonly leaderLastSeq: number;
}

export interface HeartbeatAckMessage {
  readonly type: 'heartbeat-ack';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly epoch: number;
  readonly round: number;
  readonly lastLsn: Lsn;
  readonly commitSeq: number;
  readonly voter: boolean;
}

export interface SnapshotMessage {
  readonly type: 'snapshot';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly epoch: number;
  /** The applied state covers every entry up to and including this LSN. */
  readonly lsn: Lsn;
  /** Opaque to the core: the driver's serialisation of its applied state. */
  readonly data: Uint8Array;
}

export type Message =
  | ProposeMessage
  | AckMessage
  | NackMessage
  | HeartbeatMessage
  | HeartbeatAckMessage
  | SnapshotMessage;

// ---------------------------------------------------------------------------------------------
// Coordinator (ZooKeeper) view. Election round r = the epoch counter's value when the round
// runs: a successful election moves the counter, so every election gets a fresh round and a
// stale candidacy of an earlier round is never counted (DESIGN.md §4).

export interface Candidate {
  readonly nodeId: NodeId;
  /** ZooKeeper sequence number of the candidate znode (tie-break: lowest wins). */
  readonly seq: number;
  readonly lastLsn: Lsn;
  /** The node's incarnation when it published (nodes-meta/<id>/incarnation). */
  readonly incarnation: number;
}

export interface LeaderInfo {
  readonly nodeId: NodeId;
  readonly epoch: number;
}

export type CoordinatorOp =
  /** Ephemeral sequential `election/<round>/c-` with this node's last LSN (after durable). */
  | { readonly type: 'publish-candidacy'; readonly round: number; readonly lastLsn: Lsn }
  /**
   * One ZooKeeper multi: check each counted candidate's incarnation is unchanged, setData the
   * epoch counter from `round` (expected version `fromVersion`) to `epoch`, create the ephemeral
   * leader znode {nodeId, epoch}. Atomic, so "epoch moved but no leader znode" never happens.
   */
  | {
      readonly type: 'claim-leadership';
      readonly round: number;
      readonly fromVersion: number;
      readonly epoch: number;
      readonly candidates: readonly { nodeId: NodeId; incarnation: number }[];
    }
  /**
   * Delete the leader znode if it is still ours for `epoch`. A leader that steps down while its
   * session lives must do this, or nobody would ever stand for election again.
   */
  | {
      readonly type: 'resign-leadership';
      readonly epoch: number;
      /** Resigned to hand leadership to this member (leader balancing). */
      readonly handoffTo?: NodeId;
    };

// ---------------------------------------------------------------------------------------------
// Inputs

export type Input =
  | { readonly type: 'tick' }
  | { readonly type: 'client-write'; readonly requestId: number; readonly payload: Uint8Array }
  | { readonly type: 'client-read'; readonly requestId: number }
  | { readonly type: 'message'; readonly message: Message }
  /** Everything this replica appended up to `lsn` (and every truncate before it) is durable. */
  | { readonly type: 'append-durable'; readonly lsn: Lsn }
  /** The driver checkpointed its applied state at `lsn` and dropped older log entries. */
  | { readonly type: 'log-compacted'; readonly lsn: Lsn }
  | { readonly type: 'session'; readonly state: 'established' | 'lost' }
  | { readonly type: 'leader-znode'; readonly leader: LeaderInfo | null }
  | { readonly type: 'epoch-znode'; readonly epoch: number; readonly version: number }
  | {
      readonly type: 'candidates';
      readonly round: number;
      readonly candidates: readonly Candidate[];
    }
  | {
      readonly type: 'claim-result';
      readonly round: number;
      readonly epoch: number;
      readonly ok: boolean;
    };

// ---------------------------------------------------------------------------------------------
// Outputs

export type ClientReply =
  | { readonly type: 'not-leader'; readonly requestId: number; readonly leaderHint: NodeId | null }
  /** Definitely not applied; safe to retry (no leader, no quorum, barrier not committed yet). */
  | { readonly type: 'unavailable'; readonly requestId: number }
  /** Definitely not applied: a bound was reached. */
  | { readonly type: 'overloaded'; readonly requestId: number }
  /** The write was logged but leadership was lost before it committed: it may or may not apply. */
  | { readonly type: 'outcome-unknown'; readonly requestId: number }
  /** A strong read may be served from the applied state, which has reached `seq`. */
  | { readonly type: 'read-ready'; readonly requestId: number; readonly seq: number };

export interface CommittedEntry {
  readonly entry: Entry;
  /** Set at the leader that accepted the client write: reply after applying. */
  readonly requestId?: number;
}

export interface Ready {
  readonly hardState: HardState | null;
  /** Replace the applied state and the log by this snapshot (durably, a `base` record). */
  readonly installSnapshot: { readonly lsn: Lsn; readonly data: Uint8Array } | null;
  /** Logically truncate every entry with seq above this (S§6.1.1), before appending `entries`. */
  readonly truncateAfterSeq: number | null;
  readonly entries: readonly Entry[];
  /** Whether this Ready needs an fsync before `afterDurable` (always, when anything is written). */
  readonly mustSync: boolean;
  /** Non-forced commit hint for local recovery (S§5 step 6). */
  readonly commitLsn: Lsn | null;
  readonly committed: readonly CommittedEntry[];
  readonly messages: readonly Message[];
  readonly replies: readonly ClientReply[];
  readonly coordinator: readonly CoordinatorOp[];
  readonly snapshotsToSend: readonly {
    readonly to: NodeId;
    readonly lsn: Lsn;
    readonly epoch: number;
  }[];
  readonly afterDurable: {
    readonly messages: readonly Message[];
    readonly coordinator: readonly CoordinatorOp[];
  };
  /** The last LSN in the log after this Ready (what `append-durable` should report). */
  readonly lastLsn: Lsn;
  /**
   * Peer messages dropped because no correct peer sends them (an ack beyond our log, a second
   * leader in our epoch, a leader contradicting a committed entry...): a forged or corrupted
   * frame must not stop the node, so the core drops it and says why. The simulation treats any
   * of these as a protocol bug; the server logs them.
   */
  readonly rejected: readonly RejectedMessage[];
}

export interface RejectedMessage {
  readonly from: NodeId;
  readonly type: Message['type'];
  readonly reason: string;
}

// ---------------------------------------------------------------------------------------------
// Configuration

/** Deliberately broken builds, only for proving the simulation catches them (TESTING.md C7). */
export interface UnsafeSwitches {
  /** A follower acks a propose before its record is durable. */
  readonly ackBeforeDurable?: boolean;
  /** A new leader appends no barrier and commits old-epoch entries by counting replicas. */
  readonly skipBarrier?: boolean;
  /** Any replica answers a strong read from its applied state. */
  readonly followerStrongReads?: boolean;
}

export interface ReplicaLimits {
  /** Entries per propose message. */
  readonly entriesPerMessageMax: number;
  /**
   * Payload bytes per propose message: the entries after the first stop once they would pass it
   * (a single entry may be larger). With 1 MiB values, 64 entries made a message over the
   * transport's limit (GRPC_MESSAGE_BYTES_MAX), which broke the peer stream on every resend.
   */
  readonly messageBytesMax: number;
  /** Uncommitted entries at the leader (lastSeq - commitSeq); client writes beyond: overloaded. */
  readonly uncommittedEntriesMax: number;
  /** Strong reads waiting at the leader. */
  readonly pendingReadsMax: number;
  /** Committed entries handed to the driver per Ready (the rest follow in the next). */
  readonly applyBatchMax: number;
}

export interface ReplicaTiming {
  /** Leader: send a heartbeat / commit message every this many ticks (S§5 commit period). */
  readonly heartbeatIntervalTicks: number;
  /** Leader: resend to a follower that has not acked for this many ticks. */
  readonly retransmitTicks: number;
  /** A strong read not confirmed within this many ticks is answered `unavailable`. */
  readonly readTimeoutTicks: number;
  /**
   * Leader: restart a snapshot transfer only after this many ticks without the follower's ack.
   * A range's snapshot takes far longer than a propose to ship and install; restarting it on the
   * propose timeout never lets a large one finish (each restart exports the range again).
   */
  readonly snapshotRetryTicks: number;
}

export interface ReplicaConfig {
  readonly self: NodeId;
  /** All three cohort members including self. */
  readonly members: readonly NodeId[];
  readonly limits?: Partial<ReplicaLimits>;
  readonly timing?: Partial<ReplicaTiming>;
  readonly unsafe?: UnsafeSwitches;
  /** Leader balancing; absent: off (ties go to the lowest candidate sequence number). */
  readonly balance?: LeaderBalance;
}

/**
 * Leader balancing. A cohort's preferred leader is its first member: chained declustering
 * makes each node the first member of its own range, so preferred leaders spread the ranges'
 * leaders (and their strong reads and writes) over the nodes. With balancing on, election ties
 * (equal last LSNs) go to the preferred member; and a leader that is not the preferred member
 * hands leadership over once the preferred member is a caught-up voter: it refuses new writes
 * (`unavailable`: the client retries), waits until the preferred member has durably matched
 * its whole log and everything is committed, then resigns and stands for no election for a
 * while, so the preferred member (whose log is then at least as new as the third member's)
 * wins the next round. Safety does not depend on any of this: any max-LSN winner is safe.
 */
export interface LeaderBalance {
  /** Lead this many ticks before handing over (0: election ties only, never hand over). */
  readonly handoffAfterTicks: number;
  /** A hand-over not done within this many ticks is abandoned and writes resume. */
  readonly handoffTimeoutTicks: number;
  /** After resigning to hand over, publish no candidacy for this many ticks. */
  readonly abstainTicks: number;
}

export const DEFAULT_LIMITS: ReplicaLimits = {
  entriesPerMessageMax: 64,
  messageBytesMax: 4 * 1024 * 1024,
  uncommittedEntriesMax: 256,
  pendingReadsMax: 1024,
  applyBatchMax: 256,
};

export const DEFAULT_TIMING: ReplicaTiming = {
  heartbeatIntervalTicks: 2,
  retransmitTicks: 6,
  readTimeoutTicks: 100,
  snapshotRetryTicks: 100,
};

/** What the driver recovered from its disk (S§6.1 local recovery). */
export interface RestoredState {
  readonly hardState: HardState;
  /** The snapshot base: every entry up to it is folded into the restored applied state. */
  readonly baseLsn: Lsn;
  /** Live entries after the base, in seq order, contiguous from baseLsn.seq + 1. */
  readonly entries: readonly Entry[];
  /** The last commit hint found (≤ last entry; entries up to it are replayed by the core). */
  readonly commitSeq: number;
}
