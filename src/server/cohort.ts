// The driver of one cohort replica on a real node: it feeds the pure core (src/replication) its
// inputs and carries out each Ready over the shared commit log, the range's storage, the peer
// transport and the coordinator, in the order the Ready contract of src/replication/types.ts
// demands — written once, here:
//   1. persist hard state, snapshot base, truncation, entries, commit hint: ONE call into the
//      shared commit log, which group-commits it with every other cohort's records (one write,
//      one fdatasync for all);
//   2. apply committed entries to the range store in LSN order; reply to clients from the
//      ApplyResult;
//   3. send messages, replies, coordinator ops, snapshots;
//   4. once everything written so far is durable: afterDurable messages and coordinator ops, then
//      step `append-durable`.
// Persist, then acknowledge: a follower's ack is an afterDurable message, so it never leaves
// before its record is on disk (S§5). The only awaits that hold up later Readys are a snapshot
// install (rare) — everything else is pipelined behind the log's group commit.

import { assert, unreachable } from '../core/assert.js';
import { SkvError } from '../core/errors.js';
import type { NodeId, RangeId } from '../core/ids.js';
import { timerDelayMs } from '../core/limits.js';
import { formatLsn, type Lsn } from '../core/lsn.js';
import { type ApplyResult, decodeRowMutation, type RowMutation } from '../core/mutation.js';
import type { CohortLog, CommitLog, LogRecord } from '../log/index.js';
import { Replica } from '../replication/replica.js';
import type {
  CoordinatorOp,
  Entry,
  Input,
  Message,
  Ready,
  ReplicaConfig,
} from '../replication/types.js';
import type { RangeStore, StoreApplyResult } from '../storage/range-store.js';
import { cohortReadyFailpoints, FAILPOINTS_ARMED, followerAckFailpoints } from './failpoints.js';
import type { HardStateStore } from './hard-state-store.js';

/**
 * Store applies handed over ahead of their replies at most: enough to overlap the table reads of
 * a Ready's worth of inserts, far below the store's own queue bound (APPLY_QUEUE_DEPTH_MAX).
 */
const APPLY_AHEAD_MAX = 1024;

/** The commit log's `kind` byte of replicated entries. */
export const ENTRY_KIND_DATA = 1;
export const ENTRY_KIND_BARRIER = 2;

export interface CohortPorts {
  readonly log: CommitLog;
  readonly hardStates: HardStateStore;
  /** Sends a core message to a peer (best effort, in order per peer). */
  sendMessage(rangeId: RangeId, m: Exclude<Message, { type: 'snapshot' }>): void;
  /** Streams the range's applied state to a peer; resolves when sent. */
  sendSnapshot(rangeId: RangeId, to: NodeId, epoch: number): Promise<void>;
  /**
   * Installs a received snapshot into the range store (the transfer is kept by the node): claims
   * it at once, imports it once `after` resolves (the writes ordered before it are durable).
   */
  installSnapshot(rangeId: RangeId, lsn: Lsn, after: Promise<void>): Promise<void>;
  /** Runs a coordinator op; claim results come back as inputs. */
  coordinate(rangeId: RangeId, op: CoordinatorOp): void;
  /** Fail-stop: the node cannot go on (fsync failure, broken invariant). */
  fatal(err: unknown): void;
  /** Protocol events for logs and metrics. */
  event?(rangeId: RangeId, event: string, detail: Record<string, unknown>): void;
}

interface Waiter<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

interface WriteWaiter extends Waiter<ApplyResult> {
  /** Whether the answer needs the written columns' previous versions. */
  readonly previousVersions: boolean;
}

export interface CohortOptions {
  readonly rangeId: RangeId;
  readonly replica: ReplicaConfig;
  readonly store: RangeStore;
  readonly logView: CohortLog;
  readonly ports: CohortPorts;
}

function entryToRecord(rangeId: RangeId, e: Entry): LogRecord {
  return {
    type: 'entry',
    cohort: rangeId,
    lsn: e.lsn,
    kind: e.kind === 'data' ? ENTRY_KIND_DATA : ENTRY_KIND_BARRIER,
    payload: e.payload,
  };
}

export function recordKindToEntryKind(kind: number): Entry['kind'] {
  if (kind === ENTRY_KIND_DATA) return 'data';
  if (kind === ENTRY_KIND_BARRIER) return 'barrier';
  throw new SkvError('corruption', `unknown entry kind ${kind} in the commit log`);
}

export class Cohort {
  readonly rangeId: RangeId;
  readonly replica: Replica;
  readonly store: RangeStore;
  private readonly ports: CohortPorts;
  private readonly logView: CohortLog;
  private nextRequestId = 1;
  private readonly writes = new Map<number, WriteWaiter>();
  private readonly reads = new Map<number, Waiter<void>>();
  /** Everything written so far is durable once this settles. */
  private durable: Promise<void> = Promise.resolve();
  /** Readys wait for this (a snapshot install holds it). */
  private gate: Promise<void> | null = null;
  private draining = false;
  /** The seq up to which committed entries are applied to the store (in order). */
  private appliedSeq: number;
  private applyChain: Promise<void> = Promise.resolve();
  /** Store applies started ahead of the chain and not finished (see `applyCommitted`). */
  private applyAhead = 0;
  /** Committed entries waiting in the chain to be handed to the store. */
  private applyDeferred = 0;
  private readonly appliedWaiters: { seq: number; resolve: () => void }[] = [];
  private stopped = false;

  constructor(options: CohortOptions, restored: ConstructorParameters<typeof Replica>[1]) {
    this.rangeId = options.rangeId;
    this.store = options.store;
    this.ports = options.ports;
    this.logView = options.logView;
    this.replica = new Replica(options.replica, restored);
    this.appliedSeq = restored.baseLsn.seq;
  }

  /** The seq the range store has applied up to (timeline reads are served from it). */
  get appliedUpTo(): number {
    return this.appliedSeq;
  }

  /**
   * Whether timeline reads may be served here (S§3): after a restart the core waits until the
   * replica has caught up with what a leader had when it first heard from one, so reads never go
   * back in time across the restart; the store (applied asynchronously) must then have reached the
   * core's applied point at that moment too.
   */
  timelineReadable(): boolean {
    if (this.timelineFloor === null) {
      const st = this.replica.status();
      if (!st.timelineReadable) return false;
      this.timelineFloor = st.appliedSeq;
    }
    return this.appliedSeq >= this.timelineFloor;
  }

  private timelineFloor: number | null = null;

  stop(): void {
    this.stopped = true;
    const err = new SkvError('unavailable', 'the node is shutting down');
    for (const [id, w] of this.writes) {
      clearTimeout(w.timer);
      w.reject(new SkvError('deadline-exceeded', 'the node shut down; outcome unknown'));
      this.writes.delete(id);
    }
    for (const [id, r] of this.reads) {
      clearTimeout(r.timer);
      r.reject(err);
      this.reads.delete(id);
    }
  }

  /**
   * Feeds an input to the core. Inputs that arrive in one turn of the event loop (the requests of
   * one client batch, the messages of one peer batch, the ticks and acks around them) are stepped
   * together and drained ONCE, so they share one Ready: one log append, one propose per follower
   * carrying all the new entries, one apply pass. Order is kept.
   */
  step(input: Input): void {
    if (this.stopped) return;
    this.inbox.push(input);
    if (!this.inboxScheduled) {
      this.inboxScheduled = true;
      queueMicrotask(this.flushInbox);
    }
  }

  private inbox: Input[] = [];
  private inboxScheduled = false;

  private readonly flushInbox = (): void => {
    this.inboxScheduled = false;
    const inputs = this.inbox;
    this.inbox = [];
    if (this.stopped) return;
    try {
      for (const input of inputs) this.replica.step(input);
    } catch (err) {
      this.ports.fatal(err);
      return;
    }
    this.drain();
  };

  /**
   * Proposes a row mutation; resolves once committed and applied. With `previousVersions`
   * false, the result's previous versions are not needed (a put's answer has none): the store
   * then need not read the tables for an unconditional write (ApplyOptions).
   */
  write(
    payload: Uint8Array,
    deadlineMs: number,
    options: { readonly previousVersions?: boolean } = {},
  ): Promise<ApplyResult> {
    const requestId = this.nextRequestId++;
    const promise = new Promise<ApplyResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.writes.delete(requestId)) {
          reject(
            new SkvError('deadline-exceeded', 'the write did not commit in time; outcome unknown'),
          );
        }
      }, timerDelayMs(deadlineMs));
      this.writes.set(requestId, {
        resolve,
        reject,
        timer,
        previousVersions: options.previousVersions !== false,
      });
    });
    this.step({ type: 'client-write', requestId, payload });
    return promise;
  }

  /** Resolves once a strong read may be served from the store (read-index confirmed, applied). */
  readBarrier(deadlineMs: number): Promise<void> {
    const requestId = this.nextRequestId++;
    const promise = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.reads.delete(requestId)) {
          reject(new SkvError('unavailable', 'leadership could not be confirmed in time'));
        }
      }, timerDelayMs(deadlineMs));
      this.reads.set(requestId, { resolve, reject, timer });
    });
    this.step({ type: 'client-read', requestId });
    return promise;
  }

  private drain(): void {
    if (this.draining || this.gate !== null || this.stopped) return;
    this.draining = true;
    try {
      let rounds = 0;
      while (this.replica.hasReady() && this.gate === null) {
        assert(++rounds < 100_000, 'drain converges');
        const rd = this.replica.ready();
        this.handle(rd);
        this.replica.advance();
      }
    } catch (err) {
      this.ports.fatal(err);
    } finally {
      this.draining = false;
    }
  }

  private handle(rd: Ready): void {
    // 1. Persist.
    const records: LogRecord[] = [];
    let hardWrite: Promise<void> | null = null;
    if (rd.hardState !== null) hardWrite = this.ports.hardStates.write(this.rangeId, rd.hardState);
    if (rd.installSnapshot !== null) {
      const snap = rd.installSnapshot;
      this.ports.event?.(this.rangeId, 'snapshot-install', { lsn: snap.lsn });
      // The store import and the log's base record must be in place before anything after it:
      // hold later Readys until both are durable.
      const install = (async () => {
        await this.ports.installSnapshot(this.rangeId, snap.lsn, this.durable);
        await this.logView.installBase(snap.lsn);
        this.appliedSeq = snap.lsn.seq;
        this.wakeApplied();
      })();
      this.gate = install;
      this.durable = install;
      install.then(
        () => {
          this.gate = null;
          this.drain();
        },
        (err: unknown) => this.ports.fatal(err),
      );
    }
    if (rd.truncateAfterSeq !== null) {
      const lsn = this.truncationLsn(rd.truncateAfterSeq);
      records.push({ type: 'truncate', cohort: this.rangeId, afterSeq: rd.truncateAfterSeq, lsn });
      this.ports.event?.(this.rangeId, 'truncate', { afterSeq: rd.truncateAfterSeq });
    }
    for (const e of rd.entries) records.push(entryToRecord(this.rangeId, e));
    if (rd.commitLsn !== null)
      records.push({ type: 'commit', cohort: this.rangeId, lsn: rd.commitLsn });
    if (records.length > 0 || hardWrite !== null) {
      const prior = this.durable;
      let logWrite: Promise<void> | null = null;
      if (records.length > 0) {
        // The log orders appends itself, so start at once and share the group commit; only
        // records that follow a snapshot install wait for its base record.
        logWrite =
          rd.installSnapshot === null
            ? this.ports.log.append(records, { sync: rd.mustSync })
            : prior.then(() => this.ports.log.append(records, { sync: rd.mustSync }));
      }
      this.durable = Promise.all([prior, logWrite, hardWrite]).then(() => undefined);
      this.durable.catch((err: unknown) => this.ports.fatal(err));
    }

    // 2. Apply committed entries, in order, and answer the writers.
    for (const c of rd.committed) this.applyCommitted(c.entry, c.requestId);

    // 3. Send and coordinate.
    const withheld =
      FAILPOINTS_ARMED &&
      cohortReadyFailpoints(this.replica.status(), rd.entries.length, this.durable);
    if (!withheld) for (const m of rd.messages) this.send(m);
    for (const rep of rd.replies) this.reply(rep);
    for (const op of rd.coordinator) this.ports.coordinate(this.rangeId, op);
    for (const s of rd.snapshotsToSend) {
      this.ports.event?.(this.rangeId, 'snapshot-send', { to: s.to, lsn: s.lsn });
      this.ports.sendSnapshot(this.rangeId, s.to, s.lsn.epoch).catch((err: unknown) =>
        this.ports.event?.(this.rangeId, 'snapshot-send-failed', {
          to: s.to,
          error: String(err),
        }),
      );
    }

    for (const x of rd.rejected) {
      this.ports.event?.(this.rangeId, 'peer-message-rejected', {
        from: x.from,
        type: x.type,
        reason: x.reason,
      });
    }

    // 4. After durable.
    const after = rd.afterDurable;
    const lastLsn = rd.lastLsn;
    const wrote = rd.mustSync || rd.hardState !== null;
    if (after.messages.length > 0 || after.coordinator.length > 0 || wrote) {
      this.durable.then(() => {
        if (this.stopped) return;
        const dropped =
          FAILPOINTS_ARMED &&
          after.messages.length > 0 &&
          followerAckFailpoints(
            this.replica.status(),
            this.rangeId,
            Math.max(...after.messages.map((m) => (m.type === 'ack' ? m.matchSeq : 0))),
          );
        if (!dropped) for (const m of after.messages) this.send(m);
        for (const op of after.coordinator) this.ports.coordinate(this.rangeId, op);
        if (wrote) this.step({ type: 'append-durable', lsn: lastLsn });
      });
    }
  }

  private truncationLsn(afterSeq: number): Lsn {
    const fromCore = this.replica.lsnAt(afterSeq);
    if (fromCore !== null) return fromCore;
    const fromLog = this.logView.entryLsnAt(afterSeq);
    assert(fromLog !== null, `truncation point ${afterSeq} is known`);
    return fromLog;
  }

  private send(m: Message): void {
    if (m.type === 'snapshot') {
      // The core never emits snapshot messages itself: they come from snapshotsToSend.
      throw new SkvError('internal', 'unexpected snapshot message from the core');
    }
    this.ports.sendMessage(this.rangeId, m);
  }

  /**
   * A committed data entry's mutation. One that does not decode cannot be applied, and skipping
   * it would fork this replica from the others: fail-stop, naming the entry and its bytes.
   */
  private decodeEntry(entry: Entry): RowMutation {
    try {
      return decodeRowMutation(entry.payload);
    } catch (err) {
      const p = entry.payload;
      const head = Buffer.from(p.buffer, p.byteOffset, Math.min(p.byteLength, 64)).toString('hex');
      throw new SkvError(
        'corruption',
        `range ${this.rangeId} entry ${formatLsn(entry.lsn)}: its payload (${p.byteLength} bytes, ` +
          `starting ${head}) is not a row mutation: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  private applyCommitted(entry: Entry, requestId: number | undefined): void {
    const seq = entry.lsn.seq;
    // Hand the store its applies as they commit (it runs them in call order and starts their
    // table reads at once, side by side), up to APPLY_AHEAD_MAX ahead of the replies; past
    // that, and until those deferred ones are handed over, in the chain below (store order
    // must stay commit order).
    // A barrier has nothing for the store but still moves its applied point, so a checkpoint
    // covers it: else an idle range whose last record is a barrier holds the log back forever.
    // Only a write someone waits for (here, on the leader) may need its columns' previous
    // versions: without, an unconditional write reads no table (RangeStore settles the checksum
    // later).
    const previousVersions =
      requestId !== undefined && this.writes.get(requestId)?.previousVersions === true;
    const mutation = entry.kind === 'data' ? this.decodeEntry(entry) : null;
    // With nothing in the chain, most applies (blind writes, cells in a memtable) run at once:
    // no promise, no turn of the event loop, the writer answered now.
    if (mutation !== null && this.applyChainLength === 0) {
      let now: StoreApplyResult | null;
      try {
        now = this.store.applyAtOnce(entry.lsn, mutation, { previousVersions });
      } catch (err) {
        this.ports.fatal(err);
        return;
      }
      if (now !== null) {
        this.applied(seq, requestId, now);
        return;
      }
    }
    const toStore = (): Promise<StoreApplyResult | null> =>
      mutation !== null
        ? this.store.apply(entry.lsn, mutation, { previousVersions })
        : this.store.skip(entry.lsn).then(() => null);
    let started: Promise<StoreApplyResult | null> | null = null;
    if (this.applyDeferred === 0 && this.applyAhead < APPLY_AHEAD_MAX) {
      this.applyAhead++;
      started = toStore();
      const done = () => {
        this.applyAhead--;
      };
      started.then(done, done);
    } else {
      this.applyDeferred++;
    }
    this.applyChainLength++;
    this.applyChain = this.applyChain.then(async () => {
      let r: StoreApplyResult | null = null;
      if (started !== null) {
        r = await started;
      } else {
        this.applyDeferred--;
        if (seq > this.store.lastAppliedLsn.seq) r = await toStore();
      }
      this.applyChainLength--;
      this.applied(seq, requestId, r);
    });
    this.applyChain.catch((err: unknown) => this.ports.fatal(err));
  }

  /** Entries in the apply chain not yet through it (applied and answered). */
  private applyChainLength = 0;

  /** The entry at `seq` is applied (`r` null: nothing for the store): moves on, answers. */
  private applied(seq: number, requestId: number | undefined, r: StoreApplyResult | null): void {
    let result: ApplyResult | null = null;
    if (r !== null && !(r.ok === false && r.reason === 'already-applied')) {
      result = r as ApplyResult;
    }
    if (seq > this.appliedSeq) this.appliedSeq = seq;
    this.wakeApplied();
    if (requestId !== undefined) {
      const w = this.writes.get(requestId);
      if (w !== undefined) {
        this.writes.delete(requestId);
        clearTimeout(w.timer);
        if (result !== null) w.resolve(result);
        else w.reject(new SkvError('internal', 'a committed write had no apply result'));
      }
    }
  }

  private wakeApplied(): void {
    if (this.appliedWaiters.length === 0) return;
    const keep = [];
    for (const w of this.appliedWaiters) {
      if (this.appliedSeq >= w.seq) w.resolve();
      else keep.push(w);
    }
    this.appliedWaiters.length = 0;
    this.appliedWaiters.push(...keep);
  }

  /** Resolves once the store has applied every committed entry up to `seq`. */
  private appliedAtLeast(seq: number): Promise<void> {
    if (this.appliedSeq >= seq) return Promise.resolve();
    return new Promise((resolve) => this.appliedWaiters.push({ seq, resolve }));
  }

  private reply(rep: Ready['replies'][number]): void {
    switch (rep.type) {
      case 'read-ready': {
        const r = this.reads.get(rep.requestId);
        if (r === undefined) return;
        this.reads.delete(rep.requestId);
        this.appliedAtLeast(rep.seq).then(() => {
          clearTimeout(r.timer);
          r.resolve();
        });
        return;
      }
      case 'not-leader':
      case 'unavailable':
      case 'overloaded':
      case 'outcome-unknown': {
        const err =
          rep.type === 'not-leader'
            ? Object.assign(new SkvError('not-leader', `not the leader of range ${this.rangeId}`), {
                leaderHint: rep.leaderHint,
              })
            : rep.type === 'unavailable'
              ? new SkvError('unavailable', `range ${this.rangeId} has no serving leader here yet`)
              : rep.type === 'overloaded'
                ? new SkvError('overloaded', `range ${this.rangeId} has too many writes in flight`)
                : new SkvError('deadline-exceeded', 'leadership was lost; the outcome is unknown');
        const w = this.writes.get(rep.requestId) ?? this.reads.get(rep.requestId);
        if (w === undefined) return;
        this.writes.delete(rep.requestId);
        this.reads.delete(rep.requestId);
        clearTimeout(w.timer);
        w.reject(err);
        return;
      }
      default:
        unreachable(rep, 'client reply');
    }
  }

  /** For the log: a restored entry as the core sees it. */
  static entryFromLog(e: { lsn: Lsn; kind: number; payload: Uint8Array }): Entry {
    return { lsn: e.lsn, kind: recordKindToEntryKind(e.kind), payload: Buffer.from(e.payload) };
  }
}
