// A simulated disk holding one node's commit log for one cohort, as a sequence of records.
// Writes land in a volatile buffer; an fsync (which takes virtual time) makes every record
// written before it durable. A crash keeps the durable records and a random PREFIX of the
// unsynced ones (writes reach the platter in order, but not all of them), and may tear the last
// surviving record — recovery detects it by checksum and drops it (DESIGN.md §5 rule 7), which
// here means: the torn record is simply not recovered. `wipe` models a lost disk.
//
// Record semantics at recovery (same as src/log's record types):
//   hard     the latest wins (fence epoch, voter flag)
//   entry    appended after the current tail (seq = last + 1)
//   truncate every earlier entry with seq > afterSeq is void (S§6.1.1 logical truncation)
//   base     a checkpoint / installed snapshot at lsn with the state: entries <= lsn.seq are void
//   commit   commit hint (S§5 step 6)

import { assert } from '../core/assert.js';
import type { Lsn } from '../core/lsn.js';
import type { Entry, HardState } from '../replication/types.js';
import type { Prng } from './prng.js';

export type DiskRecord =
  | { readonly t: 'hard'; readonly hard: HardState }
  | { readonly t: 'entry'; readonly entry: Entry }
  | { readonly t: 'truncate'; readonly afterSeq: number }
  | { readonly t: 'base'; readonly lsn: Lsn; readonly state: Uint8Array }
  | { readonly t: 'commit'; readonly lsn: Lsn };

export interface Recovered {
  readonly hard: HardState | null;
  readonly base: { lsn: Lsn; state: Uint8Array } | null;
  readonly entries: Entry[];
  readonly commitLsn: Lsn | null;
}

export function recover(records: readonly DiskRecord[]): Recovered {
  let hard: HardState | null = null;
  let base: { lsn: Lsn; state: Uint8Array } | null = null;
  let entries: Entry[] = [];
  let commitLsn: Lsn | null = null;
  for (const r of records) {
    switch (r.t) {
      case 'hard':
        hard = r.hard;
        break;
      case 'entry': {
        const last = entries[entries.length - 1]?.lsn.seq ?? base?.lsn.seq ?? 0;
        assert(r.entry.lsn.seq === last + 1, `disk: entry ${r.entry.lsn.seq} after ${last}`);
        entries.push(r.entry);
        break;
      }
      case 'truncate':
        entries = entries.filter((e) => e.lsn.seq <= r.afterSeq);
        break;
      case 'base':
        base = { lsn: r.lsn, state: r.state };
        entries = entries.filter((e) => e.lsn.seq > r.lsn.seq);
        break;
      case 'commit':
        if (commitLsn === null || r.lsn.seq > commitLsn.seq) commitLsn = r.lsn;
        break;
      default: {
        const never: never = r;
        throw new Error(`unknown record ${JSON.stringify(never)}`);
      }
    }
  }
  return { hard, base, entries, commitLsn };
}

export class SimDisk {
  private durable: DiskRecord[] = [];
  private volatile: DiskRecord[] = [];
  /** Bumped on crash so that an fsync in flight at the crash completes into nothing. */
  private generation = 0;
  private fsyncInFlight = false;
  private waiters: { target: number; run: () => void }[] = [];
  fsyncs = 0;
  /** Durable entries per seq (honouring truncate/base), for the "on >= 2 logs" invariant. */
  private durableLsns = new Map<number, Lsn>();
  private durableBaseSeq = 0;

  constructor(
    private readonly schedule: (delayMs: number, fn: () => void) => void,
    private readonly fsyncLatencyMs: () => number,
  ) {}

  get writtenCount(): number {
    return this.durable.length + this.volatile.length;
  }

  isEmpty(): boolean {
    return this.durable.length === 0;
  }

  write(records: readonly DiskRecord[]): void {
    for (const r of records) this.volatile.push(r);
  }

  /** Runs `fn` once every record written so far is durable (at once if nothing is pending). */
  afterDurable(fn: () => void): void {
    const target = this.writtenCount;
    if (target <= this.durable.length) {
      this.schedule(0, fn);
      return;
    }
    this.waiters.push({ target, run: fn });
    this.maybeFsync();
  }

  private maybeFsync(): void {
    if (this.fsyncInFlight || this.volatile.length === 0) {
      if (!this.fsyncInFlight) this.release();
      return;
    }
    this.fsyncInFlight = true;
    const gen = this.generation;
    const count = this.volatile.length;
    this.schedule(this.fsyncLatencyMs(), () => {
      if (gen !== this.generation) return;
      this.fsyncInFlight = false;
      this.fsyncs += 1;
      const synced = this.volatile.splice(0, count);
      for (const r of synced) {
        this.durable.push(r);
        this.indexDurable(r);
      }
      this.release();
      this.maybeFsync();
    });
  }

  private release(): void {
    const done = this.waiters.filter((w) => w.target <= this.durable.length);
    this.waiters = this.waiters.filter((w) => w.target > this.durable.length);
    for (const w of done) w.run();
  }

  /** The latest durable hard state (what a restart would recover). */
  durableHard: HardState | null = null;

  private indexDurable(r: DiskRecord): void {
    switch (r.t) {
      case 'entry':
        this.durableLsns.set(r.entry.lsn.seq, r.entry.lsn);
        break;
      case 'truncate':
        for (const seq of [...this.durableLsns.keys()])
          if (seq > r.afterSeq) this.durableLsns.delete(seq);
        break;
      case 'base':
        this.durableBaseSeq = Math.max(this.durableBaseSeq, r.lsn.seq);
        for (const seq of [...this.durableLsns.keys()])
          if (seq <= r.lsn.seq) this.durableLsns.delete(seq);
        this.durableLsns.set(r.lsn.seq, r.lsn);
        break;
      case 'hard':
        this.durableHard = r.hard;
        break;
      case 'commit':
        break;
      default: {
        const never: never = r;
        throw new Error(`unknown record ${JSON.stringify(never)}`);
      }
    }
  }

  /**
   * Whether the entry `lsn` (or a checkpoint covering it) is durable here — or was, on a disk
   * that has since been lost: a follower's ack is true when sent, and a leader may count it
   * after the disk vanished (that loss is the one permanent failure a cohort tolerates).
   */
  hasDurable(lsn: Lsn): boolean {
    const local = this.durableLsns.get(lsn.seq);
    if (local !== undefined && local.epoch === lsn.epoch) return true;
    if (local === undefined && lsn.seq < this.durableBaseSeq) return true;
    const lost = this.lostLsns.get(lsn.seq);
    return (lost !== undefined && lost.epoch === lsn.epoch) || lsn.seq < this.lostBaseSeq;
  }

  private lostLsns = new Map<number, Lsn>();
  private lostBaseSeq = 0;

  /** Crash: durable records stay, a random prefix of the unsynced ones survives, maybe torn. */
  crash(
    rng: Prng,
    opts: { tearProbability: number },
  ): { kept: number; lost: number; torn: boolean } {
    this.generation += 1;
    this.fsyncInFlight = false;
    this.waiters = [];
    const n = this.volatile.length;
    let kept = n === 0 ? 0 : rng.int(n + 1);
    let torn = false;
    if (kept > 0 && rng.chance(opts.tearProbability)) {
      kept -= 1; // the last surviving write is torn: its checksum fails, recovery drops it
      torn = true;
    }
    const survivors = this.volatile.slice(0, kept);
    this.volatile = [];
    for (const r of survivors) {
      this.durable.push(r);
      this.indexDurable(r);
    }
    return { kept, lost: n - kept, torn };
  }

  /** Scenario setup: records that are already durable (a node that ran before). */
  seed(records: readonly DiskRecord[]): void {
    assert(this.durable.length === 0 && this.volatile.length === 0, 'seed an empty disk');
    for (const r of records) {
      this.durable.push(r);
      this.indexDurable(r);
    }
  }

  wipe(): void {
    this.generation += 1;
    this.fsyncInFlight = false;
    this.waiters = [];
    this.durable = [];
    this.volatile = [];
    for (const [seq, l] of this.durableLsns) this.lostLsns.set(seq, l);
    this.lostBaseSeq = Math.max(this.lostBaseSeq, this.durableBaseSeq);
    this.durableLsns.clear();
    this.durableBaseSeq = 0;
    this.durableHard = null;
  }

  recover(): Recovered {
    assert(this.volatile.length === 0, 'recover only after a crash or at boot');
    return recover(this.durable);
  }

  /** Rewrite the durable log keeping only what recovery needs (a segment GC after a checkpoint). */
  compactDurable(): void {
    if (this.volatile.length > 0 || this.fsyncInFlight) return;
    const r = recover(this.durable);
    const out: DiskRecord[] = [];
    if (r.hard !== null) out.push({ t: 'hard', hard: r.hard });
    if (r.base !== null) out.push({ t: 'base', lsn: r.base.lsn, state: r.base.state });
    for (const e of r.entries) out.push({ t: 'entry', entry: e });
    if (r.commitLsn !== null) out.push({ t: 'commit', lsn: r.commitLsn });
    this.durable = out;
  }
}
