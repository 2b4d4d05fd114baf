// The ZooKeeper layout of DESIGN.md §4 (a public contract): znode paths under `/skv/<cluster>`
// and the codecs of their contents. Pure: no I/O, so it is shared by the ZooKeeper adapter, the
// simulator and the tests.
//
// Grammar (all data UTF-8):
//   nodes/<nodeId>                         ephemeral   JSON {"address": string}
//   nodes-meta/<nodeId>                    persistent  empty
//   nodes-meta/<nodeId>/incarnation        persistent  decimal integer
//   ranges                                 persistent  empty; created only by initCluster, so
//                                                      its existence means "a range map exists"
//   ranges/<rangeId>                       persistent  JSON {"start": b64, "end": b64,
//                                                      "members": [nodeId...]}; end "" = +∞
//   ranges/<rangeId>/epoch                 persistent  decimal integer, starts "0"
//   ranges/<rangeId>/election              persistent  decimal integer: the newest round, "0" =
//                                                      none yet; bumped by a versioned setData
//   ranges/<rangeId>/election/<round>      persistent  empty; <round> is 10 zero-padded digits
//   ranges/<rangeId>/election/<round>/c-<seq>  ephemeral sequential
//                                          JSON {"nodeId", "lastLsn": "e.seq", "voter": bool,
//                                                "incarnation": int}
//   ranges/<rangeId>/leader                ephemeral   JSON {"nodeId", "address", "epoch"}

import { assert } from '../core/assert.js';
import { CorruptionError, InvalidArgumentError } from '../core/errors.js';
import { isValidNodeId, isValidRangeId, type NodeId, type RangeId } from '../core/ids.js';
import { EPOCH_MAX, formatLsn, parseLsn } from '../core/lsn.js';
import type { CandidateData, LeaderInfo, RangeDescriptor } from './coordinator.js';

/** ZooKeeper's default jute.maxbuffer is 1 MiB; our znodes stay far below it. */
export const ZNODE_DATA_BYTES_MAX = 64 * 1024;
/** An address is host:port; bound it so a znode stays small. */
export const ADDRESS_LENGTH_MAX = 512;
/** Ranges in one range map (one ZooKeeper multi writes them all; keep it well under 1 MiB). */
export const RANGES_MAX = 4096;
const ROUND_DIGITS = 10;
export const ROUND_MAX = 9_999_999_999;
export const CANDIDATE_PREFIX = 'c-';

export class Layout {
  readonly root: string;

  constructor(readonly cluster: string) {
    if (!isValidNodeId(cluster)) throw new InvalidArgumentError(`bad cluster name ${cluster}`);
    this.root = `/skv/${cluster}`;
  }

  /** Persistent znodes created (idempotently) when a coordinator starts, parents first. */
  basePaths(): string[] {
    return ['/skv', this.root, this.nodesDir(), this.nodesMetaDir()];
  }

  nodesDir(): string {
    return `${this.root}/nodes`;
  }
  node(nodeId: NodeId): string {
    return `${this.nodesDir()}/${checkNodeId(nodeId)}`;
  }
  nodesMetaDir(): string {
    return `${this.root}/nodes-meta`;
  }
  nodeMeta(nodeId: NodeId): string {
    return `${this.nodesMetaDir()}/${checkNodeId(nodeId)}`;
  }
  incarnation(nodeId: NodeId): string {
    return `${this.nodeMeta(nodeId)}/incarnation`;
  }
  rangesDir(): string {
    return `${this.root}/ranges`;
  }
  range(rangeId: RangeId): string {
    return `${this.rangesDir()}/${checkRangeId(rangeId)}`;
  }
  epoch(rangeId: RangeId): string {
    return `${this.range(rangeId)}/epoch`;
  }
  electionDir(rangeId: RangeId): string {
    return `${this.range(rangeId)}/election`;
  }
  round(rangeId: RangeId, round: number): string {
    return `${this.electionDir(rangeId)}/${roundName(round)}`;
  }
  candidatePrefix(rangeId: RangeId, round: number): string {
    return `${this.round(rangeId, round)}/${CANDIDATE_PREFIX}`;
  }
  leader(rangeId: RangeId): string {
    return `${this.range(rangeId)}/leader`;
  }
}

function checkNodeId(nodeId: NodeId): NodeId {
  if (!isValidNodeId(nodeId)) throw new InvalidArgumentError(`bad node id ${nodeId}`);
  return nodeId;
}

function checkRangeId(rangeId: RangeId): RangeId {
  if (!isValidRangeId(rangeId)) throw new InvalidArgumentError(`bad range id ${rangeId}`);
  return rangeId;
}

export function roundName(round: number): string {
  // Round 0 is the election of a range's first leader (rounds are named by the epoch they end).
  if (!Number.isInteger(round) || round < 0 || round > ROUND_MAX) {
    throw new InvalidArgumentError(`bad election round ${round}`);
  }
  return String(round).padStart(ROUND_DIGITS, '0');
}

/** The round number of a round znode name, or null for a name that is not a round. */
export function parseRoundName(name: string): number | null {
  if (!/^\d{10}$/.test(name)) return null;
  const round = Number(name);
  return round >= 1 ? round : null;
}

/** ZooKeeper appends a 10-digit sequence number to a sequential znode's name. */
export function parseCandidateSequence(name: string): number | null {
  const m = /^c-(\d{10})$/.exec(name);
  return m === null ? null : Number(m[1]);
}

export function parseRangeIdName(name: string): RangeId | null {
  if (!/^(0|[1-9]\d{0,9})$/.test(name)) return null;
  const id = Number(name);
  return isValidRangeId(id) ? id : null;
}

// --- codecs -------------------------------------------------------------------------------

function encodeJson(value: unknown): Buffer {
  const buf = Buffer.from(JSON.stringify(value), 'utf8');
  assert(buf.length <= ZNODE_DATA_BYTES_MAX, `znode data of ${buf.length} bytes is over the max`);
  return buf;
}

function decodeJson(data: Buffer | undefined, path: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse((data ?? Buffer.alloc(0)).toString('utf8'));
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      return value as Record<string, unknown>;
    }
  } catch {
    // fall through
  }
  throw new CorruptionError(`znode ${path} does not hold a JSON object`, path);
}

export function encodeCounter(value: number): Buffer {
  assert(Number.isSafeInteger(value) && value >= 0, `bad counter ${value}`);
  return Buffer.from(String(value), 'utf8');
}

export function decodeCounter(data: Buffer | undefined, path: string): number {
  const text = (data ?? Buffer.alloc(0)).toString('utf8');
  if (!/^(0|[1-9]\d{0,15})$/.test(text)) {
    throw new CorruptionError(`znode ${path} does not hold a counter: ${JSON.stringify(text)}`);
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new CorruptionError(`znode ${path}: counter too big`);
  return value;
}

export function checkEpoch(epoch: number): number {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > EPOCH_MAX) {
    throw new InvalidArgumentError(`bad epoch ${epoch}`);
  }
  return epoch;
}

function checkAddress(address: string): string {
  if (address.length === 0 || address.length > ADDRESS_LENGTH_MAX) {
    throw new InvalidArgumentError(`bad address ${JSON.stringify(address)}`);
  }
  return address;
}

export function encodeNodeAddress(address: string): Buffer {
  return encodeJson({ address: checkAddress(address) });
}

export function decodeNodeAddress(data: Buffer | undefined, path: string): string {
  const obj = decodeJson(data, path);
  if (typeof obj.address !== 'string') throw new CorruptionError(`znode ${path}: no address`);
  return obj.address;
}

export function encodeRange(range: RangeDescriptor): Buffer {
  checkRangeId(range.rangeId);
  for (const m of range.members) checkNodeId(m);
  if (new Set(range.members).size !== range.members.length) {
    throw new InvalidArgumentError(`range ${range.rangeId} lists a member twice`);
  }
  return encodeJson({
    start: Buffer.from(range.start).toString('base64'),
    end: Buffer.from(range.end).toString('base64'),
    members: [...range.members],
  });
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function decodeRange(
  rangeId: RangeId,
  data: Buffer | undefined,
  path: string,
): RangeDescriptor {
  const obj = decodeJson(data, path);
  const { start, end, members } = obj;
  if (
    typeof start !== 'string' ||
    typeof end !== 'string' ||
    !BASE64.test(start) ||
    !BASE64.test(end) ||
    !Array.isArray(members) ||
    !members.every((m): m is string => typeof m === 'string' && isValidNodeId(m))
  ) {
    throw new CorruptionError(`znode ${path} is not a range descriptor`, path);
  }
  const descriptor: RangeDescriptor = {
    rangeId,
    start: new Uint8Array(Buffer.from(start, 'base64')),
    end: new Uint8Array(Buffer.from(end, 'base64')),
    members,
  };
  return descriptor;
}

export function encodeCandidate(data: CandidateData): Buffer {
  checkNodeId(data.nodeId);
  return encodeJson({
    nodeId: data.nodeId,
    lastLsn: formatLsn(data.lastLsn),
    voter: data.voter,
    incarnation: data.incarnation,
  });
}

export function decodeCandidate(data: Buffer | undefined, path: string): CandidateData {
  const obj = decodeJson(data, path);
  const { nodeId, lastLsn, voter, incarnation } = obj;
  if (
    typeof nodeId !== 'string' ||
    !isValidNodeId(nodeId) ||
    typeof lastLsn !== 'string' ||
    typeof voter !== 'boolean' ||
    typeof incarnation !== 'number' ||
    !Number.isInteger(incarnation) ||
    incarnation < 0
  ) {
    throw new CorruptionError(`znode ${path} is not a candidate`, path);
  }
  try {
    return { nodeId, lastLsn: parseLsn(lastLsn), voter, incarnation };
  } catch {
    throw new CorruptionError(`znode ${path}: bad lastLsn ${JSON.stringify(lastLsn)}`, path);
  }
}

export function encodeLeader(leader: LeaderInfo): Buffer {
  checkNodeId(leader.nodeId);
  checkEpoch(leader.epoch);
  return encodeJson({
    nodeId: leader.nodeId,
    address: checkAddress(leader.address),
    epoch: leader.epoch,
  });
}

export function decodeLeader(data: Buffer | undefined, path: string): LeaderInfo {
  const obj = decodeJson(data, path);
  const { nodeId, address, epoch } = obj;
  if (
    typeof nodeId !== 'string' ||
    typeof address !== 'string' ||
    typeof epoch !== 'number' ||
    !Number.isInteger(epoch) ||
    epoch < 0
  ) {
    throw new CorruptionError(`znode ${path} is not a leader record`, path);
  }
  return { nodeId, address, epoch };
}
