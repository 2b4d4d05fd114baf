// Benchmark of the shared commit log's group commit (brief: bench/log-bench.ts).
// Prints durable appends/s and p50/p99 append latency at 1, 8, 64 and 512 concurrent appenders
// (100-byte entries, one cohort per appender), beside the raw rate of a loop of
// 100-byte write + fdatasync on the same file system, measured in the same run.
// Run: node --import tsx bench/log-bench.ts [--seconds 5]
// Temp files go under the repository (same file system as the checkout) and are removed.

import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommitLog } from '../src/log/commit-log.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const RECORD_PAYLOAD_BYTES = 100;
const CONCURRENCY = [1, 8, 64, 512];
const secondsArg = process.argv.indexOf('--seconds');
const RUN_MS = (secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 5) * 1000;
const RAW_MS = 3000;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function rawFdatasyncRate(dir: string): Promise<number> {
  const fh = await open(join(dir, 'raw.bin'), 'w+');
  const sizeBytes = 1024 * 1024;
  await fh.write(Buffer.alloc(sizeBytes), 0, sizeBytes, 0); // preallocated, like a segment
  await fh.sync();
  const rec = Buffer.alloc(RECORD_PAYLOAD_BYTES, 7);
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < RAW_MS) {
    await fh.write(rec, 0, rec.length, (n * rec.length) % (sizeBytes - rec.length));
    await fh.datasync();
    n++;
  }
  const rate = n / ((performance.now() - start) / 1000);
  await fh.close();
  return rate;
}

async function runLog(dir: string, appenders: number) {
  const { log } = await CommitLog.open({ dir: join(dir, `log-${appenders}`) });
  const payload = Buffer.alloc(RECORD_PAYLOAD_BYTES, 0x5a);
  const latencies: number[] = [];
  const before = log.stats;
  let stop = false;
  const start = performance.now();
  const timer = setTimeout(() => {
    stop = true;
  }, RUN_MS);
  await Promise.all(
    Array.from({ length: appenders }, async (_, cohort) => {
      let seq = 0;
      while (!stop) {
        seq++;
        const t0 = performance.now();
        await log.append([{ type: 'entry', cohort, lsn: { epoch: 1, seq }, kind: 1, payload }]);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  clearTimeout(timer);
  const elapsedS = (performance.now() - start) / 1000;
  const after = log.stats;
  await log.close();
  const sorted = Float64Array.from(latencies).sort();
  const batches = after.batches - before.batches;
  return {
    appenders,
    appendsPerS: latencies.length / elapsedS,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    recordsPerBatch: (after.records - before.records) / Math.max(1, batches),
    fsyncsPerS: (after.fsyncs - before.fsyncs) / elapsedS,
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(REPO_ROOT, '.log-bench-'));
  try {
    const raw = await rawFdatasyncRate(dir);
    console.log(`temp dir: ${dir}`);
    console.log(
      `raw 100-byte write + fdatasync: ${raw.toFixed(0)}/s (${(1000 / raw).toFixed(3)} ms each)`,
    );
    console.log('appenders  appends/s   p50 ms   p99 ms  records/batch  fsyncs/s  x raw');
    for (const n of CONCURRENCY) {
      const r = await runLog(dir, n);
      console.log(
        `${String(n).padStart(9)}  ${r.appendsPerS.toFixed(0).padStart(9)}  ${r.p50Ms.toFixed(3).padStart(7)}  ${r.p99Ms
          .toFixed(3)
          .padStart(
            7,
          )}  ${r.recordsPerBatch.toFixed(1).padStart(13)}  ${r.fsyncsPerS.toFixed(0).padStart(8)}  ${(
          r.appendsPerS / raw
        ).toFixed(1)}`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
