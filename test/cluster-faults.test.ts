// Failure tests of a real skv cluster (issue #4 "Must show", the fault half): a real ZooKeeper
// (2 s sessions) and three real `skv server` processes per test (test/support/cluster.ts), a
// bounded write load of unique keys (test/support/load.ts), and faults by signal: SIGKILL,
// SIGSTOP/SIGCONT, restart, restart with an emptied data directory, ZooKeeper restart.
//
// What every test holds the cluster to (TESTING.md A.1): every acknowledged write is readable
// afterwards by a strong read with its value; a write refused before it was proposed is not
// there; writes with an unknown outcome may land either way. Plus, per scenario: service resumes
// (DESIGN.md §5 rules 3–4), a deposed leader never answers a strong read or acknowledges a write
// (rule 6), timeline reads never see uncommitted data (rule 1), a node with a lost disk rebuilds as
// a non-voter (rule 7), all-node crash loses nothing (rule 8).
//
// The range under test holds the keys "a…" (split keys h and p: three ranges on three nodes, each
// node in every cohort). Measured figures are printed with the prefix "[faults]".
//
// SKV_TEST_BIN may point the harness at an isolated build; otherwise the checkout's bin/skv.js
// (run `npm run build` after changing src/). SKV_FAULTS_SERVER_ARGS adds `skv server` flags (the
// unsafe switches, to see a test fail).

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { type CallOptions, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { ZooKeeperCoordinator } from '../src/coordination/zookeeper/zk-coordinator.js';
import {
  type GetRequest,
  type GetResponse,
  KVClient,
  type PutRequest,
  type PutResponse,
  type RangeMapResponse,
  type ScanResponse,
} from '../src/rpc/generated/skv/v1/kv.js';
import { type ClusterOptions, TestCluster } from './support/cluster.js';
import { checkWrites, unavailability, WriteLoad, type WriteRecord } from './support/load.js';
import { waitUntil } from './support/wait.js';

const STRONG = 0;
const TIMELINE = 1;
/** The load writes keys of the first range only (split keys h, p). */
const RANGE_START = '';
const SESSION_TIMEOUT_MS = 2000;
/** Issue #4's goal for the unavailability window after a leader crash (2 s sessions). */
const UNAVAILABILITY_MS_GOAL = 3_000;
/** The hard cap on any one leader-kill window (the goal is judged on the median of the kills). */
const UNAVAILABILITY_MS_MAX = 10_000;
/** Leader kills in the leader-kill test (a fresh leader each time; the median is judged). */
const LEADER_KILLS = 3;

const b = (s: string) => Buffer.from(s);

function say(msg: string): void {
  console.log(`[faults] ${msg}`);
}

function unary<Req, Res>(
  fn: (
    req: Req,
    metadata: Metadata,
    options: Partial<CallOptions>,
    cb: (err: ServiceError | null, res: Res) => void,
  ) => unknown,
  req: Req,
  timeoutMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    fn(req, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

function rangeA(map: RangeMapResponse) {
  const r = map.ranges.find((x) => Buffer.from(x.start).toString() === RANGE_START);
  if (r === undefined) throw new Error('no range starting at the empty key');
  return r;
}

describe('skv cluster: faults', () => {
  let cluster: TestCluster | null = null;
  const grpc: KVClient[] = [];

  afterEach(async () => {
    for (const g of grpc.splice(0)) g.close();
    await cluster?.stop();
    cluster = null;
  });

  async function start(extra: Partial<ClusterOptions> = {}): Promise<TestCluster> {
    cluster = await TestCluster.start({
      ...extra,
      nodes: 3,
      splitKeys: ['h', 'p'],
      sessionTimeoutMs: SESSION_TIMEOUT_MS,
      // To check that a test can fail: e.g. SKV_FAULTS_SERVER_ARGS=--unsafe-follower-strong-reads
      // must make the paused-leader test fail.
      // These tests reason about who leads after a fault: no hand-over back to the preferred
      // node (test/cluster-balance.test.ts tests that).
      serverArgs: [
        '--leader-handoff-ms',
        '0',
        ...(process.env.SKV_FAULTS_SERVER_ARGS ?? '').split(' ').filter((a) => a !== ''),
      ],
    });
    return cluster;
  }

  function unaryClient(address: string): KVClient {
    const c = new KVClient(address, credentials.createInsecure());
    grpc.push(c);
    return c;
  }

  /** The leader of the range under test as the given nodes report it, once it satisfies `ok`. */
  async function leaderOfA(
    c: TestCluster,
    via: string[],
    ok: (leader: string) => boolean,
    timeoutMs: number,
  ): Promise<{ leader: string; members: string[] }> {
    const probe = c.client({ servers: via, timeoutMs: 1000 });
    return await waitUntil(
      'a leader of range A',
      async () => {
        const r = rangeA(await probe.rangeMap({ timeoutMs: 1000 }));
        return r.leader !== '' && ok(r.leader)
          ? { leader: r.leader, members: [...r.members] }
          : null;
      },
      timeoutMs,
    );
  }

  /** Rows of [start, end) with values, as one node serves them (TIMELINE: its applied state). */
  async function scanAt(
    address: string,
    consistency: number,
    start: string,
    end: string,
  ): Promise<Map<string, string>> {
    const c = unaryClient(address);
    const rows = new Map<string, string>();
    const stream = c.scan(
      { start: b(start), end: b(end), limit: 100_000, consistency, columns: [b('c')] },
      // Short: a Scan the server fails (e.g. `unavailable` while the node boots) gets no status
      // back and waits for its deadline (kv-server's scan ends an error with call.destroy), which
      // would otherwise add seconds to the catch-up figures.
      { deadline: Date.now() + 1_500 },
    );
    for await (const msg of stream as AsyncIterable<ScanResponse>) {
      for (const row of msg.rows) {
        const cell = row.cells[0];
        if (cell !== undefined)
          rows.set(Buffer.from(row.key).toString(), Buffer.from(cell.value).toString());
      }
    }
    c.close();
    return rows;
  }

  function expectNothingLost(
    result: Awaited<ReturnType<typeof checkWrites>>,
    records: readonly WriteRecord[],
  ): void {
    const acked = records.filter((r) => r.outcome === 'ok').length;
    say(
      `checked ${result.checked} writes (${acked} acked): lost ${result.lost.length}, phantom ${result.phantom.length}`,
    );
    expect(result.lost.slice(0, 5)).toEqual([]);
    expect(result.phantom.slice(0, 5)).toEqual([]);
    expect(acked).toBeGreaterThan(0);
  }

  it('leader SIGKILLed under a steady write load, 3 times (a fresh leader each): the median unavailability window is under 3 s, nothing acked is lost', async () => {
    const c = await start();
    const kv = c.client({ timeoutMs: 10_000 });
    const all: WriteRecord[] = [];
    const windows: number[] = [];
    const killed: string[] = [];
    for (let round = 0; round < LEADER_KILLS; round++) {
      const { leader: old } = await leaderOfA(c, c.addresses, () => true, 15_000);
      const load = WriteLoad.start({
        client: kv,
        key: (w, i) => `a-kill${round}-${w}-${i}`,
        tag: `kill${round}`,
        writers: 8,
        durationMsMax: 25_000,
        // The window measures the client library alone: it re-routes on its own after a
        // deadline-exceeded (no extra range-map reads by the load).
        refreshRouteOnUnknown: false,
      });
      await load.waitForAcks(200, 0, 10_000);
      const killedAt = performance.now();
      await c.kill(old);
      killed.push(old);
      await load.waitForAcks(200, killedAt, 15_000);
      const records = await load.stop();
      all.push(...records);
      const u = unavailability(records, killedAt);
      const fresh = await leaderOfA(
        c,
        c.nodes.filter((n) => n.id !== old).map((n) => n.address),
        (l) => l !== old,
        10_000,
      );
      windows.push(u.maxGapMs);
      say(
        `leader kill ${round + 1}/${LEADER_KILLS}: unavailability (longest gap between acks) ${u.maxGapMs.toFixed(0)} ms ` +
          `[${(u.gapFromMs - killedAt).toFixed(0)}..${(u.gapToMs - killedAt).toFixed(0)} ms after the kill], ` +
          `kill -> first ack of a new write ${u.faultToFirstAckMs.toFixed(0)} ms; killed ${old}, new leader ${fresh.leader}; ${load.summary()}`,
      );
      expect(fresh.leader).not.toBe(old);
      // The hard cap per kill; the goal is judged on the median below.
      expect(u.maxGapMs).toBeLessThan(UNAVAILABILITY_MS_MAX);
      // Bring the killed node back and let it catch up, so that the next kill leaves a quorum
      // whose logs reach the last acknowledged write (else the next window includes a catch-up).
      c.spawn(c.node(old));
      const mark = `a-kill${round}-mark`;
      const v = await kv.put(mark, 'c', 'mark');
      const g = unaryClient(c.node(old).address);
      await waitUntil(
        `restarted ${old} serves the latest write`,
        async () =>
          Number(
            (
              await unary<GetRequest, GetResponse>(
                g.get.bind(g),
                { key: b(mark), column: b('c'), consistency: TIMELINE },
                1000,
              )
            ).version,
          ) === v,
        20_000,
      );
    }
    const sorted = [...windows].sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    say(
      `leader kill: windows ${windows.map((w) => w.toFixed(0)).join(', ')} ms; median ${median.toFixed(0)} ms ` +
        `(goal < ${UNAVAILABILITY_MS_GOAL} ms with a ${SESSION_TIMEOUT_MS} ms session); killed ${killed.join(', ')}`,
    );
    expect(new Set(killed).size).toBeGreaterThan(1);
    expect(median).toBeLessThan(UNAVAILABILITY_MS_GOAL);
    expectNothingLost(await checkWrites(kv, all), all);
  }, 150_000);

  it('follower SIGKILLed and restarted under load: it catches up and serves fresh timeline reads', async () => {
    const c = await start();
    const kv = c.client({ timeoutMs: 10_000 });
    const { leader, members } = await leaderOfA(c, c.addresses, () => true, 10_000);
    const follower = members.find((m) => m !== leader)!;
    const load = WriteLoad.start({
      client: kv,
      key: (w, i) => `a-fol-${w}-${i}`,
      tag: 'fol',
      durationMsMax: 25_000,
    });
    await load.waitForAcks(100, 0, 10_000);
    let t = performance.now();
    await c.kill(follower);
    say(`SIGKILLed follower ${follower} of range A`);
    // Two of three: writes go on without it.
    await load.waitForAcks(200, t, 10_000);
    t = performance.now();
    const restartedAt = t;
    await c.restart(follower);
    await load.waitForAcks(200, t, 10_000);
    const records = await load.stop();
    // Its applied state reaches the leader's: a timeline scan AT the follower (served from its
    // own store) equals a strong scan at the leader.
    const at = c.node(follower).address;
    const caughtUpFrom = performance.now();
    const want = await scanAt(c.node(leader).address, STRONG, 'a-fol-', 'a-fol.');
    await waitUntil(
      'the restarted follower catches up',
      async () => {
        const got = await scanAt(at, TIMELINE, 'a-fol-', 'a-fol.');
        return got.size === want.size && [...want].every(([k, v]) => got.get(k) === v);
      },
      20_000,
    );
    // The node's own clock (its log's epoch-ms times) for when it started serving this life.
    const started = (await c.logLines(follower)).filter((l) => l.msg === 'node started').pop();
    say(
      `follower restart: caught up ${Date.now() - Number(started?.time)} ms after it started (log); ` +
        `${want.size} rows; follower's timeline scan equal to the leader's ` +
        `${(performance.now() - caughtUpFrom).toFixed(0)} ms after the load stopped, ` +
        `${(performance.now() - restartedAt).toFixed(0)} ms after the restart`,
    );
    // And it serves the latest values: a fresh write shows up there within the commit period
    // (2 ticks of 50 ms; bounded here at 2 s for a loaded 2-core machine).
    const g = unaryClient(at);
    const v = await kv.put('a-fol-latest', 'c', 'latest');
    const putAt = performance.now();
    const seen = await waitUntil(
      'the follower serves the latest value',
      async () => {
        const r = await unary<GetRequest, GetResponse>(
          g.get.bind(g),
          { key: b('a-fol-latest'), column: b('c'), consistency: TIMELINE },
          1000,
        );
        return Number(r.version) === v ? performance.now() - putAt : null;
      },
      2_000,
      10,
    );
    say(`follower restart: a new write visible at the follower after ${seen.toFixed(0)} ms`);
    expectNothingLost(await checkWrites(kv, records), records);
  }, 90_000);

  it('node restarted with an emptied data directory rebuilds as a non-voter, then keeps every acked write', async () => {
    const c = await start();
    const kv = c.client({ timeoutMs: 10_000 });
    const { leader, members } = await leaderOfA(c, c.addresses, () => true, 10_000);
    const wiped = members.find((m) => m !== leader)!;
    const coord = new ZooKeeperCoordinator({
      connectString: c.zk.connectString,
      cluster: c.cluster,
    });
    await coord.start();
    try {
      const before = await coord.readIncarnation(wiped);
      expect(before).not.toBeNull();
      const load = WriteLoad.start({
        client: kv,
        key: (w, i) => `a-wipe-${w}-${i}`,
        tag: 'wipe',
        durationMsMax: 40_000,
      });
      await load.waitForAcks(200, 0, 10_000);
      await c.restart(wiped, { wipe: true });
      const restartedAt = performance.now();
      say(`restarted ${wiped} with an emptied data directory`);
      await waitUntil(
        'the wiped node says it rebuilds as a non-voter',
        async () =>
          (await c.logLines(wiped)).some((l) =>
            String(l.msg).includes('rebuilding as a non-voter'),
          ),
        15_000,
      );
      const after = await coord.readIncarnation(wiped);
      expect(after?.incarnation).toBe(before!.incarnation + 1);
      // Its range A replica came back as a non-voter…
      const rangeId = rangeA(await c.rangeMap()).rangeId;
      const recovered = await waitUntil(
        'the wiped node recovered its range A replica',
        async () => {
          // This life's lines only: those after it said it rebuilds.
          const lines = await c.logLines(wiped);
          const from = lines.findIndex((l) => String(l.msg).includes('rebuilding as a non-voter'));
          return lines.slice(from).find((l) => l.msg === 'cohort recovered' && l.range === rangeId);
        },
        15_000,
      );
      expect(recovered.voter).toBe(false);
      // …and becomes a voter once caught up (its durable hard state says so).
      await waitUntil(
        'the wiped node is a voter again',
        async () => {
          const hs = JSON.parse(
            await readFile(path.join(c.node(wiped).dataDir, 'hard-state.json'), 'utf8'),
          ) as Record<string, { voter: boolean }>;
          return hs[String(rangeId)]?.voter === true;
        },
        30_000,
      );
      say(
        `wiped node: voter again ${(performance.now() - restartedAt).toFixed(0)} ms after restart`,
      );
      await load.waitForAcks(100, performance.now(), 10_000);
      const records = await load.stop();
      const want = await scanAt(c.node(leader).address, STRONG, 'a-wipe-', 'a-wipe.');
      await waitUntil(
        'the wiped node catches up',
        async () => {
          const got = await scanAt(c.node(wiped).address, TIMELINE, 'a-wipe-', 'a-wipe.');
          return got.size === want.size && [...want].every(([k, v]) => got.get(k) === v);
        },
        20_000,
      );
      // Now make the rebuilt replica matter: kill the leader, so any quorum includes it.
      await c.kill(leader);
      const fresh = await leaderOfA(
        c,
        c.nodes.filter((n) => n.id !== leader).map((n) => n.address),
        (l) => l !== leader,
        15_000,
      );
      say(
        `wiped node: after killing leader ${leader}, new leader ${fresh.leader}; ${load.summary()}`,
      );
      const kv2 = c.client({
        servers: c.nodes.filter((n) => n.id !== leader).map((n) => n.address),
      });
      expectNothingLost(await checkWrites(kv2, records), records);
    } finally {
      await coord.close();
    }
  }, 120_000);

  it('all nodes SIGKILLed under load and restarted: every acknowledged write is there', async () => {
    const c = await start();
    const kv = c.client({ timeoutMs: 10_000 });
    // Load on all three ranges.
    const prefixes = ['a', 'i', 'q'];
    const load = WriteLoad.start({
      client: kv,
      key: (w, i) => `${prefixes[w % 3]}-all-${w}-${i}`,
      tag: 'all',
      writers: 9,
      durationMsMax: 20_000,
    });
    await load.waitForAcks(300, 0, 10_000);
    await Promise.all(c.nodes.map((n) => c.kill(n.id)));
    const records = await load.stop();
    say(`killed all nodes; ${load.summary()}`);
    for (const n of c.nodes) c.spawn(n);
    const restartFrom = performance.now();
    await c.waitForLeaders(30_000);
    say(`all nodes back with leaders after ${(performance.now() - restartFrom).toFixed(0)} ms`);
    const kv2 = c.client({ timeoutMs: 10_000 });
    expectNothingLost(await checkWrites(kv2, records), records);
  }, 90_000);

  it('ZooKeeper restarted under load, then down past the session timeout: nothing acknowledged is lost, service resumes', async () => {
    const c = await start();
    const kv = c.client({ timeoutMs: 10_000 });
    const load = WriteLoad.start({
      client: kv,
      key: (w, i) => `a-zk-${w}-${i}`,
      tag: 'zk',
      durationMsMax: 60_000,
    });
    await load.waitForAcks(200, 0, 10_000);
    // 1. A quick restart (SIGKILL, then start again on the same port and data).
    const t1 = performance.now();
    await c.zk.zk.restart();
    const up1 = performance.now();
    await load.waitForAcks(200, up1, 30_000);
    // 2. Down for longer than a session timeout: every node's leadership turns unsafe and the
    // cohorts step down; the sessions outlive the outage (ZooKeeper restarts their timers).
    const t2 = performance.now();
    await c.zk.zk.kill();
    await new Promise((r) => setTimeout(r, SESSION_TIMEOUT_MS * 1.5));
    await c.zk.zk.restart();
    const up2 = performance.now();
    await load.waitForAcks(200, up2, 30_000);
    const records = await load.stop();
    const u1 = unavailability(
      records.filter((r) => r.endMs < t2),
      t1,
    );
    const u2 = unavailability(records, t2);
    say(
      `ZooKeeper restart: down ${(up1 - t1).toFixed(0)} ms, longest gap between acks ` +
        `${u1.maxGapMs.toFixed(0)} ms; down ${(up2 - t2).toFixed(0)} ms: longest gap ` +
        `${u2.maxGapMs.toFixed(0)} ms, first ack ${(u2.gapToMs - up2).toFixed(0)} ms after it was back; ${load.summary()}`,
    );
    await c.waitForLeaders(20_000);
    expectNothingLost(await checkWrites(kv, records), records);
  }, 120_000);

  it('leader paused past its session timeout, then resumed: it never answers a strong read or acks a write', async () => {
    const c = await start();
    const kv = c.client({ timeoutMs: 10_000 });
    const { leader: old } = await leaderOfA(c, c.addresses, () => true, 10_000);
    const oldAddress = c.node(old).address;
    const others = c.nodes.filter((n) => n.id !== old).map((n) => n.address);
    const key = 'a-stop';
    await kv.put(key, 'c', 'old');
    // Connections to the old leader, ready before it stops.
    const g = unaryClient(oldAddress);
    const lc = c.client({ servers: [oldAddress], timeoutMs: 3_000 });
    expect((await lc.get(key, 'c')).value.toString()).toBe('old');
    await unary<GetRequest, GetResponse>(
      g.get.bind(g),
      { key: b(key), column: b('c'), consistency: STRONG },
      2000,
    );

    c.pause(old);
    const pausedAt = performance.now();
    const fresh = await leaderOfA(c, others, (l) => l !== old, 20_000);
    say(
      `paused leader ${old}; new leader ${fresh.leader} after ${(performance.now() - pausedAt).toFixed(0)} ms`,
    );
    const kvNew = c.client({ servers: others, timeoutMs: 10_000 });
    const vNew = await kvNew.put(key, 'c', 'new');

    // Requests sent while it is stopped wait in its socket buffers: it handles them first thing
    // after SIGCONT, before any timer of its own has run.
    type Answer = { what: string; ok: boolean; value?: string; err?: string };
    const answers: Promise<Answer>[] = [];
    const zombieWrites: { key: string; value: string; acked: Promise<boolean> }[] = [];
    let n = 0;
    const fire = () => {
      const i = n++;
      answers.push(
        unary<GetRequest, GetResponse>(
          g.get.bind(g),
          { key: b(key), column: b('c'), consistency: STRONG },
          3000,
        ).then(
          (r) => ({ what: 'unary get', ok: true, value: Buffer.from(r.value).toString() }),
          (e: ServiceError) => ({ what: 'unary get', ok: false, err: e.details }),
        ),
      );
      answers.push(
        lc.get(key, 'c', { timeoutMs: 3000 }).then(
          (r) => ({ what: 'session get', ok: true, value: r.value.toString() }),
          (e: Error) => ({ what: 'session get', ok: false, err: e.message }),
        ),
      );
      const wk = `a-zombie-${i}`;
      const wv = `zombie-${i}`;
      zombieWrites.push({
        key: wk,
        value: wv,
        acked: unary<PutRequest, PutResponse>(
          g.put.bind(g),
          { key: b(wk), column: b('c'), value: b(wv) },
          3000,
        ).then(
          () => true,
          () => false,
        ),
      });
      zombieWrites.push({
        key: `${wk}-s`,
        value: wv,
        acked: lc.put(`${wk}-s`, 'c', wv, { timeoutMs: 3000 }).then(
          () => true,
          () => false,
        ),
      });
    };
    for (let i = 0; i < 5; i++) fire();
    c.resume(old);
    const resumedAt = performance.now();
    // Keep asking for a while after the resume (bounded in count and time).
    while (performance.now() - resumedAt < 2_000 && n < 60) {
      fire();
      await new Promise((r) => setTimeout(r, 50));
    }
    const settled = await Promise.all(answers);
    const stale = settled.filter((a) => a.ok && a.value !== 'new');
    const served = settled.filter((a) => a.ok).length;
    say(
      `paused leader resumed: ${settled.length} strong reads at it, ${served} answered (all must read "new"), ` +
        `${settled.length - served} errors (${[...new Set(settled.filter((a) => !a.ok).map((a) => a.err))].slice(0, 3).join(' | ')})`,
    );
    expect(stale).toEqual([]);
    // A write acknowledged via the old leader must be real: the new leader has it.
    let acked = 0;
    for (const w of zombieWrites) {
      if (!(await w.acked)) continue;
      acked++;
      const got = await kvNew.get(w.key, 'c');
      expect({ key: w.key, value: got.value.toString() }).toEqual({ key: w.key, value: w.value });
    }
    say(
      `paused leader resumed: ${acked}/${zombieWrites.length} writes via it acked (each verified at the new leader)`,
    );
    expect((await kvNew.get(key, 'c')).version).toBe(vNew);
    c.checkAlive();
  }, 90_000);

  it('timeline reads never see a write that cannot commit (both followers paused)', async () => {
    const c = await start();
    const kv = c.client({ timeoutMs: 10_000 });
    const { leader, members } = await leaderOfA(c, c.addresses, () => true, 10_000);
    const followers = members.filter((m) => m !== leader);
    const key = 'a-uncommitted';
    const v1 = await kv.put(key, 'c', 'committed');
    const at = c.node(leader).address;
    const g = unaryClient(at);
    const lc = c.client({ servers: [at], timeoutMs: 10_000 });
    for (const f of followers) c.pause(f);
    try {
      const pending = lc.put(key, 'c', 'uncommitted', { timeoutMs: 1500 }).then(
        () => 'acked',
        (e: { code?: string }) => e.code ?? 'error',
      );
      // While it cannot commit, the leader's timeline reads show the committed value only, and
      // a strong read there never returns the uncommitted one.
      let reads = 0;
      const until = performance.now() + 1200;
      while (performance.now() < until && reads < 100) {
        const r = await unary<GetRequest, GetResponse>(
          g.get.bind(g),
          { key: b(key), column: b('c'), consistency: TIMELINE },
          1000,
        );
        expect(Buffer.from(r.value).toString()).toBe('committed');
        expect(Number(r.version)).toBe(v1);
        reads++;
        await new Promise((r) => setTimeout(r, 20));
      }
      const strong = await unary<GetRequest, GetResponse>(
        g.get.bind(g),
        { key: b(key), column: b('c'), consistency: STRONG },
        1000,
      ).then(
        (r) => Buffer.from(r.value).toString(),
        (e: ServiceError) => `error: ${e.details}`,
      );
      expect(strong).not.toBe('uncommitted');
      const outcome = await pending;
      say(
        `uncommitted write: ${reads} timeline reads at the leader saw only the committed value; strong read: ${strong}; write: ${outcome}`,
      );
      expect(outcome).not.toBe('acked');
    } finally {
      for (const f of followers) c.resume(f);
    }
    // Once the followers are back, every replica converges on the leader's answer.
    const final = await kv.get(key, 'c');
    for (const m of members) {
      const gm = unaryClient(c.node(m).address);
      await waitUntil(
        `replica ${m} converges`,
        async () => {
          const r = await unary<GetRequest, GetResponse>(
            gm.get.bind(gm),
            { key: b(key), column: b('c'), consistency: TIMELINE },
            1000,
          );
          return Number(r.version) === final.version;
        },
        10_000,
      ).catch(async (err: unknown) => {
        // Seen once in CI (2026-11-25, a replica still behind after 10 s): keep what the nodes
        // said, the directory goes with the cluster.
        throw new Error(
          `${err instanceof Error ? err.message : String(err)} (leader ${leader}, final version ${final.version})\n${await c.logTails(40)}`,
        );
      });
    }
    c.checkAlive();
  }, 60_000);

  it('timeline reads at a follower holding a proposed but uncommitted entry see the old value, and the new one within 2 s of its commit', async () => {
    // One follower ("holder") gets the entry and makes it durable, but its ack is dropped (the
    // test-only failpoint, switched on by its gate file); the other follower is paused. So the
    // leader cannot commit, while the holder has the entry in its log.
    const gates = await mkdtemp(path.join(os.tmpdir(), 'skv-gates-'));
    const gate = (id: string) => path.join(gates, `${id}.drop-acks`);
    try {
      const c = await start({
        nodeEnv: (id) => ({
          SKV_FAILPOINTS: 'test-only-follower-drop-acks=drop',
          SKV_FAILPOINTS_GATE: gate(id),
        }),
      });
      const kv = c.client({ timeoutMs: 10_000 });
      const { leader, members } = await leaderOfA(c, c.addresses, () => true, 10_000);
      const [holder, other] = members.filter((m) => m !== leader) as [string, string];
      const rangeId = rangeA(await c.rangeMap()).rangeId;
      const key = 'a-follower-uncommitted';
      const v1 = await kv.put(key, 'c', 'old');
      const g = unaryClient(c.node(holder).address);
      const timelineAtHolder = async () => {
        const r = await unary<GetRequest, GetResponse>(
          g.get.bind(g),
          { key: b(key), column: b('c'), consistency: TIMELINE },
          1000,
        );
        return { value: Buffer.from(r.value).toString(), version: Number(r.version) };
      };
      await waitUntil(
        'the holder serves the committed value',
        async () => (await timelineAtHolder()).version === v1,
        5_000,
        20,
      );
      const drops = async () =>
        (await readFile(c.node(holder).logFile, 'utf8'))
          .split('\n')
          .filter((l) =>
            l.startsWith(`failpoint test-only-follower-drop-acks: drop (range ${rangeId},`),
          ).length;
      const lc = c.client({ servers: [c.node(leader).address], timeoutMs: 10_000 });
      await writeFile(gate(holder), '');
      c.pause(other);
      let paused = true;
      try {
        const dropsBefore = await drops();
        let settled = false;
        const pending = lc.put(key, 'c', 'new', { timeoutMs: 8_000 }).then(
          (v) => ({ ok: true, version: v, code: '' }),
          (e: { code?: string }) => ({ ok: false, version: 0, code: e.code ?? String(e) }),
        );
        void pending.then(() => {
          settled = true;
        });
        // The holder made the new entry durable and "acked" it (the ack was dropped).
        await waitUntil(
          'the holder drops its ack of the new entry',
          async () => (await drops()) > dropsBefore,
          3_000,
          20,
        );
        let reads = 0;
        const until = performance.now() + 500;
        while (performance.now() < until && reads < 50) {
          expect(await timelineAtHolder()).toEqual({ value: 'old', version: v1 });
          reads++;
          await new Promise((r) => setTimeout(r, 10));
        }
        expect(settled).toBe(false);
        // Let it commit: the other follower comes back and acks.
        await rm(gate(holder));
        c.resume(other);
        paused = false;
        const resumedAt = performance.now();
        const seenMs = await waitUntil(
          'the holder serves the new value',
          async () => {
            const r = await timelineAtHolder();
            return r.value === 'new' && r.version > v1 ? performance.now() - resumedAt : null;
          },
          2_000,
          10,
        );
        const outcome = await pending;
        say(
          `follower holding an uncommitted entry: ${reads} timeline reads at ${holder} saw only the committed value; ` +
            `after the commit the new value was there in ${seenMs.toFixed(0)} ms; the write: ${outcome.ok ? `acked v${outcome.version}` : outcome.code}`,
        );
        expect(outcome.ok).toBe(true);
        expect((await timelineAtHolder()).version).toBe(outcome.version);
      } finally {
        if (paused) c.resume(other);
      }
      c.checkAlive();
    } finally {
      await rm(gates, { recursive: true, force: true });
    }
  }, 60_000);
});
