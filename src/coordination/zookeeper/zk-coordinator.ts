// The Coordinator port over ZooKeeper (DESIGN.md §4 layout, see ../layout.ts for the grammar).
// Requests, deadlines, the session and the withheld-reply workaround live in zk-session.ts;
// this file maps each Coordinator call onto ZooKeeper operations and keeps watches alive.
//
// How the pieces stay correct:
// - initCluster is ONE multi: it creates `ranges` itself (never pre-created), every
//   ranges/<id>, ranges/<id>/epoch "0" and ranges/<id>/election "0". Either all exist or none;
//   a second initCluster fails on `ranges` NODE_EXISTS -> SkvError `already-exists`.
// - Election rounds (S§7, PAPER-NOTES §4.5 "clean up old state is racy"): the `election` znode
//   holds the newest round number. startRound(r, after) is a multi of a versioned setData of
//   `election` (after -> after+1) and the create of election/<after+1>, so concurrent starters
//   agree: exactly one round after+1 exists, the others get `superseded`. Every member reads
//   the newest round from `election` (watchRounds) and publishes only there, so candidates of
//   a stale round are never counted: they live under another path. cleanupRounds deletes only
//   rounds older than the newest `keepNewest`, never the current one.
// - Epoch and incarnation changes are versioned setData (CAS); a stale version is data.
// - Watches (WatchLoop) re-read the full value after each notification with a watcher set, and
//   re-arm after reconnects (the library re-sends SetWatches) and on a new session.

import zookeeper from 'node-zookeeper-client';
import { assert } from '../../core/assert.js';
import { InvalidArgumentError, SkvError } from '../../core/errors.js';
import type { NodeId, RangeId } from '../../core/ids.js';
import type {
  Candidate,
  CandidateData,
  CasResult,
  Coordinator,
  CreateResult,
  EpochRead,
  IncarnationRead,
  LeaderInfo,
  LeadershipClaim,
  NodeInfo,
  PublishResult,
  RangeMap,
  SessionEvent,
  SessionState,
  StartRoundResult,
  Unsubscribe,
  WriteLeaderResult,
} from '../coordinator.js';
import {
  checkEpoch,
  decodeCandidate,
  decodeCounter,
  decodeLeader,
  decodeNodeAddress,
  decodeRange,
  encodeCandidate,
  encodeCounter,
  encodeLeader,
  encodeNodeAddress,
  encodeRange,
  Layout,
  parseCandidateSequence,
  parseRangeIdName,
  parseRoundName,
  RANGES_MAX,
  ROUND_MAX,
} from '../layout.js';
import {
  txVersion,
  ZK,
  type ZkCallback,
  type ZkReply,
  ZkSession,
  type ZkSessionOptions,
  zkCodeName,
} from './zk-session.js';

export interface ZooKeeperCoordinatorOptions extends ZkSessionOptions {
  /** The cluster name: everything lives under /skv/<cluster>. */
  readonly cluster: string;
  /** Concurrent getData calls when reading many children (nodes, ranges, candidates). */
  readonly readConcurrencyMax?: number;
}

/** Watch subscriptions per coordinator; more is a leak in the caller. */
const WATCHES_MAX = 10_000;
/** Rounds deleted per cleanupRounds call at most (the rest goes next time). */
const CLEANUP_ROUNDS_MAX = 1000;
/** Re-read attempts of a range map whose children changed during the read. */
const READ_RETRIES_MAX = 5;

type Stat = zookeeper.Stat;
interface DataReply {
  readonly data: Buffer | undefined;
  readonly stat: Stat;
}
interface ChildrenReply {
  readonly children: string[];
  readonly stat: Stat;
}
type Watcher = (event: zookeeper.Event) => void;

export class ZooKeeperCoordinator implements Coordinator {
  readonly layout: Layout;
  readonly session: ZkSession;
  private readonly watches = new Set<WatchLoop<unknown>>();
  private readonly readConcurrencyMax: number;

  constructor(options: ZooKeeperCoordinatorOptions) {
    this.layout = new Layout(options.cluster);
    this.session = new ZkSession(options);
    this.readConcurrencyMax = options.readConcurrencyMax ?? 16;
    this.session.onEvent((event) => {
      // A new session has none of the old watches: read and re-arm everything. After a
      // reconnect the library re-sends the watches, but reads that failed meanwhile retry now.
      if (event.kind === 'new-session' || event.kind === 'reconnected') {
        for (const w of this.watches) w.rearm();
      }
    });
  }

  get sessionState(): SessionState {
    return this.session.sessionState;
  }
  get sessionTimeoutMs(): number {
    return this.session.sessionTimeoutMs;
  }
  get leadershipGraceMs(): number {
    return this.session.leadershipGraceMs;
  }
  msSinceLastContact(): number {
    return this.session.msSinceLastContact();
  }
  isLeadershipSafe(): boolean {
    return this.session.isLeadershipSafe();
  }
  onSessionEvent(listener: (event: SessionEvent) => void): Unsubscribe {
    return this.session.onEvent(listener);
  }

  async start(): Promise<void> {
    await this.session.start();
    for (const path of this.layout.basePaths()) await this.ensurePersistent(path);
  }

  async close(): Promise<void> {
    for (const w of this.watches) w.stop();
    this.watches.clear();
    await this.session.close();
  }

  // --- membership ---------------------------------------------------------------------------

  async registerNode(nodeId: NodeId, address: string): Promise<void> {
    const path = this.layout.node(nodeId);
    const data = encodeNodeAddress(address);
    const created = await this.create(path, data, zookeeper.CreateMode.EPHEMERAL);
    if (created.ok) return;
    if (created.code !== ZK.NODE_EXISTS) throw unexpected('registerNode', path, created.code);
    // Ours from this session (a retry after an unknown outcome) is fine; another session's
    // (a previous incarnation whose session has not expired yet, or a duplicate id) is not.
    const existing = await this.getData(path);
    if (!existing.ok) {
      if (existing.code === ZK.NO_NODE) return await this.registerNode(nodeId, address);
      throw unexpected('registerNode', path, existing.code);
    }
    if (!this.ownedByThisSession(existing.value.stat)) {
      throw new SkvError('already-exists', `node ${nodeId} is registered by another session`);
    }
    if (decodeNodeAddress(existing.value.data, path) !== address) {
      await this.checked('registerNode', path, this.setData(path, data, -1));
    }
  }

  async listNodes(): Promise<NodeInfo[]> {
    return await this.readNodes(undefined);
  }

  watchNodes(listener: (nodes: NodeInfo[]) => void): Unsubscribe {
    return this.watch((w) => this.readNodes(w), listener);
  }

  private async readNodes(watcher: Watcher | undefined): Promise<NodeInfo[]> {
    const dir = this.layout.nodesDir();
    const children = await this.checked('listNodes', dir, this.getChildren(dir, watcher));
    const names = [...children.children].sort();
    const nodes = await this.mapBounded(names, async (nodeId): Promise<NodeInfo | null> => {
      const path = `${dir}/${nodeId}`;
      const reply = await this.getData(path);
      if (!reply.ok) {
        if (reply.code === ZK.NO_NODE) return null; // left between the list and the read
        throw unexpected('listNodes', path, reply.code);
      }
      return { nodeId, address: decodeNodeAddress(reply.value.data, path) };
    });
    return nodes.filter((n): n is NodeInfo => n !== null);
  }

  // --- range map ----------------------------------------------------------------------------

  async initCluster(map: RangeMap): Promise<void> {
    const ranges = [...map.ranges].sort((a, b) => a.rangeId - b.rangeId);
    if (ranges.length === 0 || ranges.length > RANGES_MAX) {
      throw new InvalidArgumentError(`a range map needs 1..${RANGES_MAX} ranges`);
    }
    if (new Set(ranges.map((r) => r.rangeId)).size !== ranges.length) {
      throw new InvalidArgumentError('range ids must be distinct');
    }
    const dir = this.layout.rangesDir();
    const reply = await this.multi('initCluster', (tx) => {
      tx.create(dir, zookeeper.CreateMode.PERSISTENT);
      for (const range of ranges) {
        tx.create(this.layout.range(range.rangeId), encodeRange(range));
        tx.create(this.layout.epoch(range.rangeId), encodeCounter(0));
        tx.create(this.layout.electionDir(range.rangeId), encodeCounter(0));
      }
    });
    if (reply.ok) return;
    if (reply.code === ZK.NODE_EXISTS) {
      throw new SkvError('already-exists', `cluster ${this.layout.cluster} has a range map`);
    }
    throw unexpected('initCluster', dir, reply.code);
  }

  async readRangeMap(): Promise<RangeMap | null> {
    return await this.readRanges(undefined);
  }

  watchRangeMap(listener: (map: RangeMap | null) => void): Unsubscribe {
    return this.watch((w) => this.readRanges(w), listener);
  }

  private async readRanges(watcher: Watcher | undefined): Promise<RangeMap | null> {
    const dir = this.layout.rangesDir();
    for (let attempt = 0; attempt < READ_RETRIES_MAX; attempt++) {
      const listed = await this.getChildren(dir, watcher);
      if (!listed.ok) {
        if (listed.code !== ZK.NO_NODE) throw unexpected('readRangeMap', dir, listed.code);
        // No range map yet: watch for its creation.
        const exists = await this.exists(dir, watcher);
        if (exists === null) return null;
        continue; // created between the two calls
      }
      const ids = listed.value.children
        .map((name) => parseRangeIdName(name))
        .filter((id): id is RangeId => id !== null)
        .sort((a, b) => a - b);
      const ranges = await this.mapBounded(ids, async (rangeId) => {
        const path = this.layout.range(rangeId);
        const value = await this.checked('readRangeMap', path, this.getData(path, watcher));
        return decodeRange(rangeId, value.data, path);
      });
      // The range map changes only as a whole (initCluster's multi, later splits): if the set
      // of ranges moved during the read, read again for a consistent view.
      const after = await this.exists(dir, undefined);
      if (after !== null && after.cversion === listed.value.stat.cversion) return { ranges };
    }
    throw new SkvError('unavailable', 'the range map kept changing while being read');
  }

  // --- incarnation --------------------------------------------------------------------------

  async readIncarnation(nodeId: NodeId): Promise<IncarnationRead | null> {
    const path = this.layout.incarnation(nodeId);
    const reply = await this.getData(path);
    if (!reply.ok) {
      if (reply.code === ZK.NO_NODE) return null;
      throw unexpected('readIncarnation', path, reply.code);
    }
    return {
      incarnation: decodeCounter(reply.value.data, path),
      version: reply.value.stat.version,
    };
  }

  async createIncarnation(nodeId: NodeId, incarnation: number): Promise<CreateResult> {
    await this.ensurePersistent(this.layout.nodeMeta(nodeId));
    const path = this.layout.incarnation(nodeId);
    const reply = await this.create(
      path,
      encodeCounter(incarnation),
      zookeeper.CreateMode.PERSISTENT,
    );
    if (reply.ok) return { ok: true };
    if (reply.code === ZK.NODE_EXISTS) return { ok: false, reason: 'exists' };
    throw unexpected('createIncarnation', path, reply.code);
  }

  async casIncarnation(
    nodeId: NodeId,
    expectedVersion: number,
    incarnation: number,
  ): Promise<CasResult> {
    return await this.cas(
      this.layout.incarnation(nodeId),
      expectedVersion,
      encodeCounter(incarnation),
    );
  }

  // --- epochs -------------------------------------------------------------------------------

  async readEpoch(rangeId: RangeId): Promise<EpochRead> {
    const path = this.layout.epoch(rangeId);
    const value = await this.checked('readEpoch', path, this.getData(path));
    return { epoch: decodeCounter(value.data, path), version: value.stat.version };
  }

  async casEpoch(rangeId: RangeId, expectedVersion: number, newEpoch: number): Promise<CasResult> {
    return await this.cas(
      this.layout.epoch(rangeId),
      expectedVersion,
      encodeCounter(checkEpoch(newEpoch)),
    );
  }

  watchEpoch(rangeId: RangeId, listener: (epoch: EpochRead) => void): Unsubscribe {
    return this.watch(async (w) => {
      const path = this.layout.epoch(rangeId);
      const value = await this.checked('watchEpoch', path, this.getData(path, w));
      return { epoch: decodeCounter(value.data, path), version: value.stat.version };
    }, listener);
  }

  async claimLeadership(rangeId: RangeId, claim: LeadershipClaim): Promise<boolean> {
    checkEpoch(claim.epoch);
    const checks: { path: string; version: number }[] = [];
    for (const c of claim.candidates) {
      const inc = await this.readIncarnation(c.nodeId);
      if (inc === null || inc.incarnation !== c.incarnation) return false;
      checks.push({ path: this.layout.incarnation(c.nodeId), version: inc.version });
    }
    const epochPath = this.layout.epoch(rangeId);
    const reply = await this.multi('claimLeadership', (tx) => {
      for (const ch of checks) txVersion(tx.check(ch.path, ch.version), ch.version);
      txVersion(
        tx.setData(epochPath, encodeCounter(claim.epoch), claim.fromVersion),
        claim.fromVersion,
      );
      tx.create(
        this.layout.leader(rangeId),
        encodeLeader(claim.leader),
        zookeeper.CreateMode.EPHEMERAL,
      );
    });
    if (reply.ok) return true;
    if (
      reply.code === ZK.BAD_VERSION ||
      reply.code === ZK.NODE_EXISTS ||
      reply.code === ZK.NO_NODE
    ) {
      return false;
    }
    throw unexpected('claimLeadership', epochPath, reply.code);
  }

  // --- election rounds ----------------------------------------------------------------------

  async currentRound(rangeId: RangeId): Promise<number> {
    return await this.readRound(rangeId, undefined);
  }

  watchRounds(rangeId: RangeId, listener: (newest: number) => void): Unsubscribe {
    return this.watch((w) => this.readRound(rangeId, w), listener);
  }

  private async readRound(rangeId: RangeId, watcher: Watcher | undefined): Promise<number> {
    const path = this.layout.electionDir(rangeId);
    const value = await this.checked('currentRound', path, this.getData(path, watcher));
    return decodeCounter(value.data, path);
  }

  async startRound(rangeId: RangeId, afterRound: number): Promise<StartRoundResult> {
    if (!Number.isInteger(afterRound) || afterRound < 0 || afterRound >= ROUND_MAX) {
      throw new InvalidArgumentError(`bad round ${afterRound}`);
    }
    const dir = this.layout.electionDir(rangeId);
    const current = await this.checked('startRound', dir, this.getData(dir));
    const newest = decodeCounter(current.data, dir);
    if (newest !== afterRound) return { ok: false, reason: 'superseded', newest };
    const round = afterRound + 1;
    const reply = await this.multi('startRound', (tx) => {
      txVersion(tx.setData(dir, encodeCounter(round), current.stat.version), current.stat.version);
      tx.create(this.layout.round(rangeId, round), zookeeper.CreateMode.PERSISTENT);
    });
    if (reply.ok) return { ok: true, round };
    if (reply.code === ZK.BAD_VERSION || reply.code === ZK.NODE_EXISTS) {
      return { ok: false, reason: 'superseded', newest: await this.currentRound(rangeId) };
    }
    throw unexpected('startRound', dir, reply.code);
  }

  async publishCandidacy(
    rangeId: RangeId,
    round: number,
    data: CandidateData,
  ): Promise<PublishResult> {
    const prefix = this.layout.candidatePrefix(rangeId, round);
    const publish = () =>
      this.create(prefix, encodeCandidate(data), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL);
    let reply = await publish();
    if (!reply.ok && reply.code === ZK.NO_NODE) {
      // Rounds are named by the epoch they elect a successor to: the first candidate of a round
      // creates it; a round below the current epoch is over and never comes back.
      if (round < (await this.readEpoch(rangeId)).epoch) return { ok: false, reason: 'round-gone' };
      await this.ensurePersistent(this.layout.round(rangeId, round));
      reply = await publish();
    }
    if (!reply.ok) {
      if (reply.code === ZK.NO_NODE) return { ok: false, reason: 'round-gone' };
      throw unexpected('publishCandidacy', prefix, reply.code);
    }
    const name = reply.value.slice(reply.value.lastIndexOf('/') + 1);
    const sequence = parseCandidateSequence(name);
    assert(sequence !== null, `ZooKeeper returned a candidate name without a sequence: ${name}`);
    return { ok: true, sequence };
  }

  async readCandidates(rangeId: RangeId, round: number): Promise<Candidate[]> {
    return await this.readCandidatesWatched(rangeId, round, undefined);
  }

  watchCandidates(
    rangeId: RangeId,
    round: number,
    listener: (candidates: Candidate[]) => void,
  ): Unsubscribe {
    return this.watch((w) => this.readCandidatesWatched(rangeId, round, w), listener);
  }

  private async readCandidatesWatched(
    rangeId: RangeId,
    round: number,
    watcher: Watcher | undefined,
  ): Promise<Candidate[]> {
    const dir = this.layout.round(rangeId, round);
    let listed = await this.getChildren(dir, watcher);
    for (let attempt = 0; !listed.ok && attempt < READ_RETRIES_MAX; attempt++) {
      if (listed.code !== ZK.NO_NODE) throw unexpected('readCandidates', dir, listed.code);
      // No such round yet (rounds are created by their first candidate) or cleaned up: an exists
      // watch fires when it is created (getChildren sets no watch on a missing znode).
      if ((await this.exists(dir, watcher)) === null) return [];
      listed = await this.getChildren(dir, watcher);
    }
    if (!listed.ok) throw new SkvError('unavailable', `${dir} kept appearing and vanishing`);
    const named = listed.value.children
      .map((name) => ({ name, sequence: parseCandidateSequence(name) }))
      .filter((c): c is { name: string; sequence: number } => c.sequence !== null)
      .sort((a, b) => a.sequence - b.sequence);
    const read = await this.mapBounded(named, async ({ name, sequence }) => {
      const path = `${dir}/${name}`;
      const reply = await this.getData(path);
      if (!reply.ok) {
        if (reply.code === ZK.NO_NODE) return null; // its session ended meanwhile
        throw unexpected('readCandidates', path, reply.code);
      }
      return { ...decodeCandidate(reply.value.data, path), sequence };
    });
    const seen = new Set<NodeId>();
    const candidates: Candidate[] = [];
    for (const c of read) {
      if (c === null || seen.has(c.nodeId)) continue; // a node counts once: its earliest wins
      seen.add(c.nodeId);
      candidates.push(c);
    }
    return candidates;
  }

  async cleanupRounds(rangeId: RangeId, keepNewest: number): Promise<number> {
    if (!Number.isInteger(keepNewest) || keepNewest < 1) {
      throw new InvalidArgumentError('cleanupRounds must keep at least the newest round');
    }
    const dir = this.layout.electionDir(rangeId);
    const newest = await this.currentRound(rangeId);
    const listed = await this.checked('cleanupRounds', dir, this.getChildren(dir));
    const doomed = listed.children
      .map((name) => parseRoundName(name))
      .filter((r): r is number => r !== null && r <= newest - keepNewest)
      .sort((a, b) => a - b)
      .slice(0, CLEANUP_ROUNDS_MAX);
    let deleted = 0;
    for (const round of doomed) {
      if (await this.deleteRound(rangeId, round)) deleted += 1;
    }
    return deleted;
  }

  /** Deletes a round and its candidates (ephemerals of live sessions included). */
  private async deleteRound(rangeId: RangeId, round: number): Promise<boolean> {
    const dir = this.layout.round(rangeId, round);
    for (let attempt = 0; attempt < READ_RETRIES_MAX; attempt++) {
      const listed = await this.getChildren(dir);
      if (!listed.ok) {
        if (listed.code === ZK.NO_NODE) return false;
        throw unexpected('cleanupRounds', dir, listed.code);
      }
      const reply = await this.multi('cleanupRounds', (tx) => {
        for (const name of listed.value.children) tx.remove(`${dir}/${name}`);
        tx.remove(dir);
      });
      if (reply.ok) return true;
      // NOT_EMPTY: a late candidate joined; NO_NODE: someone else cleaned. Look again.
      if (reply.code !== ZK.NOT_EMPTY && reply.code !== ZK.NO_NODE) {
        throw unexpected('cleanupRounds', dir, reply.code);
      }
    }
    return false;
  }

  // --- leader -------------------------------------------------------------------------------

  async writeLeader(rangeId: RangeId, leader: LeaderInfo): Promise<WriteLeaderResult> {
    const path = this.layout.leader(rangeId);
    const reply = await this.create(path, encodeLeader(leader), zookeeper.CreateMode.EPHEMERAL);
    if (reply.ok) return { ok: true };
    if (reply.code !== ZK.NODE_EXISTS) throw unexpected('writeLeader', path, reply.code);
    return { ok: false, reason: 'exists', current: await this.readLeader(rangeId) };
  }

  async readLeader(rangeId: RangeId): Promise<LeaderInfo | null> {
    return await this.readLeaderWatched(rangeId, undefined);
  }

  watchLeader(rangeId: RangeId, listener: (leader: LeaderInfo | null) => void): Unsubscribe {
    return this.watch((w) => this.readLeaderWatched(rangeId, w), listener);
  }

  private async readLeaderWatched(
    rangeId: RangeId,
    watcher: Watcher | undefined,
  ): Promise<LeaderInfo | null> {
    const path = this.layout.leader(rangeId);
    for (let attempt = 0; attempt < READ_RETRIES_MAX; attempt++) {
      const reply = await this.getData(path, watcher);
      if (reply.ok) return decodeLeader(reply.value.data, path);
      if (reply.code !== ZK.NO_NODE) throw unexpected('readLeader', path, reply.code);
      // Absent: an exists watch fires when a leader is written.
      if ((await this.exists(path, watcher)) === null) return null;
    }
    throw new SkvError('unavailable', `${path} kept appearing and vanishing`);
  }

  async resignLeader(rangeId: RangeId, epoch?: number): Promise<boolean> {
    const path = this.layout.leader(rangeId);
    const read = await this.getData(path);
    if (!read.ok) {
      if (read.code === ZK.NO_NODE) return false;
      throw unexpected('resignLeader', path, read.code);
    }
    const stat = read.value.stat;
    if (!this.ownedByThisSession(stat)) return false;
    // Only the leadership of that epoch: a stale resign must not remove a newer claim of ours.
    if (epoch !== undefined && decodeLeader(read.value.data, path).epoch !== epoch) return false;
    const reply = await this.remove(path, stat.version);
    if (reply.ok) return true;
    if (reply.code === ZK.NO_NODE || reply.code === ZK.BAD_VERSION) return false;
    throw unexpected('resignLeader', path, reply.code);
  }

  // --- plumbing -----------------------------------------------------------------------------

  private ownedByThisSession(stat: Stat): boolean {
    const credentials = this.session.credentials();
    return credentials !== null && Buffer.from(stat.ephemeralOwner).equals(credentials.id);
  }

  private watch<T>(read: (watcher: Watcher) => Promise<T>, listener: (value: T) => void) {
    assert(this.watches.size < WATCHES_MAX, 'too many watches');
    const loop = new WatchLoop<T>(read, listener, this.session.sessionTimeoutMs);
    this.watches.add(loop as WatchLoop<unknown>);
    loop.rearm();
    return () => {
      loop.stop();
      this.watches.delete(loop as WatchLoop<unknown>);
    };
  }

  private async ensurePersistent(path: string): Promise<void> {
    const reply = await this.create(path, Buffer.alloc(0), zookeeper.CreateMode.PERSISTENT);
    if (!reply.ok && reply.code !== ZK.NODE_EXISTS) throw unexpected('create', path, reply.code);
  }

  private async cas(path: string, expectedVersion: number, data: Buffer): Promise<CasResult> {
    if (!Number.isInteger(expectedVersion) || expectedVersion < 0) {
      throw new InvalidArgumentError(`bad expected version ${expectedVersion}`);
    }
    const reply = await this.setData(path, data, expectedVersion);
    if (reply.ok) return { ok: true, version: reply.value.version };
    if (reply.code === ZK.BAD_VERSION) return { ok: false, reason: 'version-conflict' };
    if (reply.code === ZK.NO_NODE) return { ok: false, reason: 'not-found' };
    throw unexpected('cas', path, reply.code);
  }

  private async checked<T>(what: string, path: string, reply: Promise<ZkReply<T>>): Promise<T> {
    const r = await reply;
    if (r.ok) return r.value;
    if (r.code === ZK.NO_NODE) throw new SkvError('not-found', `${what}: ${path} does not exist`);
    throw unexpected(what, path, r.code);
  }

  private async mapBounded<A, B>(items: readonly A[], fn: (a: A) => Promise<B>): Promise<B[]> {
    const out: B[] = new Array(items.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as A);
      }
    };
    const workers = Math.min(this.readConcurrencyMax, items.length);
    await Promise.all(Array.from({ length: workers }, worker));
    return out;
  }

  private create(path: string, data: Buffer, mode: number): Promise<ZkReply<string>> {
    return this.session.request(`create ${path}`, (c, cb: ZkCallback<string>) =>
      c.create(path, data, mode, cb),
    );
  }

  private setData(path: string, data: Buffer, version: number): Promise<ZkReply<Stat>> {
    return this.session.request(`setData ${path}`, (c, cb: ZkCallback<Stat>) =>
      c.setData(path, data, version, cb),
    );
  }

  private remove(path: string, version: number): Promise<ZkReply<undefined>> {
    return this.session.request(`remove ${path}`, (c, cb: ZkCallback<undefined>) =>
      c.remove(path, version, (e) => cb(e)),
    );
  }

  private getData(path: string, watcher?: Watcher): Promise<ZkReply<DataReply>> {
    return this.session.request(`getData ${path}`, (c, cb: ZkCallback<DataReply>) => {
      const done = (e: unknown, data: Buffer, stat: Stat) => cb(e, { data, stat });
      if (watcher === undefined) c.getData(path, done);
      else c.getData(path, watcher, done);
    });
  }

  private getChildren(path: string, watcher?: Watcher): Promise<ZkReply<ChildrenReply>> {
    return this.session.request(`getChildren ${path}`, (c, cb: ZkCallback<ChildrenReply>) => {
      const done = (e: unknown, children: string[], stat: Stat) => cb(e, { children, stat });
      if (watcher === undefined) c.getChildren(path, done);
      else c.getChildren(path, watcher, done);
    });
  }

  /** The stat, or null when the znode does not exist. */
  private async exists(path: string, watcher: Watcher | undefined): Promise<Stat | null> {
    const reply = await this.session.request(`exists ${path}`, (c, cb: ZkCallback<Stat | null>) => {
      if (watcher === undefined) c.exists(path, cb);
      else c.exists(path, watcher, cb);
    });
    if (!reply.ok) throw unexpected('exists', path, reply.code);
    return reply.value ?? null;
  }

  private multi(
    what: string,
    build: (tx: zookeeper.Transaction) => void,
  ): Promise<ZkReply<unknown>> {
    return this.session.request(what, (c, cb: ZkCallback<unknown>) => {
      const tx = c.transaction();
      build(tx);
      tx.commit((e, results) => cb(e, results));
    });
  }
}

function unexpected(what: string, path: string, code: number): SkvError {
  return new SkvError('internal', `${what} ${path}: unexpected ZooKeeper ${zkCodeName(code)}`);
}

/**
 * A level-triggered subscription: read the value with a watcher set, deliver it if it changed,
 * read again when the watcher fires. One read at a time; a fire during a read causes one more.
 * Failed reads (disconnected, deadline) retry with a bounded backoff. One stable watcher
 * function per loop, so the library's per-path de-duplication keeps one registration per path.
 */
class WatchLoop<T> {
  private stopped = false;
  private reading = false;
  private again = false;
  private lastDelivered: string | undefined;
  private retryTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private readonly watcher: Watcher = () => this.rearm();

  constructor(
    private readonly read: (watcher: Watcher) => Promise<T>,
    private readonly listener: (value: T) => void,
    private readonly backoffMsMax: number,
  ) {}

  rearm(): void {
    if (this.stopped) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.reading = true;
    this.again = false;
    this.read(this.watcher).then(
      (value) => {
        this.reading = false;
        this.failures = 0;
        if (this.stopped) return;
        const key = JSON.stringify(value, (_k, v) =>
          v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v,
        );
        if (key !== this.lastDelivered) {
          this.lastDelivered = key;
          try {
            this.listener(value);
          } catch {
            // The listener owns its errors; the subscription stays alive.
          }
        }
        if (this.again) this.rearm();
      },
      () => {
        this.reading = false;
        if (this.stopped) return;
        if (this.again) {
          this.rearm(); // the session changed during the read: try the new one at once
          return;
        }
        this.failures += 1;
        const delayMs = Math.min(this.backoffMsMax, 50 * 2 ** Math.min(this.failures, 6));
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.rearm();
        }, delayMs);
        this.retryTimer.unref();
      },
    );
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
  }
}
