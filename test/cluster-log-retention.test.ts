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
// either range to replay.

import { afterEach, describe, expect, it } from 'vitest';
import { type LogLine, TestCluster } from './support/cluster.js';
import { waitUntil } from './support/wait.js';

/** Above one 64 MiB segment, in writes of ~1 MB. */
const BUSY_WRITES = 80;
const VALUE_BYTES = 1_000_000;

async function segments(address: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('skv_log_segments{'));
  if (line === undefined) throw new Error('no skv_log_segments sample');
  return Number(line.slice(line.lastIndexOf(' ') + 1));
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
    await kv.put('a-idle', 'c', 'written once');
    const big = 'x'.repeat(VALUE_BYTES);
    for (let i = 0; i < BUSY_WRITES; i++) await kv.put(`z-busy-${i}`, 'c', big);

    // The log is collected every 5 s; the flush it asks for lands before the next collection.
    for (const n of c.nodes) {
      await waitUntil(
        `${n.id} keeps only its active segment`,
        async () => {
          return (await segments(n.metricsAddress!)) === 1;
        },
        30_000,
      );
    }
    for (const n of c.nodes) {
      const lines = await c.logLines(n.id);
      const flushed = lines.filter(
        (l: LogLine) => l.msg === 'flushing a range that holds back the commit log',
      );
      expect(flushed.map((l) => l.range)).toContain(idle);
      expect(flushed.map((l) => l.range)).toContain(empty);
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
      expect(recovered.entries).toBe(0);
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
