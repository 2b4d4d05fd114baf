// The Coordinator port: everything skv asks of its coordination service (DESIGN.md §4), as a
// promise-based interface with events. src/coordination/zookeeper/ implements it over ZooKeeper;
// a simulated implementation can live in sim/.
//
// Contracts every implementation keeps:
// - Every call settles within its deadline (a typed SkvError `deadline-exceeded` otherwise); no
//   call hangs. Infrastructure failures are SkvErrors with stable codes (`unavailable` when the
//   session is disconnected or expired, `deadline-exceeded`, `closed`, `corruption` for a znode
//   whose content does not parse). Expected protocol outcomes (a CAS on a stale version, a leader
//   znode that already exists) are data, never exceptions.
// - A write whose call failed with `unavailable` or `deadline-exceeded` has an UNKNOWN outcome:
//   callers re-read before they retry.
// - Watches are level-triggered subscriptions: the callback receives the full current value
//   first and then after every change, across reconnects and across session expiry (they are
//   re-armed on the new session). Consecutive identical values are collapsed, and changes
//   that land while a re-read is under way are seen together (ZooKeeper watches are one-shot:
//   the value read is the latest, intermediate states may be skipped).
// - Ephemerals (registerNode, publishCandidacy, writeLeader) die with the session. After an
//   expiry the implementation opens a new session by itself and emits `new-session`; the owner
//   re-registers what it needs (membership, candidacy in the current round); leadership is NOT
//   re-asserted blindly: a leader whose session expired has lost it (S§7, PAPER-NOTES §4.5).
//
// Leadership safety rule (DESIGN.md §5 rule 6, PAPER-NOTES §4.6 gap 1): the server expires a
// session `sessionTimeoutMs` after it last heard from the client. `lastContactSendTimeMs` is the
// local send time of the newest request that got a reply, so the server heard from us at or
// after it. A leader must stop acting as leader (no strong reads, no commits reported) once
// `msSinceLastContact() >= leadershipGraceMs` (= sessionTimeout × 2/3): that is strictly before
// the server could expire the session and let a new leader be elected, with 1/3 of the session
// left as margin for clock-rate differences and scheduling delays. `isLeadershipSafe()` says it.

import type { NodeId, RangeId } from '../core/ids.js';
import type { Lsn } from '../core/lsn.js';

export type SessionState = 'connecting' | 'connected' | 'disconnected' | 'expired' | 'closed';

export type SessionEvent =
  /** The first session of this coordinator is established. */
  | { readonly kind: 'connected'; readonly sessionId: string }
  /** The connection is lost; the session may still be alive on the server. */
  | { readonly kind: 'disconnected'; readonly sessionId: string }
  /** The connection is back with the SAME session: ephemerals and watches survived. */
  | { readonly kind: 'reconnected'; readonly sessionId: string }
  /** The server expired the session: every ephemeral of it is gone. */
  | { readonly kind: 'expired'; readonly sessionId: string }
  /** A fresh session replaced an expired one: re-register ephemerals now. */
  | { readonly kind: 'new-session'; readonly sessionId: string; readonly previousSessionId: string }
  | { readonly kind: 'closed' };

export type Unsubscribe = () => void;

export interface NodeInfo {
  readonly nodeId: NodeId;
  readonly address: string;
}

/** A key range [start, end) and its cohort. An empty `end` means unbounded (+∞). */
export interface RangeDescriptor {
  readonly rangeId: RangeId;
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  readonly members: readonly NodeId[];
}

export interface RangeMap {
  /** Sorted by rangeId. */
  readonly ranges: readonly RangeDescriptor[];
}

export interface EpochRead {
  readonly epoch: number;
  /** The znode's data version, the `expectedVersion` of the next CAS. */
  readonly version: number;
}

export interface IncarnationRead {
  readonly incarnation: number;
  readonly version: number;
}

export type CasResult =
  | { readonly ok: true; readonly version: number }
  | { readonly ok: false; readonly reason: 'version-conflict' | 'not-found' };

export type CreateResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'exists' };

export interface CandidateData {
  readonly nodeId: NodeId;
  readonly lastLsn: Lsn;
  /** False for a node rebuilding after a lost disk (PML§5.1): it is listed but must not count. */
  readonly voter: boolean;
  /**
   * The node's incarnation when it published (nodes-meta/<id>/incarnation): a claim that counts
   * this candidacy checks the incarnation is unchanged, so a candidacy of a node's previous life
   * (before it lost its disk) can never be claimed on.
   */
  readonly incarnation: number;
}

export interface Candidate extends CandidateData {
  /** ZooKeeper's sequence number of the candidate znode: the order candidacies were accepted. */
  readonly sequence: number;
}

export type StartRoundResult =
  | { readonly ok: true; readonly round: number }
  /** Someone else started a newer round first: join `newest` instead. */
  | { readonly ok: false; readonly reason: 'superseded'; readonly newest: number };

export type PublishResult =
  | { readonly ok: true; readonly sequence: number }
  /** The round was cleaned up (it is not the newest any more). */
  | { readonly ok: false; readonly reason: 'round-gone' };

export interface LeaderInfo {
  readonly nodeId: NodeId;
  readonly address: string;
  readonly epoch: number;
}

/**
 * What the winner of election round `epoch - 1` claims, atomically (one ZooKeeper multi): every
 * counted candidate's incarnation is unchanged, the epoch counter moves from `fromVersion` to
 * `epoch`, and the ephemeral leader znode is created. So "epoch moved but no leader znode" or "a
 * leader znode of a stale round" never happen (DESIGN.md §5 rule 3).
 */
export interface LeadershipClaim {
  readonly fromVersion: number;
  readonly epoch: number;
  readonly candidates: readonly { readonly nodeId: NodeId; readonly incarnation: number }[];
  readonly leader: LeaderInfo;
}

export type WriteLeaderResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'exists'; readonly current: LeaderInfo | null };

export interface Coordinator {
  readonly sessionState: SessionState;
  /** The negotiated session timeout (the requested one until connected). */
  readonly sessionTimeoutMs: number;
  /** sessionTimeoutMs × 2/3: see the leadership safety rule in the header. */
  readonly leadershipGraceMs: number;
  /** Time since the send time of the newest request that got a reply (Infinity before any). */
  msSinceLastContact(): number;
  /** Connected and confirmed contact within leadershipGraceMs. */
  isLeadershipSafe(): boolean;
  onSessionEvent(listener: (event: SessionEvent) => void): Unsubscribe;

  /** Connects (within the connect deadline) and creates the cluster's base znodes. */
  start(): Promise<void>;
  /** Closes the session: its ephemerals vanish at once. Idempotent. */
  close(): Promise<void>;

  // Membership: nodes/<id>, ephemeral, holding the address.
  registerNode(nodeId: NodeId, address: string): Promise<void>;
  listNodes(): Promise<NodeInfo[]>;
  watchNodes(listener: (nodes: NodeInfo[]) => void): Unsubscribe;

  // The range map: ranges/<rangeId> {start, end, members}, written once, atomically.
  /** Throws SkvError `already-exists` when a range map exists. */
  initCluster(map: RangeMap): Promise<void>;
  readRangeMap(): Promise<RangeMap | null>;
  watchRangeMap(listener: (map: RangeMap | null) => void): Unsubscribe;

  // Incarnation: nodes-meta/<id>/incarnation (PML§5.1).
  readIncarnation(nodeId: NodeId): Promise<IncarnationRead | null>;
  createIncarnation(nodeId: NodeId, incarnation: number): Promise<CreateResult>;
  casIncarnation(nodeId: NodeId, expectedVersion: number, incarnation: number): Promise<CasResult>;

  // Epochs: ranges/<rangeId>/epoch, changed only by a versioned setData (DESIGN.md §5 rule 2).
  readEpoch(rangeId: RangeId): Promise<EpochRead>;
  casEpoch(rangeId: RangeId, expectedVersion: number, newEpoch: number): Promise<CasResult>;
  /** Delivers the epoch counter and its version on every change. */
  watchEpoch(rangeId: RangeId, listener: (epoch: EpochRead) => void): Unsubscribe;
  /** True if the claim took effect; false if any of its checks failed (nothing changed). */
  claimLeadership(rangeId: RangeId, claim: LeadershipClaim): Promise<boolean>;

  // Election rounds: ranges/<rangeId>/election/<round>/c- (DESIGN.md §5 rule 3).
  /** The newest round, or 0 when no round was ever started. */
  currentRound(rangeId: RangeId): Promise<number>;
  /**
   * Starts round `afterRound + 1`, only if `afterRound` is still the newest (a CAS, so concurrent
   * starters agree on one new round). Rounds are numbered 1, 2, 3 ...
   */
  startRound(rangeId: RangeId, afterRound: number): Promise<StartRoundResult>;
  /** Delivers the newest round number on every change. */
  watchRounds(rangeId: RangeId, listener: (newest: number) => void): Unsubscribe;
  /** Creates the round's znode when it does not exist yet (rounds named by epoch). */
  publishCandidacy(rangeId: RangeId, round: number, data: CandidateData): Promise<PublishResult>;
  /**
   * Delivers the round's candidates sorted by sequence, one per node (a node's earliest
   * candidacy wins, so a retried publish can never make one node count twice), on every change.
   */
  watchCandidates(
    rangeId: RangeId,
    round: number,
    listener: (candidates: Candidate[]) => void,
  ): Unsubscribe;
  readCandidates(rangeId: RangeId, round: number): Promise<Candidate[]>;
  /** Deletes all but the newest `keepNewest` rounds (with their candidates); returns how many. */
  cleanupRounds(rangeId: RangeId, keepNewest: number): Promise<number>;

  // Leader: ranges/<rangeId>/leader, ephemeral.
  writeLeader(rangeId: RangeId, leader: LeaderInfo): Promise<WriteLeaderResult>;
  readLeader(rangeId: RangeId): Promise<LeaderInfo | null>;
  watchLeader(rangeId: RangeId, listener: (leader: LeaderInfo | null) => void): Unsubscribe;
  /** Deletes the leader znode if THIS session created it (stepping down); true if deleted. */
  /** With `epoch`: only if the znode is of that epoch (a stale resign never removes a newer one). */
  resignLeader(rangeId: RangeId, epoch?: number): Promise<boolean>;
}
