// Damage to a stopped node's commit log (TESTING.md B.5 "offline corruption while the node is
// down"; the layout is src/log/FORMAT.md). Three kinds:
//   torn      the last record of the log's last batch is cut inside: zeros from a random offset
//             in that record to the batch's end (an incomplete final write: a torn tail)
//   lost-tail the whole last batch is zeroed (its write reached the page cache, its fdatasync
//             never happened: the log contract allows at most this one batch to be unsynced)
//   bitflip   one bit flipped at a random offset inside a batch that is NOT the last of its
//             segment (interior damage: must be reported as corruption, never skipped or served)
// Also the committed-log reader used after a run: every node's committed entries, per range.

import { open, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeRowMutation } from '../../src/core/mutation.js';
import type { LogRecord } from '../../src/log/format.js';
import { type ScannedBatch, scanSegment } from '../../src/log/segment-scan.js';
import { ENTRY_KIND_DATA } from '../../src/server/cohort.js';
import type { Prng } from '../../src/sim/prng.js';

export type LogDamageKind = 'torn' | 'lost-tail' | 'bitflip';

export interface LogDamage {
  readonly kind: LogDamageKind;
  readonly file: string;
  readonly offset: number;
  readonly bytes: number;
  readonly detail: string;
}

interface Segment {
  readonly file: string;
  readonly buf: Buffer;
  readonly batches: readonly ScannedBatch[];
}

async function segments(logDir: string): Promise<Segment[]> {
  const names = (await readdir(logDir)).filter((n) => n.endsWith('.seg')).sort();
  const out: Segment[] = [];
  for (const name of names) {
    const file = path.join(logDir, name);
    const buf = await readFile(file);
    const scan = scanSegment(buf, Number(name.slice(0, -4)), null);
    out.push({ file, buf, batches: scan.ok ? scan.batches : [] });
  }
  return out;
}

async function writeAt(file: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Damages the log in `logDir` (the node must be down). Null when the log has nothing to damage. */
export async function damageLog(
  logDir: string,
  kind: LogDamageKind,
  rng: Prng,
): Promise<LogDamage | null> {
  const segs = (await segments(logDir)).filter((s) => s.batches.length > 0);
  const last = segs[segs.length - 1];
  if (last === undefined) return null;
  const lastBatch = last.batches[last.batches.length - 1]!;
  switch (kind) {
    case 'torn': {
      const rec = lastBatch.records[lastBatch.records.length - 1];
      if (rec === undefined) return null;
      const from = rec.offset + 1 + rng.int(Math.max(1, rec.bytes - 1));
      const end = lastBatch.offset + lastBatch.bytes;
      await writeAt(last.file, from, Buffer.alloc(end - from));
      return {
        kind,
        file: last.file,
        offset: from,
        bytes: end - from,
        detail: `batch ${lastBatch.batchNo} (${lastBatch.records.length} records) cut inside its last record (${rec.record.type})`,
      };
    }
    case 'lost-tail': {
      await writeAt(last.file, lastBatch.offset, Buffer.alloc(lastBatch.bytes));
      return {
        kind,
        file: last.file,
        offset: lastBatch.offset,
        bytes: lastBatch.bytes,
        detail: `batch ${lastBatch.batchNo} (${lastBatch.records.length} records) zeroed`,
      };
    }
    case 'bitflip': {
      const candidates = segs.filter((s) => s.batches.length >= 2);
      if (candidates.length === 0) return await damageLog(logDir, 'torn', rng);
      const seg = rng.pick(candidates);
      const batch = seg.batches[rng.int(seg.batches.length - 1)]!;
      const offset = batch.offset + rng.int(batch.bytes);
      const bit = rng.int(8);
      const byte = Buffer.from([seg.buf[offset]! ^ (1 << bit)]);
      await writeAt(seg.file, offset, byte);
      return {
        kind,
        file: seg.file,
        offset,
        bytes: 1,
        detail: `bit ${bit} flipped in batch ${batch.batchNo} of ${seg.batches.length}`,
      };
    }
  }
}

export interface CommittedEntry {
  readonly rangeId: number;
  readonly seq: number;
  readonly epoch: number;
  /** The commit log's entry kind byte (src/server/cohort.ts: 1 data, 2 barrier). */
  readonly kind: number;
  readonly payload: Uint8Array;
}

/**
 * A node's committed entries per range, read offline from its log: entries in log order, a
 * TRUNCATE voids later-seq entries, a BASE voids everything up to it, COMMIT hints raise the
 * committed point. Entries above the node's last commit hint are left out (not known committed
 * HERE; another replica may know better).
 */
export interface NodeCommitted {
  readonly entries: Map<number, CommittedEntry[]>;
  /** Per range: the highest BASE (snapshot) point; entries up to it are not in this log. */
  readonly baseSeq: Map<number, number>;
}

export async function readCommitted(logDir: string): Promise<NodeCommitted> {
  const perRange = new Map<
    number,
    { entries: Map<number, CommittedEntry>; commitSeq: number; baseSeq: number }
  >();
  const of = (r: number) => {
    let s = perRange.get(r);
    if (s === undefined) {
      s = { entries: new Map(), commitSeq: 0, baseSeq: 0 };
      perRange.set(r, s);
    }
    return s;
  };
  let segs: Segment[];
  try {
    segs = await segments(logDir);
  } catch {
    return { entries: new Map(), baseSeq: new Map() };
  }
  for (const seg of segs) {
    for (const batch of seg.batches) {
      for (const { record } of batch.records) apply(record);
    }
  }
  function apply(r: LogRecord): void {
    const s = of(r.cohort);
    switch (r.type) {
      case 'entry':
        s.entries.set(r.lsn.seq, {
          rangeId: r.cohort,
          seq: r.lsn.seq,
          epoch: r.lsn.epoch,
          kind: r.kind,
          payload: r.payload,
        });
        return;
      case 'truncate':
        for (const seq of [...s.entries.keys()]) if (seq > r.afterSeq) s.entries.delete(seq);
        return;
      case 'base':
        for (const seq of [...s.entries.keys()]) if (seq <= r.lsn.seq) s.entries.delete(seq);
        s.commitSeq = Math.max(s.commitSeq, r.lsn.seq);
        s.baseSeq = Math.max(s.baseSeq, r.lsn.seq);
        return;
      case 'commit':
        s.commitSeq = Math.max(s.commitSeq, r.lsn.seq);
        return;
    }
  }
  const entries = new Map<number, CommittedEntry[]>();
  const baseSeq = new Map<number, number>();
  for (const [rangeId, s] of perRange) {
    entries.set(
      rangeId,
      [...s.entries.values()].filter((e) => e.seq <= s.commitSeq).sort((a, b) => a.seq - b.seq),
    );
    baseSeq.set(rangeId, s.baseSeq);
  }
  return { entries, baseSeq };
}

export interface CommittedWriteRow {
  readonly key: string;
  readonly column: string;
  /** undefined: a delete. */
  readonly value?: string;
  readonly version: number;
  readonly conditional: boolean;
}

/** Decodes committed data entries into column writes (barriers carry none). */
export function decodeCommitted(entries: readonly CommittedEntry[]): CommittedWriteRow[] {
  const out: CommittedWriteRow[] = [];
  for (const e of entries) {
    if (e.kind !== ENTRY_KIND_DATA) continue;
    const m = decodeRowMutation(e.payload);
    for (const w of m.writes) {
      out.push({
        key: Buffer.from(m.key).toString(),
        column: Buffer.from(w.column).toString(),
        ...(w.value === null ? {} : { value: Buffer.from(w.value).toString() }),
        version: e.seq,
        conditional: w.expectedVersion !== undefined,
      });
    }
  }
  return out;
}
