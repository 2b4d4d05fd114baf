// Failpoints for the fault suites (TESTING.md A.4, fail-rs / gofail style) and the node's status
// dump on SIGUSR2 (test/jepsen reads per-range digests from it).
//
// Armed ONLY at process start by the environment: `SKV_FAILPOINTS="name=ACTION[;name=ACTION…]"`
// with ACTION := [P%][N*](crash | sleep(MS) | drop) — e.g. `follower-after-force-before-ack=crash`,
// `takeover=50%3*sleep(300)` (fires with probability 50 %, at most 3 times). `drop` is only for
// the points that can drop something (DROP_POINTS). Unknown names or malformed actions stop the
// process at start (a typo must not silently test nothing).
//
// Gate: with `SKV_FAILPOINTS_GATE=<file>` also set, the armed points fire only while that file
// exists (checked at each hit), so a test arms a process at start and switches the fault on and
// off at run time by creating and removing the file.
//
// Cost when unarmed: call sites test the constant `FAILPOINTS_ARMED` and do nothing else.
//
// Actions: `crash` is SIGKILL to ourselves (no exit handlers, no flush: exactly a crash; what was
// written before stays in the page cache, what was only queued is gone); `sleep(ms)` stalls the
// whole node synchronously (like a GC pause or a stalled disk at that point), so nothing the node
// would do after the point — sends, acks, timers — happens before the stall ends and their order
// is unchanged; `drop` makes the caller discard what it was about to send (the node runs on).
// Every firing is written synchronously to stderr first: `failpoint <name>: <act>`.
//
// The points (their call sites say exactly where):
//   leader-after-force-before-propose  leader, a Ready with new entries: crash = the proposes of
//                                      that Ready are withheld and the node dies once its own
//                                      record is durable; sleep = a stall right after the force
//   follower-after-force-before-ack    follower: the record is durable, the ack not yet sent
//   catch-up                           follower not yet caught up (after a restart) receiving
//                                      entries, before they are persisted
//   takeover                           a new leader before its barrier committed, with entries
//                                      (re-proposed tail or barrier) to persist
//   epoch-write-before / -after        around the ZooKeeper leadership claim (epoch CAS + leader
//                                      znode in one multi); -after only when the claim succeeded
//   test-only-follower-drop-acks       TEST ONLY (a lost-ack network, not a crash): a follower's
//                                      acks of durable entries are discarded instead of sent, so
//                                      it holds entries its leader cannot count toward a commit
//                                      (test/cluster-faults.test.ts, timeline reads at a follower
//                                      holding an uncommitted entry). Action `drop` only.

import { existsSync, writeSync } from 'node:fs';

export const FAILPOINT_NAMES = [
  'leader-after-force-before-propose',
  'follower-after-force-before-ack',
  'catch-up',
  'takeover',
  'epoch-write-before',
  'epoch-write-after',
  'test-only-follower-drop-acks',
] as const;

export type FailpointName = (typeof FAILPOINT_NAMES)[number];

/** The points whose call site can discard what it was about to do (action `drop`). */
const DROP_POINTS: readonly FailpointName[] = ['test-only-follower-drop-acks'];

export type FailpointAction =
  | { readonly kind: 'crash' }
  | { readonly kind: 'sleep'; readonly ms: number }
  | { readonly kind: 'drop' };

export interface FailpointSpec {
  readonly action: FailpointAction;
  /** Probability of firing at each hit, 0..1. */
  readonly probability: number;
  /** Firings left (Infinity: no limit). */
  remaining: number;
}

/** A stall longer than this is a typo, not a test. */
const SLEEP_MS_MAX = 60_000;

const ACTION_RE = /^(?:(\d+(?:\.\d+)?)%)?(?:(\d+)\*)?(crash|drop|sleep\((\d+)\))$/;

/** Parses `SKV_FAILPOINTS`; throws on anything it does not understand. */
export function parseFailpoints(text: string): Map<FailpointName, FailpointSpec> {
  const out = new Map<FailpointName, FailpointSpec>();
  for (const part of text.split(/[;,]/)) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    const name = (eq < 0 ? item : item.slice(0, eq)).trim();
    if (!(FAILPOINT_NAMES as readonly string[]).includes(name)) {
      throw new Error(`SKV_FAILPOINTS: unknown failpoint ${JSON.stringify(name)}`);
    }
    const m = ACTION_RE.exec(eq < 0 ? '' : item.slice(eq + 1).trim());
    if (m === null) throw new Error(`SKV_FAILPOINTS: bad action in ${JSON.stringify(item)}`);
    const probability = m[1] === undefined ? 1 : Number(m[1]) / 100;
    const remaining = m[2] === undefined ? Number.POSITIVE_INFINITY : Number(m[2]);
    const ms = m[4] === undefined ? 0 : Number(m[4]);
    if (probability > 1 || ms > SLEEP_MS_MAX) {
      throw new Error(`SKV_FAILPOINTS: out of range in ${JSON.stringify(item)}`);
    }
    const action: FailpointAction =
      m[3] === 'crash'
        ? { kind: 'crash' }
        : m[3] === 'drop'
          ? { kind: 'drop' }
          : { kind: 'sleep', ms };
    // A drop point only drops (a crash or stall there is another point's job), and only a drop
    // point can drop: anything else would silently do nothing.
    if ((action.kind === 'drop') !== DROP_POINTS.includes(name as FailpointName)) {
      throw new Error(
        `SKV_FAILPOINTS: ${JSON.stringify(item)}: \`drop\` is the action of ${DROP_POINTS.join(', ')} only`,
      );
    }
    out.set(name as FailpointName, { action, probability, remaining });
  }
  return out;
}

const ARMED: Map<FailpointName, FailpointSpec> = parseFailpoints(process.env.SKV_FAILPOINTS ?? '');
/** When set, the armed points fire only while this file exists. */
const GATE_FILE: string | null =
  process.env.SKV_FAILPOINTS_GATE === undefined || process.env.SKV_FAILPOINTS_GATE === ''
    ? null
    : process.env.SKV_FAILPOINTS_GATE;

/** True only when SKV_FAILPOINTS armed at least one point: the single check at call sites. */
export const FAILPOINTS_ARMED: boolean = ARMED.size > 0;

function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether `name` fires now (consumes one firing). */
function fires(name: FailpointName): FailpointSpec | null {
  const spec = ARMED.get(name);
  if (spec === undefined || spec.remaining <= 0) return null;
  if (GATE_FILE !== null && !existsSync(GATE_FILE)) return null;
  if (spec.probability < 1 && Math.random() >= spec.probability) return null;
  spec.remaining--;
  return spec;
}

function act(name: FailpointName, spec: FailpointSpec, detail = ''): void {
  const a = spec.action;
  switch (a.kind) {
    case 'crash':
      writeSync(2, `failpoint ${name}: crash\n`);
      process.kill(process.pid, 'SIGKILL');
      stall(SLEEP_MS_MAX); // SIGKILL is asynchronous to us: never run past the point
      return;
    case 'sleep':
      writeSync(2, `failpoint ${name}: sleep(${a.ms})\n`);
      stall(a.ms);
      return;
    case 'drop':
      writeSync(2, `failpoint ${name}: drop${detail}\n`);
      return;
  }
}

/** Hits a failpoint: crash or stall if armed and firing, else nothing. */
export function failpoint(name: FailpointName): void {
  const spec = fires(name);
  if (spec !== null) act(name, spec);
}

/** What the cohort driver needs of its replica's status at a Ready. */
export interface CohortPointState {
  readonly role: string;
  readonly serving: boolean;
  readonly timelineReadable: boolean;
}

/**
 * The cohort driver's points at a Ready carrying `entries` new entries (call only when
 * FAILPOINTS_ARMED). Returns true when the Ready's messages must be withheld: the leader is to
 * crash once `durable` (its own force) settles, before its proposes go out.
 */
export function cohortReadyFailpoints(
  st: CohortPointState,
  entries: number,
  durable: Promise<void>,
): boolean {
  if (entries === 0) return false;
  if (st.role === 'leader' && !st.serving) failpoint('takeover');
  if (st.role === 'follower' && !st.timelineReadable) failpoint('catch-up');
  if (st.role !== 'leader') return false;
  const spec = fires('leader-after-force-before-propose');
  if (spec === null) return false;
  durable.then(() => act('leader-after-force-before-propose', spec));
  return spec.action.kind === 'crash';
}

/**
 * The follower's points after its force, before the acks of that Ready leave. Returns true when
 * the acks must be discarded (`test-only-follower-drop-acks`); `rangeId` and `matchSeq` (the
 * highest seq acked) go into the firing's line, so a test can tell which entry was dropped.
 */
export function followerAckFailpoints(
  st: CohortPointState,
  rangeId: number,
  matchSeq: number,
): boolean {
  if (st.role !== 'follower') return false;
  failpoint('follower-after-force-before-ack');
  const spec = fires('test-only-follower-drop-acks');
  if (spec === null) return false;
  act('test-only-follower-drop-acks', spec, ` (range ${rangeId}, ack of seq ${matchSeq})`);
  return spec.action.kind === 'drop';
}

/**
 * On SIGUSR2, logs one line 'status' with every cohort's status (role, epoch, commit/applied
 * points, digest) — the fault suite's way to compare replica digests without an admin RPC.
 * Returns the unsubscribe function.
 */
export function onStatusSignal(
  status: () => unknown,
  log: (msg: string, fields: Record<string, unknown>) => void,
): () => void {
  const handler = () => {
    Promise.resolve()
      .then(status)
      .then(
        (cohorts) =>
          log('status', { cohorts: JSON.parse(JSON.stringify(cohorts, bigintToString)) }),
        (err: unknown) => log('status failed', { error: String(err) }),
      );
  };
  process.on('SIGUSR2', handler);
  return () => process.off('SIGUSR2', handler);
}

function bigintToString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
