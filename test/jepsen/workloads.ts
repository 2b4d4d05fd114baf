// The Jepsen run's client workloads (TESTING.md "Recommended test design", layer 2, W1–W4).
// Every op is recorded with its call and return on the runner's one monotonic clock
// (performance.now(), ms since the runner started) and one of three outcomes (A.1):
//   ok    it happened (with its result) — a conditional op that did not match is ok too
//   fail  the server refused it before proposing (not-leader, unavailable, overloaded)
//   info  anything else: deadline, broken stream, internal — it may take effect at any time
// Nothing is retried after an unknown outcome; after an `info` op the logical client continues
// as a NEW process (Jepsen's convention: the hung op stays concurrent with all that follows).
//
//   W1 registers   get / put / conditional put / delete of one column, strong, sent to a RANDOM
//                  live node (which forwards to the leader: that is what makes an unsafe follower
//                  read visible); ≤ OPS_PER_KEY ops per key, then a fresh key; unique values
//   W2 set         put-if-absent of unique keys through the client library; final strong read
//   W3 timeline    timeline reads pinned to one replica (forwarded=true: never passed on)
//   W4 counter     read + conditional put increments through the client library
// Bounds: a fixed number of workers each, one op in flight per worker, every op has a deadline.

import type { SkvClient } from '../../src/client/index.js';
import { SkvError } from '../../src/core/errors.js';
import type { NodeTransport, SessionOp } from '../../src/rpc/node-transport.js';
import { type HistoryOp, HistoryRecorder, type Outcome } from '../../src/sim/checkers/history.js';
import type { TimelineRead } from '../../src/sim/checkers/timeline.js';
import type { Prng } from '../../src/sim/prng.js';

export const OPS_PER_KEY = 200;
/**
 * A worker whose op failed waits this long: a dead leader's range fails fast (the forwarding
 * node's stream to it is refused), and without a pause one worker would pile up hundreds of
 * `info` writes per second on one key — more than the linearizability search can decide.
 */
const FAILURE_BACKOFF_MS = 250;
/** Timeline readers pause between reads (they would otherwise take most of the CPU). */
const TIMELINE_THINK_MS = 10;
const REGISTER_SLOTS = 6;
const COLUMN = 'v';
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

export interface WorkloadEnv {
  readonly rng: Prng;
  readonly client: SkvClient;
  readonly transport: NodeTransport;
  /** Live node ids and addresses right now (the runner knows what it killed or paused). */
  readonly liveNodes: () => { id: string; address: string }[];
  readonly now: () => number;
  readonly opTimeoutMs: number;
  readonly tag: string;
}

/** A client error, classified (A.1). Reads never take effect, so their errors are `fail`. */
export function classify(err: unknown, isRead: boolean): Outcome {
  if (isRead) return 'fail';
  if (err instanceof SkvError) {
    switch (err.code) {
      case 'not-leader':
      case 'unavailable':
      case 'overloaded':
      case 'invalid-argument':
        return 'fail';
      default:
        return 'info';
    }
  }
  return 'info';
}

function codeOf(err: unknown): string {
  return err instanceof SkvError ? err.code : String(err);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface OpStats {
  ok: number;
  fail: number;
  info: number;
  codes: Record<string, number>;
}

function stats(): OpStats {
  return { ok: 0, fail: 0, info: 0, codes: {} };
}

function count(s: OpStats, outcome: Outcome, err?: unknown): void {
  s[outcome]++;
  if (err !== undefined) {
    const c = codeOf(err);
    s.codes[c] = (s.codes[c] ?? 0) + 1;
  }
}

/** A completed op of any workload, for the availability figures. */
export interface OpMark {
  readonly call: number;
  readonly outcome: Outcome;
}

export class Workloads {
  readonly registerHistory = new HistoryRecorder(2_000_000);
  readonly timelineReads: TimelineRead[] = [];
  readonly set = { attempted: [] as string[], acked: [] as string[], failed: [] as string[] };
  readonly counter = { key: '', okIncrements: 0, infoIncrements: 0 };
  readonly stats = { register: stats(), set: stats(), timeline: stats(), counter: stats() };
  readonly marks: OpMark[] = [];
  /** Keys whose put-if-absent answered version-mismatch: someone else wrote a unique key. */
  readonly setMismatches: string[] = [];
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private nextProcess = 0;
  private nextKey = 0;
  private readonly slots: { key: string; ops: number }[] = [];
  /** Register keys ever used (timeline reads pick among the recent ones). */
  readonly registerKeys: string[] = [];

  constructor(private readonly env: WorkloadEnv) {
    this.counter.key = `mcounter-${env.tag}`;
    for (let i = 0; i < REGISTER_SLOTS; i++) this.slots.push({ key: this.freshKey(), ops: 0 });
  }

  private freshKey(): string {
    const key = `${this.env.rng.pick([...LETTERS])}reg-${this.env.tag}-${this.nextKey++}`;
    this.registerKeys.push(key);
    return key;
  }

  start(workers: { register: number; set: number; timeline: number; counter: number }): void {
    for (let i = 0; i < workers.register; i++) this.loops.push(this.registerLoop());
    for (let i = 0; i < workers.set; i++) this.loops.push(this.setLoop(i));
    for (let i = 0; i < workers.timeline; i++) this.loops.push(this.timelineLoop());
    for (let i = 0; i < workers.counter; i++) this.loops.push(this.counterLoop());
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }

  /** Completed ops so far (all workloads but timeline reads). */
  get completed(): number {
    const s = this.stats;
    return [s.register, s.set, s.counter, s.timeline].reduce(
      (n, x) => n + x.ok + x.fail + x.info,
      0,
    );
  }

  private pickNode(): { id: string; address: string } | null {
    const live = this.env.liveNodes();
    return live.length === 0 ? null : this.env.rng.pick(live);
  }

  // ---- W1 registers ----------------------------------------------------------------------------

  private async registerLoop(): Promise<void> {
    const { rng, transport, now } = this.env;
    let process = this.nextProcess++;
    const seen = new Map<string, number>(); // key -> last version this worker saw
    let seq = 0;
    while (!this.stopping) {
      const target = this.pickNode();
      if (target === null) {
        await sleep(50);
        continue;
      }
      const slot = rng.pick(this.slots);
      if (slot.ops >= OPS_PER_KEY) {
        slot.key = this.freshKey();
        slot.ops = 0;
      }
      slot.ops++;
      const key = slot.key;
      const histKey = `${key}/${COLUMN}`;
      const r = rng.float();
      const kb = Buffer.from(key);
      const cb = Buffer.from(COLUMN);
      let f: HistoryOp['f'];
      let value: string | undefined;
      let expectedVersion: number | undefined;
      let op: SessionOp;
      if (r < 0.4) {
        f = 'get';
        op = { $case: 'get', value: { key: kb, column: cb, consistency: 0 } };
      } else if (r < 0.9) {
        f = 'put';
        value = `${this.env.tag}-p${process}-${seq++}`;
        if (r >= 0.7) expectedVersion = seen.get(key) ?? 0;
        op = {
          $case: 'put',
          value: {
            key: kb,
            column: cb,
            value: Buffer.from(value),
            ...(expectedVersion === undefined ? {} : { expectedVersion: BigInt(expectedVersion) }),
          },
        };
      } else {
        f = 'delete';
        if (r >= 0.95) expectedVersion = seen.get(key) ?? 0;
        op = {
          $case: 'delete',
          value: {
            key: kb,
            column: cb,
            ...(expectedVersion === undefined ? {} : { expectedVersion: BigInt(expectedVersion) }),
          },
        };
      }
      const id = this.registerHistory.invoke(
        {
          process,
          key: histKey,
          f,
          ...(value === undefined ? {} : { value }),
          ...(expectedVersion === undefined ? {} : { expectedVersion }),
        },
        now(),
      );
      const call = now();
      try {
        const res = await transport.call(target.address, op, this.env.opTimeoutMs);
        const ret = now();
        switch (res.$case) {
          case 'get': {
            const version = Number(res.value.version);
            if (res.value.found) seen.set(key, version);
            else seen.set(key, 0);
            this.registerHistory.complete(id, 'ok', ret, {
              found: res.value.found,
              ...(res.value.found ? { value: Buffer.from(res.value.value).toString() } : {}),
              version,
            });
            break;
          }
          case 'put': {
            const version = Number(res.value.version);
            seen.set(key, version);
            this.registerHistory.complete(id, 'ok', ret, {
              version,
              ...(expectedVersion === undefined ? {} : { succeeded: true }),
            });
            break;
          }
          case 'delete':
            seen.set(key, 0);
            this.registerHistory.complete(id, 'ok', ret, {
              found: res.value.found,
              version: Number(res.value.version),
              ...(expectedVersion === undefined ? {} : { succeeded: true }),
            });
            break;
          default:
            throw new SkvError('internal', `unexpected ${res.$case}`);
        }
        count(this.stats.register, 'ok');
        this.marks.push({ call, outcome: 'ok' });
      } catch (err) {
        const ret = now();
        if (err instanceof SkvError && err.code === 'version-mismatch' && f !== 'get') {
          seen.delete(key);
          this.registerHistory.complete(id, 'ok', ret, { succeeded: false });
          count(this.stats.register, 'ok');
          this.marks.push({ call, outcome: 'ok' });
          continue;
        }
        const outcome = classify(err, f === 'get');
        this.registerHistory.complete(id, outcome, ret);
        count(this.stats.register, outcome, err);
        this.marks.push({ call, outcome });
        if (outcome === 'info') process = this.nextProcess++;
        await sleep(FAILURE_BACKOFF_MS);
      }
    }
  }

  // ---- W2 set ----------------------------------------------------------------------------------

  private async setLoop(worker: number): Promise<void> {
    const { rng, client, now } = this.env;
    for (let i = 0; !this.stopping; i++) {
      const key = `${rng.pick([...LETTERS])}set-${this.env.tag}-${worker}-${i}`;
      this.set.attempted.push(key);
      const call = now();
      try {
        await client.put(key, COLUMN, key, { ifVersion: 0, timeoutMs: this.env.opTimeoutMs });
        this.set.acked.push(key);
        count(this.stats.set, 'ok');
        this.marks.push({ call, outcome: 'ok' });
      } catch (err) {
        if (err instanceof SkvError && err.code === 'version-mismatch') {
          // A fresh unique key already present: a phantom (or our own unknown earlier attempt —
          // impossible, each key is attempted once). The final read judges it.
          this.setMismatches.push(key);
          count(this.stats.set, 'info', err);
          continue;
        }
        const outcome = classify(err, false);
        if (outcome === 'fail') this.set.failed.push(key);
        count(this.stats.set, outcome, err);
        this.marks.push({ call, outcome });
        // The client library keeps a dead leader's route after an unknown outcome.
        if (outcome === 'info') await client.rangeMap({ timeoutMs: 500 }).catch(() => undefined);
        await sleep(FAILURE_BACKOFF_MS);
      }
    }
  }

  // ---- W3 timeline reads -----------------------------------------------------------------------

  private async timelineLoop(): Promise<void> {
    const { rng, transport, now } = this.env;
    while (!this.stopping) {
      const target = this.pickNode();
      const recent = this.registerKeys.slice(-REGISTER_SLOTS * 2);
      if (target === null || recent.length === 0) {
        await sleep(50);
        continue;
      }
      const key = rng.pick(recent);
      const call = now();
      try {
        const res = await transport.call(
          target.address,
          {
            $case: 'get',
            value: { key: Buffer.from(key), column: Buffer.from(COLUMN), consistency: 1 },
          },
          this.env.opTimeoutMs,
          true,
        );
        const ret = now();
        if (res.$case !== 'get') throw new SkvError('internal', `unexpected ${res.$case}`);
        this.timelineReads.push({
          id: this.timelineReads.length,
          replica: target.id,
          key: `${key}/${COLUMN}`,
          found: res.value.found,
          ...(res.value.found ? { value: Buffer.from(res.value.value).toString() } : {}),
          version: Number(res.value.version),
          call,
          ret,
        });
        count(this.stats.timeline, 'ok');
      } catch (err) {
        count(this.stats.timeline, 'fail', err);
        await sleep(FAILURE_BACKOFF_MS);
      }
      await sleep(TIMELINE_THINK_MS);
    }
  }

  // ---- W4 counter ------------------------------------------------------------------------------

  private async counterLoop(): Promise<void> {
    const { client, now } = this.env;
    while (!this.stopping) {
      const call = now();
      let got: { found: boolean; value: Buffer; version: number };
      try {
        got = await client.get(this.counter.key, COLUMN, { timeoutMs: this.env.opTimeoutMs });
      } catch (err) {
        count(this.stats.counter, 'fail', err);
        this.marks.push({ call, outcome: 'fail' });
        await sleep(FAILURE_BACKOFF_MS);
        continue;
      }
      const n = got.found ? Number(got.value.toString()) : 0;
      try {
        await client.put(this.counter.key, COLUMN, String(n + 1), {
          ifVersion: got.version,
          timeoutMs: this.env.opTimeoutMs,
        });
        this.counter.okIncrements++;
        count(this.stats.counter, 'ok');
        this.marks.push({ call, outcome: 'ok' });
      } catch (err) {
        if (err instanceof SkvError && err.code === 'version-mismatch') {
          count(this.stats.counter, 'ok');
          this.marks.push({ call, outcome: 'ok' });
          continue;
        }
        const outcome = classify(err, false);
        if (outcome === 'info') this.counter.infoIncrements++;
        count(this.stats.counter, outcome, err);
        this.marks.push({ call, outcome });
        if (outcome === 'info') await client.rangeMap({ timeoutMs: 500 }).catch(() => undefined);
        await sleep(FAILURE_BACKOFF_MS);
      }
    }
  }
}
