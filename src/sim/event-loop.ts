// The virtual clock and the event queue of a simulation. Time is integer milliseconds; events at
// the same time run in the order they were scheduled (a tie-break by insertion number), so a run
// is a pure function of its seed. A bound on events executed stops a runaway run loudly.

import { assert } from '../core/assert.js';

interface Scheduled {
  readonly at: number;
  readonly order: number;
  readonly run: () => void;
}

export class EventLoop {
  private heap: Scheduled[] = [];
  private order = 0;
  private nowMs = 0;
  executed = 0;

  constructor(private readonly eventsMax = 50_000_000) {}

  now(): number {
    return this.nowMs;
  }

  /**
   * A strictly increasing timestamp in execution order (virtual ms * 10^4 + the event's rank
   * inside its ms), for histories: two events in the same virtual ms are still ordered, so an
   * op that returned before another was called is never mistaken for a concurrent one.
   */
  stamp(): number {
    if (this.stampMs !== this.nowMs) {
      this.stampMs = this.nowMs;
      this.stampRank = 0;
    }
    this.stampRank = Math.min(this.stampRank + 1, 9_999);
    return this.nowMs * 10_000 + this.stampRank;
  }

  private stampMs = -1;
  private stampRank = 0;

  /** Run `fn` after `delayMs` (>= 0) of virtual time. */
  after(delayMs: number, fn: () => void): void {
    assert(delayMs >= 0 && Number.isFinite(delayMs), 'delay is a finite non-negative number');
    this.push({ at: this.nowMs + Math.round(delayMs), order: this.order++, run: fn });
  }

  /** Run events until the queue is empty, virtual time passes `untilMs`, or `stop()` is true. */
  runUntil(untilMs: number, stop?: () => boolean): void {
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      if (top.at > untilMs) break;
      this.pop();
      this.nowMs = top.at;
      this.executed += 1;
      assert(this.executed <= this.eventsMax, `more than ${this.eventsMax} simulation events`);
      top.run();
      if (stop?.() === true) return;
    }
    if (this.nowMs < untilMs) this.nowMs = untilMs;
  }

  private less(a: Scheduled, b: Scheduled): boolean {
    return a.at < b.at || (a.at === b.at && a.order < b.order);
  }

  private push(e: Scheduled): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
