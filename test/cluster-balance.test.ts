// Leader balancing with real processes (replication/types.ts LeaderBalance): a real ZooKeeper and
// three `skv server` processes holding three ranges (split keys h and p), so that by chained
// declustering node n<i> is the preferred (first) member of range i.
//
// What must hold: after start every range is led by its preferred node; when that node is killed
// its range fails over, and once the node is back and caught up the leadership returns to it by
// a hand-over (logged "handing leadership over" by the node that gives it up), with a short gap
// in writes and nothing acknowledged lost. Figures are printed with the prefix "[balance]".

import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import type { RangeMapResponse } from '../src/rpc/generated/skv/v1/kv.js';
import { TestCluster } from './support/cluster.js';
import { checkWrites, unavailability, WriteLoad } from './support/load.js';
import { waitUntil } from './support/wait.js';

/** Short, so the test is quick: the default is 5 s. */
const HANDOFF_MS = 1000;
/** A hand-over's gap in acknowledged writes must stay under this (an election without a crash). */
const HANDOFF_GAP_MS_MAX = 2000;

function say(msg: string): void {
  console.log(`[balance] ${msg}`);
}

/** Every range is led by its preferred (first) member. */
function balanced(map: RangeMapResponse): boolean {
  return map.ranges.length === 3 && map.ranges.every((r) => r.leader === r.members[0]);
}

describe('skv cluster: leader balancing', () => {
  let cluster: TestCluster | null = null;

  afterEach(async () => {
    await cluster?.stop();
    cluster = null;
  });

  it('each range is led by its preferred node; after a failover the leadership is handed back, with a short gap and nothing lost', async () => {
    const c = await TestCluster.start({
      nodes: 3,
      splitKeys: ['h', 'p'],
      sessionTimeoutMs: 2000,
      serverArgs: ['--leader-handoff-ms', String(HANDOFF_MS)],
    });
    cluster = c;
    const leaders = await c.waitForLeaders(20_000, balanced);
    expect([...leaders.values()].sort()).toEqual(['n0', 'n1', 'n2']);
    const map = await c.rangeMap();
    const rangeA = map.ranges.find((r) => Buffer.from(r.start).length === 0)!;
    const preferred = rangeA.members[0]!;

    const kv = c.client({ timeoutMs: 10_000 });
    const load = WriteLoad.start({
      client: kv,
      key: (w, i) => `a-balance-${w}-${i}`,
      tag: 'balance',
      writers: 8,
      durationMsMax: 60_000,
    });
    await load.waitForAcks(200, 0, 10_000);
    await c.kill(preferred);
    const fallback = await waitUntil(
      'range A fails over',
      async () => {
        const r = (await c.rangeMap()).ranges.find((x) => x.rangeId === rangeA.rangeId)!;
        return r.leader !== '' && r.leader !== preferred ? r.leader : null;
      },
      15_000,
    );
    const failedOverAt = performance.now();
    await load.waitForAcks(200, failedOverAt, 15_000);
    // From here on, any gap in acks comes from the restart and the hand-over.
    const steadyAt = performance.now();

    c.spawn(c.node(preferred));
    await c.waitForLeaders(30_000, balanced);
    const back = performance.now();
    // The writes go on through the hand-over.
    await load.waitForAcks(200, back, 15_000);
    const records = await load.stop();

    const handoffs = (await c.logLines(fallback)).filter(
      (l) => l.msg === 'handing leadership over' && l.to === preferred,
    );
    expect(handoffs.length).toBeGreaterThan(0);
    const gap = unavailability(
      records.filter((r) => r.startMs >= steadyAt),
      steadyAt,
    );
    say(
      `range ${rangeA.rangeId}: ${preferred} killed, ${fallback} took over; ${preferred} restarted ` +
        `and led again ${(back - failedOverAt).toFixed(0)} ms after the failover (hand-over after ${HANDOFF_MS} ms of leading); ` +
        `longest gap in acks from the restart through the hand-over ${gap.maxGapMs.toFixed(0)} ms; ${load.summary()}`,
    );
    expect(gap.maxGapMs).toBeLessThan(HANDOFF_GAP_MS_MAX);
    const check = await checkWrites(kv, records);
    expect(check.lost.slice(0, 5)).toEqual([]);
    expect(check.phantom.slice(0, 5)).toEqual([]);
    expect(records.filter((r) => r.outcome === 'ok').length).toBeGreaterThan(600);
    kv.close();
  }, 120_000);

  it('with --leader-handoff-ms 0 a failover is not undone', async () => {
    const c = await TestCluster.start({
      nodes: 3,
      splitKeys: ['h', 'p'],
      sessionTimeoutMs: 2000,
      serverArgs: ['--leader-handoff-ms', '0'],
    });
    cluster = c;
    // n0 is range 0's preferred node; whoever leads range 0 once n0 is gone keeps it.
    await c.waitForLeaders(20_000);
    await c.kill('n0');
    const fallback = await waitUntil(
      'range 0 fails over',
      async () => {
        const r = (await c.rangeMap()).ranges.find((x) => x.rangeId === 0)!;
        return r.leader !== '' && r.leader !== 'n0' ? r.leader : null;
      },
      15_000,
    );
    c.spawn(c.node('n0'));
    await c.waitForLeaders(15_000);
    await new Promise((r) => setTimeout(r, 4 * HANDOFF_MS));
    const r0 = (await c.rangeMap()).ranges.find((x) => x.rangeId === 0)!;
    expect(r0.leader).toBe(fallback);
  }, 60_000);
});
