// Snapshots a node has received in full, per range, waiting for the core to install one.
//
// Each is staged on disk, so only a few are kept: past `keepMax` the oldest go. Never the one the
// core has accepted and not yet installed: its Ready may wait behind an earlier install (the
// cohort gates later Readys on it) while newer transfers arrive, and once the core has taken a
// snapshot it must find it here (`take`). The core tells which one it holds (`held`); one it
// refused, or one a newer accepted snapshot superseded, may go.

import { assert } from '../core/assert.js';
import type { RangeId } from '../core/ids.js';
import { formatLsn, type Lsn, lsnEquals } from '../core/lsn.js';

export class ReceivedSnapshots<T extends { readonly lsn: Lsn }> {
  private readonly byRange = new Map<RangeId, T[]>();

  /** `drop` discards a transfer (its staged cells); it is called once per transfer dropped. */
  constructor(
    private readonly keepMax: number,
    private readonly drop: (rangeId: RangeId, t: T) => void,
  ) {
    assert(keepMax >= 1, 'keep at least one received snapshot');
  }

  add(rangeId: RangeId, t: T): void {
    const list = this.byRange.get(rangeId);
    if (list === undefined) this.byRange.set(rangeId, [t]);
    else list.push(t);
  }

  /**
   * Drops the oldest beyond `keepMax`, skipping the one at `held` (the snapshot the core accepted
   * and has not handed over yet), which stays even when it is the oldest.
   */
  trim(rangeId: RangeId, held: Lsn | null): void {
    const list = this.byRange.get(rangeId);
    if (list === undefined) return;
    let excess = list.length - this.keepMax;
    for (let i = 0; excess > 0 && i < list.length; ) {
      const t = list[i]!;
      if (held !== null && lsnEquals(t.lsn, held)) {
        i++;
        continue;
      }
      list.splice(i, 1);
      excess--;
      this.drop(rangeId, t);
    }
  }

  /**
   * The snapshot at `lsn`, which the core now installs; those received before it go (the core
   * will not take an older one after it). Throws if it was not kept: a broken invariant.
   */
  take(rangeId: RangeId, lsn: Lsn): T {
    const list = this.byRange.get(rangeId) ?? [];
    const at = list.findIndex((t) => lsnEquals(t.lsn, lsn));
    assert(at >= 0, `the snapshot at ${formatLsn(lsn)} to install was received and kept`);
    const t = list[at]!;
    for (const older of list.splice(0, at + 1)) if (older !== t) this.drop(rangeId, older);
    if (list.length === 0) this.byRange.delete(rangeId);
    return t;
  }

  /** How many are kept for the range (tests). */
  count(rangeId: RangeId): number {
    return this.byRange.get(rangeId)?.length ?? 0;
  }
}
