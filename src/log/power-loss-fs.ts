// Power-loss emulation for the commit log's file port (TEST ONLY; TESTING.md B.5: the LazyFS idea
// of Jepsen's `--lazyfs`, without FUSE). Selected by env SKV_TEST_POWER_LOSS=1 where the default
// port is chosen (`defaultLogFs`); when the variable is unset the log gets `nodeLogFs` itself and
// nothing here runs (zero cost when off).
//
// What it does: every `write` that a `datasync` has not yet covered is kept in PROCESS MEMORY, not
// in the file; reads see it (overlaid on the file's bytes), the file does not. `datasync` writes the
// kept writes out, in order, then fdatasyncs. So a SIGKILL of the process loses exactly what a power
// cut loses (the unsynced writes), and a SIGKILL in the middle of a `datasync` leaves a prefix of the
// batch being synced in the file (the log keeps at most one batch unsynced, so only the final batch
// can be torn; FORMAT.md, commit-log.ts header). `close` DROPS kept writes: an unsynced
// write to a closed file is what a later power cut would lose (the log never closes with one).
//
// Optional `syncDelayMs` (env SKV_TEST_POWER_LOSS_SYNC_MS): each datasync takes that long,
// emulating a disk whose flush takes that long (these VMs fdatasync in ~0.25 ms; a SATA SSD or a
// cloud volume takes 1–10 ms). The disk is caught mid-flush: before the wait a random prefix of
// the kept writes (cut at a 512-byte sector boundary of the file, 0 to all of it) is already in
// the file, the rest follows after the wait. So a SIGKILL during the wait leaves a torn batch, as
// a power cut during a flush can (the log's recovery must truncate it: FORMAT.md "Recovery").
// Every write is still durable once its datasync returned.
//
// Not covered, on purpose:
// - Sectors of one flush reaching the disk out of order (a real disk may): a torn flush here is
//   always a prefix of the batch in write order.
// - Metadata (create, rename, unlink, mkdir) passes straight through: the log fdatasyncs a segment
//   before renaming it into place and fsyncs the directory after every rename and unlink it relies
//   on, and segments are preallocated (appends never change a file's size), so there is no window
//   in which the log relies on metadata a power cut could undo.
// - LevelDB (classic-level) and the hard-state / node-marker files do not go through this port, so
//   their unsynced writes survive a SIGKILL as they always do. That is a LEGAL power-cut outcome
//   (the kernel may have written those pages back before the cut), just not the harshest one:
//   hard-state files are fsynced (durable-file.ts) before the node acts on them, so a power cut
//   cannot take back anything a node relied on; LevelDB writes are unsynced by design and the log
//   is only trimmed behind a synced table flush (level-table-store.ts header), so losing them would
//   exercise log replay, not the follower-force-before-ack rule this emulation exists to test. A
//   bug that lets the log be trimmed behind UNSYNCED LevelDB data would go unnoticed here.
//
// Bounds: unsynced bytes per file are capped (UNSYNCED_BYTES_PER_FILE_MAX, asserted): the log keeps
// at most one batch (≤ 4 MiB) or one segment being prepared (64 MiB of zeros) unsynced per file.

import { assert } from '../core/assert.js';
import { type LogFile, type LogFs, nodeLogFs } from './fs-port.js';

export const POWER_LOSS_ENV = 'SKV_TEST_POWER_LOSS';
export const POWER_LOSS_SYNC_MS_ENV = 'SKV_TEST_POWER_LOSS_SYNC_MS';
export const UNSYNCED_BYTES_PER_FILE_MAX = 256 * 1024 * 1024;
/** A torn flush is cut at a boundary of this size in the file (the disk's atomic write unit). */
export const TORN_WRITE_SECTOR_BYTES = 512;

export interface PowerLossOptions {
  /** Wait this long in every datasync before anything reaches the file (default 0). */
  readonly syncDelayMs?: number;
  /** Picks how much of a flush is in the file before its wait ([0, 1); default Math.random). */
  readonly random?: () => number;
}

export interface PowerLossStats {
  /** Writes held in memory right now, over every open file of this port. */
  readonly unsyncedWrites: number;
  readonly unsyncedBytes: number;
  /** Kept writes dropped by `close` (a clean log close drops none). */
  readonly droppedWrites: number;
}

interface KeptWrite {
  readonly position: number;
  readonly data: Buffer;
}

class PowerLossLogFile implements LogFile {
  private kept: KeptWrite[] = [];
  private keptBytes = 0;
  /** Taken by a datasync that is writing them out: still visible to reads until it is done. */
  private syncing: KeptWrite[] = [];
  private syncChain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly inner: LogFile,
    private readonly port: PowerLossPort,
  ) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    assert(!this.closed, 'write to a closed log file');
    assert(Number.isSafeInteger(position) && position >= 0, 'write position is an offset');
    if (data.length === 0) return;
    // Copy: the caller may reuse its buffer (prepareSegment does) once write() resolved.
    this.kept.push({ position, data: Buffer.from(data) });
    this.keptBytes += data.length;
    this.port.noteKept(1, data.length);
    assert(
      this.keptBytes <= UNSYNCED_BYTES_PER_FILE_MAX,
      `power-loss emulation: more than ${UNSYNCED_BYTES_PER_FILE_MAX} unsynced bytes in one file`,
    );
  }

  async read(into: Uint8Array, length: number, position: number): Promise<number> {
    // Taken before the file read: a datasync finishing meanwhile moves these into the file, and
    // laying them over again is harmless (the log never rewrites bytes), missing them would not be.
    const overlay = [...this.syncing, ...this.kept];
    let n = await this.inner.read(into, length, position);
    if (overlay.length === 0) return n;
    // The file as this process sees it: its bytes, extended by kept writes past its end (a gap
    // between the file's end and a kept write reads as zeros, like a sparse file), then every
    // kept write laid over it in write order.
    const end = Math.min(position + length, Math.max(position + n, endOf(overlay)));
    if (end - position > n) {
      into.fill(0, n, end - position);
      n = end - position;
    }
    for (const w of overlay) {
      const from = Math.max(position, w.position);
      const to = Math.min(position + n, w.position + w.data.length);
      if (from >= to) continue;
      into.set(w.data.subarray(from - w.position, to - w.position), from - position);
    }
    return n;
  }

  datasync(): Promise<void> {
    assert(!this.closed, 'datasync of a closed log file');
    // One at a time, in call order: a later datasync covers what an earlier one took, too.
    const run = this.syncChain.then(() => this.syncOnce());
    this.syncChain = run.catch(() => undefined);
    return run;
  }

  private async syncOnce(): Promise<void> {
    const delayMs = this.port.syncDelayMs;
    // Take the kept writes first: writes made while we write them out belong to the next sync.
    const batch = this.kept;
    this.kept = [];
    let bytes = 0;
    for (const w of batch) bytes += w.data.length;
    this.keptBytes -= bytes;
    this.port.noteKept(-batch.length, -bytes);
    assert(this.syncing.length === 0, 'one datasync at a time per log file');
    this.syncing = batch;
    try {
      if (delayMs > 0) {
        // Caught mid-flush: a prefix is on the disk before the wait, the rest after it.
        const [early, late] = splitAtSector(batch, this.port.random());
        for (const w of early) await this.inner.write(w.data, w.position);
        await new Promise<void>((resolve) => setTimeout(resolve, delayMs));
        for (const w of late) await this.inner.write(w.data, w.position);
      } else {
        for (const w of batch) await this.inner.write(w.data, w.position);
      }
    } finally {
      this.syncing = [];
    }
    await this.inner.datasync();
  }

  async sizeBytes(): Promise<number> {
    const overlay = [...this.syncing, ...this.kept];
    return Math.max(await this.inner.sizeBytes(), endOf(overlay));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.port.noteDropped(this.kept.length, this.keptBytes);
    this.kept = [];
    this.keptBytes = 0;
    await this.inner.close();
  }
}

/** Sector-aligned pieces of a write: its bytes cut at every TORN_WRITE_SECTOR_BYTES boundary. */
function piecesOf(w: KeptWrite): number {
  const first = Math.floor(w.position / TORN_WRITE_SECTOR_BYTES);
  const last = Math.floor((w.position + w.data.length - 1) / TORN_WRITE_SECTOR_BYTES);
  return last - first + 1;
}

/**
 * Splits writes (in order) into what reached the disk before a flush's wait and what after: the
 * first k sector pieces, k uniform in [0, pieces], where `r` in [0, 1) picks k.
 */
function splitAtSector(writes: readonly KeptWrite[], r: number): [KeptWrite[], KeptWrite[]] {
  assert(r >= 0 && r < 1, 'random pick is in [0, 1)');
  let total = 0;
  for (const w of writes) total += piecesOf(w);
  let k = Math.floor(r * (total + 1));
  const early: KeptWrite[] = [];
  const late: KeptWrite[] = [];
  for (const w of writes) {
    const n = piecesOf(w);
    if (k >= n) {
      early.push(w);
      k -= n;
    } else if (k === 0) {
      late.push(w);
    } else {
      // Cut inside this write, at the end of its k-th sector piece.
      const cutAt =
        (Math.floor(w.position / TORN_WRITE_SECTOR_BYTES) + k) * TORN_WRITE_SECTOR_BYTES;
      const head = cutAt - w.position;
      early.push({ position: w.position, data: w.data.subarray(0, head) });
      late.push({ position: cutAt, data: w.data.subarray(head) });
      k = 0;
    }
  }
  return [early, late];
}

function endOf(writes: readonly KeptWrite[]): number {
  let end = 0;
  for (const w of writes) end = Math.max(end, w.position + w.data.length);
  return end;
}

class PowerLossPort implements LogFs {
  readonly syncDelayMs: number;
  readonly random: () => number;
  private unsyncedWrites = 0;
  private unsyncedBytes = 0;
  private droppedWrites = 0;

  constructor(
    private readonly inner: LogFs,
    options: PowerLossOptions,
  ) {
    const delay = options.syncDelayMs ?? 0;
    assert(Number.isFinite(delay) && delay >= 0 && delay <= 10_000, 'sync delay is 0..10000 ms');
    this.syncDelayMs = delay;
    this.random = options.random ?? Math.random;
  }

  get stats(): PowerLossStats {
    return {
      unsyncedWrites: this.unsyncedWrites,
      unsyncedBytes: this.unsyncedBytes,
      droppedWrites: this.droppedWrites,
    };
  }

  noteKept(writes: number, bytes: number): void {
    this.unsyncedWrites += writes;
    this.unsyncedBytes += bytes;
  }

  noteDropped(writes: number, bytes: number): void {
    this.noteKept(-writes, -bytes);
    this.droppedWrites += writes;
  }

  mkdirp(dir: string): Promise<void> {
    return this.inner.mkdirp(dir);
  }

  readdir(dir: string): Promise<string[]> {
    return this.inner.readdir(dir);
  }

  async openExisting(path: string): Promise<LogFile> {
    return new PowerLossLogFile(await this.inner.openExisting(path), this);
  }

  async create(path: string): Promise<LogFile> {
    return new PowerLossLogFile(await this.inner.create(path), this);
  }

  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }

  unlink(path: string): Promise<void> {
    return this.inner.unlink(path);
  }

  syncDir(dir: string): Promise<void> {
    return this.inner.syncDir(dir);
  }
}

/** A LogFs whose unsynced writes live only in this process (see the header). */
export function powerLossLogFs(
  inner: LogFs = nodeLogFs,
  options: PowerLossOptions = {},
): LogFs & { readonly stats: PowerLossStats } {
  return new PowerLossPort(inner, options);
}

/**
 * The commit log's default port: `nodeLogFs`, or the power-loss emulation when the environment
 * asks for it (SKV_TEST_POWER_LOSS=1; SKV_TEST_POWER_LOSS_SYNC_MS=N adds a flush latency).
 */
export function defaultLogFs(env: NodeJS.ProcessEnv = process.env): LogFs {
  const mode = env[POWER_LOSS_ENV];
  if (mode === undefined || mode === '' || mode === '0') return nodeLogFs;
  assert(mode === '1', `${POWER_LOSS_ENV} is 1 or 0 (got ${mode})`);
  const delayText = env[POWER_LOSS_SYNC_MS_ENV];
  const syncDelayMs = delayText === undefined || delayText === '' ? 0 : Number(delayText);
  assert(
    Number.isFinite(syncDelayMs),
    `${POWER_LOSS_SYNC_MS_ENV} is a number of ms (got ${delayText})`,
  );
  return powerLossLogFs(nodeLogFs, { syncDelayMs });
}
