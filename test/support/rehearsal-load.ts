// Rehearsal support: a bounded write load over EVERY range and one strong reader per range,
// with the measurements the rehearsal reports (longest gap between successes in a window) and
// the check run after it (every acknowledged write strong-readable with its value).
//
// Why not test/support/load.ts: its keys are strings, and `skv cluster init --ranges N` splits
// the first two key BYTES evenly, so some ranges (first byte 0x80..0xbf) hold no UTF-8 string at
// all. Keys here are bytes: `<range start> 0x00 rehearsal/<writer>/<index>`, which lies in the
// range (asserted). Outcomes follow load.ts and TESTING.md A.1: `ok` (acknowledged), `fail`
// (refused before it was proposed: not-leader, unavailable, overloaded, closed), `unknown`
// (anything else: may land either way, never counted as lost).
//
// Bounds: `writers` loops and one reader per range; at most `writesMax` writes and `readsMax`
// reads in all, for at most `durationMsMax`; every call has its own deadline.

import { performance } from 'node:perf_hooks';
import { type SkvClient, SkvError } from '../../src/client/index.js';
import { sleep, timedPut, type WriteOutcome } from './load.js';

/** As in load.ts (TESTING.md A.1). */
export type Outcome = WriteOutcome;

export interface RangeKeys {
  readonly rangeId: number;
  readonly start: Buffer;
  /** Empty = unbounded. */
  readonly end: Buffer;
}

export interface WriteRec {
  readonly rangeId: number;
  readonly key: Buffer;
  readonly value: string;
  readonly startMs: number;
  readonly endMs: number;
  readonly outcome: Outcome;
  readonly version: number;
  readonly code: string;
}

export interface ReadRec {
  readonly rangeId: number;
  readonly startMs: number;
  readonly endMs: number;
  /** ok = answered with the sentinel's value. */
  readonly ok: boolean;
  readonly code: string;
}

export interface LoadOptions {
  readonly client: SkvClient;
  readonly ranges: readonly RangeKeys[];
  readonly tag: string;
  readonly writers: number;
  readonly writesMax: number;
  readonly readsMax: number;
  readonly durationMsMax: number;
  readonly writeTimeoutMs: number;
  readonly readTimeoutMs: number;
  readonly thinkMs: number;
}

export const COLUMN = 'c';

/** A key inside `r` (asserted): the range start, a 0x00 byte, then `suffix`. */
export function keyIn(r: RangeKeys, suffix: string): Buffer {
  const key = Buffer.concat([r.start, Buffer.from([0]), Buffer.from(suffix)]);
  if (Buffer.compare(key, r.start) < 0 || (r.end.length > 0 && Buffer.compare(key, r.end) >= 0))
    throw new Error(`key ${key.toString('hex')} is not in range ${r.rangeId}`);
  return key;
}

export class RehearsalLoad {
  readonly writes: WriteRec[] = [];
  readonly reads: ReadRec[] = [];
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private readonly deadlineMs: number;
  private readonly sentinels = new Map<number, { key: Buffer; value: string }>();

  private constructor(private readonly o: LoadOptions) {
    this.deadlineMs = performance.now() + o.durationMsMax;
  }

  /** Writes one sentinel per range (must succeed), then starts the writers and readers. */
  static async start(o: LoadOptions): Promise<RehearsalLoad> {
    const load = new RehearsalLoad(o);
    for (const r of o.ranges) {
      const key = keyIn(r, `${o.tag}/sentinel`);
      const value = `${o.tag}/sentinel/${r.rangeId}`;
      await o.client.put(key, COLUMN, value, { timeoutMs: o.writeTimeoutMs });
      load.sentinels.set(r.rangeId, { key, value });
    }
    for (let w = 0; w < o.writers; w++) load.loops.push(load.writer(w));
    for (const r of o.ranges) load.loops.push(load.reader(r.rangeId));
    return load;
  }

  private more(): boolean {
    return !this.stopping && performance.now() < this.deadlineMs;
  }

  private async writer(w: number): Promise<void> {
    const o = this.o;
    for (let i = 0; this.more() && this.writes.length < o.writesMax; i++) {
      const r = o.ranges[(w + i) % o.ranges.length];
      if (r === undefined) throw new Error('no ranges');
      const key = keyIn(r, `${o.tag}/${w}/${i}`);
      const value = `${o.tag}/${w}/${i}`;
      const rec: WriteRec = {
        rangeId: r.rangeId,
        key,
        value,
        ...(await timedPut(o.client, key, COLUMN, value, o.writeTimeoutMs)),
      };
      this.writes.push(rec);
      await sleep(o.thinkMs);
    }
  }

  private async reader(rangeId: number): Promise<void> {
    const o = this.o;
    const s = this.sentinels.get(rangeId);
    if (s === undefined) throw new Error(`no sentinel for range ${rangeId}`);
    while (this.more() && this.reads.length < o.readsMax) {
      const startMs = performance.now();
      let ok = false;
      let code = '';
      try {
        const got = await o.client.get(s.key, COLUMN, { timeoutMs: o.readTimeoutMs });
        ok = got.found && got.value.toString() === s.value;
        if (!ok) code = got.found ? `wrong value ${got.value.toString()}` : 'sentinel not found';
      } catch (err) {
        code = err instanceof SkvError ? err.code : String(err);
      }
      this.reads.push({ rangeId, startMs, endMs: performance.now(), ok, code });
      await sleep(o.thinkMs);
    }
  }

  /** Reads that came back with a wrong answer (not an error): must never happen. */
  wrongReads(): ReadRec[] {
    return this.reads.filter(
      (r) => !r.ok && (r.code === 'sentinel not found' || r.code.startsWith('wrong value')),
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }

  summary(): string {
    const n = { ok: 0, fail: 0, unknown: 0 };
    for (const w of this.writes) n[w.outcome]++;
    const readsFailed = this.reads.filter((r) => !r.ok).length;
    return `writes ok ${n.ok}, fail ${n.fail}, unknown ${n.unknown}; strong reads ${this.reads.length}, failed ${readsFailed}`;
  }
}

export interface Gap {
  readonly gapMs: number;
  readonly fromMs: number;
  readonly toMs: number;
}

/**
 * The longest stretch in [fromMs, toMs] without a success: success completion times are the
 * points; the last success at or before fromMs (or fromMs itself) opens the window and toMs
 * closes it, so a service that never came back counts to the end.
 */
export function longestGap(successMs: readonly number[], fromMs: number, toMs: number): Gap {
  const sorted = [...successMs].sort((a, b) => a - b);
  let prev = fromMs;
  for (const t of sorted) if (t <= fromMs) prev = t;
  let best: Gap = { gapMs: 0, fromMs: prev, toMs: prev };
  for (const t of [...sorted.filter((x) => x > fromMs && x <= toMs), toMs]) {
    if (t - prev > best.gapMs) best = { gapMs: t - prev, fromMs: prev, toMs: t };
    prev = t;
  }
  return best;
}

export interface WriteCheck {
  readonly checked: number;
  readonly lost: { rec: WriteRec; found: boolean; value: string }[];
  readonly phantom: WriteRec[];
}

/** Strong-reads every acknowledged and every refused write (bounded concurrency). */
export async function checkWrites(
  client: SkvClient,
  writes: readonly WriteRec[],
  options: { concurrency: number; timeoutMs: number },
): Promise<WriteCheck> {
  const todo = writes.filter((w) => w.outcome !== 'unknown');
  const lost: WriteCheck['lost'] = [];
  const phantom: WriteRec[] = [];
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const w = todo[next++];
      if (w === undefined) break;
      const got = await client.get(w.key, COLUMN, { timeoutMs: options.timeoutMs });
      const value = got.value.toString();
      if (w.outcome === 'ok') {
        if (!got.found || value !== w.value || got.version < w.version)
          lost.push({ rec: w, found: got.found, value });
      } else if (got.found && value === w.value) {
        phantom.push(w);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { checked: todo.length, lost, phantom };
}
