// ZooKeeper-side faults of a real skv cluster: three real `skv server` processes whose ZooKeeper
// connections each go through their own test proxy (test/support/zk-withholding-proxy.ts), in
// front of a real ZooKeeper (2 s sessions).
//
// 1. Withheld replies (issue #4's report: a reply to a session's lone request held until the
//    session's next packet): with every node's replies withheld, a SIGKILLed leader is replaced
//    and the new leader serves writes without stalling on a heartbeat: the median of 3 kills (a
//    fresh leader each time; one kill alone is at the mercy of a loaded machine) must stay under
//    session timeout + 2 s. Measured here: medians 2654 and 2735 ms with the nudge, 7.3-9.7 s
//    per kill without it; the bound leaves room for a loaded CI machine, not for a stall. zk-session.ts's nudge is
//    what keeps the election's requests from waiting for the next heartbeat; the hidden
//    SKV_TEST_ONLY_ZK_NUDGE_AFTER_MS=0 (in this process's environment, passed on to the nodes)
//    turns it off to compare.
// 2. Session step-down on a live process (DESIGN.md §5 rule 6, PAPER-NOTES §4.5): the leader's
//    ZooKeeper link is partitioned while its peers and clients still reach it. Within 2/3 of the
//    session timeout, before ZooKeeper can expire its session and another node be elected, it
//    logs "leadership unsafe" and acknowledges no write after that.
//
// 3. ZooKeeper lost right after a claim: a new leader's claim (epoch + leader znode, one multi)
//    succeeds, a failpoint stalls the node before it reads the result back, and ZooKeeper is
//    SIGKILLed in that stall and restarted. The node steps down (no contact), its session
//    survives the restart and so does its leader znode; it must remove it once it sees it names
//    a follower, or nobody stands for election in that range again (CI at e97bc2e: a Jepsen
//    schedule whose range stayed leaderless for the last 90 s of the run).
//
// Measured figures are printed with the prefix "[zk-faults]". SKV_TEST_BIN as in
// test/support/cluster.ts.

import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type SkvClient } from '../src/client/index.js';
import { KVClient, type PutRequest, type PutResponse } from '../src/rpc/generated/skv/v1/kv.js';
import { TestCluster } from './support/cluster.js';
import { waitUntil } from './support/wait.js';
import { startWithholdingProxy, type WithholdingProxy } from './support/zk-withholding-proxy.js';

const SESSION_TIMEOUT_MS = 2000;
/** Leader kills in the withheld-reply test (the goal is judged on the median). */
const LEADER_KILLS = 3;
/** The hard cap on any one of them. */
const SERVING_MS_MAX = 10_000;
/** The node's leadership rule: no confirmed ZooKeeper contact for 2/3 of the session. */
const LEADERSHIP_GRACE_MS = Math.floor((SESSION_TIMEOUT_MS * 2) / 3);
/** The node checks the rule every tick (50 ms); allow two and the log write. */
const STEP_DOWN_SLACK_MS = 150;
/** How long a claimant stalls after ZooKeeper accepted its claim (test 3): under the leadership grace. */
const CLAIM_STALL_MS = 800;
/** ZooKeeper down for longer than the leadership grace: every leader steps down (test 3). */
const ZK_DOWN_MS = 2000;
/** Every range takes writes again within this of ZooKeeper's restart (test 3). */
const RECOVERY_MS_MAX = 20_000;

const b = (s: string) => Buffer.from(s);

function say(msg: string): void {
  console.log(`[zk-faults] ${msg}`);
}

describe('skv cluster: ZooKeeper faults', () => {
  let cluster: TestCluster | null = null;
  const proxies = new Map<string, WithholdingProxy>();
  const grpc: KVClient[] = [];
  const probes: SkvClient[] = [];

  afterEach(async () => {
    for (const g of grpc.splice(0)) g.close();
    for (const p of probes.splice(0)) p.close();
    await cluster?.stop();
    cluster = null;
    for (const p of proxies.values()) await p.close();
    proxies.clear();
  });

  /** A cluster whose node i reaches ZooKeeper through proxies.get(`n${i}`), passing all. */
  async function start(scope: 'all' | 'replies' = 'all'): Promise<TestCluster> {
    cluster = await TestCluster.start({
      nodes: 3,
      splitKeys: ['h', 'p'],
      sessionTimeoutMs: SESSION_TIMEOUT_MS,
      // Leaders change here only by the faults under test (no hand-over to the preferred node).
      serverArgs: ['--leader-handoff-ms', '0'],
      zkConnect: async (id, zk) => {
        const proxy = await startWithholdingProxy(zk, { scope });
        proxy.withhold = false;
        proxies.set(id, proxy);
        return proxy.connectString;
      },
    });
    return cluster;
  }

  /** The leader of the range holding "a…" as the given nodes report it, once `ok` holds. */
  async function leaderOfA(
    c: TestCluster,
    via: string[],
    ok: (leader: string) => boolean,
    timeoutMs: number,
  ): Promise<{ leader: string; members: string[]; rangeId: number }> {
    const probe = c.client({ servers: via, timeoutMs: 1000 });
    return await waitUntil(
      'a leader of range A',
      async () => {
        const map = await probe.rangeMap({ timeoutMs: 1000 });
        const r = map.ranges.find((x) => x.start.length === 0);
        return r !== undefined && r.leader !== '' && ok(r.leader)
          ? { leader: r.leader, members: [...r.members], rangeId: r.rangeId }
          : null;
      },
      timeoutMs,
      100,
    );
  }

  it('every ZooKeeper reply withheld until the next client packet: a SIGKILLed leader is replaced and writes are served without a stall (median of 3 kills under session + 2 s)', async () => {
    // Replies to requests are withheld (the reported behaviour); watch notifications pass unless
    // queued behind a held reply. SKV_ZK_FAULTS_WITHHOLD=all holds notifications too (harsher
    // than the report: the nudge cannot help a node that waits on a watch, only its heartbeat);
    // =none passes everything (the same run without the fault, for comparison).
    const mode = process.env.SKV_ZK_FAULTS_WITHHOLD ?? 'replies';
    const scope = mode === 'all' ? 'all' : 'replies';
    const c = await start(scope);
    const nudgeOff = process.env.SKV_TEST_ONLY_ZK_NUDGE_AFTER_MS === '0';
    const label = `withheld ${mode === 'all' ? 'replies and notifications' : mode === 'none' ? 'nothing' : 'replies'}${nudgeOff ? ' (nudge OFF)' : ''}`;
    const figures: number[] = [];
    for (let round = 0; round < LEADER_KILLS; round++) {
      const { leader: old } = await leaderOfA(c, c.addresses, () => true, 15_000);
      const others = c.nodes.filter((n) => n.id !== old).map((n) => n.address);
      // A probe client that retries every 50 ms at most (the library's default backoff grows to
      // 500 ms): the figure is when the new leader serves, not when a backed-off client retried.
      const kv = connect({ servers: others, timeoutMs: 10_000, backoffMaxMs: 50 });
      probes.push(kv);
      for (const p of proxies.values()) p.withhold = false;
      await kv.put(`a-withheld-${round}-warmup`, 'c', 'x');
      for (const p of proxies.values()) p.withhold = mode !== 'none';
      // The sessions live on with every reply withheld (heartbeats and nudges release them).
      await kv.put(`a-withheld-${round}-before`, 'c', 'x');
      const killedAt = performance.now();
      const killedAtEpochMs = Date.now(); // the clock of the nodes' log lines
      await c.kill(old);
      let attempts = 0;
      const servingMs = await waitUntil(
        'a new leader serves a write',
        async () => {
          attempts++;
          await kv.put(`a-withheld-${round}-after-${attempts}`, 'c', 'x', { timeoutMs: 500 });
          return performance.now() - killedAt;
        },
        15_000,
        20,
      );
      const fresh = await leaderOfA(c, others, (l) => l !== old, 5_000);
      const electedAt = (await c.logLines(fresh.leader))
        .filter((l) => l.msg === 'elected leader' && l.range === fresh.rangeId)
        .pop()?.time;
      say(
        `${label}, kill ${round + 1}/${LEADER_KILLS}: leader ${old} SIGKILLed; new leader ${fresh.leader} ` +
          `(elected ${electedAt === undefined ? '?' : `${electedAt - killedAtEpochMs} ms after the kill`}) ` +
          `served a write ${servingMs.toFixed(0)} ms after the kill`,
      );
      figures.push(servingMs);
      expect(fresh.leader).not.toBe(old);
      expect(servingMs).toBeLessThan(SERVING_MS_MAX);
      if (round === LEADER_KILLS - 1) break;
      // The killed node comes back (behind its proxy) and catches up before the next kill.
      c.spawn(c.node(old));
      const mark = `a-withheld-${round}-mark`;
      const v = await kv.put(mark, 'c', 'mark');
      const back = connect({ servers: [c.node(old).address], timeoutMs: 2_000 });
      probes.push(back);
      await waitUntil(
        `restarted ${old} serves the latest write`,
        async () => (await back.get(mark, 'c', { timeline: true })).version === v,
        20_000,
        100,
      );
    }
    const median = [...figures].sort((x, y) => x - y)[Math.floor(figures.length / 2)]!;
    say(
      `${label}: kill to first write served ${figures.map((f) => f.toFixed(0)).join(', ')} ms; ` +
        `median ${median.toFixed(0)} ms (bound ${SESSION_TIMEOUT_MS + 2000} ms)`,
    );
    expect(median).toBeLessThan(SESSION_TIMEOUT_MS + 2000);
    c.checkAlive();
  }, 150_000);

  it('a leader cut off from ZooKeeper (peers and clients still reach it) steps down within 2/3 of the session, before a new leader exists, and acks nothing after', async () => {
    const c = await start();
    const { leader: old } = await leaderOfA(c, c.addresses, () => true, 10_000);
    const others = c.nodes.filter((n) => n.id !== old).map((n) => n.address);
    // Writes sent to the old leader itself (unary; the stream client would re-route).
    const g = new KVClient(c.node(old).address, credentials.createInsecure());
    grpc.push(g);
    // Times are Date.now(), the clock of the nodes' log lines (one machine).
    const acks: { key: string; startMs: number; endMs: number }[] = [];
    let stop = false;
    const writer = async (w: number) => {
      for (let i = 0; !stop && i < 10_000; i++) {
        const key = `a-cut-${w}-${i}`;
        const startMs = Date.now();
        const ok = await new Promise<boolean>((resolve) =>
          g.put(
            { key: b(key), column: b('c'), value: b(key) } as PutRequest,
            new Metadata(),
            { deadline: Date.now() + 500 },
            (err: ServiceError | null, _res?: PutResponse) => resolve(err === null),
          ),
        );
        if (ok) acks.push({ key, startMs, endMs: Date.now() });
        else await new Promise((r) => setTimeout(r, 10));
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    const t0 = performance.now();
    try {
      await waitUntil('writes acked by the leader', async () => acks.length >= 50, 10_000, 20);
      const cutAt = Date.now();
      proxies.get(old)!.partitioned = true;
      const fresh = await leaderOfA(c, others, (l) => l !== old, 15_000);
      const electedAt = (await c.logLines(fresh.leader))
        .filter((l) => l.msg === 'elected leader' && l.range === fresh.rangeId && l.time >= cutAt)
        .map((l) => l.time)[0];
      const unsafeAt = (await c.logLines(old))
        .filter((l) => l.msg === 'leadership unsafe' && l.time >= cutAt)
        .map((l) => l.time)[0];
      say(`cut: a new leader seen ${(performance.now() - t0).toFixed(0)} ms into the test`);
      stop = true;
      await Promise.all(writers);
      say(`cut: writers stopped ${(performance.now() - t0).toFixed(0)} ms into the test`);
      expect(electedAt).toBeDefined();
      const lastAck = Math.max(...acks.filter((a) => a.endMs < electedAt!).map((a) => a.endMs));
      // A write sent after it logged the step-down reached it after the step-down (the log line
      // and the step-down happen in one synchronous tick), and so did one sent after the rule's
      // deadline (2/3 of the session and a little) whatever the log says: acknowledged before
      // another node was elected, it would have been acknowledged by a leader that should have
      // stepped down.
      const stepDownBy = Math.min(
        unsafeAt ?? Number.POSITIVE_INFINITY,
        cutAt + LEADERSHIP_GRACE_MS + STEP_DOWN_SLACK_MS,
      );
      const lateAcks = acks.filter((a) => a.startMs > stepDownBy && a.endMs < electedAt!);
      say(
        `ZooKeeper link of leader ${old} cut: "leadership unsafe" ${unsafeAt === undefined ? 'never logged' : `${unsafeAt - cutAt} ms after the cut`} ` +
          `(grace ${LEADERSHIP_GRACE_MS} ms), last ack via it ${lastAck - cutAt} ms, new leader ${fresh.leader} ` +
          `elected ${electedAt! - cutAt} ms after the cut; ${acks.length} writes acked via ${old}, ` +
          `${lateAcks.length} of those sent after its step-down acked before the election`,
      );
      expect(lateAcks).toEqual([]);
      expect(unsafeAt).toBeDefined();
      expect(unsafeAt! - cutAt).toBeLessThan(LEADERSHIP_GRACE_MS + STEP_DOWN_SLACK_MS);
      expect(unsafeAt!).toBeLessThan(electedAt!);
      // Every write it acknowledged is there (strong reads, 32 at a time).
      const kv = c.client({ servers: others, timeoutMs: 10_000 });
      const checkFrom = performance.now();
      const lost: string[] = [];
      for (let i = 0; i < acks.length; i += 32) {
        await Promise.all(
          acks.slice(i, i + 32).map(async (a) => {
            const got = await kv.get(a.key, 'c');
            if (got.value.toString() !== a.key) lost.push(a.key);
          }),
        );
      }
      say(
        `checked ${acks.length} acked writes in ${(performance.now() - checkFrom).toFixed(0)} ms`,
      );
      expect(lost).toEqual([]);
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    c.checkAlive();
  }, 90_000);
  it('ZooKeeper killed while a new leader stalls right after its claim: once ZooKeeper is back, every range has a leader again (no orphaned leader znode)', async () => {
    const c = await TestCluster.start({
      nodes: 3,
      splitKeys: ['h', 'p'],
      sessionTimeoutMs: SESSION_TIMEOUT_MS,
      serverArgs: ['--leader-handoff-ms', '0'],
      env: { SKV_FAILPOINTS: `epoch-write-after=sleep(${CLAIM_STALL_MS})` },
    });
    cluster = c;
    const leaders = await c.waitForLeaders(30_000);
    const victim = leaders.get(0)!;
    const survivors = c.nodes.filter((n) => n.id !== victim);
    const from = new Map(survivors.map((n) => [n.id, statSync(n.logFile).size]));
    await c.kill(victim);
    // The failpoint writes its line before it stalls: ZooKeeper dies inside the stall.
    const claimant = await waitUntil(
      'a survivor claiming a range',
      async () => {
        for (const n of survivors) {
          const text = (await readFile(n.logFile)).subarray(from.get(n.id)).toString('utf8');
          if (text.includes('failpoint epoch-write-after')) return n.id;
        }
        return null;
      },
      15_000,
      5,
    );
    await c.zk.zk.kill();
    await new Promise((r) => setTimeout(r, ZK_DOWN_MS));
    await c.zk.zk.restart();
    const restartedAt = performance.now();
    c.spawn(c.node(victim));
    const kv = c.client({ timeoutMs: 2000 });
    probes.push(kv);
    const recovered: string[] = [];
    for (const prefix of ['a', 'i', 'q']) {
      await waitUntil(
        `a write in the range of '${prefix}' after ZooKeeper's restart`,
        async () => {
          await kv.put(`${prefix}-after-zk`, 'c', 'v', { timeoutMs: 1000 });
          return true;
        },
        RECOVERY_MS_MAX,
        100,
      ).catch(async (err: unknown) => {
        throw new Error(`${String(err)}\n${await c.logTails(20)}`);
      });
      recovered.push(`${prefix} ${(performance.now() - restartedAt).toFixed(0)} ms`);
    }
    say(
      `ZooKeeper killed while ${claimant} stalled after its claim (leader ${victim} SIGKILLed): ` +
        `writes again after its restart in the ranges of ${recovered.join(', ')}`,
    );
    c.checkAlive();
  }, 120_000);
});
