// ZooKeeper-side faults of a real skv cluster: three real `skv server` processes whose ZooKeeper
// connections each go through their own test proxy (test/support/zk-withholding-proxy.ts), in
// front of a real ZooKeeper (2 s sessions).
//
// 1. Withheld replies (issue #4's report: a reply to a session's lone request held until the
//    session's next packet): with every node's replies withheld, a SIGKILLed leader is replaced
//    and the new leader serves writes within session timeout + 1 s. zk-session.ts's nudge is
//    what keeps the election's requests from waiting for the next heartbeat; the hidden
//    SKV_TEST_ONLY_ZK_NUDGE_AFTER_MS=0 (in this process's environment, passed on to the nodes)
//    turns it off to compare.
//
// Measured figures are printed with the prefix "[zk-faults]". SKV_TEST_BIN as in
// test/support/cluster.ts.

import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import type { KVClient } from '../src/rpc/generated/skv/v1/kv.js';
import { TestCluster } from './support/cluster.js';
import { startWithholdingProxy, type WithholdingProxy } from './support/zk-withholding-proxy.js';

const SESSION_TIMEOUT_MS = 2000;

function say(msg: string): void {
  console.log(`[zk-faults] ${msg}`);
}

async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
  intervalMs = 20,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown = null;
  while (performance.now() < deadline) {
    try {
      const v = await probe();
      if (v !== null && v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (last: ${String(last)})`);
}

interface LogLine {
  readonly time: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

async function logLines(c: TestCluster, id: string): Promise<LogLine[]> {
  const text = await readFile(c.node(id).logFile, 'utf8').catch(() => '');
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // a line being written
    }
  }
  return out;
}

describe('skv cluster: ZooKeeper faults', () => {
  let cluster: TestCluster | null = null;
  const proxies = new Map<string, WithholdingProxy>();
  const grpc: KVClient[] = [];

  afterEach(async () => {
    for (const g of grpc.splice(0)) g.close();
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

  it('every ZooKeeper reply withheld until the next client packet: a SIGKILLed leader is replaced and writes are served within session + 1 s', async () => {
    // Replies to requests are withheld (the reported behaviour); watch notifications pass unless
    // queued behind a held reply. SKV_ZK_FAULTS_WITHHOLD=all holds notifications too (harsher
    // than the report: the nudge cannot help a node that waits on a watch, only its heartbeat);
    // =none passes everything (the same run without the fault, for comparison).
    const mode = process.env.SKV_ZK_FAULTS_WITHHOLD ?? 'replies';
    const scope = mode === 'all' ? 'all' : 'replies';
    const c = await start(scope);
    const nudgeOff = process.env.SKV_TEST_ONLY_ZK_NUDGE_AFTER_MS === '0';
    const { leader: old } = await leaderOfA(c, c.addresses, () => true, 10_000);
    const others = c.nodes.filter((n) => n.id !== old).map((n) => n.address);
    const kv = c.client({ servers: others, timeoutMs: 10_000 });
    await kv.put('a-withheld-warmup', 'c', 'x');
    for (const p of proxies.values()) p.withhold = mode !== 'none';
    // The sessions live on with every reply withheld (heartbeats and nudges release them).
    await kv.put('a-withheld-before', 'c', 'x');
    const killedAt = performance.now();
    await c.kill(old);
    let attempts = 0;
    const servingMs = await waitUntil(
      'a new leader serves a write',
      async () => {
        attempts++;
        await kv.put(`a-withheld-after-${attempts}`, 'c', 'x', { timeoutMs: 500 });
        return performance.now() - killedAt;
      },
      15_000,
    );
    const fresh = await leaderOfA(c, others, (l) => l !== old, 5_000);
    const elected = (await logLines(c, fresh.leader)).filter(
      (l) => l.msg === 'elected leader' && l.range === fresh.rangeId,
    );
    say(
      `withheld ${mode === 'all' ? 'replies and notifications' : mode === 'none' ? 'nothing' : 'replies'}${nudgeOff ? ' (nudge OFF)' : ''}: leader ${old} SIGKILLed; new leader ${fresh.leader} ` +
        `served a write ${servingMs.toFixed(0)} ms after the kill (goal < ${SESSION_TIMEOUT_MS + 1000} ms); ` +
        `${elected.length} 'elected leader' lines at it`,
    );
    expect(fresh.leader).not.toBe(old);
    expect(servingMs).toBeLessThan(SESSION_TIMEOUT_MS + 1000);
    c.checkAlive();
  }, 90_000);
});
