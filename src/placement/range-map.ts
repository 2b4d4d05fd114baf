// The range map: which contiguous slice of the key space each cohort owns (DESIGN.md §1, §4).
//
// A range is [start, end) over byte strings in unsigned lexicographic order. An empty `end` means
// +∞; the first range starts at the empty key (the smallest key). Invariants of a valid map
// (`rangeMapProblems` lists every violation): ranges sorted by start, the first starts at "",
// each ends where the next starts, the last ends at +∞ — so every key is in exactly one range —
// range ids are valid and unique, and each range has exactly 3 distinct valid member node ids
// (a cohort, S§4). Pure: no I/O; the map is data that ZooKeeper stores (see range-codec.ts).

import { InvalidArgumentError } from '../core/errors.js';
import { isValidNodeId, isValidRangeId, type NodeId, type RangeId } from '../core/ids.js';
import { compareBytes, formatBytes } from './bytes.js';

export const COHORT_SIZE = 3;

export interface KeyRange {
  readonly rangeId: RangeId;
  /** Inclusive. */
  readonly start: Uint8Array;
  /** Exclusive; empty = +∞. */
  readonly end: Uint8Array;
  /** The cohort; by chained declustering the first member is the range's home node. */
  readonly members: readonly NodeId[];
}

export interface RangeMap {
  /** Sorted by start. */
  readonly ranges: readonly KeyRange[];
}

/** True when `key` lies in [start, end). */
export function rangeContains(range: KeyRange, key: Uint8Array): boolean {
  return (
    compareBytes(range.start, key) <= 0 &&
    (range.end.length === 0 || compareBytes(key, range.end) < 0)
  );
}

/** Every violation of the invariants above, as readable sentences; empty when valid. */
export function rangeMapProblems(map: RangeMap): string[] {
  const problems: string[] = [];
  const ranges = map.ranges;
  if (ranges.length === 0) return ['the range map has no ranges'];
  const ids = new Set<RangeId>();
  ranges.forEach((r, i) => {
    const name = `range ${r.rangeId}`;
    if (!isValidRangeId(r.rangeId)) problems.push(`${name}: invalid range id`);
    if (ids.has(r.rangeId)) problems.push(`${name}: duplicate range id`);
    ids.add(r.rangeId);
    if (r.end.length > 0 && compareBytes(r.start, r.end) >= 0) {
      problems.push(
        `${name}: start ${formatBytes(r.start)} is not below end ${formatBytes(r.end)}`,
      );
    }
    if (r.members.length !== COHORT_SIZE) {
      problems.push(`${name}: has ${r.members.length} members, needs ${COHORT_SIZE}`);
    }
    if (new Set(r.members).size !== r.members.length) {
      problems.push(`${name}: members are not distinct (${r.members.join(',')})`);
    }
    for (const m of r.members) {
      if (!isValidNodeId(m)) problems.push(`${name}: invalid member node id ${JSON.stringify(m)}`);
    }
    if (i === 0 && r.start.length !== 0) {
      problems.push(
        `${name}: the first range starts at ${formatBytes(r.start)}, not at the empty key`,
      );
    }
    const next = ranges[i + 1];
    if (next === undefined) {
      if (r.end.length !== 0)
        problems.push(`${name}: the last range ends at ${formatBytes(r.end)}, not +∞`);
    } else if (r.end.length === 0) {
      problems.push(`${name}: ends at +∞ but range ${next.rangeId} follows`);
    } else {
      const c = compareBytes(r.end, next.start);
      if (c < 0) {
        problems.push(
          `gap between range ${r.rangeId} and range ${next.rangeId}: [${formatBytes(r.end)}, ${formatBytes(next.start)})`,
        );
      } else if (c > 0) {
        problems.push(
          `range ${r.rangeId} overlaps range ${next.rangeId} (end ${formatBytes(r.end)} > start ${formatBytes(next.start)})`,
        );
      }
    }
  });
  return problems;
}

/** Sorts by start and validates; throws InvalidArgumentError listing every problem. */
export function makeRangeMap(ranges: readonly KeyRange[]): RangeMap {
  const sorted = [...ranges].sort((a, b) => compareBytes(a.start, b.start));
  const map: RangeMap = { ranges: sorted };
  const problems = rangeMapProblems(map);
  if (problems.length > 0) {
    throw new InvalidArgumentError(`invalid range map: ${problems.join('; ')}`);
  }
  return map;
}

/** Index of the range holding `key` (binary search; the map must be valid). */
function indexForKey(map: RangeMap, key: Uint8Array): number {
  const ranges = map.ranges;
  let lo = 0;
  let hi = ranges.length - 1;
  // Find the last range whose start <= key; the first range starts at "" so one exists.
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (compareBytes(ranges[mid]!.start, key) <= 0) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export function rangeForKey(map: RangeMap, key: Uint8Array): KeyRange {
  const r = map.ranges[indexForKey(map, key)];
  if (r === undefined || !rangeContains(r, key)) {
    throw new InvalidArgumentError(`no range holds key ${formatBytes(key)}: the map is invalid`);
  }
  return r;
}

/**
 * The ranges a scan over [start, end) touches, in key order (empty `end` = +∞). An empty
 * interval (end <= start) touches none.
 */
export function rangesOverlapping(map: RangeMap, start: Uint8Array, end: Uint8Array): KeyRange[] {
  if (end.length > 0 && compareBytes(end, start) <= 0) return [];
  const out: KeyRange[] = [];
  for (let i = indexForKey(map, start); i < map.ranges.length; i++) {
    const r = map.ranges[i]!;
    if (end.length > 0 && compareBytes(r.start, end) >= 0) break;
    out.push(r);
  }
  return out;
}

/** The ranges whose cohort includes `node`. */
export function rangesOfNode(map: RangeMap, node: NodeId): KeyRange[] {
  return map.ranges.filter((r) => r.members.includes(node));
}
