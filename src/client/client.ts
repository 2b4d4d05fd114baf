// The skv client library: routes each request straight to its range's leader (strong) or to a
// replica (timeline) from a cached range map, over one Session stream per node.
//
// Retries (TESTING.md A.2 root cause 1: never turn an unknown outcome into a duplicate):
//   - `not-leader` and `unavailable` from a node mean the request was refused before it was
//     proposed: refresh the route (leader hint first) and retry with backoff, within the deadline.
//   - `overloaded` on a write: the range refused it before proposing it (too many writes in
//     flight: back-pressure), so back off and retry at the same leader, within the deadline. On
//     a read it is surfaced (an answer too large for a message never gets smaller).
//   - `deadline-exceeded` on a write means the outcome is unknown: surfaced, never retried.
//     Reads are retried (they change nothing).
//   - `invalid-argument` and `version-mismatch` are answers, not failures: surfaced at once.
//   - `unauthenticated` (missing or wrong token or certificate) is surfaced at once.

import { performance } from 'node:perf_hooks';
import { SkvError } from '../core/errors.js';
import type { RangeMapResponse } from '../rpc/generated/skv/v1/kv.js';
import type { NodeTransport, SessionOp, SessionResult } from '../rpc/node-transport.js';

export interface ClientOptions {
  /** Seed addresses (host:port); any node serves the range map. */
  readonly servers: readonly string[];
  readonly transport: NodeTransport;
  /** Per-call deadline unless the call gives its own. */
  readonly timeoutMs?: number;
  /** Attempts per call at most (routing retries only). */
  readonly attemptsMax?: number;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
}

export interface CallOptions {
  readonly timeoutMs?: number;
}

export interface ReadOptions extends CallOptions {
  /** Timeline reads may be served by any replica: possibly stale, never uncommitted. */
  readonly timeline?: boolean;
}

export interface WriteOptions extends CallOptions {
  /** Conditional put/delete: applies only if the column's version equals this (0 = absent). */
  readonly ifVersion?: number;
}

export interface Cell {
  readonly column: Buffer;
  readonly value: Buffer;
  readonly version: number;
}

export interface GetResult {
  readonly found: boolean;
  readonly value: Buffer;
  readonly version: number;
}

interface Route {
  readonly rangeId: number;
  readonly start: Buffer;
  readonly end: Buffer | null;
  readonly members: readonly string[];
  leader: string | null;
}

type Bytes = string | Uint8Array;

function bytes(b: Bytes): Buffer {
  return typeof b === 'string'
    ? Buffer.from(b, 'utf8')
    : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class SkvClient {
  private routes: Route[] = [];
  private addresses = new Map<string, string>();
  private mapVersion = -1;
  private refreshing: Promise<void> | null = null;
  private readonly timeoutMs: number;
  private readonly attemptsMax: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;

  constructor(private readonly options: ClientOptions) {
    if (options.servers.length === 0) throw new SkvError('invalid-argument', 'no servers given');
    this.timeoutMs = options.timeoutMs ?? 5_000;
    // Retries are bounded by the deadline first; the attempt cap only stops a runaway loop.
    this.attemptsMax = options.attemptsMax ?? 64;
    this.backoffBaseMs = options.backoffBaseMs ?? 20;
    this.backoffMaxMs = options.backoffMaxMs ?? 500;
  }

  close(): void {
    this.options.transport.close();
  }

  async get(key: Bytes, column: Bytes, options: ReadOptions = {}): Promise<GetResult> {
    const r = await this.route(
      key,
      {
        $case: 'get',
        value: { key: bytes(key), column: bytes(column), consistency: options.timeline ? 1 : 0 },
      },
      { read: true, timeline: options.timeline === true, timeoutMs: options.timeoutMs },
    );
    if (r.$case !== 'get') throw new SkvError('internal', `unexpected ${r.$case} result`);
    return {
      found: r.value.found,
      value: Buffer.from(r.value.value),
      version: Number(r.value.version),
    };
  }

  /** Resolves with the new version; rejects with code `version-mismatch` when conditional. */
  async put(key: Bytes, column: Bytes, value: Bytes, options: WriteOptions = {}): Promise<number> {
    const op: SessionOp = {
      $case: 'put',
      value: {
        key: bytes(key),
        column: bytes(column),
        value: bytes(value),
        ...(options.ifVersion === undefined ? {} : { expectedVersion: BigInt(options.ifVersion) }),
      },
    };
    const r = await this.route(key, op, {
      read: false,
      timeline: false,
      timeoutMs: options.timeoutMs,
    });
    if (r.$case !== 'put') throw new SkvError('internal', `unexpected ${r.$case} result`);
    return Number(r.value.version);
  }

  /** Resolves with whether the column existed and the version it had. */
  async delete(
    key: Bytes,
    column: Bytes,
    options: WriteOptions = {},
  ): Promise<{ found: boolean; version: number }> {
    const op: SessionOp = {
      $case: 'delete',
      value: {
        key: bytes(key),
        column: bytes(column),
        ...(options.ifVersion === undefined ? {} : { expectedVersion: BigInt(options.ifVersion) }),
      },
    };
    const r = await this.route(key, op, {
      read: false,
      timeline: false,
      timeoutMs: options.timeoutMs,
    });
    if (r.$case !== 'delete') throw new SkvError('internal', `unexpected ${r.$case} result`);
    return { found: r.value.found, version: Number(r.value.version) };
  }

  async readRow(
    key: Bytes,
    columns: readonly Bytes[] = [],
    options: ReadOptions = {},
  ): Promise<Cell[]> {
    const op: SessionOp = {
      $case: 'readRow',
      value: {
        key: bytes(key),
        columns: columns.map(bytes),
        consistency: options.timeline ? 1 : 0,
      },
    };
    const r = await this.route(key, op, {
      read: true,
      timeline: options.timeline === true,
      timeoutMs: options.timeoutMs,
    });
    if (r.$case !== 'readRow') throw new SkvError('internal', `unexpected ${r.$case} result`);
    return r.value.cells.map((c) => ({
      column: Buffer.from(c.column),
      value: Buffer.from(c.value),
      version: Number(c.version),
    }));
  }

  /** Writes several columns of one row atomically; `value: null` deletes the column. */
  async writeRow(
    key: Bytes,
    writes: readonly { column: Bytes; value: Bytes | null; ifVersion?: number }[],
    options: CallOptions = {},
  ): Promise<number[]> {
    const op: SessionOp = {
      $case: 'writeRow',
      value: {
        key: bytes(key),
        writes: writes.map((w) => ({
          column: bytes(w.column),
          ...(w.value === null ? {} : { value: bytes(w.value) }),
          ...(w.ifVersion === undefined ? {} : { expectedVersion: BigInt(w.ifVersion) }),
        })),
      },
    };
    const r = await this.route(key, op, {
      read: false,
      timeline: false,
      timeoutMs: options.timeoutMs,
    });
    if (r.$case !== 'writeRow') throw new SkvError('internal', `unexpected ${r.$case} result`);
    return r.value.versions.map(Number);
  }

  /**
   * Rows with start <= key < end (end null: to the end), in key order, across ranges (the node
   * the scan goes to, `start`'s range's leader or replica when known, walks the ranges). A node
   * that cannot be reached (`unavailable`: e.g. its
   * channel is still backing off from an early refused connection) is retried on another node
   * with backoff, within the deadline: a scan is a read, so a retry is safe. Once rows have been
   * yielded the error goes to the caller instead, who holds a prefix a retry would repeat.
   */
  async *scan(
    start: Bytes,
    end: Bytes | null,
    options: ReadOptions & { limit?: number; columns?: readonly Bytes[] } = {},
  ): AsyncIterable<{ key: Buffer; cells: Cell[] }> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const deadline = performance.now() + timeoutMs;
    const request = {
      start: bytes(start),
      end: end === null ? Buffer.alloc(0) : bytes(end),
      limit: options.limit ?? 0,
      consistency: options.timeline ? 1 : 0,
      columns: (options.columns ?? []).map(bytes),
    };
    const unreachable = new Set<string>();
    for (let attempt = 0; ; attempt++) {
      const address = await this.scanAddress(
        request.start,
        options.timeline === true,
        timeoutMs,
        unreachable,
      );
      const stream = this.options.transport.scan(
        address,
        request,
        Math.max(1, Math.round(deadline - performance.now())),
      );
      let yielded = false;
      try {
        for await (const msg of stream) {
          for (const row of msg.rows) {
            yielded = true;
            yield {
              key: Buffer.from(row.key),
              cells: row.cells.map((c) => ({
                column: Buffer.from(c.column),
                value: Buffer.from(c.value),
                version: Number(c.version),
              })),
            };
          }
        }
        return;
      } catch (err) {
        const pause = this.backoff(attempt);
        const retry =
          !yielded &&
          err instanceof SkvError &&
          err.code === 'unavailable' &&
          performance.now() + pause < deadline;
        if (!retry) throw err;
        unreachable.add(address);
        await sleep(pause);
      }
    }
  }

  /** The cluster's range map as a node reports it. */
  async rangeMap(options: CallOptions = {}): Promise<RangeMapResponse> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    let lastError: unknown = null;
    for (const address of this.seedOrder()) {
      try {
        const map = await this.options.transport.rangeMap(address, timeoutMs);
        this.install(map);
        return map;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError instanceof SkvError
      ? lastError
      : new SkvError('unavailable', `no server answered: ${String(lastError)}`);
  }

  private seedOrder(): string[] {
    const known = [...new Set([...this.options.servers, ...this.addresses.values()])];
    return known;
  }

  private install(map: RangeMapResponse): void {
    const version = Number(map.version);
    this.addresses = new Map(map.nodes.map((n) => [n.id, n.address]));
    this.mapVersion = version;
    this.routes = map.ranges
      .map((r) => ({
        rangeId: r.rangeId,
        start: Buffer.from(r.start),
        end: r.end.length === 0 ? null : Buffer.from(r.end),
        members: [...r.members],
        leader: r.leader === '' ? null : r.leader,
      }))
      .sort((a, b) => Buffer.compare(a.start, b.start));
  }

  private async refresh(timeoutMs: number): Promise<void> {
    if (this.refreshing === null) {
      this.refreshing = this.rangeMap({ timeoutMs })
        .then(() => undefined)
        .finally(() => {
          this.refreshing = null;
        });
    }
    await this.refreshing;
  }

  /**
   * Where a scan goes first: the node that serves `start`'s range (its leader; for a timeline
   * scan, one of its replicas) when the map names it, so that no other node relays every row
   * (one more decode and encode of the whole answer); else any node, which walks the ranges and
   * forwards what it does not serve.
   */
  private async scanAddress(
    start: Buffer,
    timeline: boolean,
    timeoutMs: number,
    avoid: ReadonlySet<string>,
  ): Promise<string> {
    if (this.mapVersion < 0) await this.refresh(timeoutMs);
    const routed = this.pickAddress(this.routeFor(start), timeline);
    return routed !== null && !avoid.has(routed) ? routed : this.anyAddress(timeoutMs, avoid);
  }

  /** A random live node, one not in `avoid` while there is one. */
  private async anyAddress(
    timeoutMs: number,
    avoid: ReadonlySet<string> = new Set(),
  ): Promise<string> {
    if (this.mapVersion < 0) await this.refresh(timeoutMs);
    const live = [...this.addresses.values()];
    const candidates = live.length > 0 ? live : [...this.options.servers];
    const fresh = candidates.filter((a) => !avoid.has(a));
    const from = fresh.length > 0 ? fresh : candidates;
    return from[Math.floor(Math.random() * from.length)] ?? this.options.servers[0]!;
  }

  private routeFor(key: Buffer): Route | null {
    let lo = 0;
    let hi = this.routes.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.routes[mid]!;
      if (Buffer.compare(key, r.start) < 0) hi = mid - 1;
      else if (r.end !== null && Buffer.compare(key, r.end) >= 0) lo = mid + 1;
      else return r;
    }
    return null;
  }

  private async route(
    key: Bytes,
    op: SessionOp,
    how: { read: boolean; timeline: boolean; timeoutMs: number | undefined },
  ): Promise<SessionResult> {
    const timeoutMs = how.timeoutMs ?? this.timeoutMs;
    const deadline = performance.now() + timeoutMs;
    const k = bytes(key);
    let hint: string | null = null;
    let hintsFollowed = 0;
    let lastError: SkvError | null = null;
    for (let attempt = 0; attempt < this.attemptsMax; attempt++) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      if (this.mapVersion < 0) {
        try {
          await this.refresh(remaining);
        } catch (err) {
          lastError = err instanceof SkvError ? err : new SkvError('unavailable', String(err));
          // Refused credentials do not get better with retries.
          if (lastError.code === 'unauthenticated') throw lastError;
          await sleep(this.backoff(attempt));
          continue;
        }
      }
      const route = this.routeFor(k);
      const address = hint ?? this.pickAddress(route, how.timeline);
      hint = null;
      if (address === null) {
        lastError = new SkvError('unavailable', 'no leader known for the range');
        this.mapVersion = -1;
        await sleep(this.backoff(attempt));
        continue;
      }
      try {
        return await this.options.transport.call(
          address,
          op,
          Math.max(1, deadline - performance.now()),
        );
      } catch (err) {
        if (!(err instanceof SkvError)) throw err;
        lastError = err;
        const leaderHint = (err as { leaderHint?: string | null }).leaderHint ?? null;
        switch (err.code) {
          case 'not-leader':
            hint = leaderHint;
            hintsFollowed = hint === null ? 0 : hintsFollowed + 1;
            if (route !== null) route.leader = null;
            if (hint === null || hintsFollowed > 2) {
              // No leader known yet (an election is running), or hints that lead nowhere (stale
              // views during a handover): refresh and back off.
              this.mapVersion = -1;
              hint = null;
              hintsFollowed = 0;
              await sleep(this.backoff(attempt));
            }
            break;
          case 'unavailable':
          case 'closed':
            this.mapVersion = -1;
            await sleep(this.backoff(attempt));
            break;
          case 'overloaded':
            if (how.read) throw err;
            await sleep(this.backoff(attempt));
            break;
          case 'deadline-exceeded':
            // The node may be gone: route afresh next time. Outcome unknown: a write is never
            // retried; a read may be.
            this.mapVersion = -1;
            if (!how.read) throw err;
            break;
          default:
            throw err;
        }
      }
    }
    throw lastError ?? new SkvError('deadline-exceeded', `deadline of ${timeoutMs} ms exceeded`);
  }

  private pickAddress(route: Route | null, timeline: boolean): string | null {
    if (route === null) return null;
    if (timeline) {
      const members = route.members.filter((m) => this.addresses.has(m));
      const m = members[Math.floor(Math.random() * members.length)];
      return m === undefined ? null : (this.addresses.get(m) ?? null);
    }
    return route.leader === null ? null : (this.addresses.get(route.leader) ?? null);
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }
}
