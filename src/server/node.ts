// One skv node (`skv server`): hosts every cohort the node belongs to and drives their cores over
// the shared commit log (src/server/cohort.ts has the Ready contract), serves the public gRPC API
// and the peer protocol on one port, and talks to ZooKeeper through the Coordinator port.
//
// Start-up (S§6.1 local recovery, PML §5.1 lost-disk detection):
//   open the hard-state file, the commit log (recovery: checksums, torn tail) and the storage;
//   connect to the coordinator, register the node; compare the incarnation marker in ZooKeeper
//   with the local data: a marker with an empty data dir means the disk was lost, so the node
//   bumps its incarnation and rejoins every cohort as a non-voter; wait for the range map; build
//   each cohort's restored state (storage checkpoint + log entries after it + commit hint) and
//   start its replica; then serve.
//
// Requests: any node accepts any request. Writes and strong reads go to the range leader (local,
// or forwarded one hop with the `forwarded` flag so a request never bounces); timeline reads are
// served by any member from its applied state (local if this node is a member).

import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Coordinator, LeaderInfo, RangeMap } from '../coordination/coordinator.js';
import { CorruptionError, InvalidArgumentError, SkvError } from '../core/errors.js';
import type { NodeId, RangeId } from '../core/ids.js';
import { compareLsn, formatLsn, type Lsn, lsnEquals } from '../core/lsn.js';
import { type ApplyResult, encodeRowMutation, type RowMutation } from '../core/mutation.js';
import type { CommitLog, TornTail } from '../log/index.js';
import { CommitLog as CommitLogImpl } from '../log/index.js';
import { LogLimiter } from '../observability/log-limiter.js';
import { compareBytes } from '../placement/bytes.js';
import type { KeyRange, RangeMap as PlacementRangeMap } from '../placement/range-map.js';
import { makeRangeMap, rangeForKey, rangesOverlapping } from '../placement/range-map.js';
import type {
  Candidate,
  CoordinatorOp,
  Entry,
  LeaderBalance,
  Message,
} from '../replication/types.js';
import type {
  CallContext,
  CellValue,
  GetResult,
  NodeStatusView,
  RangeMapView,
  RowResult,
  WriteOptions,
} from '../rpc/backend.js';
import { NotLeaderError } from '../rpc/backend.js';
import type { PeerBatch, PeerMessage } from '../rpc/generated/skv/peer/v1/peer.js';
import { Consistency } from '../rpc/generated/skv/v1/kv.js';
import { KvGrpcServer } from '../rpc/kv-server.js';
import type { NodeTransport, SessionOp } from '../rpc/node-transport.js';
import { decodePeerMessage, encodePeerMessage } from '../rpc/peer-codec.js';
import { PeerLink, type PeerVerdict } from '../rpc/peer-transport.js';
import { RemoteError } from '../rpc/session-channel.js';
import { nodeChannelSecurity, type ServerSecurity } from '../rpc/tls.js';
import type { ValidGet, ValidReadRow, ValidScan } from '../rpc/validate.js';
import {
  decodeSnapshotChunk,
  encodeSnapshotChunk,
  type SnapshotCell,
} from '../storage/encoding.js';
import { levelDbBuild } from '../storage/level/leveldb-build.js';
import { NodeStorage } from '../storage/node-storage.js';
import type { SnapshotImport } from '../storage/range-store.js';
import { Cohort } from './cohort.js';
import { writeFileDurably } from './durable-file.js';
import { FAILPOINTS_ARMED, failpoint, onStatusSignal } from './failpoints.js';
import { HardStateStore } from './hard-state-store.js';
import { ReceivedSnapshots } from './received-snapshots.js';

export interface NodeConfig {
  readonly id: NodeId;
  /** host:port to bind. */
  readonly listen: string;
  /** host:port others use (default: listen). */
  readonly advertise?: string;
  readonly dataDir: string;
  readonly cluster: string;
  /** How often the cores tick. */
  readonly tickMs?: number;
  /** Memtable size per range before a flush. */
  readonly memtableSizeBytesMax?: number;
  /**
   * Log entries a cohort keeps in memory before its checkpoint for followers' catch-up
   * (default LOG_CATCH_UP_ENTRIES_DEFAULT; see compactionPoint).
   */
  readonly logCatchUpEntries?: number;
  /**
   * Commit-log bytes on disk past which the range whose unflushed records keep the oldest
   * segment is flushed (default LOG_RETAIN_BYTES_DEFAULT; 0: whenever one does).
   */
  readonly logRetainBytes?: number;
  /**
   * Leader balancing (replication/types.ts LeaderBalance): a leader that is not its range's
   * preferred member hands over after leading this long with the preferred member caught up.
   * 0: never hand over (election ties still go to the preferred member). Default 5000.
   */
  readonly leaderHandoffMs?: number;
  /** Deliberately unsafe switches for the fault suites (never in production). */
  readonly unsafe?: { readonly ackBeforeDurable?: boolean; readonly followerStrongReads?: boolean };
  /** TLS and bearer token of the port; the node's certificate also signs its peer links. */
  readonly security?: ServerSecurity;
}

/** Receives one observation per request served (the metrics adapter implements it). */
export interface RequestObserver {
  /**
   * One request from a client, as this node answered it. `forwarded`: this node relayed it to
   * the range leader, which answered it (and counts it too): a client with a stale range map,
   * or a plain gRPC client.
   */
  observe(
    method: string,
    consistency: string,
    outcome: string,
    seconds: number,
    forwarded?: boolean,
  ): void;
  /** This node learnt a range's new leader (or a new epoch of it): the status page's elections. */
  leaderElected?(rangeId: RangeId, leader: NodeId, epoch: number): void;
  /** One group commit of the shared log: its fdatasync time and the batch it made durable. */
  groupCommit?(fsyncSeconds: number, records: number, bytes: number): void;
  /**
   * A protocol event of a cohort: 'checkpoint' (memtable flushed to LevelDB tables),
   * 'snapshot-send', 'snapshot-install', 'truncate', 'peer-message-rejected', ...
   */
  cohortEvent?(rangeId: RangeId, event: string): void;
}

export interface NodeDeps {
  readonly coordinator: Coordinator;
  /** Client-side transport used to forward requests to other nodes. */
  readonly transport: NodeTransport;
  readonly log?: (
    level: 'info' | 'warn' | 'error',
    msg: string,
    fields?: Record<string, unknown>,
  ) => void;
  readonly requests?: RequestObserver;
  /** Fail-stop hook (default: log and exit the process with status 70). */
  readonly onFatal?: (err: unknown) => void;
}

const NODE_MARKER = 'node.json';
const SNAPSHOT_TRANSFER_BYTES_MAX = 4 * 1024 * 1024 * 1024;
/** Bytes of a snapshot's chunks received and not yet written before its stream pauses. */
const SNAPSHOT_QUEUED_BYTES_MAX = 16 * 1024 * 1024;
/** Snapshots received in full and not (yet) installed, kept per range (each staged on disk). */
const SNAPSHOTS_PENDING_MAX = 2;
const GC_INTERVAL_MS = 5_000;
/**
 * Past this many commit-log bytes on disk, the range whose unflushed records keep the oldest
 * segment is flushed (RocksDB's max_total_wal_size): one range's few writes must not pin a log
 * that the node's busy ranges keep filling. Each range's own tail is bounded by its memtable
 * limit; this bounds the sum over ranges that are idle. 8 segments of 64 MiB.
 */
export const LOG_RETAIN_BYTES_DEFAULT = 512 * 1024 * 1024;
const DEFAULT_TICK_MS = 50;
/**
 * How often every range is checked for an orphaned leader znode of ours (resignIfOrphaned), on
 * top of the checks after each view read: cheap (two map lookups per range) until one exists.
 */
const ORPHAN_CHECK_MS = 1000;
/** At most one 'peer-message-rejected' log line per range, peer and message type this often. */
const REJECTION_LOG_INTERVAL_MS = 5000;
export const LEADER_HANDOFF_MS_DEFAULT = 5_000;
/** A hand-over whose preferred member has not matched the log by then is abandoned. */
const HANDOFF_TIMEOUT_MS = 1_000;
/** After handing over, no candidacy for this long: the preferred member wins the round. */
const HANDOFF_ABSTAIN_MS = 2_000;
const SCAN_PAGE_ROWS_MAX = 1000;
/** Beyond two session timeouts, when waiting for a previous life's membership znode to expire. */
const REGISTER_SLACK_MS = 1000;
const REGISTER_RETRY_MS_MIN = 50;

/** A snapshot being sent to one follower of one range (see `sendSnapshot`). */
interface SnapshotSend {
  readonly epoch: number;
  cancelled: boolean;
  done: Promise<void>;
}

/** Log entries a cohort keeps before its checkpoint for followers' catch-up (compactionPoint). */
export const LOG_CATCH_UP_ENTRIES_DEFAULT = 50_000;
/** ...and their bytes at most (payloads plus LOG_ENTRY_OVERHEAD_BYTES each). */
const LOG_CATCH_UP_BYTES_MAX = 64 * 1024 * 1024;
const LOG_ENTRY_OVERHEAD_BYTES = 100;

/**
 * A snapshot being received: each chunk is written to the range's staged generation as it comes
 * (RangeStore.beginImport), so a follower holds a few chunks in memory, not the range.
 */
interface SnapshotTransfer {
  readonly from: NodeId;
  readonly transferId: bigint;
  readonly lsn: Lsn;
  readonly staged: Promise<SnapshotImport>;
  /** The chunks' writes so far, in order; rejects once one failed (the transfer is dropped). */
  written: Promise<void>;
  /** Bytes of chunks received and not yet written. */
  queuedBytes: number;
  bytes: number;
  nextIndex: number;
  ended: boolean;
}

function rangeToPlacement(map: RangeMap): PlacementRangeMap {
  return makeRangeMap(
    map.ranges.map((r) => ({
      rangeId: r.rangeId,
      start: r.start,
      end: r.end,
      members: [...r.members],
    })),
  );
}

interface RangeView {
  epoch?: { epoch: number; version: number };
  candidates?: { round: number; list: Candidate[] };
  candidatesUnsub: (() => void) | null;
  refreshing: boolean;
  again: boolean;
}

export class SkvNode {
  readonly id: NodeId;
  private server: KvGrpcServer | null = null;
  private readonly cohorts = new Map<RangeId, Cohort>();
  private placement: PlacementRangeMap | null = null;
  private readonly leaders = new Map<RangeId, LeaderInfo | null>();
  private addresses = new Map<NodeId, string>();
  private readonly links = new Map<NodeId, PeerLink>();
  /** Snapshots being received, one per range. */
  private readonly transfers = new Map<RangeId, SnapshotTransfer>();
  /** Snapshots being sent, by `${rangeId}/${to}`. */
  private readonly snapshotSends = new Map<string, SnapshotSend>();
  private nextTransferId = 1n;
  private readonly unsubscribes: (() => void)[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private incarnation = 0;
  private sessionUp = false;
  private leadershipSafe = false;
  private mapVersion = 0;
  private stopped = false;

  private constructor(
    private readonly config: NodeConfig,
    private readonly deps: NodeDeps,
    private readonly log: CommitLog,
    private readonly storage: NodeStorage,
    private readonly hardStates: HardStateStore,
    private readonly hadLocalData: boolean,
  ) {
    this.id = config.id;
  }

  get address(): string {
    return this.config.advertise ?? this.config.listen;
  }

  get port(): number {
    return this.server?.port ?? 0;
  }

  private say(
    level: 'info' | 'warn' | 'error',
    msg: string,
    fields?: Record<string, unknown>,
  ): void {
    this.deps.log?.(level, msg, { node: this.id, ...fields });
  }

  private fatal = (err: unknown): void => {
    if (this.stopped) return;
    this.say('error', 'fatal error: stopping the node', {
      error: String(err),
      stack: (err as Error)?.stack,
    });
    if (this.deps.onFatal !== undefined) this.deps.onFatal(err);
    else process.exit(70);
  };

  static async start(config: NodeConfig, deps: NodeDeps): Promise<SkvNode> {
    await mkdir(config.dataDir, { recursive: true });
    const markerPath = path.join(config.dataDir, NODE_MARKER);
    let hadLocalData = false;
    try {
      const text = await readFile(markerPath, 'utf8');
      let marker: { id?: string; cluster?: string };
      try {
        marker = JSON.parse(text) as { id?: string; cluster?: string };
      } catch {
        // Written atomically (durable-file.ts): a marker that does not parse is damage.
        throw new CorruptionError(`node marker ${markerPath} is damaged`, markerPath);
      }
      if (marker.id !== config.id || marker.cluster !== config.cluster) {
        throw new InvalidArgumentError(
          `data dir ${config.dataDir} belongs to node ${marker.id} of cluster ${marker.cluster}`,
        );
      }
      hadLocalData = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const hardStates = await HardStateStore.open(config.dataDir);
    let node: SkvNode | null = null;
    const nodeLog = deps.log;
    const { log } = await CommitLogImpl.open({
      dir: path.join(config.dataDir, 'log'),
      onFatal: (err) => (node === null ? process.exit(70) : node.fatal(err)),
      // Recovery truncated a torn final batch (FORMAT.md "Known limit"): say so in the node's log.
      ...(nodeLog === undefined
        ? {}
        : {
            onWarning: (message: string, tornTail: TornTail) =>
              nodeLog('warn', message, { node: config.id, tornTail }),
          }),
      ...(deps.requests?.groupCommit === undefined
        ? {}
        : { onGroupCommit: deps.requests.groupCommit.bind(deps.requests) }),
    });
    const storage = await NodeStorage.open(config.dataDir, {
      ...(config.memtableSizeBytesMax === undefined
        ? {}
        : { memtableSizeBytesMax: config.memtableSizeBytesMax }),
      onCheckpoint: (rangeId, lsn) => node?.onCheckpoint(rangeId, lsn),
      onFatal: (_rangeId, err) => node?.fatal(err),
    });
    const leveldb = levelDbBuild();
    nodeLog?.(leveldb.patched ? 'info' : 'warn', 'LevelDB', {
      leveldb: leveldb.detail,
      ...(leveldb.patched ? {} : { fix: 'run node scripts/build-leveldb.mjs in the skv package' }),
    });
    node = new SkvNode(config, deps, log, storage, hardStates, hadLocalData);
    try {
      await node.boot();
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  private async boot(): Promise<void> {
    const [host, portText] = splitHostPort(this.config.listen);
    this.server = await KvGrpcServer.start(this, {
      host,
      port: Number(portText),
      onPeerBatch: (batch) => this.onPeerBatch(batch),
      onPeerRefused: (r) => this.say('warn', 'peer refused', { ...r }),
      ...(this.config.security === undefined ? {} : { security: this.config.security }),
    });
    this.server.health.setStatus('', 'SERVING');
    const coord = this.deps.coordinator;
    this.unsubscribes.push(coord.onSessionEvent((e) => this.onSessionEvent(e.kind)));
    await coord.start();
    await this.registerAfterPreviousLife();
    this.unsubscribes.push(
      coord.watchNodes((nodes) => {
        this.addresses = new Map(nodes.map((n) => [n.nodeId, n.address]));
        this.mapVersion++;
      }),
    );
    await this.checkIncarnation();
    // Wait for `skv cluster init` if it has not run yet.
    const map = await new Promise<RangeMap>((resolve) => {
      const unsub = coord.watchRangeMap((m) => {
        if (m !== null) {
          queueMicrotask(() => unsub());
          resolve(m);
        }
      });
    });
    this.placement = rangeToPlacement(map);
    for (const range of this.placement.ranges) {
      if (range.members.includes(this.id)) await this.startCohort(range);
      this.watchRange(range.rangeId);
    }
    if (!this.hadLocalData) {
      await writeFileDurably(
        this.config.dataDir,
        NODE_MARKER,
        JSON.stringify({ id: this.id, cluster: this.config.cluster }),
      );
    }
    const tickMs = this.config.tickMs ?? DEFAULT_TICK_MS;
    this.timers.push(setInterval(() => this.tick(), tickMs));
    this.timers.push(setInterval(() => this.collectGarbage(), GC_INTERVAL_MS));
    this.timers.push(
      setInterval(() => {
        for (const rangeId of this.cohorts.keys()) this.resignIfOrphaned(rangeId);
      }, ORPHAN_CHECK_MS),
    );
    this.unsubscribes.push(
      onStatusSignal(
        () => this.status(),
        (msg, fields) => this.say('info', msg, fields),
      ),
    );
    this.sessionUp = true;
    this.leadershipSafe = coord.isLeadershipSafe();
    for (const c of this.cohorts.values()) c.step({ type: 'session', state: 'established' });
    this.refreshViews();
    this.server.setServing(true);
    this.say('info', 'node started', { address: this.address, cohorts: [...this.cohorts.keys()] });
  }

  /**
   * Registers the node's membership znode. A process restarted soon after a crash (a supervisor,
   * a pod restart, the fault tests) finds the ephemeral of its previous life still there until
   * ZooKeeper expires that session (up to one session timeout after the crash). That is not a
   * duplicate: wait, bounded, for the old session to go. A live duplicate keeps its session
   * alive, so the wait ends in the same `already-exists` error as before.
   */
  private async registerAfterPreviousLife(): Promise<void> {
    const coord = this.deps.coordinator;
    const waitMsMax = coord.sessionTimeoutMs * 2 + REGISTER_SLACK_MS;
    const deadline = performance.now() + waitMsMax;
    let waiting = false;
    for (;;) {
      try {
        await coord.registerNode(this.id, this.address);
        if (waiting) this.say('info', 'the previous session expired; registered');
        return;
      } catch (err) {
        if (!(err instanceof SkvError && err.code === 'already-exists')) throw err;
        if (this.stopped || performance.now() >= deadline) throw err;
        if (!waiting) {
          waiting = true;
          this.say(
            'warn',
            'node id still registered by a previous session: waiting for it to expire',
            {
              waitMsMax,
            },
          );
        }
        await new Promise((resolve) =>
          setTimeout(resolve, Math.max(REGISTER_RETRY_MS_MIN, coord.sessionTimeoutMs / 10)),
        );
      }
    }
  }

  /** PML §5.1: a marker that says we had data, with an empty data dir, means a lost disk. */
  private async checkIncarnation(): Promise<void> {
    const coord = this.deps.coordinator;
    const marker = await coord.readIncarnation(this.id);
    if (marker === null) {
      // A fresh node: the data dir is the source of truth from now on.
      const r = await coord.createIncarnation(this.id, 1);
      this.incarnation = r.ok ? 1 : ((await coord.readIncarnation(this.id))?.incarnation ?? 1);
      return;
    }
    if (this.hadLocalData) {
      this.incarnation = marker.incarnation;
      return;
    }
    // Lost disk: our previous life's promises are gone. Bump the incarnation first (a lingering
    // candidacy of that life can no longer be claimed on), then rebuild as a non-voter.
    const next = marker.incarnation + 1;
    const r = await coord.casIncarnation(this.id, marker.version, next);
    if (!r.ok) throw new SkvError('unavailable', 'the incarnation marker changed under us; retry');
    this.incarnation = next;
    this.lostDisk = true;
    this.say('warn', 'data directory is empty but the node had data: rebuilding as a non-voter', {
      incarnation: next,
    });
  }

  private lostDisk = false;

  private async startCohort(range: KeyRange): Promise<void> {
    const rangeId = range.rangeId;
    const store = this.storage.range(rangeId);
    const view = this.log.cohort(rangeId);
    const base = store.checkpointLsn;
    const entries: Entry[] = [];
    if (view.lastSeq > base.seq) {
      for await (const e of view.readEntries(base.seq + 1)) entries.push(Cohort.entryFromLog(e));
    }
    // The commit hint: replay up to it (S§6.1), never past what the log holds.
    let commitSeq = base.seq;
    const hint = view.lastCommittedLsn;
    const last = entries[entries.length - 1]?.lsn.seq ?? base.seq;
    if (hint.seq > base.seq) {
      const at = entries[hint.seq - base.seq - 1];
      if (at !== undefined && lsnEquals(at.lsn, hint)) commitSeq = hint.seq;
      else if (hint.seq > last) commitSeq = last;
    }
    let hard = this.hardStates.get(rangeId);
    if (hard === null || this.lostDisk) {
      hard = { fenceEpoch: hard?.fenceEpoch ?? 0, voter: !this.lostDisk };
      await this.hardStates.write(rangeId, hard);
    }
    const cohort = new Cohort(
      {
        rangeId,
        replica: {
          self: this.id,
          members: [...range.members],
          ...(this.config.unsafe === undefined ? {} : { unsafe: this.config.unsafe }),
          balance: this.leaderBalance(),
        },
        store,
        logView: view,
        ports: {
          log: this.log,
          hardStates: this.hardStates,
          sendMessage: (id, m) => this.sendPeer(id, m),
          sendSnapshot: (id, to, epoch) => this.sendSnapshot(id, to, epoch),
          installSnapshot: (id, lsn, after) => this.installSnapshot(id, lsn, after),
          coordinate: (id, op) => this.coordinate(id, op),
          fatal: this.fatal,
          event: (id, event, detail) => {
            this.deps.requests?.cohortEvent?.(id, event);
            let fields: Record<string, unknown> = detail;
            if (event === 'peer-message-rejected') {
              // Repeats for every message while the cause lasts: one line per peer, message
              // type and REJECTION_LOG_INTERVAL_MS (the metric above counts every one).
              const key = `${id} ${String(detail.from)} ${String(detail.type)}`;
              const heldBack = this.rejectionLog.admit(key, performance.now());
              if (heldBack === null) return;
              if (heldBack > 0) fields = { ...detail, heldBack };
            }
            // Rare (truncations, snapshots, rejections): the status read is affordable here.
            const epoch = this.cohorts.get(id)?.replica.status().currentEpoch;
            this.say('info', event, { range: id, epoch, ...fields });
          },
        },
      },
      { hardState: hard, baseLsn: base, entries, commitSeq },
    );
    this.cohorts.set(rangeId, cohort);
    this.log.setCheckpoint(rangeId, base.seq);
    this.say('info', 'cohort recovered', {
      range: rangeId,
      base: `${base.epoch}.${base.seq}`,
      entries: entries.length,
      commitSeq,
      voter: hard.voter,
    });
  }

  // ---- coordination --------------------------------------------------------------------------

  /**
   * The coordinator's view of each range: its epoch counter and leader znode, always READ
   * TOGETHER — epoch first, then leader — whenever either watch fires. One ZooKeeper multi moves
   * the epoch and creates the leader znode (claimLeadership), and one session's reads are
   * ordered, so a view never shows a new epoch without its leader: the two separate watches alone
   * can deliver in either order, and "epoch 1, no leader" would make a follower stand for
   * election against a live leader, or a new leader think its own znode vanished and resign.
   * Candidates of the round of the current epoch are watched too. The view is fed to the cohort
   * only while the session is up and leadership-safe (and re-fed in full when it comes back).
   */
  private readonly views = new Map<RangeId, RangeView>();

  private watchRange(rangeId: RangeId): void {
    const coord = this.deps.coordinator;
    const view: RangeView = { refreshing: false, again: false, candidatesUnsub: null };
    this.views.set(rangeId, view);
    const changed = () => this.refreshView(rangeId, view);
    this.unsubscribes.push(() => view.candidatesUnsub?.());
    this.unsubscribes.push(coord.watchEpoch(rangeId, changed));
    this.unsubscribes.push(coord.watchLeader(rangeId, changed));
  }

  private refreshView(rangeId: RangeId, view: RangeView): void {
    if (view.refreshing) {
      view.again = true;
      return;
    }
    view.refreshing = true;
    view.again = false;
    const coord = this.deps.coordinator;
    const read = async () => {
      const epoch = await coord.readEpoch(rangeId);
      const leader = await coord.readLeader(rangeId);
      return { epoch, leader };
    };
    read().then(
      ({ epoch, leader }) => {
        view.refreshing = false;
        if (this.stopped) return;
        view.epoch = epoch;
        const before = this.leaders.get(rangeId);
        if (leader !== null && (before?.nodeId !== leader.nodeId || before?.epoch !== leader.epoch))
          this.deps.requests?.leaderElected?.(rangeId, leader.nodeId, leader.epoch);
        this.leaders.set(rangeId, leader);
        this.mapVersion++;
        if (view.candidates?.round !== epoch.epoch && this.cohorts.has(rangeId)) {
          // Rounds are named by epoch: follow the round of the current epoch.
          view.candidatesUnsub?.();
          const round = epoch.epoch;
          view.candidates = { round, list: [] };
          view.candidatesUnsub = coord.watchCandidates(rangeId, round, (list) => {
            if (view.candidates?.round !== round) return;
            view.candidates = {
              round,
              list: list.map((c) => ({
                nodeId: c.nodeId,
                seq: c.sequence,
                lastLsn: c.lastLsn,
                incarnation: c.incarnation,
              })),
            };
            this.feed(rangeId, 'candidates');
          });
        }
        this.feed(rangeId, 'all');
        this.resignIfOrphaned(rangeId);
        if (view.again) this.refreshView(rangeId, view);
      },
      (err: unknown) => {
        view.refreshing = false;
        if (this.stopped) return;
        this.say('warn', 'coordinator view read failed; retrying', {
          range: rangeId,
          error: String(err),
        });
        setTimeout(() => this.refreshView(rangeId, view), 200).unref();
      },
    );
  }

  /** Steps the view into the cohort: leader first, then epoch, then candidates. */
  private feed(rangeId: RangeId, what: 'candidates' | 'all'): void {
    const cohort = this.cohorts.get(rangeId);
    if (cohort === undefined || !this.sessionUp || !this.leadershipSafe) return;
    const view = this.views.get(rangeId);
    if (view?.epoch === undefined) return;
    if (what === 'all') {
      const leader = this.leaders.get(rangeId);
      cohort.step({
        type: 'leader-znode',
        leader:
          leader === null || leader === undefined
            ? null
            : { nodeId: leader.nodeId, epoch: leader.epoch },
      });
      cohort.step({ type: 'epoch-znode', epoch: view.epoch.epoch, version: view.epoch.version });
    }
    if (view.candidates !== undefined && view.epoch.epoch === view.candidates.round) {
      cohort.step({
        type: 'candidates',
        round: view.candidates.round,
        candidates: view.candidates.list,
      });
    }
  }

  private coordinate(rangeId: RangeId, op: CoordinatorOp): void {
    const coord = this.deps.coordinator;
    const cohort = this.cohorts.get(rangeId);
    switch (op.type) {
      case 'publish-candidacy':
        coord
          .publishCandidacy(rangeId, op.round, {
            nodeId: this.id,
            lastLsn: op.lastLsn,
            voter: true,
            incarnation: this.incarnation,
          })
          .catch((err: unknown) =>
            this.say('warn', 'publish candidacy failed', { range: rangeId, error: String(err) }),
          );
        this.say('info', 'candidacy', {
          range: rangeId,
          round: op.round,
          lastLsn: `${op.lastLsn.epoch}.${op.lastLsn.seq}`,
        });
        return;
      case 'claim-leadership':
        if (FAILPOINTS_ARMED) failpoint('epoch-write-before');
        coord
          .claimLeadership(rangeId, {
            fromVersion: op.fromVersion,
            epoch: op.epoch,
            candidates: op.candidates,
            leader: { nodeId: this.id, address: this.address, epoch: op.epoch },
          })
          .then(
            (ok) => {
              if (FAILPOINTS_ARMED && ok) failpoint('epoch-write-after');
              this.say('info', ok ? 'elected leader' : 'leadership claim lost', {
                range: rangeId,
                epoch: op.epoch,
              });
              cohort?.step({ type: 'claim-result', round: op.round, epoch: op.epoch, ok });
            },
            (err: unknown) => {
              // Outcome unknown (the reply was lost): if the claim did take effect, our leader
              // znode exists but the replica does not lead, and nobody would stand for election
              // while it exists. Remove it (ours, that epoch only), then report the claim lost.
              this.say('warn', 'leadership claim outcome unknown; resigning it', {
                range: rangeId,
                error: String(err),
              });
              coord
                .resignLeader(rangeId, op.epoch)
                .catch(() => false)
                .then(() =>
                  cohort?.step({
                    type: 'claim-result',
                    round: op.round,
                    epoch: op.epoch,
                    ok: false,
                  }),
                );
            },
          );
        return;
      case 'resign-leadership':
        coord.resignLeader(rangeId, op.epoch).catch(() => {});
        this.say(
          'info',
          op.handoffTo === undefined ? 'resigned leadership' : 'handing leadership over',
          {
            range: rangeId,
            epoch: op.epoch,
            ...(op.handoffTo === undefined ? {} : { to: op.handoffTo }),
          },
        );
        return;
    }
  }

  private onSessionEvent(kind: string): void {
    switch (kind) {
      case 'connected':
      case 'reconnected':
        return;
      case 'disconnected':
        return;
      case 'expired':
        this.setSession(false);
        return;
      case 'new-session':
        this.deps.coordinator
          .registerNode(this.id, this.address)
          .then(() => this.setSession(true))
          .catch((err: unknown) => this.say('warn', 're-register failed', { error: String(err) }));
        return;
      case 'closed':
        this.setSession(false);
        return;
    }
  }

  private setSession(up: boolean): void {
    if (this.sessionUp === up) return;
    this.sessionUp = up;
    this.leadershipSafe = up && this.deps.coordinator.isLeadershipSafe();
    this.say(up ? 'info' : 'warn', up ? 'coordinator session up' : 'coordinator session lost');
    for (const c of this.cohorts.values()) {
      c.step({ type: 'session', state: up ? 'established' : 'lost' });
    }
    if (up) this.refreshViews();
  }

  /**
   * A leader znode that names this node while its replica is a follower is an orphan: the replica
   * stepped down when leadership became unsafe (no confirmed ZooKeeper contact within the grace,
   * e.g. while ZooKeeper restarts), but the session itself survived, and with it the ephemeral
   * leader znode. Nobody stands for election while a leader znode exists, so the range would stay
   * leaderless for as long as this session lives. Delete it (resignLeader removes it only if this
   * session owns it) and the members elect again. Only while leadership is safe and the replica
   * is a plain follower: a candidate may be in the middle of its own claim.
   *
   * The replica's role is read in a microtask: the view this is called after was fed to the
   * cohort as queued inputs (Cohort.step), and only once they are stepped does the role reflect
   * it. Read at once, a candidate of a stale round (the cached view fed after a ZooKeeper outage)
   * that the fresh view is about to return to follower looked like a candidate, the check was
   * skipped, and nothing checked again: the range stayed leaderless (a Jepsen run in CI at
   * e97bc2e). A timer also checks every range every ORPHAN_CHECK_MS, whatever the view did.
   */
  private resignIfOrphaned(rangeId: RangeId): void {
    queueMicrotask(() => {
      if (!this.sessionUp || !this.leadershipSafe || this.stopped) return;
      const cohort = this.cohorts.get(rangeId);
      if (cohort === undefined || this.leaders.get(rangeId)?.nodeId !== this.id) return;
      if (cohort.replica.status().role !== 'follower') return;
      if (this.resigning.has(rangeId)) return;
      this.resigning.add(rangeId);
      this.deps.coordinator
        .resignLeader(rangeId)
        .then(
          (removed) => {
            // Not removed: gone (its watch refreshes the view) or another session's, e.g. a
            // previous life of this node whose session has not expired yet (the next periodic
            // check tries again; re-reading at once would spin until that expiry).
            if (removed) {
              this.say(
                'warn',
                'removed an orphaned leader znode (stepped down, session survived)',
                { range: rangeId },
              );
            }
          },
          (err: unknown) =>
            this.say('warn', 'removing an orphaned leader znode failed', {
              range: rangeId,
              error: String(err),
            }),
        )
        .finally(() => this.resigning.delete(rangeId));
    });
  }

  /** Ranges with a resignLeader of resignIfOrphaned in flight. */
  private readonly resigning = new Set<RangeId>();
  private readonly rejectionLog = new LogLimiter(REJECTION_LOG_INTERVAL_MS);

  /** Re-feed the coordinator's view to every cohort (after a session came back). */
  private refreshViews(): void {
    for (const rangeId of this.cohorts.keys()) this.feed(rangeId, 'all');
  }

  private tick(): void {
    if (this.stopped) return;
    // DESIGN.md §5 rule 6 and the coordinator's leadership rule: without confirmed contact for
    // 2/3 of the session timeout, act as if the session were lost (a new leader may be elected
    // once it expires), before the server can expire it.
    const safe = this.sessionUp && this.deps.coordinator.isLeadershipSafe();
    if (safe !== this.leadershipSafe) {
      this.leadershipSafe = safe;
      this.say(safe ? 'info' : 'warn', safe ? 'leadership safe again' : 'leadership unsafe', {
        msSinceContact: Math.round(this.deps.coordinator.msSinceLastContact()),
      });
      for (const c of this.cohorts.values()) {
        c.step({ type: 'session', state: safe ? 'established' : 'lost' });
      }
      if (safe) {
        this.refreshViews();
        for (const rangeId of this.cohorts.keys()) this.resignIfOrphaned(rangeId);
      }
    }
    for (const c of this.cohorts.values()) c.step({ type: 'tick' });
  }

  private onCheckpoint(rangeId: RangeId, lsn: Lsn): void {
    this.deps.requests?.cohortEvent?.(rangeId, 'checkpoint');
    this.log.setCheckpoint(rangeId, lsn.seq);
    const c = this.cohorts.get(rangeId);
    if (c === undefined) return;
    const at = this.compactionPoint(c, lsn);
    if (at !== null) c.step({ type: 'log-compacted', lsn: at });
  }

  /**
   * Where the cohort's in-memory log may start after a checkpoint at `checkpoint`: up to
   * `logCatchUpEntries` before it, within LOG_CATCH_UP_BYTES_MAX (the core itself keeps what a
   * follower being sent a snapshot goes on from). A follower that falls behind the
   * log's start needs a snapshot of the whole range (S§6.1): at 10 M rows, a follower a few
   * seconds behind during a leader change got one, hundreds of megabytes, where a few thousand
   * entries would have done.
   */
  private compactionPoint(c: Cohort, checkpoint: Lsn): Lsn | null {
    const want = checkpoint.seq - (this.config.logCatchUpEntries ?? LOG_CATCH_UP_ENTRIES_DEFAULT);
    let seq = checkpoint.seq;
    let bytes = 0;
    while (seq > want) {
      const e = c.replica.entryAt(seq);
      if (e === null) break;
      bytes += e.payload.length + LOG_ENTRY_OVERHEAD_BYTES;
      if (bytes > LOG_CATCH_UP_BYTES_MAX) break;
      seq--;
    }
    return seq === checkpoint.seq ? checkpoint : c.replica.lsnAt(seq);
  }

  private collectGarbage(): void {
    if (this.stopped) return;
    this.log
      .collectGarbage()
      .then((r) => this.flushLogHolder(r.heldBackBy))
      .catch((err: unknown) => this.fatal(err));
  }

  private flushLogHolder(rangeId: RangeId | null): void {
    const { segments, segmentBytes } = this.log.stats;
    const retain = this.config.logRetainBytes ?? LOG_RETAIN_BYTES_DEFAULT;
    if (rangeId === null || segmentBytes <= retain || this.stopped) return;
    const store = this.cohorts.get(rangeId)?.store;
    // Nothing to do while it flushes anyway, or when what holds the log back is not applied yet.
    if (store === undefined || store.isFlushing) return;
    if (compareLsn(store.checkpointLsn, store.lastAppliedLsn) >= 0) return;
    this.say('info', 'flushing a range that holds back the commit log', {
      range: rangeId,
      segments,
      segmentBytes,
    });
    // A failed flush stops the node through the store's onFatal; a closed store is a stop.
    store.flush().catch(() => {});
  }

  // ---- peers ---------------------------------------------------------------------------------

  private link(to: NodeId): PeerLink | null {
    let l = this.links.get(to);
    const address = this.addresses.get(to);
    if (address === undefined) return null;
    if (l !== undefined && l.address !== address) {
      l.close();
      l = undefined;
    }
    if (l === undefined) {
      l = new PeerLink(
        address,
        this.id,
        this.config.cluster,
        nodeChannelSecurity(this.config.security ?? {}),
        { onBroken: (e) => this.say('warn', 'peer link broken', { peer: to, ...e }) },
      );
      this.links.set(to, l);
    }
    return l;
  }

  private sendPeer(rangeId: RangeId, m: Exclude<Message, { type: 'snapshot' }>): void {
    this.link(m.to)?.send(encodePeerMessage(rangeId, m));
  }

  /** Issue #8: a sender outside a range's cohort is refused before any message of its batch runs. */
  private onPeerBatch(batch: PeerBatch): PeerVerdict {
    if (this.stopped) return { ok: true };
    if (batch.cluster !== this.config.cluster) {
      return { ok: false, reason: `cluster ${batch.cluster} is not ${this.config.cluster}` };
    }
    for (const pm of batch.messages) {
      const range = this.placement?.ranges.find((r) => r.rangeId === pm.rangeId);
      const outsider = range !== undefined && !range.members.includes(batch.from);
      if (outsider && this.cohorts.has(pm.rangeId))
        return { ok: false, reason: `${batch.from} is not in the cohort of range ${pm.rangeId}` };
    }
    let wait: Promise<void> | undefined;
    for (const pm of batch.messages) {
      const cohort = this.cohorts.get(pm.rangeId);
      const range = this.placement?.ranges.find((r) => r.rangeId === pm.rangeId);
      if (cohort === undefined || range === undefined || !range.members.includes(batch.from)) {
        continue; // not ours, or a sender outside the cohort: ignored
      }
      const decoded = decodePeerMessage(pm, batch.from, this.id);
      if (decoded.kind === 'core') cohort.step({ type: 'message', message: decoded.message });
      else wait = this.onSnapshotChunk(pm.rangeId, batch.from, decoded.chunk) ?? wait;
    }
    return wait === undefined ? { ok: true } : { ok: true, wait };
  }

  /**
   * Ships the range's applied state to `to`. One transfer per range and follower at a time: the
   * core asks again while one is in flight (its retry tick), and each extra transfer would export
   * and send the whole range once more. A request in a newer epoch cancels an older transfer
   * (the follower refuses its chunks anyway) and starts after it.
   */
  private sendSnapshot(rangeId: RangeId, to: NodeId, epoch: number): Promise<void> {
    const key = `${rangeId}/${to}`;
    const running = this.snapshotSends.get(key);
    if (running !== undefined && running.epoch === epoch) return running.done;
    if (running !== undefined) running.cancelled = true;
    const send: SnapshotSend = { epoch, cancelled: false, done: Promise.resolve() };
    send.done = (running?.done.catch(() => {}) ?? Promise.resolve())
      .then(() => this.transferSnapshot(rangeId, to, send))
      .finally(() => {
        if (this.snapshotSends.get(key) === send) this.snapshotSends.delete(key);
      });
    this.snapshotSends.set(key, send);
    return send.done;
  }

  private async transferSnapshot(rangeId: RangeId, to: NodeId, send: SnapshotSend): Promise<void> {
    if (send.cancelled || this.stopped) return;
    const snap = await this.storage.exportSnapshot(rangeId);
    const transferId = this.nextTransferId++;
    let index = 0;
    const lsn = { epoch: snap.lsn.epoch, seq: BigInt(snap.lsn.seq) };
    try {
      let pending: SnapshotCell[] | null = null;
      // Chunk by chunk, each after the one before has left the bulk stream's buffer, all on one
      // stream (the follower drops a transfer that skips a chunk).
      let stream: number | undefined;
      const emit = async (cells: SnapshotCell[], last: boolean) => {
        const link = this.link(to);
        if (link === null) throw new SkvError('unavailable', `no address for ${to}`);
        const message: PeerMessage = {
          rangeId,
          body: {
            $case: 'snapshotChunk',
            value: {
              epoch: send.epoch,
              lsn,
              checksum: snap.checksum,
              transferId,
              index: index++,
              last,
              cells: encodeSnapshotChunk(cells),
            },
          },
        };
        stream = await link.sendBulk(message, stream);
      };
      let cells = 0;
      for await (const chunk of snap.chunks()) {
        if (send.cancelled || this.stopped) return;
        if (pending !== null) await emit(pending, false);
        pending = chunk;
        cells += chunk.length;
      }
      await emit(pending ?? [], true);
      this.say('info', 'snapshot sent', {
        range: rangeId,
        to,
        lsn: formatLsn(snap.lsn),
        cells,
        chunks: index,
      });
    } finally {
      await snap.close();
    }
  }

  private onSnapshotChunk(
    rangeId: RangeId,
    from: NodeId,
    chunk: {
      epoch: number;
      lsn?: { epoch: number; seq: bigint };
      checksum: bigint;
      transferId: bigint;
      index: number;
      last: boolean;
      cells: Uint8Array;
    },
  ): Promise<void> | undefined {
    if (chunk.lsn === undefined) return undefined;
    // Stage only what the range's current leader sends in its epoch, as the coordinator names
    // them: anything else (a deposed leader, a forged or early frame) would write a transfer the
    // core would refuse anyway. Early frames cost a retransmit, nothing more.
    const leader = this.leaders.get(rangeId);
    let t = this.transfers.get(rangeId);
    if (leader == null || leader.nodeId !== from || leader.epoch !== chunk.epoch) {
      // A stray frame does not end the leader's transfer; a transfer from a node that no longer
      // leads ends.
      if (t !== undefined && (t.from === from || leader?.nodeId !== t.from)) {
        this.endTransfer(rangeId, t);
      }
      return undefined;
    }
    if (t === undefined || t.from !== from || t.transferId !== chunk.transferId) {
      if (chunk.index !== 0) return undefined; // joined mid-transfer: wait for a fresh one
      if (t !== undefined) this.endTransfer(rangeId, t);
      const lsn = { epoch: chunk.lsn.epoch, seq: Number(chunk.lsn.seq) };
      const staged = this.storage.beginImport(rangeId, lsn, chunk.checksum);
      t = {
        from,
        transferId: chunk.transferId,
        lsn,
        staged,
        written: staged.then(() => {}),
        queuedBytes: 0,
        bytes: 0,
        nextIndex: 0,
        ended: false,
      };
      this.transfers.set(rangeId, t);
    }
    const transfer = t;
    if (chunk.index !== transfer.nextIndex) {
      this.endTransfer(rangeId, transfer);
      return undefined;
    }
    transfer.nextIndex++;
    transfer.bytes += chunk.cells.length;
    if (transfer.bytes > SNAPSHOT_TRANSFER_BYTES_MAX) {
      this.endTransfer(rangeId, transfer);
      return undefined;
    }
    const cells = decodeSnapshotChunk(chunk.cells);
    const size = chunk.cells.length;
    transfer.queuedBytes += size;
    transfer.written = transfer.written.then(async () => {
      transfer.queuedBytes -= size;
      if (transfer.ended) throw new SkvError('unavailable', 'the snapshot transfer ended');
      await (await transfer.staged).add(cells);
    });
    transfer.written.catch((err: unknown) => {
      if (transfer.ended) return;
      this.say('warn', 'snapshot chunk not written; the transfer is dropped', {
        range: rangeId,
        from,
        error: String(err),
      });
      this.endTransfer(rangeId, transfer);
    });
    if (chunk.last) {
      this.transfers.delete(rangeId);
      const epoch = chunk.epoch;
      transfer.written.then(
        () => this.snapshotReceived(rangeId, transfer, epoch),
        () => {},
      );
    }
    // Past the bound, the stream reads nothing more until the writes catch up.
    return transfer.queuedBytes > SNAPSHOT_QUEUED_BYTES_MAX
      ? transfer.written.catch(() => {})
      : undefined;
  }

  /**
   * A snapshot is in, every chunk written: the core installs it or not. Older ones it never
   * took (refused, or stepped too late) are kept a little while, then dropped.
   */
  private snapshotReceived(rangeId: RangeId, t: SnapshotTransfer, epoch: number): void {
    if (t.ended || this.stopped) return;
    this.receivedSnapshots.add(rangeId, t);
    const cohort = this.cohorts.get(rangeId);
    // The core may take it at once (the cohort's Ready calls installSnapshot, which claims it).
    cohort?.step({
      type: 'message',
      message: {
        type: 'snapshot',
        from: t.from,
        to: this.id,
        epoch,
        lsn: t.lsn,
        data: new Uint8Array(0),
      },
    });
    this.receivedSnapshots.trim(rangeId, cohort?.replica.snapshotToInstall() ?? null);
  }

  /** Drops a transfer being received: its staged cells go (the range is unchanged). */
  private endTransfer(rangeId: RangeId, t: SnapshotTransfer): void {
    t.ended = true;
    if (this.transfers.get(rangeId) === t) this.transfers.delete(rangeId);
    t.written
      .catch(() => {})
      .then(() => t.staged)
      .then((s) => s.abort())
      .catch(() => {});
  }

  /** Snapshots received in full and stepped to the core, oldest first, per range. */
  private readonly receivedSnapshots = new ReceivedSnapshots<SnapshotTransfer>(
    SNAPSHOTS_PENDING_MAX,
    (rangeId, t) => this.endTransfer(rangeId, t),
  );

  /**
   * Claims the received snapshot at `lsn` at once (nothing drops it afterwards), then imports it
   * once `after` (the writes the cohort ordered before it) is durable.
   */
  private installSnapshot(rangeId: RangeId, lsn: Lsn, after: Promise<void>): Promise<void> {
    const t = this.receivedSnapshots.take(rangeId, lsn);
    return (async () => {
      await after;
      await t.written;
      await (await t.staged).commit();
      this.log.setCheckpoint(rangeId, lsn.seq);
    })();
  }

  // ---- the KV backend ------------------------------------------------------------------------

  private routeOf(key: Uint8Array): KeyRange {
    const map = this.placement;
    if (map === null) throw new SkvError('unavailable', 'the node has not joined the cluster yet');
    return rangeForKey(map, key);
  }

  private leaderAddress(rangeId: RangeId): string | null {
    const leader = this.leaders.get(rangeId);
    if (leader === undefined || leader === null) return null;
    return this.addresses.get(leader.nodeId) ?? leader.address;
  }

  private async forward(rangeId: RangeId, op: SessionOp, ctx: CallContext) {
    const address = this.leaderAddress(rangeId);
    const leader = this.leaders.get(rangeId);
    if (ctx.forwarded || address === null || leader?.nodeId === this.id) {
      throw new NotLeaderError(`not the leader of range ${rangeId}`, address);
    }
    const remaining = ctx.deadlineMs - performance.now();
    if (remaining <= 0)
      throw new SkvError('deadline-exceeded', 'deadline exceeded before forwarding');
    try {
      const answer = await this.deps.transport.call(address, op, remaining, true);
      this.relayed.add(ctx);
      return answer;
    } catch (err) {
      if (err instanceof RemoteError && err.code === 'not-leader') {
        throw new NotLeaderError(err.message, err.leaderHint);
      }
      throw err;
    }
  }

  private localError(err: unknown, rangeId: RangeId): never {
    if (err instanceof SkvError && err.code === 'not-leader') {
      throw new NotLeaderError(err.message, this.leaderAddress(rangeId));
    }
    throw err;
  }

  /** Requests this node relayed to their range leader, which answered them (see `forward`). */
  private readonly relayed = new WeakSet<CallContext>();

  /** Runs one request and reports it to the observer (method, consistency, outcome, latency). */
  private async observed<T>(
    method: string,
    consistency: string,
    ctx: CallContext,
    run: () => Promise<T>,
  ): Promise<T> {
    const observer = this.deps.requests;
    if (observer === undefined) return await run();
    const started = performance.now();
    let outcome = 'ok';
    try {
      const result = await run();
      if (method === 'write' && (result as ApplyResult).ok === false) outcome = 'version-mismatch';
      return result;
    } catch (err) {
      outcome = err instanceof SkvError ? err.code : 'internal';
      throw err;
    } finally {
      observer.observe(
        method,
        consistency,
        outcome,
        (performance.now() - started) / 1000,
        this.relayed.has(ctx),
      );
    }
  }

  /**
   * Runs a request that arrived from a client (not forwarded) and, while its range has no
   * serving leader — an election, a takeover, a leader that just died — tries again within the
   * request's deadline, so a plain gRPC client rides through a failover the way the client
   * library does. Only refusals are retried (`not-leader`, `unavailable`: nothing was proposed);
   * an unknown outcome never is.
   */
  private async riding<T>(ctx: CallContext, run: () => Promise<T>): Promise<T> {
    if (ctx.forwarded) return await run();
    for (let attempt = 0; ; attempt++) {
      try {
        return await run();
      } catch (err) {
        const refused =
          err instanceof SkvError && (err.code === 'not-leader' || err.code === 'unavailable');
        const delayMs = Math.min(200, 10 * 2 ** attempt);
        if (!refused || this.stopped || ctx.deadlineMs - performance.now() < delayMs + 50)
          throw err;
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  write(mutation: RowMutation, ctx: CallContext, options: WriteOptions = {}): Promise<ApplyResult> {
    return this.observed('write', 'strong', ctx, () =>
      this.riding(ctx, () => this.doWrite(mutation, ctx, options)),
    );
  }

  get(req: ValidGet, ctx: CallContext): Promise<GetResult> {
    return this.observed('get', consistencyName(req.consistency), ctx, () =>
      this.riding(ctx, () => this.doGet(req, ctx)),
    );
  }

  readRow(req: ValidReadRow, ctx: CallContext): Promise<readonly CellValue[]> {
    return this.observed('readRow', consistencyName(req.consistency), ctx, () =>
      this.riding(ctx, () => this.doReadRow(req, ctx)),
    );
  }

  /** This node's own facts (the NodeStatus RPC, the status page): built on request only. */
  async nodeStatus(): Promise<NodeStatusView> {
    return {
      nodeId: this.id,
      address: this.address,
      sessionState: this.deps.coordinator.sessionState,
      uptimeMs: process.uptime() * 1000,
      cohorts: [...this.cohorts].map(([rangeId, c]) => {
        const st = c.replica.status();
        return {
          rangeId,
          role: st.role,
          voter: st.voter,
          epoch: st.currentEpoch,
          lastLsn: st.lastLsn,
          durableSeq: st.durableSeq,
          committedSeq: st.commitSeq,
          appliedSeq: c.appliedUpTo,
          memtableBytes: c.store.memtableBytes,
          followerLagEntries: c.replica.followerLag(),
        };
      }),
    };
  }

  /** What the metrics adapter reads at scrape time (and the status page on request). */
  metricsSource() {
    return {
      nodeStatus: () => this.nodeStatus(),
      rangeMap: () => this.rangeMap(),
      cohortMetrics: () =>
        [...this.cohorts].map(([rangeId, c]) => {
          const st = c.replica.status();
          return {
            rangeId,
            role: st.role,
            voter: st.voter,
            epoch: st.currentEpoch,
            lastLsnSeq: st.lastLsn.seq,
            durableSeq: st.durableSeq,
            commitSeq: st.commitSeq,
            appliedSeq: st.appliedSeq,
            storeAppliedSeq: c.appliedUpTo,
            memtableBytes: c.store.memtableBytes,
            followerLags: c.replica.followerLags(),
          };
        }),
      logMetrics: () => ({ ...this.log.stats }),
      tableLevels: () => this.storage.tableLevels(),
      sessionState: () => this.deps.coordinator.sessionState,
    };
  }

  private async doWrite(
    mutation: RowMutation,
    ctx: CallContext,
    options: WriteOptions,
  ): Promise<ApplyResult> {
    const range = this.routeOf(mutation.key);
    const cohort = this.cohorts.get(range.rangeId);
    if (cohort !== undefined && this.leaders.get(range.rangeId)?.nodeId === this.id) {
      try {
        return await cohort.write(encodeRowMutation(mutation), ctx.deadlineMs, options);
      } catch (err) {
        this.localError(err, range.rangeId);
      }
    }
    const r = await this.forward(
      range.rangeId,
      {
        $case: 'writeRow',
        value: {
          key: Buffer.from(mutation.key),
          writes: mutation.writes.map((w) => ({
            column: Buffer.from(w.column),
            ...(w.value === null ? {} : { value: Buffer.from(w.value) }),
            ...(w.expectedVersion === undefined
              ? {}
              : { expectedVersion: BigInt(w.expectedVersion) }),
          })),
        },
      },
      ctx,
    );
    if (r.$case !== 'writeRow') throw new SkvError('internal', `unexpected ${r.$case}`);
    return {
      ok: true,
      versions: r.value.versions.map(Number),
      previousVersions: r.value.previousVersions.map(Number),
    };
  }

  /** Strong: read-index at the leader. Timeline: this node's applied state if it is a member. */
  private async readable(
    range: KeyRange,
    consistency: Consistency,
    ctx: CallContext,
  ): Promise<Cohort | null> {
    const cohort = this.cohorts.get(range.rangeId);
    if (consistency === Consistency.TIMELINE) {
      return cohort?.timelineReadable() ? cohort : null;
    }
    if (cohort === undefined || this.leaders.get(range.rangeId)?.nodeId !== this.id) {
      if (this.config.unsafe?.followerStrongReads && cohort !== undefined) return cohort;
      return null;
    }
    try {
      await cohort.readBarrier(ctx.deadlineMs);
    } catch (err) {
      this.localError(err, range.rangeId);
    }
    return cohort;
  }

  private async doGet(req: ValidGet, ctx: CallContext): Promise<GetResult> {
    const range = this.routeOf(req.key);
    const cohort = await this.readable(range, req.consistency, ctx);
    if (cohort !== null) {
      const r = await cohort.store.get(req.key, req.column);
      return r.found
        ? { found: true, value: r.value, version: r.version }
        : { found: false, value: Buffer.alloc(0), version: 0 };
    }
    const op: SessionOp = {
      $case: 'get',
      value: {
        key: Buffer.from(req.key),
        column: Buffer.from(req.column),
        consistency: req.consistency,
      },
    };
    const r =
      req.consistency === Consistency.TIMELINE
        ? await this.forwardTimeline(range, op, ctx)
        : await this.forward(range.rangeId, op, ctx);
    if (r.$case !== 'get') throw new SkvError('internal', `unexpected ${r.$case}`);
    return { found: r.value.found, value: r.value.value, version: Number(r.value.version) };
  }

  private async forwardTimeline(range: KeyRange, op: SessionOp, ctx: CallContext) {
    if (ctx.forwarded) throw new SkvError('unavailable', 'not a replica of this range');
    const members = range.members.filter((m) => m !== this.id && this.addresses.has(m));
    const pick = members[Math.floor(Math.random() * members.length)];
    const address = pick === undefined ? null : this.addresses.get(pick);
    if (address === undefined || address === null)
      throw new SkvError('unavailable', 'no replica is reachable');
    return await this.deps.transport.call(
      address,
      op,
      Math.max(1, ctx.deadlineMs - performance.now()),
      true,
    );
  }

  private async doReadRow(req: ValidReadRow, ctx: CallContext): Promise<readonly CellValue[]> {
    const range = this.routeOf(req.key);
    const cohort = await this.readable(range, req.consistency, ctx);
    if (cohort !== null) {
      return await cohort.store.readRow(req.key, req.columns.length === 0 ? 'all' : req.columns);
    }
    const op: SessionOp = {
      $case: 'readRow',
      value: {
        key: Buffer.from(req.key),
        columns: req.columns.map((c) => Buffer.from(c)),
        consistency: req.consistency,
      },
    };
    const r =
      req.consistency === Consistency.TIMELINE
        ? await this.forwardTimeline(range, op, ctx)
        : await this.forward(range.rangeId, op, ctx);
    if (r.$case !== 'readRow') throw new SkvError('internal', `unexpected ${r.$case}`);
    return r.value.cells.map((c) => ({
      column: c.column,
      value: c.value,
      version: Number(c.version),
    }));
  }

  async *scan(req: ValidScan, ctx: CallContext): AsyncIterable<readonly RowResult[]> {
    const map = this.placement;
    if (map === null) throw new SkvError('unavailable', 'the node has not joined the cluster yet');
    let remaining = req.limit;
    const end = req.end ?? new Uint8Array(0);
    for (const range of rangesOverlapping(map, req.start, end)) {
      if (remaining <= 0) return;
      const start = compareBytes(req.start, range.start) > 0 ? req.start : range.start;
      const stop =
        range.end.length === 0
          ? req.end
          : req.end === null || compareBytes(range.end, req.end) < 0
            ? range.end
            : req.end;
      const cohort = await this.readable(range, req.consistency, ctx);
      if (cohort !== null) {
        let from: Uint8Array | null = start;
        while (from !== null && remaining > 0) {
          const page = await cohort.store.scan(from, stop, {
            limit: Math.min(remaining, SCAN_PAGE_ROWS_MAX),
            ...(req.columns.length === 0 ? {} : { columns: req.columns }),
          });
          if (page.rows.length > 0) yield page.rows;
          remaining -= page.rows.length;
          from = page.resumeKey;
        }
        continue;
      }
      if (ctx.forwarded) throw new NotLeaderError(`not the leader of range ${range.rangeId}`, null);
      const address =
        req.consistency === Consistency.TIMELINE
          ? (this.addresses.get(range.members.find((m) => this.addresses.has(m)) ?? '') ?? null)
          : this.leaderAddress(range.rangeId);
      if (address === null)
        throw new SkvError('unavailable', `no leader for range ${range.rangeId}`);
      const stream = this.deps.transport.scan(
        address,
        {
          start: Buffer.from(start),
          end: stop === null ? Buffer.alloc(0) : Buffer.from(stop),
          limit: remaining,
          consistency: req.consistency,
          columns: req.columns.map((c) => Buffer.from(c)),
        },
        Math.max(1, ctx.deadlineMs - performance.now()),
      );
      for await (const msg of stream) {
        const rows = msg.rows.map((r) => ({
          key: r.key,
          cells: r.cells.map((c) => ({
            column: c.column,
            value: c.value,
            version: Number(c.version),
          })),
        }));
        remaining -= rows.length;
        if (rows.length > 0) yield rows;
      }
    }
  }

  async rangeMap(): Promise<RangeMapView> {
    const map = this.placement;
    return {
      version: this.mapVersion,
      ranges: (map?.ranges ?? []).map((r) => {
        const leader = this.leaders.get(r.rangeId) ?? null;
        return {
          rangeId: r.rangeId,
          start: r.start,
          end: r.end.length === 0 ? null : r.end,
          members: r.members,
          leader: leader?.nodeId ?? null,
          epoch: leader?.epoch ?? 0,
        };
      }),
      nodes: [...this.addresses].map(([id, address]) => ({ id, address, live: true })),
    };
  }

  private leaderBalance(): LeaderBalance {
    const tickMs = this.config.tickMs ?? DEFAULT_TICK_MS;
    const ticks = (ms: number) => Math.max(1, Math.ceil(ms / tickMs));
    const handoffMs = this.config.leaderHandoffMs ?? LEADER_HANDOFF_MS_DEFAULT;
    return {
      handoffAfterTicks: handoffMs === 0 ? 0 : ticks(handoffMs),
      handoffTimeoutTicks: ticks(HANDOFF_TIMEOUT_MS),
      abstainTicks: ticks(HANDOFF_ABSTAIN_MS),
    };
  }

  /** Per-cohort protocol status (for `skv status` and tests). */
  async status() {
    return await Promise.all(
      [...this.cohorts].map(async ([rangeId, c]) => {
        const replica = c.replica.status();
        const storeAppliedLsn = c.store.lastAppliedLsn;
        return { rangeId, ...replica, storeAppliedLsn, digest: await c.store.digest() };
      }),
    );
  }

  /**
   * Graceful stop (SIGTERM): hand leadership over first. Every cohort steps down (pending writes
   * are answered outcome-unknown), then the coordinator session is closed so our leader znodes
   * vanish at once and the other members elect a new leader without waiting for a session
   * timeout. Meanwhile every range flushes what it has applied, so the next start replays
   * (almost) nothing of the log: at 10 M rows a start replayed hundreds of thousands of records
   * per range, for tens of seconds. Then the node stops.
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.stopped) return;
    this.server?.setServing(false);
    this.sessionUp = false;
    this.leadershipSafe = false;
    for (const c of this.cohorts.values()) c.step({ type: 'session', state: 'lost' });
    await this.deps.coordinator.close().catch(() => {});
    const t0 = performance.now();
    await Promise.all([
      new Promise((resolve) => setTimeout(resolve, Math.min(graceMs, 300))),
      // A failed flush stops the node through the store's onFatal; the log still has it all.
      ...[...this.cohorts.values()].map((c) => c.store.flush().catch(() => {})),
    ]);
    this.say('info', 'memtables flushed', { ms: Math.round(performance.now() - t0) });
    await this.stop();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    for (const u of this.unsubscribes) u();
    for (const c of this.cohorts.values()) c.stop();
    for (const l of this.links.values()) l.close();
    await this.server?.stop(500);
    await this.deps.coordinator.close().catch(() => {});
    this.deps.transport.close();
    await this.storage.close().catch(() => {});
    await this.log.close().catch(() => {});
  }
}

function consistencyName(c: Consistency): string {
  return c === Consistency.TIMELINE ? 'timeline' : 'strong';
}

export function splitHostPort(hostPort: string): [string, string] {
  const i = hostPort.lastIndexOf(':');
  if (i <= 0) throw new InvalidArgumentError(`expected HOST:PORT, got ${JSON.stringify(hostPort)}`);
  return [hostPort.slice(0, i), hostPort.slice(i + 1)];
}
