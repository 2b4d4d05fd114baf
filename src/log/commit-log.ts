// The shared commit log of one node (DESIGN.md §1, §5 rules 5, 7, 8; S§4.1, S§6.1; FORMAT.md).
//
// Owns: the segment files in `dir`, group commit (many cohorts' appends -> one write + one
// fdatasync per batch), recovery (checksums, torn tail vs corruption), the per-cohort in-memory
// index, logical truncation, base (snapshot) records, commit hints and garbage collection.
//
// Durability contract:
// - `append(records)` resolves only after the fdatasync covering its last record returned.
//   `append(records, { sync: false })` resolves once its records were written to the OS (it
//   survives a process crash, not a power loss); the batch is fdatasync'd like any other.
// - A write or fdatasync error is fail-stop: `onFatal(err)` is called once, pending appends are
//   never resolved, nothing is retried (fsyncgate: a failed fsync may have dropped dirty pages).
// - At most one batch is ever un-synced, so only the final batch of the log can be torn.
//
// Invariants (asserted or validated): per cohort, entries are appended with contiguous seqs
// (lastSeq + 1; a truncate or base resets where that is); LSNs never go backwards within a cohort;
// a truncate never voids a committed entry; every queue and batch is bounded.

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { assert, unreachable } from '../core/assert.js';
import { ClosedError, CorruptionError, InvalidArgumentError, SkvError } from '../core/errors.js';
import type { RangeId } from '../core/ids.js';
import { compareLsn, formatLsn, type Lsn, ZERO_LSN } from '../core/lsn.js';
import {
  decodeRecord,
  encodedRecordBytes,
  encodeRecordInto,
  encodeSegmentFrame,
  FRAME_BYTES,
  type LogRecord,
  validateRecord,
  writeBatchFrame,
} from './format.js';
import type { LogFile, LogFs } from './fs-port.js';
import { defaultLogFs } from './power-loss-fs.js';
import {
  hasBatchFrameAfter,
  lastNonZeroByte,
  looksIncomplete,
  scanSegment,
} from './segment-scan.js';
import { type EntryLocation, SeqIndex } from './seq-index.js';

export const SEGMENT_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;
export const BATCH_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;
export const BATCH_RECORDS_MAX_DEFAULT = 16 * 1024;
export const QUEUE_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** readEntries reads at most this many entries / bytes per round trip to the disk. */
export const READ_BATCH_ENTRIES_MAX = 1024;
export const READ_BATCH_BYTES_MAX = 4 * 1024 * 1024;
const ZERO_FILL_CHUNK_BYTES = 1024 * 1024;
const SEGMENT_FILE_SUFFIX = '.seg';
const TEMP_SUFFIX = '.tmp';

export interface CommitLogOptions {
  readonly dir: string;
  readonly segmentSizeBytes?: number;
  readonly batchBytesMax?: number;
  readonly batchRecordsMax?: number;
  readonly queueBytesMax?: number;
  /** Called once on a write/fsync failure. Default: log to stderr and `process.abort()`. */
  readonly onFatal?: (err: unknown) => void;
  /**
   * Called by open when recovery truncated a torn tail (it names the bytes and records dropped;
   * never routine: see TornTail). Default: `console.warn`.
   */
  readonly onWarning?: (message: string, tornTail: TornTail) => void;
  readonly fs?: LogFs;
  /** Called after each group commit's fdatasync: its duration and the batch it covered. */
  readonly onGroupCommit?: (fsyncSeconds: number, records: number, bytes: number) => void;
}

export interface AppendOptions {
  /** Default true: resolve after fdatasync. false: resolve after write (see header). */
  readonly sync?: boolean;
}

/** An entry read back. `payload` may be a view into a larger read buffer: copy it to keep it long. */
export interface LogEntry {
  readonly cohort: RangeId;
  readonly lsn: Lsn;
  readonly kind: number;
  readonly payload: Uint8Array;
}

/**
 * A final batch recovery truncated (FORMAT.md "Recovery"). The log cannot tell whether that batch
 * had been acknowledged as durable (FORMAT.md "Known limit"), so open also warns (`onWarning`).
 */
export interface TornTail {
  readonly file: string;
  readonly offset: number;
  /** Bytes dropped: from `offset` to the last non-zero byte, now zeros. */
  readonly bytesZeroed: number;
  readonly reason: string;
  /** The dropped batch's number and record count, when its batch frame was readable. */
  readonly batchNo: number | null;
  readonly recordsDeclared: number | null;
  /** Records of the dropped batch that were complete and checksum-valid (dropped all the same). */
  readonly recordsIntact: number;
}

export interface OpenReport {
  readonly segments: number;
  readonly batches: number;
  readonly records: number;
  readonly cohorts: number;
  readonly tornTail: TornTail | null;
  readonly removedTempFiles: readonly string[];
}

export interface GcResult {
  readonly deletedSegments: readonly number[];
  /** The cohort whose records hold back the oldest remaining segment (null: none does). */
  readonly heldBackBy: RangeId | null;
}

export interface LogStats {
  readonly batches: number;
  readonly records: number;
  readonly bytes: number;
  readonly fsyncs: number;
  readonly segments: number;
  /** The segment files' sizes summed (they are preallocated): the log's disk footprint. */
  readonly segmentBytes: number;
  readonly queuedBytes: number;
}

/** readEntries asked for entries that garbage collection (or a base record) removed. */
export class EntriesCompactedError extends SkvError {
  override readonly name = 'EntriesCompactedError';
  constructor(
    readonly cohort: RangeId,
    readonly fromSeq: number,
    readonly firstSeq: number,
  ) {
    super('not-found', `cohort ${cohort}: seq ${fromSeq} is gone, the log starts at ${firstSeq}`);
  }
}

export function segmentFileName(no: number): string {
  return `${String(no).padStart(20, '0')}${SEGMENT_FILE_SUFFIX}`;
}

interface Segment {
  readonly no: number;
  readonly path: string;
  readonly file: LogFile;
  readonly sizeBytes: number;
  readers: number;
  deleted: boolean;
  fileClosed?: boolean;
}

/** Durable (fdatasync'd) state of one cohort plus its validation state for queued appends. */
class CohortState {
  /** False until an entry, truncate or base told us where the cohort's seqs are. */
  known = false;
  readonly index = new SeqIndex(1);
  lastDurableLsn: Lsn = ZERO_LSN;
  lastCommittedLsn: Lsn = ZERO_LSN;
  /** Segment holding the record that established lastDurableLsn (0: none). */
  factSegment = 0;
  /** Segment holding the record that established lastCommittedLsn (0: none). */
  commitSegment = 0;
  checkpointSeq: number | null = null;
  // Validation state, advanced when an append is accepted (ahead of the durable state).
  acceptedLastSeq: number | null = null;
  acceptedLastLsn: Lsn = ZERO_LSN;
  acceptedCommittedSeq = 0;

  constructor(readonly id: RangeId) {}

  syncAcceptedFromDurable(): void {
    this.acceptedLastSeq = this.known ? this.index.lastSeq : null;
    this.acceptedLastLsn = this.lastDurableLsn;
    this.acceptedCommittedSeq = this.lastCommittedLsn.seq;
  }
}

type Accepted = Pick<CohortState, 'acceptedLastSeq' | 'acceptedLastLsn' | 'acceptedCommittedSeq'>;

interface PendingAppend {
  readonly kind: 'append';
  readonly records: readonly LogRecord[];
  readonly encoded: readonly Buffer[];
  readonly sync: boolean;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
  queuedBytes: number;
  taken: number;
  written: number;
  durable: number;
  settled: boolean;
}

/** A garbage-collection step: restate facts that only segments below `bound` hold. */
interface PendingCarry {
  readonly kind: 'carry';
  readonly bound: number;
  readonly resolve: () => void;
}

type QueueItem = PendingAppend | PendingCarry;

function defaultOnFatal(err: unknown): void {
  console.error('skv commit log: fatal I/O error, aborting (fail-stop)', err);
  process.abort();
}

function defaultOnWarning(message: string): void {
  console.warn(message);
}

/** The warning for a truncated tail: what was dropped, and that it may have been acknowledged. */
export function describeTornTail(t: TornTail): string {
  const batch =
    t.batchNo === null
      ? 'no readable batch frame'
      : `batch ${t.batchNo}: ${t.recordsIntact} of ${t.recordsDeclared} records intact`;
  return (
    `skv commit log: recovery truncated the final batch, dropping ${t.bytesZeroed} bytes at ` +
    `${t.file} offset ${t.offset} (${batch}; ${t.reason}). The log cannot tell whether that ` +
    `batch had been acknowledged as durable: a crash during its fdatasync leaves this, and so ` +
    `can damage after it (FORMAT.md "Known limit"); if it was, its records are on peers.`
  );
}

export class CommitLog {
  private readonly fs: LogFs;
  private readonly dir: string;
  private readonly segmentSizeBytes: number;
  private readonly batchBytesMax: number;
  private readonly batchRecordsMax: number;
  private readonly queueBytesMax: number;
  private readonly onFatal: (err: unknown) => void;
  private readonly onGroupCommit: CommitLogOptions['onGroupCommit'];

  private readonly cohortStates = new Map<RangeId, CohortState>();
  /** Segments holding (or about to hold) records, ascending; the last is the active one. */
  private segments: Segment[] = [];
  private readonly segmentsByNo = new Map<number, Segment>();
  /** Prepared, never written segments, ascending. */
  private readonly ready: Segment[] = [];
  private preparing: Promise<void> | null = null;
  private prepareError: unknown = null;
  private nextSegmentNo: number;
  private writeOffset: number;
  private nextBatchNo: number;

  private readonly queue: QueueItem[] = [];
  private readonly waiters: PendingAppend[] = [];
  private queuedBytes = 0;
  private writer: Promise<void> | null = null;
  private gcRunning: Promise<GcResult> | null = null;
  private fatalError: unknown = null;
  private closing = false;
  private closed = false;

  private statBatches = 0;
  private statRecords = 0;
  private statBytes = 0;
  private statFsyncs = 0;

  private constructor(
    options: CommitLogOptions,
    fs: LogFs,
    recovered: {
      segments: Segment[];
      ready: Segment[];
      writeOffset: number;
      nextBatchNo: number;
      nextSegmentNo: number;
    },
  ) {
    this.fs = fs;
    this.dir = options.dir;
    this.segmentSizeBytes = options.segmentSizeBytes ?? SEGMENT_SIZE_BYTES_DEFAULT;
    this.batchBytesMax = options.batchBytesMax ?? BATCH_BYTES_MAX_DEFAULT;
    this.batchRecordsMax = options.batchRecordsMax ?? BATCH_RECORDS_MAX_DEFAULT;
    this.queueBytesMax = options.queueBytesMax ?? QUEUE_BYTES_MAX_DEFAULT;
    this.onFatal = options.onFatal ?? defaultOnFatal;
    this.onGroupCommit = options.onGroupCommit;
    this.segments = recovered.segments;
    for (const s of this.segments) this.segmentsByNo.set(s.no, s);
    this.ready.push(...recovered.ready);
    this.writeOffset = recovered.writeOffset;
    this.nextBatchNo = recovered.nextBatchNo;
    this.nextSegmentNo = recovered.nextSegmentNo;
  }

  // ---------------------------------------------------------------------------------------------
  // Open and recovery

  static async open(options: CommitLogOptions): Promise<{ log: CommitLog; report: OpenReport }> {
    // The real file system, or (tests only, SKV_TEST_POWER_LOSS=1) the power-loss emulation.
    const fs = options.fs ?? defaultLogFs();
    const segmentSizeBytes = options.segmentSizeBytes ?? SEGMENT_SIZE_BYTES_DEFAULT;
    assert(
      Number.isInteger(segmentSizeBytes) && segmentSizeBytes >= 4 * FRAME_BYTES,
      'segment size holds at least a few frames',
    );
    assert(segmentSizeBytes <= 0xffff_ffff, 'segment offsets fit u32');
    await fs.mkdirp(options.dir);
    const names = (await fs.readdir(options.dir)).sort();
    const removedTempFiles: string[] = [];
    const numbers: number[] = [];
    for (const name of names) {
      if (name.endsWith(SEGMENT_FILE_SUFFIX + TEMP_SUFFIX)) {
        // A segment whose preparation did not finish: it never held records. Already gone is
        // as good (a previous life still finishing, in the crash tests that reopen in-process).
        await fs.unlink(`${options.dir}/${name}`).catch((err: unknown) => {
          if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
        });
        removedTempFiles.push(name);
      } else if (name.endsWith(SEGMENT_FILE_SUFFIX)) {
        const no = Number(name.slice(0, -SEGMENT_FILE_SUFFIX.length));
        if (!Number.isSafeInteger(no) || no < 1 || segmentFileName(no) !== name) {
          throw new CorruptionError(`unexpected segment file name ${name}`, name, 0);
        }
        numbers.push(no);
      }
    }
    if (removedTempFiles.length > 0) await fs.syncDir(options.dir);
    numbers.sort((a, b) => a - b);
    for (let i = 1; i < numbers.length; i++) {
      if (numbers[i] !== numbers[i - 1]! + 1) {
        const name = segmentFileName(numbers[i - 1]! + 1);
        throw new CorruptionError(`segment ${name} is missing`, name, 0);
      }
    }

    const cohorts = new Map<RangeId, CohortState>();
    const segments: Segment[] = [];
    const ready: Segment[] = [];
    let tornTail: TornTail | null = null;
    let batchCount = 0;
    let recordCount = 0;
    let expectBatchNo: number | null = null;
    let writeOffset = FRAME_BYTES;
    const opened: LogFile[] = [];
    try {
      for (let i = 0; i < numbers.length; i++) {
        const no = numbers[i]!;
        const name = segmentFileName(no);
        const path = `${options.dir}/${name}`;
        const file = await fs.openExisting(path);
        opened.push(file);
        const buf = await readWhole(file);
        const scan = scanSegment(buf, no, expectBatchNo);
        if (!scan.ok) throw new CorruptionError(`${name}: ${scan.reason}`, name, scan.offset);
        const seg: Segment = {
          no,
          path,
          file,
          sizeBytes: scan.segmentSizeBytes,
          readers: 0,
          deleted: false,
        };
        let endOffset = scan.endOffset;
        if (scan.bad !== null) {
          const bad = scan.bad;
          const laterData = await CommitLog.laterSegmentsHoldData(
            fs,
            options.dir,
            numbers.slice(i + 1),
          );
          if (
            laterData !== null ||
            hasBatchFrameAfter(buf, bad.offset) ||
            !looksIncomplete(buf, bad, scan.lastNonZero)
          ) {
            throw new CorruptionError(
              `${name}: bad record at offset ${bad.offset} (${bad.reason}) with valid data after it`,
              name,
              bad.offset,
            );
          }
          // A torn final batch. Normally one whose fdatasync never returned (never acknowledged),
          // but the log cannot rule out damage after an acknowledged sync (FORMAT.md "Known
          // limit"), so it is reported as a warning below, not as routine.
          const zeroEnd = Math.max(scan.lastNonZero + 1, bad.offset);
          await zeroFill(file, bad.offset, zeroEnd);
          tornTail = {
            file: name,
            offset: bad.offset,
            bytesZeroed: zeroEnd - bad.offset,
            reason: bad.reason,
            batchNo: bad.batchNo,
            recordsDeclared: bad.recordsDeclared,
            recordsIntact: bad.recordsIntact,
          };
          endOffset = bad.offset;
        }
        if (buf.length < seg.sizeBytes) {
          // Someone shortened the file (or a crash did): restore the preallocated size.
          await zeroFill(file, buf.length, seg.sizeBytes);
        }
        if (tornTail !== null || buf.length < seg.sizeBytes) await file.datasync();

        if (scan.batches.length === 0 && scan.bad === null) {
          // Prepared, never written: a future segment (data after it is caught below).
          ready.push(seg);
          continue;
        }
        if (ready.length > 0) {
          const first = segmentFileName(ready[0]!.no);
          throw new CorruptionError(`${first} is empty but later segments hold data`, first, 0);
        }
        segments.push(seg);
        for (const batch of scan.batches) {
          batchCount++;
          for (const r of batch.records) {
            recordCount++;
            applyDurable(cohorts, r.record, seg.no, r.offset, r.bytes, name);
          }
          expectBatchNo = batch.batchNo + 1;
        }
        writeOffset = endOffset;
      }
    } catch (err) {
      for (const f of opened) await f.close().catch(() => {});
      throw err;
    }

    const last = numbers.length > 0 ? numbers[numbers.length - 1]! : 0;
    const log = new CommitLog(options, fs, {
      segments,
      ready,
      writeOffset,
      nextBatchNo: expectBatchNo ?? 1,
      nextSegmentNo: last + 1,
    });
    for (const [id, st] of cohorts) {
      st.syncAcceptedFromDurable();
      log.cohortStates.set(id, st);
    }
    if (log.segments.length === 0) {
      // Nothing written yet: the first ready segment (or a new one) becomes active.
      const first = log.ready.shift() ?? (await log.prepareSegment(log.nextSegmentNo++));
      log.segments.push(first);
      log.segmentsByNo.set(first.no, first);
      log.writeOffset = FRAME_BYTES;
    }
    log.startPreparing();
    if (tornTail !== null) {
      (options.onWarning ?? defaultOnWarning)(describeTornTail(tornTail), tornTail);
    }
    const report: OpenReport = {
      segments: numbers.length,
      batches: batchCount,
      records: recordCount,
      cohorts: cohorts.size,
      tornTail,
      removedTempFiles,
    };
    return { log, report };
  }

  /** The first later segment that holds anything besides its segment frame, or null. */
  private static async laterSegmentsHoldData(
    fs: LogFs,
    dir: string,
    numbers: readonly number[],
  ): Promise<number | null> {
    for (const n of numbers) {
      const f = await fs.openExisting(`${dir}/${segmentFileName(n)}`);
      try {
        const buf = await readWhole(f);
        if (lastNonZeroByte(buf, FRAME_BYTES) >= FRAME_BYTES) return n;
      } finally {
        await f.close();
      }
    }
    return null;
  }

  // ---------------------------------------------------------------------------------------------
  // Segments

  private async prepareSegment(no: number): Promise<Segment> {
    const name = segmentFileName(no);
    const path = `${this.dir}/${name}`;
    const tmp = path + TEMP_SUFFIX;
    const file = await this.fs.create(tmp);
    try {
      // Preallocate by writing zeros, so an append never changes the file size and fdatasync
      // has no size metadata to update (PAPER-NOTES §2.2: the paper's biggest log shortcoming).
      const chunk = Buffer.alloc(Math.min(ZERO_FILL_CHUNK_BYTES, this.segmentSizeBytes));
      encodeSegmentFrame(no, this.segmentSizeBytes).copy(chunk, 0);
      for (let at = 0; at < this.segmentSizeBytes; at += chunk.length) {
        const len = Math.min(chunk.length, this.segmentSizeBytes - at);
        await file.write(chunk.subarray(0, len), at);
        if (at === 0) chunk.fill(0, 0, FRAME_BYTES);
      }
      await file.datasync();
      await this.fs.rename(tmp, path);
      await this.fs.syncDir(this.dir);
    } catch (err) {
      await file.close().catch(() => {});
      throw err;
    }
    return { no, path, file, sizeBytes: this.segmentSizeBytes, readers: 0, deleted: false };
  }

  /** Keeps one prepared segment ahead of the active one, in the background. */
  private startPreparing(): void {
    if (
      this.preparing !== null ||
      this.ready.length > 0 ||
      this.closing ||
      this.prepareError !== null
    ) {
      return;
    }
    const no = this.nextSegmentNo++;
    this.preparing = this.prepareSegment(no).then(
      (seg) => {
        this.preparing = null;
        this.ready.push(seg);
      },
      (err: unknown) => {
        this.preparing = null;
        this.prepareError = err;
      },
    );
  }

  private async rollSegment(): Promise<void> {
    while (this.ready.length === 0) {
      if (this.prepareError !== null) throw this.prepareError;
      if (this.preparing === null) this.startPreparing();
      await this.preparing;
    }
    const seg = this.ready.shift()!;
    this.segments.push(seg);
    this.segmentsByNo.set(seg.no, seg);
    this.writeOffset = FRAME_BYTES;
    this.startPreparing();
  }

  private get active(): Segment {
    const seg = this.segments[this.segments.length - 1];
    assert(seg !== undefined, 'an active segment exists');
    return seg;
  }

  // ---------------------------------------------------------------------------------------------
  // Appends and group commit

  /**
   * Appends records (any cohorts, in order). Validation is atomic: on an invalid record nothing
   * is queued and the promise rejects with InvalidArgumentError. Waits for queue room when the
   * queue is full (back-pressure).
   */
  append(records: readonly LogRecord[], options: AppendOptions = {}): Promise<void> {
    if (this.closing || this.closed) return Promise.reject(new ClosedError('commit log'));
    if (this.fatalError !== null) {
      return Promise.reject(
        new SkvError('io-error', 'commit log stopped after an I/O error', {
          cause: this.fatalError,
        }),
      );
    }
    if (records.length === 0) return Promise.resolve();
    let encoded: Buffer[];
    try {
      encoded = this.accept(records);
    } catch (err) {
      return Promise.reject(err);
    }
    let bytes = 0;
    for (const e of encoded) bytes += e.length;
    return new Promise<void>((resolve, reject) => {
      const item: PendingAppend = {
        kind: 'append',
        records,
        encoded,
        sync: options.sync ?? true,
        resolve,
        reject,
        queuedBytes: bytes,
        taken: 0,
        written: 0,
        durable: 0,
        settled: false,
      };
      if (
        this.waiters.length > 0 ||
        (this.queuedBytes > 0 && this.queuedBytes + bytes > this.queueBytesMax)
      ) {
        this.waiters.push(item);
        return;
      }
      this.enqueue(item);
    });
  }

  /** Validates records against the accepted state, then advances it; returns the encodings. */
  private accept(records: readonly LogRecord[]): Buffer[] {
    const scratch = new Map<RangeId, Accepted>();
    const view = (id: RangeId): Accepted => {
      let s = scratch.get(id);
      if (s === undefined) {
        const st = this.cohortStates.get(id);
        s = {
          acceptedLastSeq: st?.acceptedLastSeq ?? null,
          acceptedLastLsn: st?.acceptedLastLsn ?? ZERO_LSN,
          acceptedCommittedSeq: st?.acceptedCommittedSeq ?? 0,
        };
        scratch.set(id, s);
      }
      return s;
    };
    const capacity = this.segmentSizeBytes - 2 * FRAME_BYTES;
    const encoded: Buffer[] = [];
    for (const r of records) {
      validateRecord(r);
      const len = encodedRecordBytes(r);
      if (len > capacity) {
        throw new InvalidArgumentError(`record of ${len} bytes does not fit a segment`);
      }
      const s = view(r.cohort);
      switch (r.type) {
        case 'entry':
          if (s.acceptedLastSeq !== null && r.lsn.seq !== s.acceptedLastSeq + 1) {
            throw new InvalidArgumentError(
              `cohort ${r.cohort}: entry ${formatLsn(r.lsn)} does not follow seq ${s.acceptedLastSeq}`,
            );
          }
          if (r.lsn.epoch < s.acceptedLastLsn.epoch) {
            throw new InvalidArgumentError(
              `cohort ${r.cohort}: entry ${formatLsn(r.lsn)} is older than ${formatLsn(s.acceptedLastLsn)}`,
            );
          }
          s.acceptedLastSeq = r.lsn.seq;
          s.acceptedLastLsn = r.lsn;
          break;
        case 'commit':
          s.acceptedCommittedSeq = Math.max(s.acceptedCommittedSeq, r.lsn.seq);
          break;
        case 'truncate':
          if (s.acceptedLastSeq !== null && r.afterSeq > s.acceptedLastSeq) {
            throw new InvalidArgumentError(
              `cohort ${r.cohort}: truncate after ${r.afterSeq} is past the last seq ${s.acceptedLastSeq}`,
            );
          }
          if (r.afterSeq < s.acceptedCommittedSeq) {
            throw new InvalidArgumentError(
              `cohort ${r.cohort}: truncate after ${r.afterSeq} would void committed seq ${s.acceptedCommittedSeq}`,
            );
          }
          s.acceptedLastSeq = r.afterSeq;
          s.acceptedLastLsn = r.lsn;
          break;
        case 'base':
          s.acceptedLastSeq = r.lsn.seq;
          s.acceptedLastLsn = r.lsn;
          s.acceptedCommittedSeq = Math.max(s.acceptedCommittedSeq, r.lsn.seq);
          break;
        default:
          unreachable(r, 'log record');
      }
      const buf = Buffer.allocUnsafe(len);
      encodeRecordInto(r, buf, 0);
      encoded.push(buf);
    }
    for (const [id, s] of scratch) {
      const st = this.state(id);
      st.acceptedLastSeq = s.acceptedLastSeq;
      st.acceptedLastLsn = s.acceptedLastLsn;
      st.acceptedCommittedSeq = s.acceptedCommittedSeq;
    }
    return encoded;
  }

  private enqueue(item: QueueItem): void {
    this.queue.push(item);
    if (item.kind === 'append') this.queuedBytes += item.queuedBytes;
    this.kickWriter();
  }

  private admitWaiters(): void {
    while (this.waiters.length > 0) {
      const w = this.waiters[0]!;
      if (this.queuedBytes > 0 && this.queuedBytes + w.queuedBytes > this.queueBytesMax) return;
      this.waiters.shift();
      this.enqueue(w);
    }
  }

  private kickWriter(): void {
    if (this.writer !== null || this.fatalError !== null) return;
    this.writer = this.runWriter();
  }

  private async runWriter(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.fatalError === null) {
        // Let every appender that is ready this turn join the batch (group commit).
        await yieldToEventLoop();
        await this.writeOneBatch();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.writer = null;
    }
    if (this.queue.length > 0 && this.fatalError === null) this.kickWriter();
  }

  private fail(err: unknown): void {
    if (this.fatalError !== null) return;
    this.fatalError = err ?? new Error('unknown commit log failure');
    this.onFatal(err);
  }

  private async writeOneBatch(): Promise<void> {
    // A GC carry step at the head: all earlier batches are durable, so the durable state is
    // exactly what the log says so far; restate what only the doomed segments hold.
    const head = this.queue[0];
    if (head !== undefined && head.kind === 'carry') {
      const records = this.carryRecords(head.bound);
      this.queue.shift();
      if (records.length === 0) {
        head.resolve();
        return;
      }
      const encoded = records.map((r) => {
        const b = Buffer.allocUnsafe(encodedRecordBytes(r));
        encodeRecordInto(r, b, 0);
        return b;
      });
      let bytes = 0;
      for (const e of encoded) bytes += e.length;
      this.queue.unshift({
        kind: 'append',
        records,
        encoded,
        sync: true,
        resolve: head.resolve,
        reject: () => {},
        queuedBytes: bytes,
        taken: 0,
        written: 0,
        durable: 0,
        settled: false,
      });
      this.queuedBytes += bytes;
    }

    // Plan: take records from the head while they fit the batch limits and the segment.
    const firstItem = this.queue[0];
    assert(firstItem !== undefined && firstItem.kind === 'append', 'batch starts with an append');
    const firstLen = firstItem.encoded[firstItem.taken]!.length;
    if (this.writeOffset + FRAME_BYTES + firstLen > this.active.sizeBytes) await this.rollSegment();
    const space = this.active.sizeBytes - this.writeOffset;
    const parts: { item: PendingAppend; from: number; to: number }[] = [];
    let bytes = FRAME_BYTES;
    let count = 0;
    let qi = 0;
    planning: while (qi < this.queue.length) {
      const item = this.queue[qi]!;
      if (item.kind !== 'append') break;
      const from = item.taken;
      let to = from;
      while (to < item.encoded.length) {
        const len = item.encoded[to]!.length;
        const fits =
          bytes + len <= space &&
          (count === 0 || (bytes + len <= this.batchBytesMax && count < this.batchRecordsMax));
        if (!fits) {
          if (to > from) parts.push({ item, from, to });
          break planning;
        }
        bytes += len;
        count++;
        to++;
      }
      parts.push({ item, from, to });
      qi++;
    }
    assert(count > 0, 'a batch holds at least one record');

    // Build the batch image and the locations of its records.
    const seg = this.active;
    const base = this.writeOffset;
    const buf = Buffer.allocUnsafe(bytes);
    writeBatchFrame(buf, 0, this.nextBatchNo, count, bytes - FRAME_BYTES);
    let at = FRAME_BYTES;
    const placed: { record: LogRecord; offset: number; length: number }[] = [];
    for (const p of parts) {
      for (let i = p.from; i < p.to; i++) {
        const e = p.item.encoded[i]!;
        e.copy(buf, at);
        placed.push({ record: p.item.records[i]!, offset: base + at, length: e.length });
        at += e.length;
        p.item.queuedBytes -= e.length;
        this.queuedBytes -= e.length;
      }
      p.item.taken = p.to;
    }
    assert(at === bytes, 'batch image is fully laid out');
    while (this.queue.length > 0) {
      const h = this.queue[0]!;
      if (h.kind !== 'append' || h.taken < h.encoded.length) break;
      this.queue.shift();
    }
    this.admitWaiters();

    await seg.file.write(buf, base);
    for (const p of parts) {
      p.item.written = p.to;
      if (!p.item.sync && p.item.written === p.item.records.length) settle(p.item);
    }
    const fsyncStartMs = performance.now();
    await seg.file.datasync();
    this.onGroupCommit?.((performance.now() - fsyncStartMs) / 1000, count, bytes);
    this.statFsyncs++;
    this.statBatches++;
    this.statRecords += count;
    this.statBytes += bytes;
    this.writeOffset = base + bytes;
    this.nextBatchNo++;
    for (const pl of placed) {
      applyDurable(this.cohortStates, pl.record, seg.no, pl.offset, pl.length, seg.path);
    }
    for (const p of parts) {
      p.item.durable = p.to;
      if (p.item.durable === p.item.records.length) settle(p.item);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Per-cohort views

  private state(id: RangeId): CohortState {
    let st = this.cohortStates.get(id);
    if (st === undefined) {
      st = new CohortState(id);
      this.cohortStates.set(id, st);
    }
    return st;
  }

  cohort(id: RangeId): CohortLog {
    return new CohortLog(this, this.state(id));
  }

  /** Cohorts the log has records or state for. */
  cohortIds(): RangeId[] {
    return [...this.cohortStates.keys()].sort((a, b) => a - b);
  }

  /** @internal used by CohortLog */
  async *readEntriesOf(st: CohortState, fromSeq: number, toSeq?: number): AsyncGenerator<LogEntry> {
    if (fromSeq < st.index.firstSeq) {
      throw new EntriesCompactedError(st.id, fromSeq, st.index.firstSeq);
    }
    const last = Math.min(toSeq ?? st.index.lastSeq, st.index.lastSeq);
    let seq = fromSeq;
    while (seq <= last) {
      if (this.closed) throw new ClosedError('commit log');
      if (seq < st.index.firstSeq) throw new EntriesCompactedError(st.id, seq, st.index.firstSeq);
      // Collect a bounded run of locations, then read them in spans per segment.
      const locs: { seq: number; loc: EntryLocation }[] = [];
      let bytes = 0;
      while (seq <= last && locs.length < READ_BATCH_ENTRIES_MAX && bytes < READ_BATCH_BYTES_MAX) {
        const loc = st.index.get(seq);
        if (loc === null) break;
        locs.push({ seq, loc });
        bytes += loc.length;
        seq++;
      }
      if (locs.length === 0) return; // truncated under us: the live log ends here
      const entries = await this.readLocations(st.id, locs);
      for (let i = 0; i < entries.length; i++) {
        // A truncate that landed while we read voids what we read: end at the live log's end.
        const at = locs[i]!.seq;
        if (at < st.index.firstSeq) throw new EntriesCompactedError(st.id, at, st.index.firstSeq);
        const now = st.index.get(at);
        const was = locs[i]!.loc;
        if (now === null || now.segment !== was.segment || now.offset !== was.offset) return;
        yield entries[i]!;
      }
    }
  }

  private async readLocations(
    cohort: RangeId,
    locs: readonly { seq: number; loc: EntryLocation }[],
  ): Promise<LogEntry[]> {
    // Group consecutive locations of the same segment into spans of bounded size.
    const spans: { seg: number; start: number; end: number; items: number[] }[] = [];
    for (let i = 0; i < locs.length; i++) {
      const { loc } = locs[i]!;
      const cur = spans[spans.length - 1];
      if (
        cur !== undefined &&
        cur.seg === loc.segment &&
        loc.offset >= cur.end &&
        loc.offset + loc.length - cur.start <= READ_BATCH_BYTES_MAX
      ) {
        cur.end = loc.offset + loc.length;
        cur.items.push(i);
      } else {
        spans.push({
          seg: loc.segment,
          start: loc.offset,
          end: loc.offset + loc.length,
          items: [i],
        });
      }
    }
    const out: LogEntry[] = new Array(locs.length);
    await Promise.all(
      spans.map(async (span) => {
        const seg = this.segmentsByNo.get(span.seg);
        if (seg === undefined || seg.deleted) {
          throw new EntriesCompactedError(
            cohort,
            locs[span.items[0]!]!.seq,
            this.cohortFirstSeq(cohort),
          );
        }
        seg.readers++;
        let buf: Buffer;
        try {
          buf = Buffer.allocUnsafe(span.end - span.start);
          const n = await seg.file.read(buf, buf.length, span.start);
          if (n !== buf.length) {
            throw new CorruptionError(
              'entry extends past the end of its segment',
              seg.path,
              span.start,
            );
          }
        } finally {
          seg.readers--;
          if (seg.deleted && seg.readers === 0) await closeSegmentFile(seg);
        }
        for (const i of span.items) {
          const { seq, loc } = locs[i]!;
          const rel = loc.offset - span.start;
          const d = decodeRecord(buf.subarray(rel, rel + loc.length), 0);
          if (
            !d.ok ||
            d.record.type !== 'entry' ||
            d.record.cohort !== cohort ||
            d.record.lsn.seq !== seq ||
            d.record.lsn.epoch !== loc.epoch ||
            d.bytes !== loc.length
          ) {
            throw new CorruptionError(
              `cohort ${cohort} seq ${seq}: ${d.ok ? 'record does not match the index' : d.reason}`,
              seg.path,
              loc.offset,
            );
          }
          const r = d.record;
          out[i] = { cohort, lsn: r.lsn, kind: r.kind, payload: r.payload };
        }
      }),
    );
    return out;
  }

  private cohortFirstSeq(id: RangeId): number {
    return this.cohortStates.get(id)?.index.firstSeq ?? 1;
  }

  // ---------------------------------------------------------------------------------------------
  // Garbage collection

  /** The storage layer's word that every entry of `cohort` up to `seq` is in LevelDB tables. */
  setCheckpoint(cohort: RangeId, seq: number): void {
    assert(Number.isSafeInteger(seq) && seq >= 0, 'checkpoint seq is a seq');
    const st = this.state(cohort);
    st.checkpointSeq = Math.max(st.checkpointSeq ?? 0, seq);
  }

  /** Where the oldest needed segment is and who needs it (from the durable state). */
  private gcBound(): { bound: number; heldBackBy: RangeId | null } {
    let bound = this.active.no;
    let heldBackBy: RangeId | null = null;
    for (const st of this.cohortStates.values()) {
      const ix = st.index;
      if (ix.size === 0) continue;
      // A cohort with no checkpoint holds back every segment with a live entry of it.
      const cp = st.checkpointSeq ?? 0;
      if (cp >= ix.lastSeq) continue;
      const seg = ix.segmentAt(Math.max(ix.firstSeq, cp + 1));
      assert(seg !== null, 'a live seq has a segment');
      if (seg < bound || (seg === bound && heldBackBy !== null && st.id < heldBackBy)) {
        bound = seg;
        heldBackBy = st.id;
      }
    }
    // The active segment is never deleted: nobody "holds it back".
    return { bound, heldBackBy: bound < this.active.no ? heldBackBy : null };
  }

  private carryRecords(bound: number): LogRecord[] {
    const out: LogRecord[] = [];
    for (const st of this.cohortStates.values()) {
      if (st.factSegment !== 0 && st.factSegment < bound) {
        // Every live entry of this cohort is in a doomed segment and at or below its checkpoint
        // (else it would hold `bound` lower): a base at its last LSN voids nothing still needed.
        out.push({ type: 'base', cohort: st.id, lsn: st.lastDurableLsn });
      }
      if (st.commitSegment !== 0 && st.commitSegment < bound) {
        out.push({ type: 'commit', cohort: st.id, lsn: st.lastCommittedLsn });
      }
    }
    return out;
  }

  /**
   * Deletes the oldest segments, in order, while every live entry in them is at or below its
   * cohort's checkpoint. Facts only they hold are restated (durably) first.
   */
  collectGarbage(): Promise<GcResult> {
    if (this.gcRunning !== null) return this.gcRunning.then(() => this.collectGarbage());
    const run = this.runGc().finally(() => {
      this.gcRunning = null;
    });
    this.gcRunning = run;
    return run;
  }

  private async runGc(): Promise<GcResult> {
    if (this.closing || this.closed) throw new ClosedError('commit log');
    if (this.fatalError !== null) throw new SkvError('io-error', 'commit log stopped');
    const { bound, heldBackBy } = this.gcBound();
    const doomed = this.segments.filter((s) => s.no < bound);
    if (doomed.length === 0) return { deletedSegments: [], heldBackBy };
    await new Promise<void>((resolve) => this.enqueue({ kind: 'carry', bound, resolve }));
    for (const seg of doomed) {
      seg.deleted = true;
      this.segmentsByNo.delete(seg.no);
      await this.fs.unlink(seg.path);
      if (seg.readers === 0) await closeSegmentFile(seg);
    }
    this.segments = this.segments.filter((s) => !s.deleted);
    await this.fs.syncDir(this.dir);
    const oldest = this.segments[0]!.no;
    for (const st of this.cohortStates.values()) {
      const ix = st.index;
      if (ix.size === 0 || ix.segmentAt(ix.firstSeq)! >= oldest) continue;
      // Live entries are in segment order: binary search the first seq in a remaining segment.
      let lo = ix.firstSeq;
      let hi = ix.lastSeq + 1;
      while (lo < hi) {
        const mid = Math.floor((lo + hi) / 2);
        if (ix.segmentAt(mid)! >= oldest) hi = mid;
        else lo = mid + 1;
      }
      ix.dropBefore(lo);
    }
    return { deletedSegments: doomed.map((s) => s.no), heldBackBy };
  }

  // ---------------------------------------------------------------------------------------------
  // Lifecycle

  get stats(): LogStats {
    return {
      batches: this.statBatches,
      records: this.statRecords,
      bytes: this.statBytes,
      fsyncs: this.statFsyncs,
      segments: this.segments.length,
      segmentBytes: this.segments.reduce((n, seg) => n + seg.sizeBytes, 0),
      queuedBytes: this.queuedBytes,
    };
  }

  /** Segment numbers holding records, oldest first (for tests and `skv status`). */
  segmentNumbers(): number[] {
    return this.segments.map((s) => s.no);
  }

  /** Drains queued appends (unless the log failed), then closes every file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    while (this.fatalError === null && (this.writer !== null || this.queue.length > 0)) {
      if (this.writer === null) this.kickWriter();
      await this.writer;
    }
    if (this.gcRunning !== null) await this.gcRunning.catch(() => {});
    if (this.preparing !== null) await this.preparing;
    this.closed = true;
    for (const seg of [...this.segments, ...this.ready]) await closeSegmentFile(seg);
  }
}

/** One cohort's view of the shared log. */
export class CohortLog {
  /** @internal */
  constructor(
    private readonly log: CommitLog,
    private readonly st: CohortState,
  ) {}

  get id(): RangeId {
    return this.st.id;
  }

  /** LSN of the last entry (or truncate/base point) that is fdatasync'd. */
  get lastDurableLsn(): Lsn {
    return this.st.lastDurableLsn;
  }

  /** Highest committed LSN recorded by commit (or base) records that are durable. */
  get lastCommittedLsn(): Lsn {
    return this.st.lastCommittedLsn;
  }

  /** Oldest seq still readable (lastSeq + 1 when none is). */
  get firstSeq(): number {
    return this.st.index.firstSeq;
  }

  /** Newest live seq (firstSeq - 1 when none is readable). */
  get lastSeq(): number {
    return this.st.known ? this.st.index.lastSeq : this.st.lastDurableLsn.seq;
  }

  get checkpointSeq(): number | null {
    return this.st.checkpointSeq;
  }

  /** The LSN of live entry `seq` (or of the truncate/base point), from memory; null if unknown. */
  entryLsnAt(seq: number): Lsn | null {
    const epoch = this.st.index.epochAt(seq);
    if (epoch !== null) return { epoch, seq };
    if (seq === this.st.lastDurableLsn.seq && this.st.known) return this.st.lastDurableLsn;
    return null;
  }

  /**
   * Live durable entries from `fromSeq` to `toSeq` (default: the last one now), in seq order,
   * read in bounded batches; each is checked against its CRC again (CorruptionError otherwise).
   * Ends early if a truncate voids the rest while iterating.
   */
  readEntries(fromSeq: number, toSeq?: number): AsyncGenerator<LogEntry> {
    return this.log.readEntriesOf(this.st, fromSeq, toSeq);
  }

  /** S§6.1.1: durably voids every entry after `seq`; `lsn` is the entry at `seq` (the new last). */
  truncateAfter(seq: number, lsn: Lsn): Promise<void> {
    return this.log.append([{ type: 'truncate', cohort: this.st.id, afterSeq: seq, lsn }]);
  }

  /** The cohort's state became a snapshot at `lsn`: earlier entries are void; next seq lsn.seq+1. */
  installBase(lsn: Lsn): Promise<void> {
    return this.log.append([{ type: 'base', cohort: this.st.id, lsn }]);
  }

  /** Records the committed LSN as a hint for local recovery; rides on the next batch. */
  markCommitted(lsn: Lsn): Promise<void> {
    return this.log.append([{ type: 'commit', cohort: this.st.id, lsn }], { sync: false });
  }
}

async function closeSegmentFile(seg: Segment): Promise<void> {
  if (seg.fileClosed === true) return;
  seg.fileClosed = true;
  await seg.file.close().catch(() => {});
}

function settle(item: PendingAppend): void {
  if (item.settled) return;
  item.settled = true;
  item.resolve();
}

async function readWhole(file: LogFile): Promise<Buffer> {
  const size = await file.sizeBytes();
  const buf = Buffer.allocUnsafe(size);
  const n = await file.read(buf, size, 0);
  return n === size ? buf : buf.subarray(0, n);
}

async function zeroFill(file: LogFile, from: number, to: number): Promise<void> {
  const chunk = Buffer.alloc(Math.min(ZERO_FILL_CHUNK_BYTES, Math.max(0, to - from)));
  for (let at = from; at < to; at += chunk.length) {
    await file.write(chunk.subarray(0, Math.min(chunk.length, to - at)), at);
  }
}

/** Applies one durable record to the cohort states, in log order (recovery and live writes). */
function applyDurable(
  cohorts: Map<RangeId, CohortState>,
  r: LogRecord,
  segment: number,
  offset: number,
  length: number,
  file: string,
): void {
  let st = cohorts.get(r.cohort);
  if (st === undefined) {
    st = new CohortState(r.cohort);
    cohorts.set(r.cohort, st);
  }
  switch (r.type) {
    case 'entry':
      if (!st.known) {
        st.index.reset(r.lsn.seq);
        st.known = true;
      } else if (r.lsn.seq !== st.index.lastSeq + 1) {
        throw new CorruptionError(
          `cohort ${r.cohort}: entry ${formatLsn(r.lsn)} does not follow seq ${st.index.lastSeq}`,
          file,
          offset,
        );
      }
      st.index.push(r.lsn.seq, { segment, offset, length, epoch: r.lsn.epoch });
      st.lastDurableLsn = r.lsn;
      st.factSegment = segment;
      return;
    case 'commit':
      if (compareLsn(r.lsn, st.lastCommittedLsn) >= 0) {
        st.lastCommittedLsn = r.lsn;
        st.commitSegment = segment;
      }
      return;
    case 'truncate':
      // Validated at append: afterSeq <= lastSeq. Unknown history (GC'd): start after afterSeq.
      if (!st.known || r.afterSeq > st.index.lastSeq) st.index.reset(r.afterSeq + 1);
      else st.index.truncateAfter(r.afterSeq);
      st.known = true;
      st.lastDurableLsn = r.lsn;
      st.factSegment = segment;
      return;
    case 'base':
      st.index.reset(r.lsn.seq + 1);
      st.known = true;
      st.lastDurableLsn = r.lsn;
      st.factSegment = segment;
      if (compareLsn(r.lsn, st.lastCommittedLsn) >= 0) {
        st.lastCommittedLsn = r.lsn;
        st.commitSegment = segment;
      }
      return;
    default:
      unreachable(r, 'log record');
  }
}
