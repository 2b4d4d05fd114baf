// Crash tests of the shared commit log with real processes (brief: log; TESTING.md B.2, B.5).
// A child appends concurrently for several cohorts (truncating, committing and garbage-collecting
// as it goes) and reports every resolved operation; we SIGKILL it at random moments, reopen the
// log here and check: every resolved append is present, intact and in order; nothing corrupt or
// voided is ever returned. Two modes:
// - plain: a SIGKILL keeps the OS page cache, so this checks the process-crash contract (commit
//   hints, written but not fsynced, survive too). It would still pass without fdatasync.
// - power-loss: the child's log runs on the power-loss emulation (SKV_TEST_POWER_LOSS=1,
//   src/log/power-loss-fs.ts) with a slow emulated flush, so a SIGKILL loses what a power cut
//   would, and most kills land inside a flush, some leaving a torn final batch. Only durable
//   (fdatasync'd) facts are checked; across the run at least one torn tail must be truncated.
// Then offline damage: a flipped byte mid-segment is corruption; a torn last record is truncated
// and the log keeps working.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { unreachable } from '../src/core/assert.js';
import { CorruptionError } from '../src/core/errors.js';
import { compareLsn, formatLsn, type Lsn, ZERO_LSN } from '../src/core/lsn.js';
import { CommitLog } from '../src/log/commit-log.js';
import { nodeLogFs } from '../src/log/fs-port.js';
import { POWER_LOSS_ENV, POWER_LOSS_SYNC_MS_ENV } from '../src/log/power-loss-fs.js';
import { scanSegment } from '../src/log/segment-scan.js';
import { crashPayload, mulberry32 } from './support/log-crash-shared.js';

const SEGMENT_BYTES = 256 * 1024;
const COHORTS = 6;
const ROUNDS_MIN = 30;
const ROUNDS_MAX = 120;
/** Per mode; the rounds go on past ROUNDS_MIN until this is spent. */
const BUDGET_MS = 30_000;
/**
 * The power-loss child's emulated flush time: the child spends most of its life inside a flush
 * (its own fdatasync takes ~0.25 ms), so most random kills land in one.
 */
const POWER_LOSS_SYNC_MS = 5;
/** Children started ahead of their round (each waits for "go" before it touches the log). */
const WARM_AHEAD = 2;
const CHILD = join(import.meta.dirname, 'support', 'log-crash-child.ts');

type CrashMode = 'plain' | 'power-loss';

interface CohortModel {
  /** Acknowledged live entries: seq -> epoch. */
  acked: Map<number, number>;
  pendingTruncate: number | null;
  checkpoint: number;
  /** The committed LSN the log promises to have after the crash (per mode, see applyLine). */
  committed: Lsn;
  /** Power-loss mode: commit hints written but not yet known to be fdatasync'd. */
  commitWritten: Lsn;
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
    m = {
      acked: new Map(),
      pendingTruncate: null,
      checkpoint: 0,
      committed: ZERO_LSN,
      commitWritten: ZERO_LSN,
    };
    models.set(c, m);
  }
  return m;
}

function maxLsn(a: Lsn, b: Lsn): Lsn {
  return compareLsn(a, b) >= 0 ? a : b;
}

/**
 * A durable append resolved: its batch was fdatasync'd, and so was every batch before it. A commit
 * hint reported earlier was written before that batch (the child prints "C" in the same turn its
 * write resolved, before the log can start the next write), so it is durable now.
 */
function commitHintsNowDurable(models: Map<number, CohortModel>): void {
  for (const m of models.values()) m.committed = maxLsn(m.committed, m.commitWritten);
}

function applyLine(models: Map<number, CohortModel>, line: string, mode: CrashMode): void {
  const [op, ...rest] = line.split(' ');
  const n = rest.map(Number);
  switch (op) {
    case 'A': {
      const [c, epoch, from, to] = n as [number, number, number, number];
      for (let s = from; s <= to; s++) model(models, c).acked.set(s, epoch);
      commitHintsNowDurable(models);
      return;
    }
    case 'T':
      model(models, n[0]!).pendingTruncate = n[1]!;
      return;
    case 't': {
      const m = model(models, n[0]!);
      for (const s of [...m.acked.keys()]) if (s > n[1]!) m.acked.delete(s);
      m.pendingTruncate = null;
      commitHintsNowDurable(models);
      return;
    }
    case 'C': {
      // A { sync: false } commit hint: written, not yet fdatasync'd. The log promises it survives
      // a process crash (plain mode) but not a power cut until a later sync covers it.
      const m = model(models, n[0]!);
      const lsn = { epoch: n[1]!, seq: n[2]! };
      switch (mode) {
        case 'plain':
          m.committed = maxLsn(m.committed, lsn);
          return;
        case 'power-loss':
          m.commitWritten = maxLsn(m.commitWritten, lsn);
          return;
        default:
          unreachable(mode, 'crash mode');
      }
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

function childEnv(dir: string, mode: CrashMode): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LOG_DIR: dir,
    LOG_COHORTS: String(COHORTS),
    LOG_SEGMENT_BYTES: String(SEGMENT_BYTES),
  };
  delete env[POWER_LOSS_ENV];
  delete env[POWER_LOSS_SYNC_MS_ENV];
  switch (mode) {
    case 'plain':
      return env;
    case 'power-loss':
      return {
        ...env,
        [POWER_LOSS_ENV]: '1',
        [POWER_LOSS_SYNC_MS_ENV]: String(POWER_LOSS_SYNC_MS),
      };
    default:
      return unreachable(mode, 'crash mode');
  }
}

interface WarmChild {
  readonly child: ChildProcess;
  /** Resolves once the child loaded its imports and waits for "go". */
  readonly warm: Promise<void>;
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Where its output lines go once it runs (null: before "go"). */
  sink: ((line: string) => void) | null;
  stderr: string;
}

/** Starts a child that loads its imports and then waits; it touches the log only after "go". */
function startChild(dir: string, mode: CrashMode): WarmChild {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: childEnv(dir, mode),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  let onWarm: () => void = () => {};
  const warm = new Promise<void>((resolve) => {
    onWarm = resolve;
  });
  const handle: WarmChild = {
    child,
    warm,
    closed: new Promise((resolve) =>
      child.on('close', (code, signal) => {
        children.delete(child);
        resolve({ code, signal });
      }),
    ),
    sink: null,
    stderr: '',
  };
  child.stderr!.on('data', (d: Buffer) => {
    handle.stderr += d.toString();
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line === 'warm') onWarm();
    else if (handle.sink !== null) handle.sink(line);
    else throw new Error(`child spoke before "go": ${line}`);
  });
  return handle;
}

async function stopChild(h: WarmChild): Promise<void> {
  h.child.kill('SIGKILL');
  await h.closed;
}

/** Waits for `p` or the child's exit, killing the child if neither comes within `ms`. */
async function orKill(h: WarmChild, p: Promise<void>, ms: number, what: string): Promise<void> {
  const deadline = setTimeout(() => h.child.kill('SIGKILL'), ms);
  const exited = await Promise.race([p.then(() => false), h.closed.then(() => true)]);
  clearTimeout(deadline);
  if (exited) throw new Error(`child exited before it was ${what}: ${h.stderr}`);
}

/** Lets a warm child run until it is killed `killAfterMs` after it opened the log. */
async function crashRound(
  h: WarmChild,
  seed: number,
  killAfterMs: number,
  models: Map<number, CohortModel>,
  mode: CrashMode,
): Promise<number> {
  let lines = 0;
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  h.sink = (line) => {
    lines++;
    applyLine(models, line, mode);
    if (line === 'ready') onReady();
  };
  await orKill(h, h.warm, 30_000, 'warm');
  h.child.stdin!.write(`go ${seed}\n`);
  await orKill(h, ready, 15_000, 'ready');
  await new Promise((r) => setTimeout(r, killAfterMs));
  h.child.kill('SIGKILL');
  const exit = await h.closed;
  expect(exit.signal, `child died on its own: ${h.stderr}`).toBe('SIGKILL');
  return lines;
}

async function verify(dir: string, models: Map<number, CohortModel>) {
  // The real port here, whatever the environment says: this is the machine after the crash.
  const warnings: string[] = [];
  const { log, report } = await CommitLog.open({
    dir,
    segmentSizeBytes: SEGMENT_BYTES,
    fs: nodeLogFs,
    onWarning: (message) => warnings.push(message),
  });
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
      m.commitWritten = ZERO_LSN; // a hint the crash lost must not be promoted by a later round
    }
  } finally {
    await log.close();
  }
  // A truncated tail is never routine: the log warns, naming the bytes it dropped.
  expect(warnings.length).toBe(report.tornTail === null ? 0 : 1);
  if (report.tornTail !== null) {
    expect(warnings[0]).toContain(`${report.tornTail.bytesZeroed} bytes`);
  }
  return { report, entries };
}

async function crashRun(mode: CrashMode) {
  const dir = await mkdtemp(join(tmpdir(), `skv-log-crash-${mode}-`));
  dirs.push(dir);
  const seed = Number(process.env.LOG_CRASH_SEED ?? Date.now() % 1_000_000);
  console.log(`log crash (${mode}) seed ${seed} (replay: LOG_CRASH_SEED=${seed})`);
  const rand = mulberry32(seed);
  const models = new Map<number, CohortModel>();
  const start = Date.now();
  let rounds = 0;
  let torn = 0;
  let tornBytes = 0;
  let tornRecords = 0;
  let lines = 0;
  let entries = 0;
  // Starting a child (node + tsx) takes about a second on a busy machine, longer than a round:
  // keep WARM_AHEAD children loading their imports while earlier ones run and are checked.
  const warm: WarmChild[] = Array.from({ length: WARM_AHEAD }, () => startChild(dir, mode));
  try {
    while (rounds < ROUNDS_MAX && (rounds < ROUNDS_MIN || Date.now() - start < BUDGET_MS)) {
      const cur = warm.shift()!;
      lines += await crashRound(cur, seed + rounds, 30 + Math.floor(rand() * 400), models, mode);
      warm.push(startChild(dir, mode));
      const v = await verify(dir, models);
      if (v.report.tornTail !== null) {
        torn++;
        tornBytes += v.report.tornTail.bytesZeroed;
        tornRecords += v.report.tornTail.recordsIntact;
      }
      entries = v.entries;
      rounds++;
    }
  } finally {
    for (const h of warm) await stopChild(h);
  }
  const segs = (await readdir(dir)).filter((n) => n.endsWith('.seg')).length;
  console.log(
    `log crash (${mode}): ${rounds} rounds in ${Date.now() - start} ms, ${lines} acknowledgements, ` +
      `${entries} live entries at the end, ${segs} segment files, ${torn} torn tails truncated ` +
      `(${tornBytes} bytes, ${tornRecords} whole records dropped)`,
  );
  expect(rounds).toBeGreaterThanOrEqual(ROUNDS_MIN);
  expect(lines).toBeGreaterThan(rounds * 10); // the child did real work between kills
  return { rounds, torn };
}

describe('commit log under SIGKILL', () => {
  it(`plain: every resolved append and commit hint survives ${ROUNDS_MIN}+ random SIGKILLs`, async () => {
    await crashRun('plain');
  }, 120_000);

  it(`power loss: every durable append survives ${ROUNDS_MIN}+ random power cuts, torn tails included`, async () => {
    const { rounds, torn } = await crashRun('power-loss');
    // The recovery path for a torn final batch was really exercised, by real crashes.
    expect(rounds).toBeGreaterThanOrEqual(ROUNDS_MIN);
    expect(torn, 'no kill tore a batch: the torn-tail path went untested').toBeGreaterThan(0);
  }, 120_000);
});

describe('commit log damaged offline', () => {
  async function childLog(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'skv-log-damage-'));
    dirs.push(dir);
    const models = new Map<number, CohortModel>();
    await crashRound(startChild(dir, 'plain'), 7, 400, models, 'plain');
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
