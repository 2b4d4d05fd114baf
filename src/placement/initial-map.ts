// Building the first range map (`skv cluster init`, DESIGN.md §3) by chained declustering
// (DESIGN.md §1): with nodes n0..nN-1 in ring order, range i lives on nodes i, i+1, i+2 (mod N),
// so each node is in 3 cohorts (more when ranges > nodes: range ids wrap around the ring), and
// when a node fails its load spreads over its two neighbours. N must be at least 3.
//
// Split points, one of:
// - `--ranges R`: even split of the first two bytes of the key. The 65,536 two-byte prefixes are
//   cut into R runs; split point i (1 <= i < R) is the 2-byte big-endian key floor(i·65536/R).
//   So for R = 4 the splits are 0x4000, 0x8000, 0xc000, and range 0 = ["", 0x4000). This is even
//   for uniformly random (hashed) keys; for text keys use explicit split keys. 1 <= R <= 65,536.
// - `--split-keys a,b,...`: the given keys (UTF-8), which must be non-empty, unique and sorted;
//   R = count + 1.
// Range ids are 0..R-1 in key order.

import { InvalidArgumentError } from '../core/errors.js';
import { isValidNodeId, type NodeId } from '../core/ids.js';
import { KEY_SIZE_BYTES_MAX } from '../core/limits.js';
import { compareBytes, formatBytes } from './bytes.js';
import { COHORT_SIZE, type KeyRange, makeRangeMap, type RangeMap } from './range-map.js';

export const EVEN_SPLIT_PREFIXES = 65_536;
/** Ranges the initial map may have (also bounds --split-keys). */
export const INITIAL_RANGES_MAX = EVEN_SPLIT_PREFIXES;

/** The cohort of range `index`: nodes index, index+1, index+2 (mod N). */
export function chainedDeclusteringMembers(nodes: readonly NodeId[], index: number): NodeId[] {
  checkNodes(nodes);
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new InvalidArgumentError(`range index must be a natural number, got ${index}`);
  }
  const members: NodeId[] = [];
  for (let k = 0; k < COHORT_SIZE; k++) members.push(nodes[(index + k) % nodes.length]!);
  return members;
}

function checkNodes(nodes: readonly NodeId[]): void {
  if (nodes.length < COHORT_SIZE) {
    throw new InvalidArgumentError(
      `chained declustering needs at least ${COHORT_SIZE} nodes, got ${nodes.length}`,
    );
  }
  const seen = new Set<NodeId>();
  for (const n of nodes) {
    if (!isValidNodeId(n)) throw new InvalidArgumentError(`invalid node id ${JSON.stringify(n)}`);
    if (seen.has(n)) throw new InvalidArgumentError(`node ${n} is listed twice`);
    seen.add(n);
  }
}

/** The R−1 split keys of an even split over the first two key bytes (see the header). */
export function evenSplitKeys(rangesCount: number): Uint8Array[] {
  if (!Number.isSafeInteger(rangesCount) || rangesCount < 1 || rangesCount > INITIAL_RANGES_MAX) {
    throw new InvalidArgumentError(
      `--ranges must be an integer in 1..${INITIAL_RANGES_MAX}, got ${rangesCount}`,
    );
  }
  const keys: Uint8Array[] = [];
  for (let i = 1; i < rangesCount; i++) {
    const prefix = Math.floor((i * EVEN_SPLIT_PREFIXES) / rangesCount);
    keys.push(Uint8Array.of(prefix >> 8, prefix & 0xff));
  }
  return keys;
}

/** Parses `--split-keys a,b,...` (UTF-8 keys) and validates it; throws InvalidArgumentError. */
export function parseSplitKeys(text: string): Uint8Array[] {
  const parts = text.split(',');
  return validateSplitKeys(parts.map((p) => new TextEncoder().encode(p)));
}

/** Split keys must be non-empty, at most KEY_SIZE_BYTES_MAX, strictly ascending (so unique). */
export function validateSplitKeys(keys: readonly Uint8Array[]): Uint8Array[] {
  if (keys.length + 1 > INITIAL_RANGES_MAX) {
    throw new InvalidArgumentError(
      `too many split keys: ${keys.length} (max ${INITIAL_RANGES_MAX - 1})`,
    );
  }
  keys.forEach((k, i) => {
    if (k.length === 0) {
      throw new InvalidArgumentError(
        `split key #${i + 1} is empty (the first range already starts at the empty key)`,
      );
    }
    if (k.length > KEY_SIZE_BYTES_MAX) {
      throw new InvalidArgumentError(
        `split key #${i + 1} is ${k.length} bytes (max ${KEY_SIZE_BYTES_MAX})`,
      );
    }
    const prev = keys[i - 1];
    if (prev !== undefined) {
      const c = compareBytes(prev, k);
      if (c === 0) throw new InvalidArgumentError(`split key ${formatBytes(k)} is repeated`);
      if (c > 0) {
        throw new InvalidArgumentError(
          `split keys must be sorted: ${formatBytes(prev)} comes before ${formatBytes(k)}`,
        );
      }
    }
  });
  return [...keys];
}

export type InitialSplit = { ranges: number } | { splitKeys: readonly Uint8Array[] };

/** The initial map: ranges in key order with ids 0..R-1, cohorts by chained declustering. */
export function buildInitialRangeMap(nodes: readonly NodeId[], split: InitialSplit): RangeMap {
  checkNodes(nodes);
  const splits =
    'ranges' in split ? evenSplitKeys(split.ranges) : validateSplitKeys(split.splitKeys);
  const bounds = [new Uint8Array(0), ...splits, new Uint8Array(0)];
  const ranges: KeyRange[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    ranges.push({
      rangeId: i,
      start: bounds[i]!,
      end: bounds[i + 1]!,
      members: chainedDeclusteringMembers(nodes, i),
    });
  }
  return makeRangeMap(ranges);
}
