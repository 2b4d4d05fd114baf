// Crash tests of the shared commit log with real processes (brief: log; TESTING.md B.2, B.5).
// A child appends concurrently for several cohorts (truncating, committing and garbage-collecting
// as it goes) and reports every resolved operation; we SIGKILL it at random moments, reopen the
// log here and check: every resolved append is present, intact and in order; nothing corrupt or
// voided is ever returned. Then offline damage: a flipped byte mid-segment is corruption; a torn
// last record is truncated and the log keeps working.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { CorruptionError } from '../src/core/errors.js';
import { compareLsn, formatLsn, type Lsn, ZERO_LSN } from '../src/core/lsn.js';
import { CommitLog } from '../src/log/commit-log.js';
import { scanSegment } from '../src/log/segment-scan.js';
import { crashPayload, mulberry32 } from './support/log-crash-shared.js';

const SEGMENT_BYTES = 256 * 1024;
const COHORTS = 6;
const ROUNDS_MIN = 30;
const ROUNDS_MAX = 60;
const BUDGET_MS = 40_000;
const CHILD = join(import.meta.dirname, 'support', 'log-crash-child.ts');

interface CohortModel {
  /** Acknowledged live entries: seq -> epoch. */
  acked: Map<number, number>;
  pendingTruncate: number | null;
  checkpoint: number;
  committed: Lsn;
}

const children = new Set<ChildProcess>();
const dirs: string[] = [];

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function model(models: Map<number, CohortModel>, c: number): CohortModel {
  let m = models.get(c);
  if (m === undefined) {
    m = { acked: new Map(), pendingTruncate: null, checkpoint: 0, committed: ZERO_LSN };
    models.set(c, m);
  }
  return m;
}

function applyLine(models: Map<number, CohortModel>, line: string): void {
  const [op, ...rest] = line.split(' ');
  const n = rest.map(Number);
  switch (op) {
    case 'A': {
      const [c, epoch, from, to] = n as [number, number, number, number];
      for (let s = from; s <= to; s++) model(models, c).acked.set(s, epoch);
      return;
    }
    case 'T':
      model(models, n[0]!).pendingTruncate = n[1]!;
      return;
    case 't': {
      const m = model(models, n[0]!);
      for (const s of [...m.acked.keys()]) if (s > n[1]!) m.acked.delete(s);
      m.pendingTruncate = null;
      return;
    }
    case 'C': {
      const m = model(models, n[0]!);
      const lsn = { epoch: n[1]!, seq: n[2]! };
      if (compareLsn(lsn, m.committed) > 0) m.committed = lsn;
      return;
    }
    case 'K': {
      const m = model(models, n[0]!);
      m.checkpoint = Math.max(m.checkpoint, n[1]!);
      return;
    }
    case 'G':
    case 'ready':
      return;
    default:
      throw new Error(`unexpected child output: ${line}`);
  }
}

/** Runs one child until it is killed after `killAfterMs` of appending; feeds its lines to the model. */
async function crashRound(
  dir: string,
  seed: number,
  killAfterMs: number,
  models: Map<number, CohortModel>,
) {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: {
      ...process.env,
      LOG_DIR: dir,
      LOG_SEED: String(seed),
      LOG_COHORTS: String(COHORTS),
      LOG_SEGMENT_BYTES: String(SEGMENT_BYTES),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  let lines = 0;
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  const ready = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines++;
      applyLine(models, line);
      if (line === 'ready') resolve();
    });
  });
  const startDeadline = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await Promise.race([ready, closed]);
  clearTimeout(startDeadline);
  await new Promise((r) => setTimeout(r, killAfterMs));
  child.kill('SIGKILL');
  const exit = await closed;
  children.delete(child);
  expect(exit.signal, `child died on its own: ${stderr}`).toBe('SIGKILL');
  return lines;
}

async function verify(dir: string, models: Map<number, CohortModel>) {
  const { log, report } = await CommitLog.open({ dir, segmentSizeBytes: SEGMENT_BYTES });
  let entries = 0;
  try {
    for (const [c, m] of models) {
      const view = log.cohort(c);
      const present = new Map<number, number>();
      let prev: number | null = null;
      for await (const e of view.readEntries(view.firstSeq)) {
        // In order, contiguous, intact (payload is a function of the LSN).
        if (prev !== null) expect(e.lsn.seq, `cohort ${c} order`).toBe(prev + 1);
        prev = e.lsn.seq;
        expect(Buffer.from(e.payload).equals(crashPayload(c, e.lsn.epoch, e.lsn.seq))).toBe(true);
        present.set(e.lsn.seq, e.lsn.epoch);
        entries++;
      }
      const pt = m.pendingTruncate;
      const tornBy = pt !== null && [...m.acked.keys()].some((s) => s > pt && !present.has(s));
      for (const [seq, epoch] of m.acked) {
        if (tornBy && seq > pt!) {
          // The truncate landed: nothing after it may be left (no append followed it).
          expect(present.has(seq), `cohort ${c} seq ${seq} survived its truncate`).toBe(false);
          continue;
        }
        if (!present.has(seq)) {
          // Only garbage collection may remove an acknowledged entry, and only below a checkpoint.
          expect(
            seq <= m.checkpoint && seq < view.firstSeq,
            `cohort ${c} lost acked ${epoch}.${seq}`,
          ).toBe(true);
          continue;
        }
        expect(present.get(seq), `cohort ${c} seq ${seq} has a voided epoch`).toBe(epoch);
      }
      expect(
        compareLsn(view.lastCommittedLsn, m.committed) >= 0,
        `cohort ${c} committed ${formatLsn(view.lastCommittedLsn)} < ${formatLsn(m.committed)}`,
      ).toBe(true);
      // The next round starts from what is in the log now.
      m.acked = present;
      m.pendingTruncate = null;
    }
  } finally {
    await log.close();
  }
  return { report, entries };
}

describe('commit log under SIGKILL', () => {
  it(`every resolved append survives ${ROUNDS_MIN}+ random SIGKILLs`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skv-log-crash-'));
    dirs.push(dir);
    const seed = Number(process.env.LOG_CRASH_SEED ?? Date.now() % 1_000_000);
    console.log(`log crash test seed ${seed} (replay: LOG_CRASH_SEED=${seed})`);
    const rand = mulberry32(seed);
    const models = new Map<number, CohortModel>();
    const start = Date.now();
    let rounds = 0;
    let torn = 0;
    let lines = 0;
    let entries = 0;
    while (rounds < ROUNDS_MAX && (rounds < ROUNDS_MIN || Date.now() - start < BUDGET_MS)) {
      lines += await crashRound(dir, seed + rounds, 30 + Math.floor(rand() * 400), models);
      const v = await verify(dir, models);
      if (v.report.tornTail !== null) torn++;
      entries = v.entries;
      rounds++;
    }
    const segs = (await readdir(dir)).filter((n) => n.endsWith('.seg')).length;
    console.log(
      `log crash: ${rounds} rounds in ${Date.now() - start} ms, ${lines} acknowledgements, ` +
        `${entries} live entries at the end, ${segs} segment files, ${torn} torn tails truncated`,
    );
    expect(rounds).toBeGreaterThanOrEqual(ROUNDS_MIN);
    expect(lines).toBeGreaterThan(rounds * 10); // the child did real work between kills
  }, 120_000);
});

describe('commit log damaged offline', () => {
  async function childLog(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'skv-log-damage-'));
    dirs.push(dir);
    const models = new Map<number, CohortModel>();
    await crashRound(dir, 7, 400, models);
    return dir;
  }

  async function dataSegments(dir: string): Promise<{ name: string; buf: Buffer; no: number }[]> {
    const out = [];
    for (const name of (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort()) {
      const no = Number(name.slice(0, -4));
      const buf = await readFile(join(dir, name));
      const scan = scanSegment(buf, no, null);
      if (scan.ok && scan.batches.length > 0) out.push({ name, buf, no });
    }
    return out;
  }

  it('a flipped byte mid-segment is reported as corruption (file, offset)', async () => {
    const dir = await childLog();
    const segs = await dataSegments(dir);
    expect(segs.length).toBeGreaterThan(0);
    const { name, buf, no } = segs[0]!;
    const scan = scanSegment(buf, no, null);
    if (!scan.ok) throw new Error('scan failed');
    const mid = scan.batches[Math.floor(scan.batches.length / 2)]!;
    expect(scan.batches.length).toBeGreaterThan(2);
    const at = mid.offset + Math.floor(mid.bytes / 2);
    buf[at] = buf[at]! ^ 0x40;
    await writeFile(join(dir, name), buf);
    const err = await CommitLog.open({ dir, segmentSizeBytes: SEGMENT_BYTES }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CorruptionError);
    expect(err).toMatchObject({ file: name, offset: mid.offset });
  }, 60_000);

  it('a torn last record is truncated; appends after reopen land and survive another reopen', async () => {
    const dir = await childLog();
    const segs = await dataSegments(dir);
    const { name, buf, no } = segs[segs.length - 1]!;
    const scan = scanSegment(buf, no, null);
    if (!scan.ok) throw new Error('scan failed');
    const last = scan.batches[scan.batches.length - 1]!;
    const lastRecord = last.records[last.records.length - 1]!;
    // Tear inside the last record: its second half never reached the disk.
    buf.fill(0, lastRecord.offset + Math.floor(lastRecord.bytes / 2), last.offset + last.bytes);
    await writeFile(join(dir, name), buf);

    const { log, report } = await CommitLog.open({ dir, segmentSizeBytes: SEGMENT_BYTES });
    expect(report.tornTail).toMatchObject({ file: name, offset: last.offset });
    const c = lastRecord.record.cohort;
    const view = log.cohort(c);
    const lastSeq = view.lastSeq;
    const epoch = Math.max(1, view.lastDurableLsn.epoch);
    await log.append([
      {
        type: 'entry',
        cohort: c,
        lsn: { epoch, seq: lastSeq + 1 },
        kind: 1,
        payload: crashPayload(c, epoch, lastSeq + 1),
      },
    ]);
    await log.close();

    const { log: again, report: r2 } = await CommitLog.open({
      dir,
      segmentSizeBytes: SEGMENT_BYTES,
    });
    try {
      expect(r2.tornTail).toBeNull();
      expect(again.cohort(c).lastDurableLsn).toEqual({ epoch, seq: lastSeq + 1 });
      const got = [];
      for await (const e of again.cohort(c).readEntries(lastSeq + 1)) got.push(e);
      expect(got.length).toBe(1);
      expect(Buffer.from(got[0]!.payload).equals(crashPayload(c, epoch, lastSeq + 1))).toBe(true);
    } finally {
      await again.close();
    }
  }, 60_000);
});
