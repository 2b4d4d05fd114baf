// Linearizability checker for a history of single-column get/put/delete (TESTING.md §B.3 and its
// appendix). Wing & Gong's search with Lowe's just-in-time linearization and memoization of
// (state, set of linearized ops); keys are checked one by one, which is exact because
// linearizability is local (Herlihy & Wing; "P-compositionality", Horn & Kroening).
//
// Model of one key: a register with versions, state = absent | { value, version }. Versions are
// assigned by skv and strictly increase across successive writes of a column (DESIGN.md §2: they
// are the record's seq); absent reads as version 0. Because a delete is itself a write of the
// column, a put after a delete must still get a version above every version the column had
// before (`versionFloorAcrossDeletes`, on by default; switch it off for a store that restarts
// versions after a delete).
//
// Semantics of an ok op (illegal otherwise):
// - get {found:false}: the column is absent. get {found, value, version}: state equals both.
// - put {version v}: v above the floor; state := {value, v}.
// - conditional put (expectedVersion e) {version v}: current version (0 if absent) == e and v
//   above the floor. {succeeded:false}: current version != e; nothing changes.
// - delete {found, version}: found == present and version == the version the column had BEFORE
//   the delete (0 when absent) — our reading of DeleteResponse.version; state := absent.
//   Conditional delete: as conditional put.
// Indeterminate (`info`) ops return at +∞: they may take effect at any point after their call or
// never (linearizing one last is always legal and hides its effect). An info put has no known
// version: the state becomes {value, version: unknown} and "unknown" binds to the first version
// an op observes for that value (a get, the previous-version of a delete, or a conditional op
// whose expected version matched); it must still exceed the floor. `info` gets and `fail` ops
// are dropped. One approximation, on the permissive side: a conditional op that reports
// {succeeded:false} against an unknown version is accepted without remembering "version != e".
//
// The search is bounded by a deadline; a key not decided in time is reported in `unknownKeys`,
// which callers must treat as a failure (TESTING.md §B.3).

import { assert, unreachable } from '../../core/assert.js';
import type { HistoryOp } from './history.js';

export interface LinearizabilityOptions {
  /** Wall-clock budget for the whole check; keys still undecided then are `unknown`. */
  timeoutMs?: number;
  /** See the header: a put after a delete must exceed the versions before it. Default true. */
  versionFloorAcrossDeletes?: boolean;
}

export interface KeyFailure {
  key: string;
  /** Op ids of the longest legal prefix the search found, in linearization order. */
  longestPrefix: number[];
  /** Ops that could not be placed after that prefix before some op had to return. */
  blockedOpIds: number[];
}

export interface LinearizabilityResult {
  ok: boolean;
  illegalKeys: string[];
  unknownKeys: string[];
  keysChecked: number;
  /** For each illegal key, where the search got stuck (for the failure report). */
  failures: KeyFailure[];
  /** Search steps over all keys (for measurements). */
  steps: number;
}

export const LINEARIZABILITY_TIMEOUT_MS_DEFAULT = 10_000;
/** Ops per key the search accepts; beyond this rotate keys (TESTING.md §B.3: ≤ 200 is fast). */
export const OPS_PER_KEY_MAX = 100_000;
/** Search steps between two deadline checks. */
const DEADLINE_CHECK_STEPS = 0x1000;

/** One key's register. `version === null` means "written by an info put, not observed yet". */
export interface RegisterState {
  readonly present: boolean;
  readonly value: string;
  readonly version: number | null;
  /** Every later write's version must exceed this (and an unknown version exceeds it too). */
  readonly floor: number;
}

export const REGISTER_ABSENT: RegisterState = { present: false, value: '', version: 0, floor: 0 };

/** An op as the search sees it: info ops have no result and return at +∞. */
interface SearchOp {
  readonly op: HistoryOp;
  readonly info: boolean;
  readonly call: number;
  readonly ret: number;
}

/** The floor for the next write given the current state. */
function nextFloor(s: RegisterState): number {
  if (!s.present) return s.floor;
  // An unknown version u satisfies u > floor, so u >= floor + 1 (versions are integers).
  return s.version ?? s.floor + 1;
}

/** The current version as an op can observe it, binding an unknown one to `observed` if legal. */
function observeVersion(s: RegisterState, observed: number): RegisterState | null {
  if (!s.present) return observed === 0 ? s : null;
  if (s.version !== null) return s.version === observed ? s : null;
  return observed > s.floor ? { ...s, version: observed, floor: observed } : null;
}

/** Returns the state after `o`, or null when `o` is illegal in `s`. */
function step(s: RegisterState, o: SearchOp, floorAcrossDeletes: boolean): RegisterState | null {
  const op = o.op;
  const r = op.result;
  switch (op.f) {
    case 'get': {
      // info gets never reach the search.
      if (r === undefined || r.found === undefined) return null;
      if (!r.found) return s.present ? null : s;
      if (!s.present || s.value !== r.value) return null;
      if (r.version === undefined) return s; // the harness did not record versions
      return observeVersion(s, r.version);
    }
    case 'put': {
      const value = op.value ?? '';
      let base = s;
      if (op.expectedVersion !== undefined) {
        if (!o.info && r?.succeeded === false) {
          // The condition failed: legal iff the version differs. Against an unknown version
          // this is accepted without recording the inequality (see header).
          if (!s.present) return op.expectedVersion === 0 ? null : s;
          if (s.version === null) return s;
          return s.version === op.expectedVersion ? null : s;
        }
        const matched = observeVersion(s, op.expectedVersion);
        if (matched === null) return o.info ? s : null; // an info op that did not match: no-op
        base = matched;
      }
      const floor = nextFloor(base);
      if (o.info || r?.version === undefined) {
        return { present: true, value, version: null, floor };
      }
      if (!(r.version > floor)) return null;
      return { present: true, value, version: r.version, floor: r.version };
    }
    case 'delete': {
      let base = s;
      if (op.expectedVersion !== undefined) {
        if (!o.info && r?.succeeded === false) {
          if (!s.present) return op.expectedVersion === 0 ? null : s;
          if (s.version === null) return s;
          return s.version === op.expectedVersion ? null : s;
        }
        const matched = observeVersion(s, op.expectedVersion);
        if (matched === null) return o.info ? s : null;
        base = matched;
      }
      if (!o.info && r !== undefined) {
        if (r.found !== undefined && r.found !== base.present) return null;
        if (r.version !== undefined) {
          const seen = observeVersion(base, r.version);
          if (seen === null) return null;
          base = seen;
        }
      }
      return {
        present: false,
        value: '',
        version: 0,
        floor: floorAcrossDeletes ? nextFloor(base) : 0,
      };
    }
    default:
      return unreachable(op.f, 'op kind');
  }
}

/**
 * The model's transition for one op (ok or info; fail ops and info gets are not in the model):
 * the state after `op`, or null when `op` is illegal in `s`. Exported for the brute-force
 * cross-check in the tests and for checkers that replay a known order.
 */
export function stepRegister(
  s: RegisterState,
  op: HistoryOp,
  opts?: { versionFloorAcrossDeletes?: boolean },
): RegisterState | null {
  assert(op.outcome !== 'fail', `stepRegister: fail op ${op.id} is not in the model`);
  const info = op.outcome === 'info';
  return step(
    s,
    { op, info, call: op.call, ret: info ? Number.POSITIVE_INFINITY : op.ret },
    opts?.versionFloorAcrossDeletes ?? true,
  );
}

function stateKey(s: RegisterState): string {
  if (!s.present) return `a${s.floor}`;
  return `p${s.version ?? '?'}:${s.floor}:${s.value}`;
}

/** Doubly linked event list node (Lowe's just-in-time linearization). */
interface Entry {
  readonly kind: 'call' | 'ret';
  readonly index: number; // into the key's SearchOp array
  readonly time: number;
  prev: Entry | null;
  next: Entry | null;
  /** call entries of ok ops: their return entry (info ops have none: they return at +∞). */
  match: Entry | null;
}

type KeyVerdict =
  | { kind: 'ok'; steps: number }
  | { kind: 'illegal'; steps: number; longestPrefix: number[]; blockedOpIds: number[] }
  | { kind: 'unknown'; steps: number };

function sentinel(): Entry {
  return {
    kind: 'call',
    index: -1,
    time: Number.NEGATIVE_INFINITY,
    prev: null,
    next: null,
    match: null,
  };
}

function link(head: Entry, entries: Entry[]): void {
  let tail = head;
  for (const e of entries) {
    e.prev = tail;
    tail.next = e;
    tail = e;
  }
}

function unlink(e: Entry): void {
  e.prev!.next = e.next;
  if (e.next !== null) e.next.prev = e.prev;
}

function relink(e: Entry): void {
  e.prev!.next = e;
  if (e.next !== null) e.next.prev = e;
}

/**
 * The highest floor (`nextFloor`) at which an ok op can still be placed, or +∞. Floors only grow
 * along a linearization (with `versionFloorAcrossDeletes`), so once the floor passes the bound of
 * an op not placed yet, that branch is dead: a put with version v needs floor < v; an op that
 * observes version v (get found, delete found, conditional op that matched e > 0) needs floor <= v.
 */
function floorBound(o: SearchOp): number {
  if (o.info) return Number.POSITIVE_INFINITY;
  const op = o.op;
  const r = op.result;
  if (r === undefined || (op.expectedVersion !== undefined && r.succeeded === false)) {
    return Number.POSITIVE_INFINITY;
  }
  let bound = Number.POSITIVE_INFINITY;
  if (op.expectedVersion !== undefined && op.expectedVersion > 0) bound = op.expectedVersion;
  switch (op.f) {
    case 'put':
      if (r.version !== undefined) bound = Math.min(bound, r.version - 1);
      break;
    case 'get':
    case 'delete':
      if (r.found === true && r.version !== undefined) bound = Math.min(bound, r.version);
      break;
    default:
      unreachable(op.f, 'op kind');
  }
  return bound;
}

/**
 * One key. Events sorted by time, calls before returns on ties (touching intervals are
 * concurrent). Info ops have a call entry and no return (they return at +∞). The candidates at
 * each point are the calls before the first pending return (Lowe's just-in-time linearization).
 * Once every ok op is placed the key is linearizable: the remaining info ops go last, where they
 * are always legal (an info op's step never fails) and their effect is never observed.
 * Pruning (exact, see `floorBound`): a placement that lifts the floor above the bound of an ok op
 * not yet placed is skipped. Known versions order writes, so this keeps wide concurrency cheap.
 */
function checkKey(
  ops: readonly SearchOp[],
  deadlineMs: number,
  floorAcrossDeletes: boolean,
): KeyVerdict {
  const n = ops.length;
  assert(n <= OPS_PER_KEY_MAX, `linearizability: ${n} ops on one key (max ${OPS_PER_KEY_MAX})`);

  const events: Entry[] = [];
  let okRemaining = 0;
  for (let i = 0; i < n; i++) {
    const o = ops[i]!;
    if (o.info) {
      events.push({ kind: 'call', index: i, time: o.call, prev: null, next: null, match: null });
      continue;
    }
    okRemaining++;
    const ret: Entry = { kind: 'ret', index: i, time: o.ret, prev: null, next: null, match: null };
    const call: Entry = {
      kind: 'call',
      index: i,
      time: o.call,
      prev: null,
      next: null,
      match: ret,
    };
    events.push(call, ret);
  }
  events.sort((a, b) => {
    if (a.time !== b.time) return a.time < b.time ? -1 : 1;
    if (a.kind !== b.kind) return a.kind === 'call' ? -1 : 1;
    return a.index - b.index;
  });
  const head = sentinel();
  link(head, events);

  // Bounds of ok ops in ascending order; `boundAt` points at the first one not placed yet.
  const bounds = ops.map(floorBound);
  const byBound = [...bounds.keys()].filter((i) => bounds[i]! !== Number.POSITIVE_INFINITY);
  byBound.sort((a, b) => bounds[a]! - bounds[b]!);
  const rankOf = new Int32Array(n).fill(-1);
  byBound.forEach((opIndex, rank) => {
    rankOf[opIndex] = rank;
  });
  const placed = new Uint8Array(n);
  let boundAt = 0;
  const minPendingBound = (): number => {
    while (boundAt < byBound.length && placed[byBound[boundAt]!] === 1) boundAt++;
    return boundAt < byBound.length ? bounds[byBound[boundAt]!]! : Number.POSITIVE_INFINITY;
  };
  const place = (i: number): void => {
    placed[i] = 1;
  };
  const unplace = (i: number): void => {
    placed[i] = 0;
    const rank = rankOf[i]!;
    if (rank >= 0 && rank < boundAt) boundAt = rank;
  };

  // `linearized` is a bitset of ops placed so far; the cache holds (state, bitset) pairs already
  // explored, which is what keeps the search on legal histories near linear.
  const words = new Uint16Array(Math.ceil(n / 16));
  const bitsKey = (): string => {
    let out = '';
    for (let i = 0; i < words.length; i += 4096) {
      out += String.fromCharCode(...words.subarray(i, i + 4096));
    }
    return out;
  };
  const setBit = (i: number): void => {
    words[i >> 4]! |= 1 << (i & 15);
  };
  const clearBit = (i: number): void => {
    words[i >> 4]! &= ~(1 << (i & 15));
  };
  const cache = new Set<string>();
  const stack: { entry: Entry; state: RegisterState }[] = [];
  // Failure report: recorded only when the search reaches a new depth, so at most n times.
  let longestDepth = -1;
  let longest: number[] = [];
  let blockedAtLongest: number[] = [];

  let state = REGISTER_ABSENT;
  let cursor: Entry | null = head.next;
  let steps = 0;
  while (okRemaining > 0) {
    steps++;
    if ((steps & (DEADLINE_CHECK_STEPS - 1)) === 0 && Date.now() > deadlineMs) {
      return { kind: 'unknown', steps };
    }
    // With ok ops left there is a return entry ahead, so the walk stops there, never at null.
    assert(cursor !== null, 'linearizability: walked off the event list');
    if (cursor.kind === 'call') {
      const i = cursor.index;
      const next = step(state, ops[i]!, floorAcrossDeletes);
      if (next !== null) {
        place(i);
        const alive = !floorAcrossDeletes || nextFloor(next) <= minPendingBound();
        if (alive) {
          setBit(i);
          const k = `${stateKey(next)}|${bitsKey()}`;
          if (!cache.has(k)) {
            cache.add(k);
            stack.push({ entry: cursor, state });
            state = next;
            unlink(cursor);
            if (cursor.match !== null) {
              unlink(cursor.match);
              okRemaining--;
            }
            cursor = head.next;
            continue;
          }
          clearBit(i);
        }
        unplace(i);
      }
      cursor = cursor.next;
      continue;
    }

    // A return was reached: its op could not be linearized before it. Backtrack.
    if (stack.length > longestDepth) {
      longestDepth = stack.length;
      longest = stack.map((f) => ops[f.entry.index]!.op.id);
      blockedAtLongest = [];
      for (let e: Entry | null = head.next; e !== null && e !== cursor.next; e = e.next) {
        if (e.kind === 'call') blockedAtLongest.push(ops[e.index]!.op.id);
      }
    }
    const top = stack.pop();
    if (top === undefined) {
      return { kind: 'illegal', steps, longestPrefix: longest, blockedOpIds: blockedAtLongest };
    }
    state = top.state;
    const i = top.entry.index;
    clearBit(i);
    unplace(i);
    if (top.entry.match !== null) {
      relink(top.entry.match);
      okRemaining++;
    }
    relink(top.entry);
    cursor = top.entry.next;
  }
  return { kind: 'ok', steps };
}

/** Checks a whole history, key by key. See the header for the model. */
export function checkLinearizable(
  ops: HistoryOp[],
  opts?: LinearizabilityOptions,
): LinearizabilityResult {
  const timeoutMs = opts?.timeoutMs ?? LINEARIZABILITY_TIMEOUT_MS_DEFAULT;
  const floorAcrossDeletes = opts?.versionFloorAcrossDeletes ?? true;
  const deadlineMs = Date.now() + timeoutMs;

  const byKey = new Map<string, SearchOp[]>();
  for (const op of ops) {
    if (op.outcome === 'fail') continue; // definitely not applied
    if (op.outcome === 'info' && op.f === 'get') continue; // no effect, no information
    const info = op.outcome === 'info';
    assert(Number.isFinite(op.call), `linearizability: op ${op.id} has no call time`);
    if (!info) {
      assert(op.ret >= op.call, `linearizability: op ${op.id} returns before its call`);
    }
    let list = byKey.get(op.key);
    if (list === undefined) {
      list = [];
      byKey.set(op.key, list);
    }
    list.push({ op, info, call: op.call, ret: info ? Number.POSITIVE_INFINITY : op.ret });
  }

  const result: LinearizabilityResult = {
    ok: true,
    illegalKeys: [],
    unknownKeys: [],
    keysChecked: 0,
    failures: [],
    steps: 0,
  };
  for (const [key, keyOps] of byKey) {
    if (Date.now() > deadlineMs) {
      result.unknownKeys.push(key);
      continue;
    }
    const verdict = checkKey(keyOps, deadlineMs, floorAcrossDeletes);
    result.keysChecked++;
    result.steps += verdict.steps;
    switch (verdict.kind) {
      case 'ok':
        break;
      case 'illegal':
        result.illegalKeys.push(key);
        result.failures.push({
          key,
          longestPrefix: verdict.longestPrefix,
          blockedOpIds: verdict.blockedOpIds,
        });
        break;
      case 'unknown':
        result.unknownKeys.push(key);
        break;
      default:
        unreachable(verdict, 'verdict');
    }
  }
  result.ok = result.illegalKeys.length === 0 && result.unknownKeys.length === 0;
  return result;
}
