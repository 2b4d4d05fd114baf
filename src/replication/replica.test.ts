// Interaction tests of the pure replica: inputs in, Ready out, one rule per test (DESIGN.md §5).
// Each test is named after the rule or edge case it pins and fails when the rule is removed.

import { describe, expect, it } from 'vitest';
import { type Lsn, lsn, ZERO_LSN } from '../core/lsn.js';
import { decideElection } from './election.js';
import { Replica } from './replica.js';
import type { Candidate, Entry, Message, Ready, ReplicaConfig } from './types.js';

const MEMBERS = ['a', 'b', 'c'];

function entry(epoch: number, seq: number, kind: Entry['kind'] = 'data'): Entry {
  return { lsn: lsn(epoch, seq), kind, payload: new Uint8Array([seq & 0xff]) };
}

function replica(
  self: string,
  entries: Entry[] = [],
  opts: {
    commitSeq?: number;
    voter?: boolean;
    fence?: number;
    unsafe?: ReplicaConfig['unsafe'];
    balance?: ReplicaConfig['balance'];
    /** The coordinator's epoch, as the epoch znode reports it (leader messages up to it count). */
    knownEpoch?: number;
  } = {},
): Replica {
  const r = new Replica(
    {
      self,
      members: MEMBERS,
      ...(opts.unsafe === undefined ? {} : { unsafe: opts.unsafe }),
      ...(opts.balance === undefined ? {} : { balance: opts.balance }),
    },
    {
      hardState: { fenceEpoch: opts.fence ?? 0, voter: opts.voter ?? true },
      baseLsn: ZERO_LSN,
      entries,
      commitSeq: opts.commitSeq ?? 0,
    },
  );
  if (opts.knownEpoch !== undefined) {
    step(r, { type: 'epoch-znode', epoch: opts.knownEpoch, version: opts.knownEpoch });
  }
  return r;
}

/** Step and collect the Ready (then advance). */
function step(r: Replica, ...inputs: Parameters<Replica['step']>[0][]): Ready {
  for (const i of inputs) r.step(i);
  const rd = r.ready();
  r.advance();
  return rd;
}

function cand(nodeId: string, seq: number, last: Lsn): Candidate {
  return { nodeId, seq, lastLsn: last, incarnation: 1 };
}

/** Make `self` the leader of epoch `round + 1` through the coordinator events. */
function elect(r: Replica, round: number, others: Candidate[]): Ready {
  step(
    r,
    { type: 'session', state: 'established' },
    { type: 'leader-znode', leader: null },
    { type: 'epoch-znode', epoch: round, version: round },
  );
  const mine = cand(r.self, 100, r.lastLsn());
  const rd = step(r, { type: 'candidates', round, candidates: [mine, ...others] });
  expect(rd.coordinator).toContainEqual(
    expect.objectContaining({ type: 'claim-leadership', epoch: round + 1, fromVersion: round }),
  );
  return step(r, { type: 'claim-result', round, epoch: round + 1, ok: true });
}

function msgs<T extends Message['type']>(rd: Ready, type: T, where: 'now' | 'after' = 'now') {
  const list = where === 'now' ? rd.messages : rd.afterDurable.messages;
  return list.filter((m): m is Extract<Message, { type: T }> => m.type === type);
}

describe('election decision (S§7)', () => {
  it('needs two distinct members and picks the highest last LSN, epoch first', () => {
    expect(decideElection([cand('a', 1, lsn(1, 9))], MEMBERS)).toBeNull();
    expect(decideElection([cand('a', 1, lsn(1, 9)), cand('a', 2, lsn(1, 9))], MEMBERS)).toBeNull();
    const d = decideElection([cand('a', 1, lsn(1, 99)), cand('b', 2, lsn(2, 21))], MEMBERS);
    expect(d?.winner.nodeId).toBe('b');
  });

  it('breaks ties toward the lowest candidate sequence number and ignores non-members', () => {
    const d = decideElection(
      [cand('c', 7, lsn(2, 5)), cand('b', 3, lsn(2, 5)), cand('zz', 0, lsn(9, 9))],
      MEMBERS,
    );
    expect(d?.winner.nodeId).toBe('b');
    expect(d?.counted.map((c) => c.nodeId)).toEqual(['b', 'c']);
  });
});

describe('leader balancing (types.ts LeaderBalance)', () => {
  const BALANCE = { handoffAfterTicks: 4, handoffTimeoutTicks: 3, abstainTicks: 5 };
  const ack = (from: string, matchSeq: number, epoch = 2): Parameters<Replica['step']>[0] => ({
    type: 'message',
    message: { type: 'ack', from, to: 'b', epoch, matchSeq, voter: true },
  });
  const write = (requestId: number): Parameters<Replica['step']>[0] => ({
    type: 'client-write',
    requestId,
    payload: new Uint8Array([requestId]),
  });
  const tick = { type: 'tick' } as const;

  /** b leads epoch 2 with its barrier (seq 2) committed by c's ack; a (preferred) is silent. */
  function nonPreferredLeader(balance = BALANCE): Replica {
    const l = replica('b', [entry(1, 1)], { commitSeq: 1, balance });
    elect(l, 1, [cand('c', 101, lsn(1, 1))]);
    step(l, { type: 'append-durable', lsn: lsn(2, 2) }, ack('c', 2));
    expect(l.status().serving).toBe(true);
    return l;
  }

  it('election ties go to the preferred (first) member, a higher last LSN still wins', () => {
    const tie = [cand('c', 3, lsn(2, 5)), cand('a', 7, lsn(2, 5))];
    expect(decideElection(tie, MEMBERS)?.winner.nodeId).toBe('c');
    expect(decideElection(tie, MEMBERS, 'a')?.winner.nodeId).toBe('a');
    const ahead = [cand('c', 3, lsn(2, 6)), cand('a', 7, lsn(2, 5))];
    expect(decideElection(ahead, MEMBERS, 'a')?.winner.nodeId).toBe('c');
  });

  it('hands over only once the preferred member matched the whole log, then abstains', () => {
    const l = nonPreferredLeader();
    // a is caught up, but the leader leads 4 ticks first.
    step(l, ack('a', 2));
    expect(step(l, tick, tick, tick).coordinator).toEqual([]);
    expect(l.status().role).toBe('leader');
    // Then, nothing pending and a matched the log: it resigns in favour of a at once.
    const rd = step(l, tick);
    expect(rd.coordinator).toEqual([{ type: 'resign-leadership', epoch: 2, handoffTo: 'a' }]);
    expect(l.status().role).toBe('follower');
    // Its leader znode gone, it stands for no election until the abstention ends.
    const quiet = step(
      l,
      { type: 'leader-znode', leader: null },
      { type: 'epoch-znode', epoch: 2, version: 2 },
    );
    expect(quiet.afterDurable.coordinator).toEqual([]);
    let published = false;
    for (let i = 0; i < 5 && !published; i++) {
      published = step(l, tick).afterDurable.coordinator.some(
        (op) => op.type === 'publish-candidacy',
      );
    }
    expect(published).toBe(true);
  });

  it('waits for the preferred member to ack the tail written before the hand-over began', () => {
    const l = nonPreferredLeader();
    step(l, ack('a', 2));
    const w = step(l, write(5));
    expect(w.entries.map((e) => e.lsn)).toEqual([lsn(2, 3)]);
    step(l, { type: 'append-durable', lsn: lsn(2, 3) }, ack('c', 3));
    step(l, tick, tick, tick, tick);
    // Hand-over running, a has not acked seq 3 yet: still leader.
    expect(step(l, write(6)).replies).toEqual([{ type: 'unavailable', requestId: 6 }]);
    expect(l.status().role).toBe('leader');
    const rd = step(l, ack('a', 3));
    expect(rd.coordinator).toEqual([{ type: 'resign-leadership', epoch: 2, handoffTo: 'a' }]);
  });

  it('a preferred member that does not catch up in time: the hand-over is abandoned, writes resume', () => {
    const l = nonPreferredLeader();
    step(l, ack('a', 1));
    step(l, tick, tick, tick, tick);
    expect(step(l, write(5)).replies).toEqual([{ type: 'unavailable', requestId: 5 }]);
    step(l, tick, tick, tick);
    const resumed = step(l, write(6));
    expect(resumed.replies).toEqual([]);
    expect(resumed.entries.map((e) => e.lsn)).toEqual([lsn(2, 3)]);
    expect(l.status().role).toBe('leader');
  });

  it('does not hand over while the third member is silent (the preferred one could not win)', () => {
    // Lead 10 ticks first: longer than c may stay silent (retransmitTicks 6) and count as live.
    const l = nonPreferredLeader({ ...BALANCE, handoffAfterTicks: 10 });
    // c acked at tick 0 and then went quiet; a keeps acking and is caught up.
    for (let i = 0; i < 14; i++) {
      const rd = step(l, tick, ack('a', 2));
      expect(rd.coordinator).toEqual([]);
    }
    expect(step(l, write(5)).replies).toEqual([]);
    expect(l.status().role).toBe('leader');
    // c is back: the hand-over goes ahead at the next tick.
    step(l, { type: 'append-durable', lsn: lsn(2, 3) }, ack('c', 3), ack('a', 3));
    expect(l.status().commitSeq).toBe(3);
    const rd = step(l, tick);
    expect(rd.coordinator).toEqual([{ type: 'resign-leadership', epoch: 2, handoffTo: 'a' }]);
  });

  it('without balancing, or as the preferred member, a leader never hands over', () => {
    const plain = replica('b', [entry(1, 1)], { commitSeq: 1 });
    elect(plain, 1, [cand('c', 101, lsn(1, 1))]);
    step(plain, { type: 'append-durable', lsn: lsn(2, 2) }, ack('c', 2), ack('a', 2));
    for (let i = 0; i < 20; i++) step(plain, tick);
    expect(step(plain, write(5)).replies).toEqual([]);
    expect(plain.status().role).toBe('leader');

    // Balancing on, led by its preferred member a: with both followers caught up, it stays.
    const toA = (from: string, matchSeq: number): Parameters<Replica['step']>[0] => ({
      type: 'message',
      message: { type: 'ack', from, to: 'a', epoch: 2, matchSeq, voter: true },
    });
    const home = replica('a', [entry(1, 1)], { commitSeq: 1, balance: BALANCE });
    elect(home, 1, [cand('c', 101, lsn(1, 1))]);
    step(home, { type: 'append-durable', lsn: lsn(2, 2) }, toA('b', 2), toA('c', 2));
    expect(home.status().serving).toBe(true);
    for (let i = 0; i < 20; i++) {
      const rd = step(home, tick, toA('b', 2), toA('c', 2));
      expect(rd.coordinator).toEqual([]);
    }
    expect(step(home, write(6)).entries.map((e) => e.lsn)).toEqual([lsn(2, 3)]);
    expect(home.status().role).toBe('leader');
  });
});

describe('follower write path (S§5)', () => {
  it('acks only after the record is durable (ack rides in afterDurable)', () => {
    const f = replica('b', [], { knownEpoch: 1 });
    const rd = step(f, {
      type: 'message',
      message: {
        type: 'propose',
        from: 'a',
        to: 'b',
        epoch: 1,
        prevLsn: ZERO_LSN,
        entries: [entry(1, 1)],
        commitSeq: 0,
        commitLsn: ZERO_LSN,
        leaderLastSeq: 1,
      },
    });
    expect(rd.entries.map((e) => e.lsn)).toEqual([lsn(1, 1)]);
    expect(rd.mustSync).toBe(true);
    expect(msgs(rd, 'ack')).toEqual([]);
    expect(msgs(rd, 'ack', 'after')).toEqual([
      expect.objectContaining({ matchSeq: 1, voter: true }),
    ]);
  });

  it('names the snapshot it accepted until its Ready is taken; a newer one replaces it', () => {
    const f = replica('b', [], { knownEpoch: 1 });
    const snap = (seq: number): Parameters<Replica['step']>[0] => ({
      type: 'message',
      message: {
        type: 'snapshot',
        from: 'a',
        to: 'b',
        epoch: 1,
        lsn: lsn(1, seq),
        data: new Uint8Array(0),
      },
    });
    expect(f.snapshotToInstall()).toBeNull();
    f.step(snap(10));
    expect(f.snapshotToInstall()).toEqual(lsn(1, 10));
    f.step(snap(20));
    expect(f.snapshotToInstall()).toEqual(lsn(1, 20));
    // Not above what it now counts as committed: refused, the accepted one stays named.
    f.step(snap(15));
    expect(f.snapshotToInstall()).toEqual(lsn(1, 20));
    const rd = f.ready();
    expect(rd.installSnapshot?.lsn).toEqual(lsn(1, 20));
    expect(f.snapshotToInstall()).toBeNull();
    f.advance();
    expect(f.snapshotToInstall()).toBeNull();
  });

  it('with unsafe.ackBeforeDurable the ack goes at once', () => {
    const f = replica('b', [], { unsafe: { ackBeforeDurable: true }, knownEpoch: 1 });
    const rd = step(f, {
      type: 'message',
      message: {
        type: 'propose',
        from: 'a',
        to: 'b',
        epoch: 1,
        prevLsn: ZERO_LSN,
        entries: [entry(1, 1)],
        commitSeq: 0,
        commitLsn: ZERO_LSN,
        leaderLastSeq: 1,
      },
    });
    expect(msgs(rd, 'ack')).toHaveLength(1);
  });

  it('truncates a divergent suffix before appending the leader entries (S§6.1.1)', () => {
    const f = replica('c', [entry(1, 1), entry(1, 2), entry(1, 3)], {
      commitSeq: 1,
      knownEpoch: 2,
    });
    const rd = step(f, {
      type: 'message',
      message: {
        type: 'propose',
        from: 'b',
        to: 'c',
        epoch: 2,
        prevLsn: lsn(1, 1),
        entries: [entry(1, 2), entry(2, 3)],
        commitSeq: 1,
        commitLsn: lsn(1, 1),
        leaderLastSeq: 3,
      },
    });
    expect(rd.truncateAfterSeq).toBe(2);
    expect(rd.entries.map((e) => e.lsn)).toEqual([lsn(2, 3)]);
    expect(f.lsnAt(3)).toEqual(lsn(2, 3));
  });

  it('never applies past the prefix verified equal to the leader log', () => {
    // c holds a stale 1.3; the leader's commit seq 3 names 2.3, which c does not have.
    const f = replica('c', [entry(1, 1), entry(1, 2), entry(1, 3)], { commitSeq: 1 });
    step(f); // local replay of 1.1
    const rd = step(f, {
      type: 'message',
      message: {
        type: 'heartbeat',
        from: 'b',
        to: 'c',
        epoch: 2,
        round: 0,
        commitSeq: 3,
        commitLsn: lsn(2, 3),
        leaderLastSeq: 3,
      },
    });
    expect(rd.committed).toEqual([]);
    expect(f.status().commitSeq).toBe(1);
  });

  it('rejects a message from an epoch below the one it joined and tells the sender', () => {
    const f = replica('b', [entry(2, 1)]);
    const rd = step(f, {
      type: 'message',
      message: {
        type: 'heartbeat',
        from: 'a',
        to: 'b',
        epoch: 1,
        round: 0,
        commitSeq: 0,
        commitLsn: ZERO_LSN,
        leaderLastSeq: 0,
      },
    });
    expect(msgs(rd, 'heartbeat-ack')).toEqual([]);
    expect(msgs(rd, 'nack')).toEqual([expect.objectContaining({ epoch: 2 })]);
  });
});

describe('candidacy (S§7 with a durable promise)', () => {
  it('raises its fence durably before publishing, and then ignores the old epoch', () => {
    const f = replica('b', [entry(1, 1)]);
    const rd = step(
      f,
      { type: 'session', state: 'established' },
      { type: 'leader-znode', leader: null },
      { type: 'epoch-znode', epoch: 1, version: 1 },
    );
    expect(rd.hardState).toEqual({ fenceEpoch: 2, voter: true });
    expect(rd.coordinator).toEqual([]);
    expect(rd.afterDurable.coordinator).toEqual([
      { type: 'publish-candidacy', round: 1, lastLsn: lsn(1, 1) },
    ]);
    const late = step(f, {
      type: 'message',
      message: {
        type: 'propose',
        from: 'a',
        to: 'b',
        epoch: 1,
        prevLsn: lsn(1, 1),
        entries: [entry(1, 2)],
        commitSeq: 1,
        commitLsn: lsn(1, 1),
        leaderLastSeq: 2,
      },
    });
    expect(late.entries).toEqual([]);
    expect(msgs(late, 'ack', 'after')).toEqual([]);
  });

  it('a non-voter never stands', () => {
    const f = replica('b', [], { voter: false });
    const rd = step(
      f,
      { type: 'session', state: 'established' },
      { type: 'leader-znode', leader: null },
      { type: 'epoch-znode', epoch: 1, version: 1 },
    );
    expect(rd.afterDurable.coordinator).toEqual([]);
    expect(f.status().role).toBe('follower');
  });
});

describe('takeover (S§6.2 + barrier, DESIGN.md §5 rule 4)', () => {
  it('appends a new-epoch barrier and takes no write before it commits', () => {
    const l = replica('a', [entry(1, 1), entry(1, 2)], { commitSeq: 1 });
    const rd = elect(l, 1, [cand('b', 101, lsn(1, 1))]);
    expect(rd.entries).toEqual([expect.objectContaining({ lsn: lsn(2, 3), kind: 'barrier' })]);
    // The re-proposal keeps old LSNs: the follower gets 1.2 then 2.3 after the prefix 1.1.
    const p = msgs(rd, 'propose').find((m) => m.to === 'b')!;
    expect(p.prevLsn).toEqual(lsn(1, 1));
    expect(p.entries.map((e) => e.lsn)).toEqual([lsn(1, 2), lsn(2, 3)]);
    const w = step(l, { type: 'client-write', requestId: 7, payload: new Uint8Array([1]) });
    expect(w.replies).toEqual([{ type: 'unavailable', requestId: 7 }]);
    // Own durability plus a voter ack of 1.2 only: nothing commits (1.2 is an old-epoch entry).
    step(l, { type: 'append-durable', lsn: lsn(2, 3) });
    const early = step(l, {
      type: 'message',
      message: { type: 'ack', from: 'b', to: 'a', epoch: 2, matchSeq: 2, voter: true },
    });
    expect(early.committed).toEqual([]);
    // The barrier acked by a voter: 1.2 and 2.3 commit together.
    const done = step(l, {
      type: 'message',
      message: { type: 'ack', from: 'b', to: 'a', epoch: 2, matchSeq: 3, voter: true },
    });
    expect(done.committed.map((c) => c.entry.lsn)).toEqual([lsn(1, 2), lsn(2, 3)]);
    expect(l.status().serving).toBe(true);
  });

  it('reports the lag of each follower by node id, and the maximum; nothing when not leading', () => {
    const l = replica('a', [entry(1, 1), entry(1, 2)], { commitSeq: 1 });
    expect(l.followerLags().size).toBe(0);
    expect(l.followerLag()).toBe(0);
    elect(l, 1, [cand('b', 101, lsn(1, 1))]);
    step(l, { type: 'append-durable', lsn: lsn(2, 3) });
    // Nothing acked yet: both followers lack the whole log (1.1, 1.2 and the barrier 2.3).
    expect(new Map(l.followerLags())).toEqual(
      new Map([
        ['b', 3],
        ['c', 3],
      ]),
    );
    step(l, {
      type: 'message',
      message: { type: 'ack', from: 'b', to: 'a', epoch: 2, matchSeq: 3, voter: true },
    });
    step(l, {
      type: 'message',
      message: { type: 'ack', from: 'c', to: 'a', epoch: 2, matchSeq: 2, voter: true },
    });
    expect(new Map(l.followerLags())).toEqual(
      new Map([
        ['b', 0],
        ['c', 1],
      ]),
    );
    expect(l.followerLag()).toBe(1);
  });

  it('does not count a non-voter ack toward commit (PML §5.1)', () => {
    const l = replica('a', [entry(1, 1)], { commitSeq: 1 });
    elect(l, 1, [cand('b', 101, lsn(1, 1))]);
    step(l, { type: 'append-durable', lsn: lsn(2, 2) });
    const rd = step(l, {
      type: 'message',
      message: { type: 'ack', from: 'c', to: 'a', epoch: 2, matchSeq: 2, voter: false },
    });
    expect(rd.committed).toEqual([]);
    expect(l.status().commitSeq).toBe(1);
  });

  it('with unsafe.skipBarrier commits an old-epoch entry by counting replicas', () => {
    const l = replica('a', [entry(1, 1), entry(1, 2)], {
      commitSeq: 1,
      unsafe: { skipBarrier: true },
    });
    const rd = elect(l, 1, [cand('b', 101, lsn(1, 1))]);
    expect(rd.entries).toEqual([]);
    const done = step(l, {
      type: 'message',
      message: { type: 'ack', from: 'b', to: 'a', epoch: 2, matchSeq: 2, voter: true },
    });
    expect(done.committed.map((c) => c.entry.lsn)).toEqual([lsn(1, 2)]);
  });
});

describe('strong reads by read-index (DESIGN.md §5 rule 6)', () => {
  function servingLeader(): Replica {
    const l = replica('a', [entry(1, 1)], { commitSeq: 1 });
    elect(l, 1, [cand('b', 101, lsn(1, 1))]);
    step(
      l,
      { type: 'append-durable', lsn: lsn(2, 2) },
      {
        type: 'message',
        message: { type: 'ack', from: 'b', to: 'a', epoch: 2, matchSeq: 2, voter: true },
      },
    );
    expect(l.status().serving).toBe(true);
    return l;
  }

  it('serves only after a voter follower acks a heartbeat sent after the read arrived', () => {
    const l = servingLeader();
    const rd = step(l, { type: 'client-read', requestId: 9 });
    expect(rd.replies).toEqual([]);
    const hb = msgs(rd, 'heartbeat');
    expect(hb).toHaveLength(2);
    const round = hb[0]!.round;
    const stale = step(l, {
      type: 'message',
      message: {
        type: 'heartbeat-ack',
        from: 'c',
        to: 'a',
        epoch: 2,
        round,
        lastLsn: lsn(2, 2),
        commitSeq: 2,
        voter: false,
      },
    });
    expect(stale.replies).toEqual([]);
    const older = step(l, {
      type: 'message',
      message: {
        type: 'heartbeat-ack',
        from: 'b',
        to: 'a',
        epoch: 2,
        round: round - 1,
        lastLsn: lsn(2, 2),
        commitSeq: 2,
        voter: true,
      },
    });
    expect(older.replies).toEqual([]);
    expect(l.hasReady()).toBe(false);
    l.step({
      type: 'message',
      message: {
        type: 'heartbeat-ack',
        from: 'b',
        to: 'a',
        epoch: 2,
        round,
        lastLsn: lsn(2, 2),
        commitSeq: 2,
        voter: true,
      },
    });
    // The ack alone makes the read servable: the host drains at once, not on the next tick.
    expect(l.hasReady()).toBe(true);
    const ok = l.ready();
    l.advance();
    expect(ok.replies).toEqual([{ type: 'read-ready', requestId: 9, seq: 2 }]);
    expect(l.hasReady()).toBe(false);
  });

  it('a follower redirects a strong read; a leader before its barrier commits refuses it', () => {
    const f = replica('b');
    expect(step(f, { type: 'client-read', requestId: 1 }).replies[0]?.type).toBe('not-leader');
    const l = replica('a', [entry(1, 1)], { commitSeq: 1 });
    elect(l, 1, [cand('b', 101, lsn(1, 1))]);
    expect(step(l, { type: 'client-read', requestId: 2 }).replies).toEqual([
      { type: 'unavailable', requestId: 2 },
    ]);
  });

  it('a deposed leader gives up its pending reads and writes when it sees a newer epoch', () => {
    const l = servingLeader();
    step(l, { type: 'client-read', requestId: 3 });
    step(l, { type: 'client-write', requestId: 4, payload: new Uint8Array([1]) });
    const rd = step(l, {
      type: 'message',
      message: {
        type: 'nack',
        from: 'b',
        to: 'a',
        epoch: 3,
        rejectedPrevSeq: 0,
        lastSeq: 2,
        commitSeq: 2,
      },
    });
    expect(rd.replies).toEqual(
      expect.arrayContaining([
        { type: 'unavailable', requestId: 3 },
        { type: 'outcome-unknown', requestId: 4 },
      ]),
    );
    expect(l.status().role).toBe('follower');
    expect(rd.coordinator).toContainEqual({ type: 'resign-leadership', epoch: 2 });
  });
});

describe('peer input no correct peer sends is dropped, never fatal (fuzzing found each)', () => {
  function propose(from: string, to: string, epoch: number, prev: Lsn, entries: Entry[]) {
    return {
      type: 'message' as const,
      message: {
        type: 'propose' as const,
        from,
        to,
        epoch,
        prevLsn: prev,
        entries,
        commitSeq: 0,
        commitLsn: ZERO_LSN,
        leaderLastSeq: prev.seq + entries.length,
      },
    };
  }

  it('a leader message from beyond the newest known epoch is ignored (no epoch is joined)', () => {
    const f = replica('b', [entry(1, 1)], { knownEpoch: 1 });
    const rd = step(f, propose('a', 'b', 7, lsn(1, 1), [entry(7, 2)]));
    expect(rd.entries).toEqual([]);
    expect(f.status().currentEpoch).toBe(1);
    // Once the coordinator reports epoch 7, the message kept aside is handled at once.
    const rd2 = step(f, { type: 'epoch-znode', epoch: 7, version: 7 });
    expect(rd2.entries.map((e) => e.lsn)).toEqual([lsn(7, 2)]);
    expect(f.status().currentEpoch).toBe(7);
  });

  it('an ack beyond the leader log is rejected and changes nothing', () => {
    const l = replica('a', [entry(1, 1)], { commitSeq: 1 });
    elect(l, 1, [cand('b', 101, lsn(1, 1))]);
    const before = l.status();
    const rd = step(l, {
      type: 'message',
      message: { type: 'ack', from: 'b', to: 'a', epoch: 2, matchSeq: 1_000_000, voter: true },
    });
    expect(rd.rejected).toEqual([expect.objectContaining({ from: 'b', type: 'ack' })]);
    expect(l.status().commitSeq).toBe(before.commitSeq);
    expect(l.status().role).toBe('leader');
  });

  it('a second leader in our own epoch is rejected; we stay leader', () => {
    const l = replica('a', [entry(1, 1)], { commitSeq: 1 });
    elect(l, 1, [cand('b', 101, lsn(1, 1))]);
    const rd = step(l, {
      type: 'message',
      message: {
        type: 'heartbeat',
        from: 'c',
        to: 'a',
        epoch: 2,
        round: 1,
        commitSeq: 0,
        commitLsn: ZERO_LSN,
        leaderLastSeq: 0,
      },
    });
    expect(rd.rejected).toEqual([expect.objectContaining({ from: 'c', type: 'heartbeat' })]);
    expect(l.status().role).toBe('leader');
  });

  it('a propose contradicting a committed entry, or not contiguous, is rejected before any change', () => {
    const f = replica('b', [entry(1, 1), entry(1, 2)], { commitSeq: 2, knownEpoch: 3 });
    step(f); // local replay
    const contradicting = step(f, propose('a', 'b', 3, lsn(1, 1), [entry(3, 2), entry(3, 3)]));
    expect(contradicting.rejected).toEqual([expect.objectContaining({ type: 'propose' })]);
    expect(contradicting.truncateAfterSeq).toBeNull();
    expect(f.lsnAt(2)).toEqual(lsn(1, 2));
    const gap = step(f, propose('a', 'b', 3, lsn(1, 2), [entry(3, 3), entry(3, 5)]));
    expect(gap.rejected).toEqual([expect.objectContaining({ type: 'propose' })]);
    expect(gap.entries).toEqual([]);
    expect(f.lastLsn()).toEqual(lsn(1, 2));
  });
});

/**
 * `a` with 1,000 committed entries of epoch 1, replayed, its log compacted to 900, elected
 * leader of epoch 2 (b's candidacy holds all 1,000).
 */
function compactedLeader(): Replica {
  const log = Array.from({ length: 1000 }, (_, i) => entry(1, i + 1));
  const l = replica('a', log, { commitSeq: 1000 });
  for (let i = 0; i < 10 && l.status().appliedSeq < 1000; i++) step(l); // local replay
  step(l, { type: 'log-compacted', lsn: lsn(1, 900) });
  elect(l, 1, [cand('b', 101, lsn(1, 1000))]);
  return l;
}

describe('takeover of a long log (found by a 10-million-record load)', () => {
  it('a new leader proposes its barrier at once even when its commit point is past the in-flight bound', () => {
    const log = Array.from({ length: 1000 }, (_, i) => entry(1, i + 1));
    const l = replica('a', log, { commitSeq: 1000 });
    step(l); // local replay
    const rd = elect(l, 1, [cand('b', 101, lsn(1, 1000))]);
    const proposes = msgs(rd, 'propose');
    // Before: in flight counted from match 0, so 1000 entries looked in flight and nothing went
    // out; the retransmit then probed from seq 1, i.e. a snapshot of the whole range.
    expect(proposes.map((m) => m.to).sort()).toEqual(['b', 'c']);
    for (const m of proposes) {
      expect(m.prevLsn).toEqual(lsn(1, 1000));
      expect(m.entries.map((e) => e.lsn)).toEqual([lsn(2, 1001)]);
    }
    expect(rd.snapshotsToSend).toEqual([]);
  });

  it('a retransmit with no match known probes from the commit point, not from seq 1 (no snapshot)', () => {
    const l = compactedLeader();
    let snapshots = 0;
    let proposes = 0;
    for (let t = 0; t < 20; t++) {
      const rd = step(l, { type: 'tick' });
      snapshots += rd.snapshotsToSend.length;
      proposes += msgs(rd, 'propose').length;
    }
    expect(snapshots).toBe(0);
    expect(proposes).toBeGreaterThan(0);
  });
});

/** c's nack in epoch 2 to leader a: it holds (and knows committed) up to `lastSeq`. */
function nackFromC(rejectedPrevSeq: number, lastSeq = 100): Parameters<Replica['step']>[0] {
  return {
    type: 'message',
    message: {
      type: 'nack',
      from: 'c',
      to: 'a',
      epoch: 2,
      rejectedPrevSeq,
      lastSeq,
      commitSeq: lastSeq,
    },
  };
}

describe('catch-up by snapshot (found by a 10-million-record load)', () => {
  it('a follower waiting for a snapshot gets one transfer and no proposes until it acks it; nacks of older proposes do not start another', () => {
    const l = compactedLeader();
    // The new epoch's barrier is durable here and at b: the leader serves writes.
    step(
      l,
      { type: 'append-durable', lsn: lsn(2, 1001) },
      {
        type: 'message',
        message: { type: 'ack', from: 'b', to: 'a', epoch: 2, matchSeq: 1001, voter: true },
      },
    );
    // c holds up to 100 only, far behind the base (900): a snapshot.
    const first = step(l, nackFromC(1000));
    expect(first.snapshotsToSend).toEqual([{ to: 'c', lsn: lsn(2, 1001), epoch: 2 }]);
    expect(msgs(first, 'propose').filter((m) => m.to === 'c')).toEqual([]);
    // Nacks of proposes sent before the snapshot was chosen, and ticks short of the retry: no
    // other transfer, nothing proposed to c (the leader keeps writing meanwhile).
    let snapshots = 0;
    let proposesToC = 0;
    for (let t = 0; t < 20; t++) {
      const rd = step(
        l,
        nackFromC(1001 + t),
        { type: 'tick' },
        { type: 'client-write', requestId: t + 1, payload: new Uint8Array([t]) },
      );
      snapshots += rd.snapshotsToSend.length;
      proposesToC += msgs(rd, 'propose').filter((m) => m.to === 'c').length;
    }
    expect(snapshots).toBe(0);
    expect(proposesToC).toBe(0);
    expect(l.lastLsn().seq).toBe(1021);
    // Installed: c acks the snapshot's point and is proposed the entries after it.
    const after = step(l, {
      type: 'message',
      message: { type: 'ack', from: 'c', to: 'a', epoch: 2, matchSeq: 1001, voter: true },
    });
    const toC = msgs(after, 'propose').filter((m) => m.to === 'c');
    expect(toC.length).toBeGreaterThan(0);
    expect(toC[0]!.prevLsn).toEqual(lsn(2, 1001));
    expect(after.snapshotsToSend).toEqual([]);
  });
});

describe('propose size (found with 1 MiB values)', () => {
  it('a catch-up splits proposes at messageBytesMax, a larger entry going alone, in order and without gaps', () => {
    const MiB = 1024 * 1024;
    const sizes = Array.from({ length: 20 }, (_, i) => (i + 1 === 10 ? 6 * MiB : MiB));
    const log = sizes.map((n, i) => ({
      lsn: lsn(1, i + 1),
      kind: 'data' as const,
      payload: new Uint8Array(n),
    }));
    const l = replica('a', log, { commitSeq: 20 });
    step(l); // local replay
    elect(l, 1, [cand('b', 101, lsn(1, 20))]);
    // c has nothing: it nacks the barrier's probe, and the leader sends it the whole log.
    const rd = step(l, nackFromC(20, 0));
    const toC = msgs(rd, 'propose').filter((m) => m.to === 'c');
    expect(toC.map((m) => m.entries.map((e) => e.lsn.seq))).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9],
      [10],
      [11, 12, 13, 14],
      [15, 16, 17, 18],
      [19, 20, 21],
    ]);
    for (const m of toC) {
      const bytes = m.entries.reduce((n, e) => n + e.payload.length, 0);
      if (m.entries.length > 1) expect(bytes).toBeLessThanOrEqual(4 * MiB);
      expect(m.prevLsn.seq).toBe(m.entries[0]!.lsn.seq - 1);
    }
  });
});
