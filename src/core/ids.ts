// Identifiers shared by every layer.

/** A key range and its cohort share one id (DESIGN.md §4 `ranges/<rangeId>`). */
export type RangeId = number;
/** A node's id as given by `skv server --id` (DESIGN.md §3). */
export type NodeId = string;

export const RANGE_ID_MAX = 0xffff_ffff;

const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function isValidNodeId(id: string): boolean {
  return NODE_ID_PATTERN.test(id);
}

export function isValidRangeId(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= RANGE_ID_MAX;
}
