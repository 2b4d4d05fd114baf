// The node's live status page (issue #8): what GET /status.json answers and the bounded,
// in-process rings behind its charts. Served next to /metrics by metrics.ts; the HTML that polls
// it is status-page.html.ts.
//
// Cost contract: the request path pays one slot lookup, one counter increment and one histogram
// bucket increment per request (fed from NodeMetrics.observe, which the node already calls);
// everything else — the range map, each cohort's LSNs, the percentiles — is computed only when
// someone asks for /status.json. Memory is fixed: RING_SECONDS slots of LATENCY_BUCKETS counters
// and at most METHODS_MAX methods each, and ELECTIONS_MAX elections. Nothing here is durable: a
// restarted node starts with empty rings.

import { formatBytes } from '../placement/bytes.js';
import type { NodeStatusView, RangeMapView } from '../rpc/backend.js';

/** Seconds of per-second throughput and latency the node keeps (and the charts show). */
export const RING_SECONDS = 60;
/** Recent elections kept (newest first in status.json). */
export const ELECTIONS_MAX = 50;
/** Distinct request methods counted per second; more are folded into 'other'. */
const METHODS_MAX = 8;
/** Latency histogram: log-spaced buckets from LATENCY_MS_MIN, each GROWTH times wider. */
const LATENCY_MS_MIN = 0.05;
const LATENCY_GROWTH = 1.2;
const LATENCY_BUCKETS = 64; // 0.05 ms · 1.2^63 ≈ 5.0e3 s: the last bucket takes the rest
const LN_GROWTH = Math.log(LATENCY_GROWTH);

interface SecondSlot {
  /** Which wall-clock second (ms / 1000, floored) the slot holds; -1: empty. */
  second: number;
  readonly ops: Map<string, number>;
  readonly latency: Uint32Array;
  total: number;
}

export interface ThroughputSecond {
  /** Start of the second, ms since the epoch. */
  readonly atMs: number;
  readonly total: number;
  readonly ops: Readonly<Record<string, number>>;
  /** Upper bound of the histogram bucket holding the quantile; null when no request. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

export interface ElectionEvent {
  readonly atMs: number;
  readonly rangeId: number;
  readonly leader: string;
  readonly epoch: number;
}

function bucketOf(ms: number): number {
  if (!(ms > LATENCY_MS_MIN)) return 0;
  const i = Math.ceil(Math.log(ms / LATENCY_MS_MIN) / LN_GROWTH);
  return Math.min(i, LATENCY_BUCKETS - 1);
}

/** The upper bound of bucket i, ms. */
function bucketUpperMs(i: number): number {
  return LATENCY_MS_MIN * LATENCY_GROWTH ** i;
}

function quantileMs(h: Uint32Array, total: number, q: number): number | null {
  if (total === 0) return null;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i]!;
    if (seen >= rank) return bucketUpperMs(i);
  }
  return bucketUpperMs(h.length - 1);
}

/**
 * Per-second request counts by method and a latency histogram per second, in a ring of
 * RING_SECONDS slots indexed by the wall-clock second: a slot is reset when its second comes
 * round again, so an idle node needs no timer.
 */
export class LiveRequestStats {
  private readonly slots: SecondSlot[];

  constructor(private readonly nowMs: () => number = Date.now) {
    this.slots = Array.from({ length: RING_SECONDS }, () => ({
      second: -1,
      ops: new Map<string, number>(),
      latency: new Uint32Array(LATENCY_BUCKETS),
      total: 0,
    }));
  }

  /** The hot path: O(1), no allocation once a method has been seen in the slot. */
  observe(method: string, seconds: number): void {
    const second = Math.floor(this.nowMs() / 1000);
    const slot = this.slots[second % RING_SECONDS]!;
    if (slot.second !== second) {
      slot.second = second;
      slot.ops.clear();
      slot.latency.fill(0);
      slot.total = 0;
    }
    const key = slot.ops.has(method) || slot.ops.size < METHODS_MAX - 1 ? method : 'other';
    slot.ops.set(key, (slot.ops.get(key) ?? 0) + 1);
    slot.latency[bucketOf(seconds * 1000)]!++;
    slot.total++;
  }

  /** The last RING_SECONDS - 1 complete seconds, oldest first (empty seconds included). */
  series(): ThroughputSecond[] {
    const current = Math.floor(this.nowMs() / 1000);
    const out: ThroughputSecond[] = [];
    for (let second = current - RING_SECONDS + 1; second < current; second++) {
      const slot = this.slots[((second % RING_SECONDS) + RING_SECONDS) % RING_SECONDS]!;
      const live = slot.second === second;
      out.push({
        atMs: second * 1000,
        total: live ? slot.total : 0,
        ops: live ? Object.fromEntries(slot.ops) : {},
        p50Ms: live ? quantileMs(slot.latency, slot.total, 0.5) : null,
        p99Ms: live ? quantileMs(slot.latency, slot.total, 0.99) : null,
      });
    }
    return out;
  }
}

/** The last ELECTIONS_MAX leaders this node learnt of, in a ring. */
export class ElectionLog {
  private readonly ring: ElectionEvent[] = [];
  private next = 0;
  private count = 0;

  constructor(private readonly nowMs: () => number = Date.now) {}

  record(rangeId: number, leader: string, epoch: number): void {
    const e = { atMs: this.nowMs(), rangeId, leader, epoch };
    if (this.ring.length < ELECTIONS_MAX) this.ring.push(e);
    else this.ring[this.next] = e;
    this.next = (this.next + 1) % ELECTIONS_MAX;
    this.count++;
  }

  /** Every election recorded since start (the ring keeps the newest ELECTIONS_MAX). */
  get total(): number {
    return this.count;
  }

  /** Newest first. */
  recent(): ElectionEvent[] {
    const out: ElectionEvent[] = [];
    for (let i = 1; i <= this.ring.length; i++) {
      out.push(this.ring[(this.next - i + ELECTIONS_MAX) % ELECTIONS_MAX]!);
    }
    return out;
  }
}

/** What the page needs from the node, read only when /status.json is asked for. */
export interface StatusSource {
  nodeStatus(): Promise<NodeStatusView>;
  rangeMap(): Promise<RangeMapView>;
}

/** The document /status.json serves (and the page renders). */
export interface StatusDocument {
  readonly generatedAtMs: number;
  readonly node: {
    readonly id: string;
    readonly address: string;
    readonly sessionState: string;
    readonly uptimeMs: number;
  };
  readonly rangeMap: {
    readonly version: number;
    readonly ranges: readonly {
      readonly rangeId: number;
      /** Printable bounds (formatBytes); end null: the end of the key space. */
      readonly start: string;
      readonly end: string | null;
      readonly members: readonly string[];
      readonly leader: string | null;
      readonly epoch: number;
      /** Known when this node leads the range: its furthest follower's lag, entries. */
      readonly followerLagEntries: number | null;
    }[];
    readonly nodes: readonly { readonly id: string; readonly address: string }[];
  };
  readonly cohorts: NodeStatusView['cohorts'];
  readonly throughput: { readonly windowSeconds: number; readonly seconds: ThroughputSecond[] };
  readonly elections: { readonly total: number; readonly recent: ElectionEvent[] };
}

export async function buildStatus(
  source: StatusSource,
  live: LiveRequestStats,
  elections: ElectionLog,
  nowMs: number = Date.now(),
): Promise<StatusDocument> {
  const [self, map] = await Promise.all([source.nodeStatus(), source.rangeMap()]);
  const leading = new Map(
    self.cohorts.filter((c) => c.role === 'leader').map((c) => [c.rangeId, c.followerLagEntries]),
  );
  return {
    generatedAtMs: nowMs,
    node: {
      id: self.nodeId,
      address: self.address,
      sessionState: self.sessionState,
      uptimeMs: Math.round(self.uptimeMs),
    },
    rangeMap: {
      version: map.version,
      ranges: map.ranges.map((r) => ({
        rangeId: r.rangeId,
        start: formatBytes(r.start),
        end: r.end === null ? null : formatBytes(r.end),
        members: [...r.members],
        leader: r.leader,
        epoch: r.epoch,
        followerLagEntries: leading.get(r.rangeId) ?? null,
      })),
      nodes: map.nodes.map((n) => ({ id: n.id, address: n.address })),
    },
    cohorts: self.cohorts,
    throughput: { windowSeconds: RING_SECONDS - 1, seconds: live.series() },
    elections: { total: elections.total, recent: elections.recent() },
  };
}
