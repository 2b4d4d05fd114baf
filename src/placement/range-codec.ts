// JSON form of one range for the ZooKeeper znode `ranges/<rangeId>` (DESIGN.md §4):
//   {"start": "<base64>", "end": "<base64>", "members": ["n1", "n2", "n3"]}
// `start` and `end` are the raw key bytes in standard padded base64 (RFC 4648 §4); "" encodes
// the empty key, which as `end` means +∞. The range id is the znode's name, not in the body.
// Decoding is strict (unknown fields, non-canonical base64, wrong types are rejected) so a
// damaged znode is never read as a different map.

import { InvalidArgumentError } from '../core/errors.js';
import type { RangeId } from '../core/ids.js';
import { fromBase64, toBase64 } from './bytes.js';
import type { KeyRange } from './range-map.js';

/** A znode body is far below ZooKeeper's 1 MiB limit: two keys of at most 4 KiB + 3 ids. */
export const RANGE_ZNODE_BYTES_MAX = 64 * 1024;

export interface RangeZnode {
  start: string;
  end: string;
  members: string[];
}

export function encodeRangeZnode(range: KeyRange): string {
  const body: RangeZnode = {
    start: toBase64(range.start),
    end: toBase64(range.end),
    members: [...range.members],
  };
  return JSON.stringify(body);
}

/** Decodes one znode body; the caller validates the assembled map with makeRangeMap. */
export function decodeRangeZnode(rangeId: RangeId, data: string | Uint8Array): KeyRange {
  const text =
    typeof data === 'string' ? data : new TextDecoder('utf-8', { fatal: true }).decode(data);
  const fail = (why: string): never => {
    throw new InvalidArgumentError(`znode ranges/${rangeId}: ${why}`);
  };
  if (text.length > RANGE_ZNODE_BYTES_MAX)
    fail(`body is ${text.length} chars (max ${RANGE_ZNODE_BYTES_MAX})`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return fail('body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return fail('body is not a JSON object');
  }
  const obj = parsed as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (k !== 'start' && k !== 'end' && k !== 'members') fail(`unknown field ${JSON.stringify(k)}`);
  }
  const bytes = (field: 'start' | 'end'): Uint8Array => {
    const v = obj[field];
    if (typeof v !== 'string') return fail(`${field} is not a string`);
    return fromBase64(v) ?? fail(`${field} is not canonical base64`);
  };
  const members = obj.members;
  if (!Array.isArray(members) || !members.every((m): m is string => typeof m === 'string')) {
    return fail('members is not an array of strings');
  }
  return { rangeId, start: bytes('start'), end: bytes('end'), members };
}
