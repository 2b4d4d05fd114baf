// A follower that falls behind catches up (S§6.1), against a real cluster: real ZooKeeper, three
// real `skv server` processes with small memtables (a flush, i.e. a checkpoint, every few dozen
// writes), one follower paused by SIGSTOP while writes go on, then resumed.
//
// Found by a 10-million-row load (2026-11-23): after a leader change, a follower a few thousand
// entries behind was behind the new leader's log start (its last checkpoint), so it needed a
// snapshot of the whole range; each nack of a propose sent meanwhile made the leader choose yet
// another snapshot (dozens of transfers per second, hundreds of megabytes each, buffered in the
// peer stream ahead of every other range's messages), and the cluster all but stopped. Now:
// - a cohort keeps `--log-catch-up-entries` entries before its checkpoint, so such a follower
//   catches up from the log (first test);
// - when only a snapshot will do, one transfer goes out, on its own stream, chunk by chunk as
//   the stream drains, and the follower writes each chunk as it comes (second test, with
//   --log-catch-up-entries 0).

import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  KVClient,
  type NodeStatusResponse,
  type ScanResponse,
} from '../src/rpc/generated/skv/v1/kv.js';
import { type ClusterOptions, TestCluster } from './support/cluster.js';
import { waitUntil } from './support/wait.js';

const STRONG = 0;
const TIMELINE = 1;
const ROWS = 1500;
/** Fewer in the snapshot test: its pause stays well under the core's snapshot retry (5 s). */
const ROWS_SNAPSHOT = 600;
/**
 * The snapshot test's memtable: its first flush (the leader's first checkpoint, ~380 rows of
 * 4 kB) lands well past what the paused follower may already hold unread in its socket
 * buffers, the leader's in-flight window of 256 entries (4 x entriesPerMessageMax). With a
 * smaller memtable, a leader whose writes were slow (CI, 2026-11-24) chose its snapshot at a
 * point inside that window: once resumed, the follower read those proposes first, held the
 * snapshot's entry and rightly did not install it (sent 1, installed 0), which is correct but
 * not what this test is about.
 */
const MEMTABLE_BYTES_SNAPSHOT = 1536 * 1024;

const b = (s: string) => Buffer.from(s);

function say(msg: string): void {
  console.log(`[catch-up] ${msg}`);
}

describe('skv cluster: a follower that falls behind catches up', () => {
  let cluster: TestCluster | null = null;

  afterEach(async () => {
    await cluster?.stop();
    cluster = null;
  });

  async function start(
    serverArgs: readonly string[],
    memtableBytes = 16 * 1024,
  ): Promise<TestCluster> {
    cluster = await TestCluster.start({
      nodes: 3,
      ranges: 1,
      memtableBytes,
      metrics: true,
      // Who leads must not change under the test (no hand-over to the preferred node).
      serverArgs: ['--leader-handoff-ms', '0', ...serverArgs],
    } satisfies ClusterOptions);
    return cluster;
  }

  function nodeStatus(address: string): Promise<NodeStatusResponse> {
    const c = new KVClient(address, credentials.createInsecure());
    return new Promise<NodeStatusResponse>((resolve, reject) =>
      c.nodeStatus({}, new Metadata(), { deadline: Date.now() + 2_000 }, (err, res) =>
        err ? reject(err as ServiceError) : resolve(res),
      ),
    ).finally(() => c.close());
  }

  /** Range 0's leader and one follower, once a leader serves. */
  async function roles(c: TestCluster): Promise<{ leader: string; follower: string }> {
    return await waitUntil(
      'a leader of range 0',
      async () => {
        const ids = c.nodes.map((n) => n.id);
        const statuses = await Promise.all(c.nodes.map((n) => nodeStatus(n.address)));
        const leader = statuses.find((s) =>
          s.cohorts.some((x) => x.rangeId === 0 && x.role === 'leader'),
        )?.nodeId;
        if (leader === undefined) return null;
        return { leader, follower: ids.find((id) => id !== leader)! };
      },
      30_000,
    );
  }

  async function appliedSeq(c: TestCluster, id: string): Promise<bigint> {
    const s = await nodeStatus(c.node(id).address);
    return s.cohorts.find((x) => x.rangeId === 0)?.appliedSeq ?? -1n;
  }

  /** A node's count of a protocol event for range 0 (skv_cohort_events_total). */
  async function events(c: TestCluster, id: string, event: string): Promise<number> {
    const text = await (await fetch(`http://${c.node(id).metricsAddress}/metrics`)).text();
    const line = text
      .split('\n')
      .find(
        (l) =>
          l.startsWith('skv_cohort_events_total{') &&
          l.includes(`event="${event}"`) &&
          l.includes('range="0"'),
      );
    return line === undefined ? 0 : Number(line.split(' ').pop());
  }

  async function scanAt(address: string, consistency: number): Promise<Map<string, string>> {
    const c = new KVClient(address, credentials.createInsecure());
    const rows = new Map<string, string>();
    try {
      const stream = c.scan(
        { start: b(''), end: b(''), limit: 100_000, consistency, columns: [b('c')] },
        { deadline: Date.now() + 5_000 },
      );
      for await (const msg of stream as AsyncIterable<ScanResponse>) {
        for (const row of msg.rows) {
          const cell = row.cells[0];
          if (cell !== undefined) {
            rows.set(Buffer.from(row.key).toString(), Buffer.from(cell.value).toString());
          }
        }
      }
    } finally {
      c.close();
    }
    return rows;
  }

  /** Pauses `follower`, writes ROWS rows of `valueBytes` (acked by the other two), resumes it. */
  async function writeWhilePaused(
    c: TestCluster,
    leader: string,
    follower: string,
    rows: number,
    valueBytes: number,
  ): Promise<void> {
    // Through the leader only: a client that asked the paused node would wait out its deadline.
    const kv = c.client({ timeoutMs: 10_000, servers: [c.node(leader).address] });
    c.pause(follower);
    try {
      for (let i = 0; i < rows; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) =>
            kv.put(
              `row${String(i + j).padStart(5, '0')}`,
              'c',
              `${i + j}:`.padEnd(valueBytes, 'v'),
            ),
          ),
        );
      }
    } finally {
      c.resume(follower);
    }
  }

  async function waitCaughtUp(
    c: TestCluster,
    leader: string,
    follower: string,
    rows: number,
  ): Promise<number> {
    const target = await appliedSeq(c, leader);
    const t0 = performance.now();
    await waitUntil(
      'the follower applies what the leader has',
      async () => (await appliedSeq(c, follower)) >= target,
      60_000,
    );
    const ms = performance.now() - t0;
    // Its own store (a timeline scan there) holds exactly the leader's rows.
    const want = await scanAt(c.node(leader).address, STRONG);
    expect(want.size).toBe(rows);
    const got = await scanAt(c.node(follower).address, TIMELINE);
    expect(got).toEqual(want);
    return ms;
  }

  it('a few thousand entries and many checkpoints behind: from the leader log, no snapshot', async () => {
    const c = await start([]);
    const { leader, follower } = await roles(c);
    const checkpointsBefore = await events(c, leader, 'checkpoint');
    await writeWhilePaused(c, leader, follower, ROWS, 300);
    const checkpoints = (await events(c, leader, 'checkpoint')) - checkpointsBefore;
    // The leader's log start moved past the paused follower's last entry many times over.
    expect(checkpoints).toBeGreaterThanOrEqual(10);
    const ms = await waitCaughtUp(c, leader, follower, ROWS);
    say(`${ROWS} rows, ${checkpoints} checkpoints while paused; caught up in ${ms.toFixed(0)} ms`);
    expect(await events(c, leader, 'snapshot-send')).toBe(0);
    expect(await events(c, follower, 'snapshot-install')).toBe(0);
  }, 120_000);

  it('when only a snapshot will do (--log-catch-up-entries 0): one transfer, installed, not one per nack', async () => {
    const c = await start(['--log-catch-up-entries', '0'], MEMTABLE_BYTES_SNAPSHOT);
    const { leader, follower } = await roles(c);
    // 4 kB values: the snapshot spans several 1 MiB chunks, each written on arrival.
    await writeWhilePaused(c, leader, follower, ROWS_SNAPSHOT, 4000);
    const ms = await waitCaughtUp(c, leader, follower, ROWS_SNAPSHOT);
    const installs = await events(c, follower, 'snapshot-install');
    const sent = (await c.logLines(leader)).filter((l) => l.msg === 'snapshot sent');
    say(
      `caught up by snapshot in ${ms.toFixed(0)} ms: ${sent.length} sent ` +
        `(${sent.map((l) => `${l.cells} cells in ${l.chunks} chunks at ${l.lsn}`).join(', ')}), ` +
        `${installs} installed`,
    );
    // One transfer: not one per nack, and not a second one because the log moved past the
    // first one's point while it was on its way. Under CI load once (2026-11-23) a first
    // transfer went unanswered after the follower resumed and the leader sent one more, at a
    // later point, which was installed: a retry, allowed once; a storm re-sends many.
    expect(sent.length).toBeGreaterThanOrEqual(1);
    expect(sent.length).toBeLessThanOrEqual(2);
    expect(new Set(sent.map((l) => l.lsn)).size).toBe(sent.length);
    expect(installs).toBe(1);
    for (const l of sent) {
      expect(Number(l.chunks)).toBeGreaterThanOrEqual(2);
      // Past the in-flight window (see MEMTABLE_BYTES_SNAPSHOT): the follower cannot hold it.
      expect(Number(String(l.lsn).split('.')[1])).toBeGreaterThan(256 + 10);
    }
  }, 120_000);
});
