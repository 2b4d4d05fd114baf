// Commit-log retention with real processes (issue #6, found at 10 M rows): every node keeps one
// log for all its ranges, and a segment can go only when every range's records in it are in
// LevelDB tables (checkpointed). A range that took a few writes and then went idle never fills
// its memtable, so without help it would keep the oldest segment, and every segment after it,
// while the node's busy ranges fill the disk; a leader's barrier record alone did the same.
//
// What must hold: with --log-retain-bytes 0, once a busy range has filled a whole segment, each
// node flushes the idle ranges that hold the segment back (logged "flushing a range that holds
// back the commit log"), one with a write and one with only its leader's barrier; the old
// segment is deleted, the idle range's row is still there, and a restarted node has nothing of
// either range to replay. A range that saw a later election (a lost ZooKeeper session under load)
// is excused one replayed barrier per such election, and the flush line on a node.

import { afterEach, describe, expect, it } from 'vitest';
import { type LogLine, TestCluster } from './support/cluster.js';
import { waitUntil } from './support/wait.js';

/** Above one 64 MiB segment, in writes of ~1 MB. */
const BUSY_WRITES = 80;
const VALUE_BYTES = 1_000_000;

const SEGMENT_BYTES = 64 * 1024 * 1024;

async function scrape(address: string): Promise<string> {
  return await (await fetch(`http://${address}/metrics`)).text();
}

/** Sum of a metric's samples whose labels include every one of `labels` (`event="x"`). */
function sample(text: string, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const l of text.split('\n')) {
    if (l.startsWith(`${name}{`) && labels.every((x) => l.includes(x))) {
      sum += Number(l.slice(l.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

describe('skv cluster: commit-log retention', () => {
  let cluster: TestCluster | null = null;

  afterEach(async () => {
    await cluster?.stop();
    cluster = null;
  });

  it('an idle range that holds back the shared log is flushed, and the old segment goes', async () => {
    const c = await TestCluster.start({
      nodes: 3,
      splitKeys: ['m', 'y'],
      metrics: true,
      serverArgs: ['--log-retain-bytes', '0', '--leader-handoff-ms', '0'],
    });
    cluster = c;
    const map = await c.rangeMap();
    // [, m): one write, then idle. [m, y): only its leader's barrier record. [y, ): busy.
    const idle = map.ranges.find((r) => r.start.length === 0)!.rangeId;
    const empty = map.ranges.find((r) => r.start.toString() === 'm')!.rangeId;
    const kv = c.client({ timeoutMs: 20_000 });
    // Puts of a fixed value are idempotent: one whose outcome is unknown (its leader lost its
    // ZooKeeper session under load) is simply sent again.
    const put = async (key: string, value: string) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await kv.put(key, 'c', value);
        } catch (err) {
          if (attempt === 3 || (err as { code?: string }).code !== 'deadline-exceeded') throw err;
        }
      }
    };
    await put('a-idle', 'written once');
    const big = 'x'.repeat(VALUE_BYTES);
    for (let i = 0; i < BUSY_WRITES; i++) await put(`z-busy-${i}`, big);

    // The log is collected every 5 s; the flush it asks for lands before the next collection.
    // A node counts once it has appended more than a segment (a follower that fell behind under
    // load has not yet) and is down to one; one caught up by a snapshot instead never rolls.
    const caughtUpBySnapshot = new Set<string>();
    for (const n of c.nodes) {
      await waitUntil(
        `${n.id} filled a segment and keeps only its active one`,
        async () => {
          const text = await scrape(n.metricsAddress!);
          if (sample(text, 'skv_cohort_events_total', 'event="snapshot-install"') > 0) {
            caughtUpBySnapshot.add(n.id);
          } else if (sample(text, 'skv_log_bytes_total') <= SEGMENT_BYTES) {
            return false;
          }
          return sample(text, 'skv_log_segments') === 1;
        },
        60_000,
      );
    }

    // A later election (a leader that lost its ZooKeeper session under CI load) writes a new
    // barrier into the active segment, which no flush needs to cover, and may have found a node
    // with nothing of the range in the old segment. Only such a range (or a node caught up by
    // snapshot) is excused a node's flush line, and it may replay one barrier per later election.
    const lines = new Map<string, LogLine[]>();
    for (const n of c.nodes) lines.set(n.id, await c.logLines(n.id));
    const laterElections = new Map<number, number>();
    for (const rangeId of [idle, empty]) {
      const epochs = new Set<number>();
      for (const l of [...lines.values()].flat()) {
        if (l.msg === 'elected leader' && l.range === rangeId) epochs.add(Number(l.epoch));
      }
      expect(epochs.size).toBeGreaterThan(0);
      laterElections.set(rangeId, epochs.size - 1);
      if (epochs.size > 1) {
        console.log(`[log-retention] range ${rangeId} elected in epochs`, [...epochs]);
      }
    }
    for (const n of c.nodes) {
      const flushed = lines
        .get(n.id)!
        .filter((l) => l.msg === 'flushing a range that holds back the commit log')
        .map((l) => l.range);
      for (const rangeId of [idle, empty]) {
        if (laterElections.get(rangeId) === 0 && !caughtUpBySnapshot.has(n.id)) {
          expect(flushed, `${n.id} flushed range ${rangeId}`).toContain(rangeId);
        }
      }
    }
    expect((await kv.get('a-idle', 'c')).value.toString()).toBe('written once');

    // A restart replays nothing of either: their checkpoints cover their last records.
    await c.restart('n2');
    for (const rangeId of [idle, empty]) {
      const recovered = await waitUntil(
        `n2 recovered range ${rangeId} again`,
        async () => {
          const lines = (await c.logLines('n2')).filter(
            (l) => l.msg === 'cohort recovered' && l.range === rangeId,
          );
          return lines.length === 2 ? lines[1] : null;
        },
        30_000,
      );
      expect(recovered.entries).toBeLessThanOrEqual(laterElections.get(rangeId)!);
    }
  }, 180_000);

  it('a graceful stop flushes every range, so the restart replays nothing', async () => {
    const c = await TestCluster.start({ nodes: 3, splitKeys: ['h', 'p'], metrics: true });
    cluster = c;
    const kv = c.client();
    for (let i = 0; i < 300; i++) await kv.put(`${'cjr'[i % 3]}-${i}`, 'c', `v${i}`);
    // n1 must know that all it holds is committed (and so apply it) before it stops.
    const metrics = async () =>
      (await (await fetch(`http://${c.node('n1').metricsAddress}/metrics`)).text()).split('\n');
    const seqs = (lines: string[], name: string) =>
      lines.filter((l) => l.startsWith(`${name}{`)).map((l) => l.slice(l.lastIndexOf(' ') + 1));
    await waitUntil(
      'n1 applied all it holds',
      async () => {
        const lines = await metrics();
        const last = seqs(lines, 'skv_cohort_last_lsn_seq');
        return last.length === 3 && last.join() === seqs(lines, 'skv_cohort_applied_seq').join();
      },
      10_000,
    );
    await c.terminate('n1');
    const before = (await c.logLines('n1')).filter((l) => l.msg === 'memtables flushed');
    expect(before).toHaveLength(1);
    c.spawn(c.node('n1'));
    const recovered = await waitUntil(
      'n1 recovered its three ranges',
      async () => {
        const lines = (await c.logLines('n1')).filter((l) => l.msg === 'cohort recovered');
        return lines.length === 6 ? lines.slice(3) : null;
      },
      30_000,
    );
    expect(recovered.map((l) => l.entries)).toEqual([0, 0, 0]);
    expect((await kv.get('r-299', 'c')).value.toString()).toBe('v299');
  }, 120_000);
});
