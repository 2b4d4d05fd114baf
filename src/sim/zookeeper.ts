// A simulated ZooKeeper for one cohort, holding exactly the znodes of DESIGN.md §4 that the
// replication protocol uses, with ZooKeeper's semantics where they matter:
// - sessions with a timeout, kept alive by pings; a session that is not heard from for the
//   timeout EXPIRES on the server: its ephemerals (candidacies, the leader znode) vanish and
//   watchers are told; the client learns of the expiry only when it next reaches the server
//   (late: after a partition heals, or a paused process resumes);
// - `ranges/<id>/epoch`: a versioned counter changed only by CAS;
// - `ranges/<id>/election/<round>/c-NNNN`: ephemeral sequential candidacies;
// - `ranges/<id>/leader`: ephemeral;
// - `nodes-meta/<id>/incarnation`: persistent;
// - `multi`: the claim (check incarnations + CAS epoch + create leader) is atomic;
// - watches: every change is pushed to each live session as a consistent view, in order.
// Requests and notifications travel over held (retransmitting) links of the simulated network.

import { assert } from '../core/assert.js';
import type { NodeId } from '../core/ids.js';
import type { Lsn } from '../core/lsn.js';
import type { Candidate, LeaderInfo } from '../replication/types.js';
import type { EventLoop } from './event-loop.js';
import type { SimNetwork } from './network.js';

export const ZK_ENDPOINT = 'zk';

export interface ZkView {
  readonly epoch: number;
  readonly epochVersion: number;
  readonly leader: LeaderInfo | null;
  /** Candidates of round = the current epoch value. */
  readonly candidates: readonly Candidate[];
}

interface Session {
  readonly id: number;
  readonly nodeId: NodeId;
  lastHeardAt: number;
  expired: boolean;
  /** Set by the client; checked at delivery (the process may have died). */
  readonly alive: () => boolean;
  readonly onView: (v: ZkView) => void;
  readonly onExpired: () => void;
}

interface StoredCandidate extends Candidate {
  readonly owner: number;
}

export type ZkRequest =
  | { readonly op: 'get-incarnation' }
  | { readonly op: 'set-incarnation'; readonly value: number }
  | {
      readonly op: 'publish-candidacy';
      readonly round: number;
      readonly lastLsn: Lsn;
      readonly incarnation: number;
    }
  | { readonly op: 'resign'; readonly epoch: number }
  | {
      readonly op: 'claim';
      readonly fromVersion: number;
      readonly epoch: number;
      readonly candidates: readonly { nodeId: NodeId; incarnation: number }[];
    };

export type ZkResponse =
  | { readonly ok: true; readonly value?: number }
  | { readonly ok: false; readonly reason: 'session-expired' | 'conflict' };

export class SimZooKeeper {
  private sessions = new Map<number, Session>();
  private nextSessionId = 1;
  private epoch = { value: 0, version: 0 };
  private leader: (LeaderInfo & { owner: number }) | null = null;
  private rounds = new Map<number, StoredCandidate[]>();
  private nextCandidateSeq = 0;
  private incarnations = new Map<NodeId, number>();
  /** Every successful claim, for the invariants (epoch -> node). */
  readonly claims: { epoch: number; nodeId: NodeId; at: number }[] = [];
  expirations = 0;

  constructor(
    private readonly loop: EventLoop,
    private readonly net: SimNetwork,
    readonly sessionTimeoutMs: number,
  ) {
    this.loop.after(10, () => this.expiryScan());
  }

  /** Open a session (the request travels to the server; `onOpen` gets the id). */
  connect(
    nodeId: NodeId,
    handlers: {
      alive: () => boolean;
      onOpen: (sessionId: number) => void;
      onView: (v: ZkView) => void;
      onExpired: () => void;
    },
  ): void {
    this.net.sendHeld(
      nodeId,
      ZK_ENDPOINT,
      () => {
        const id = this.nextSessionId++;
        const s: Session = {
          id,
          nodeId,
          lastHeardAt: this.loop.now(),
          expired: false,
          alive: handlers.alive,
          onView: handlers.onView,
          onExpired: handlers.onExpired,
        };
        this.sessions.set(id, s);
        this.reply(s, () => {
          handlers.onOpen(id);
        });
        this.pushView(s);
      },
      handlers.alive,
    );
  }

  ping(sessionId: number): void {
    const s = this.sessions.get(sessionId);
    assert(s !== undefined, 'ping of a known session');
    this.net.sendHeld(
      s.nodeId,
      ZK_ENDPOINT,
      () => {
        if (s.expired) {
          this.reply(s, () => s.onExpired());
          return;
        }
        s.lastHeardAt = this.loop.now();
      },
      s.alive,
    );
  }

  request(sessionId: number, req: ZkRequest, onResponse: (r: ZkResponse) => void): void {
    const s = this.sessions.get(sessionId);
    assert(s !== undefined, 'request on a known session');
    this.net.sendHeld(
      s.nodeId,
      ZK_ENDPOINT,
      () => {
        if (s.expired) {
          this.reply(s, () => onResponse({ ok: false, reason: 'session-expired' }));
          this.reply(s, () => s.onExpired());
          return;
        }
        s.lastHeardAt = this.loop.now();
        const r = this.execute(s, req);
        this.reply(s, () => onResponse(r));
      },
      s.alive,
    );
  }

  private reply(s: Session, fn: () => void): void {
    this.net.sendHeld(ZK_ENDPOINT, s.nodeId, fn, s.alive);
  }

  private execute(s: Session, req: ZkRequest): ZkResponse {
    switch (req.op) {
      case 'get-incarnation':
        return { ok: true, value: this.incarnations.get(s.nodeId) ?? 0 };
      case 'set-incarnation':
        this.incarnations.set(s.nodeId, req.value);
        return { ok: true };
      case 'publish-candidacy': {
        let list = this.rounds.get(req.round);
        if (list === undefined) {
          list = [];
          this.rounds.set(req.round, list);
        }
        list.push({
          nodeId: s.nodeId,
          seq: this.nextCandidateSeq++,
          lastLsn: req.lastLsn,
          incarnation: req.incarnation,
          owner: s.id,
        });
        if (req.round === this.epoch.value) this.changed();
        return { ok: true };
      }
      case 'resign':
        if (this.leader !== null && this.leader.owner === s.id && this.leader.epoch === req.epoch) {
          this.leader = null;
          this.changed();
        }
        return { ok: true };
      case 'claim': {
        // multi: check(epoch, fromVersion), check(incarnation of each counted candidate),
        // setData(epoch), create(leader, ephemeral) — all or nothing.
        if (this.epoch.version !== req.fromVersion) return { ok: false, reason: 'conflict' };
        if (this.leader !== null) return { ok: false, reason: 'conflict' };
        for (const c of req.candidates) {
          if ((this.incarnations.get(c.nodeId) ?? 0) !== c.incarnation) {
            return { ok: false, reason: 'conflict' };
          }
        }
        assert(req.epoch === this.epoch.value + 1, 'a claim bumps the epoch by one');
        this.epoch = { value: req.epoch, version: this.epoch.version + 1 };
        this.leader = { nodeId: s.nodeId, epoch: req.epoch, owner: s.id };
        this.claims.push({ epoch: req.epoch, nodeId: s.nodeId, at: this.loop.now() });
        this.changed();
        return { ok: true };
      }
      default: {
        const never: never = req;
        throw new Error(`unknown zk request ${JSON.stringify(never)}`);
      }
    }
  }

  private view(): ZkView {
    const candidates = (this.rounds.get(this.epoch.value) ?? []).map(
      ({ nodeId, seq, lastLsn, incarnation }) => ({ nodeId, seq, lastLsn, incarnation }),
    );
    return {
      epoch: this.epoch.value,
      epochVersion: this.epoch.version,
      leader:
        this.leader === null ? null : { nodeId: this.leader.nodeId, epoch: this.leader.epoch },
      candidates,
    };
  }

  private pushView(s: Session): void {
    const v = this.view();
    this.reply(s, () => {
      if (!s.expired) s.onView(v);
    });
  }

  private changed(): void {
    for (const s of this.sessions.values()) if (!s.expired) this.pushView(s);
  }

  private expiryScan(): void {
    const now = this.loop.now();
    let any = false;
    for (const s of this.sessions.values()) {
      if (s.expired || now - s.lastHeardAt <= this.sessionTimeoutMs) continue;
      s.expired = true;
      this.expirations += 1;
      any = true;
      if (this.leader !== null && this.leader.owner === s.id) this.leader = null;
      for (const [round, list] of this.rounds) {
        this.rounds.set(
          round,
          list.filter((c) => c.owner !== s.id),
        );
      }
    }
    // Old rounds can never be counted again (the epoch moved past them): drop them.
    for (const round of [...this.rounds.keys()])
      if (round < this.epoch.value) this.rounds.delete(round);
    if (any) this.changed();
    this.loop.after(10, () => this.expiryScan());
  }

  /** Forget sessions that are expired and whose owners are gone (bounded memory). */
  gc(): void {
    for (const [id, s] of this.sessions) if (s.expired && !s.alive()) this.sessions.delete(id);
  }

  /** Scenario setup: the state a cluster that already ran would have left. */
  seed(state: { epoch: number; incarnations: Record<NodeId, number> }): void {
    this.epoch = { value: state.epoch, version: state.epoch };
    for (const [id, inc] of Object.entries(state.incarnations)) this.incarnations.set(id, inc);
  }

  currentEpoch(): number {
    return this.epoch.value;
  }

  currentLeader(): LeaderInfo | null {
    return this.leader === null ? null : { nodeId: this.leader.nodeId, epoch: this.leader.epoch };
  }
}
