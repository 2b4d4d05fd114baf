// Child process for test/log-crash.test.ts: once its imports are loaded it prints "warm" and
// waits for "go <seed>" on stdin (so the test can start the next child while it checks the last
// one); then it opens the commit log in LOG_DIR and appends for several cohorts concurrently
// until it is SIGKILLed. Every resolved operation is reported on stdout (synchronous on a pipe on
// Linux) BEFORE the next one of that cohort starts:
//   A c epoch fromSeq toSeq   entries resolved (durable)
//   T c afterSeq              about to truncate (intent: the truncate may land without a "t")
//   t c afterSeq              truncate resolved
//   C c epoch seq             commit record resolved ({ sync: false }: written, not fsynced)
//   K c seq                   about to set checkpoint (GC may then drop entries <= seq)
//   G n                       a GC pass deleted n segments
// The log's file port comes from the environment (SKV_TEST_POWER_LOSS=1: the power-loss
// emulation, src/log/power-loss-fs.ts). Exits by itself when stdin closes (the test runner died).

import { createInterface } from 'node:readline';
import { CommitLog } from '../../src/log/commit-log.js';
import { crashPayload, mulberry32 } from './log-crash-shared.js';

const dir = process.env.LOG_DIR;
const cohorts = Number(process.env.LOG_COHORTS ?? '6');
const segmentSizeBytes = Number(process.env.LOG_SEGMENT_BYTES ?? String(256 * 1024));
if (dir === undefined) throw new Error('LOG_DIR is required');

const out = (line: string) => process.stdout.write(`${line}\n`);
const input = createInterface({ input: process.stdin });
input.on('close', () => process.exit(3));
out('warm');
const seed = await new Promise<number>((resolve) => {
  input.on('line', (line) => {
    const [word, arg] = line.split(' ');
    if (word === 'go') resolve(Number(arg));
  });
});

const rand = mulberry32(seed);
const { log } = await CommitLog.open({ dir, segmentSizeBytes });

async function cohortWorker(c: number): Promise<never> {
  const view = log.cohort(c);
  let seq = view.lastSeq;
  let epoch = Math.max(1, view.lastDurableLsn.epoch);
  let committedSeq = view.lastCommittedLsn.seq;
  for (;;) {
    const r = rand();
    if (r < 0.03 && seq - 3 >= committedSeq && seq - 3 >= view.firstSeq) {
      const afterSeq = seq - 1 - Math.floor(rand() * 3);
      const lsn = view.entryLsnAt(afterSeq);
      if (lsn === null) continue;
      out(`T ${c} ${afterSeq}`);
      await view.truncateAfter(afterSeq, lsn);
      out(`t ${c} ${afterSeq}`);
      seq = afterSeq;
      epoch++;
    } else if (r < 0.08 && seq > committedSeq) {
      const lsn = view.entryLsnAt(seq);
      if (lsn === null) continue;
      await view.markCommitted(lsn);
      committedSeq = seq;
      out(`C ${c} ${lsn.epoch} ${lsn.seq}`);
    } else {
      const n = 1 + Math.floor(rand() * 3);
      const records = Array.from({ length: n }, (_, i) => ({
        type: 'entry' as const,
        cohort: c,
        lsn: { epoch, seq: seq + 1 + i },
        kind: 1,
        payload: crashPayload(c, epoch, seq + 1 + i),
      }));
      await log.append(records);
      out(`A ${c} ${epoch} ${seq + 1} ${seq + n}`);
      seq += n;
    }
  }
}

async function gcWorker(): Promise<never> {
  for (;;) {
    await new Promise((r) => setTimeout(r, 20 + Math.floor(rand() * 60)));
    for (let c = 0; c < cohorts; c++) {
      const v = log.cohort(c);
      const cp = Math.min(v.lastCommittedLsn.seq, v.lastSeq - 10);
      if (cp > (v.checkpointSeq ?? 0)) {
        out(`K ${c} ${cp}`);
        log.setCheckpoint(c, cp);
      }
    }
    const g = await log.collectGarbage();
    out(`G ${g.deletedSegments.length}`);
  }
}

out('ready');
await Promise.all([...Array.from({ length: cohorts }, (_, c) => cohortWorker(c)), gcWorker()]);
