// Converts the replication core's messages (src/replication/types.ts) to and from the peer proto
// (proto/skv/peer/v1/peer.proto). Snapshots do not travel as one core message: the driver streams
// them as SnapshotChunk messages and hands the core one SnapshotMessage once a transfer is whole.

import { InvalidArgumentError } from '../core/errors.js';
import type { NodeId } from '../core/ids.js';
import type { Lsn } from '../core/lsn.js';
import type { Entry, Message } from '../replication/types.js';
import {
  EntryKind,
  type Entry as PbEntry,
  type Lsn as PbLsn,
  type PeerMessage,
  type SnapshotChunk,
} from './generated/skv/peer/v1/peer.js';

const SEQ_MAX = BigInt(Number.MAX_SAFE_INTEGER);

function toPbLsn(l: Lsn): PbLsn {
  return { epoch: l.epoch, seq: BigInt(l.seq) };
}

function seqOf(v: bigint): number {
  if (v < 0n || v > SEQ_MAX) throw new InvalidArgumentError(`seq ${v} out of range`);
  return Number(v);
}

function fromPbLsn(l: PbLsn | undefined): Lsn {
  if (l === undefined) throw new InvalidArgumentError('missing LSN');
  return { epoch: l.epoch, seq: seqOf(l.seq) };
}

function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function toPbEntry(e: Entry): PbEntry {
  return {
    lsn: toPbLsn(e.lsn),
    kind: e.kind === 'data' ? EntryKind.ENTRY_KIND_DATA : EntryKind.ENTRY_KIND_BARRIER,
    payload: asBuffer(e.payload),
  };
}

function fromPbEntry(e: PbEntry): Entry {
  let kind: Entry['kind'];
  if (e.kind === EntryKind.ENTRY_KIND_DATA) kind = 'data';
  else if (e.kind === EntryKind.ENTRY_KIND_BARRIER) kind = 'barrier';
  else throw new InvalidArgumentError(`unknown entry kind ${e.kind}`);
  return { lsn: fromPbLsn(e.lsn), kind, payload: e.payload };
}

/** A core message as a peer message (snapshots excluded: see the header). */
export function encodePeerMessage(
  rangeId: number,
  m: Exclude<Message, { type: 'snapshot' }>,
): PeerMessage {
  switch (m.type) {
    case 'propose':
      return {
        rangeId,
        body: {
          $case: 'propose',
          value: {
            epoch: m.epoch,
            prevLsn: toPbLsn(m.prevLsn),
            entries: m.entries.map(toPbEntry),
            commitSeq: BigInt(m.commitSeq),
            commitLsn: toPbLsn(m.commitLsn),
            leaderLastSeq: BigInt(m.leaderLastSeq),
          },
        },
      };
    case 'ack':
      return {
        rangeId,
        body: {
          $case: 'ack',
          value: { epoch: m.epoch, matchSeq: BigInt(m.matchSeq), voter: m.voter },
        },
      };
    case 'nack':
      return {
        rangeId,
        body: {
          $case: 'nack',
          value: {
            epoch: m.epoch,
            rejectedPrevSeq: BigInt(m.rejectedPrevSeq),
            lastSeq: BigInt(m.lastSeq),
            commitSeq: BigInt(m.commitSeq),
          },
        },
      };
    case 'heartbeat':
      return {
        rangeId,
        body: {
          $case: 'heartbeat',
          value: {
            epoch: m.epoch,
            round: BigInt(m.round),
            commitSeq: BigInt(m.commitSeq),
            commitLsn: toPbLsn(m.commitLsn),
            leaderLastSeq: BigInt(m.leaderLastSeq),
          },
        },
      };
    case 'heartbeat-ack':
      return {
        rangeId,
        body: {
          $case: 'heartbeatAck',
          value: {
            epoch: m.epoch,
            round: BigInt(m.round),
            lastLsn: toPbLsn(m.lastLsn),
            commitSeq: BigInt(m.commitSeq),
            voter: m.voter,
          },
        },
      };
  }
}

export type DecodedPeerMessage =
  | { readonly kind: 'core'; readonly rangeId: number; readonly message: Message }
  | { readonly kind: 'snapshot-chunk'; readonly rangeId: number; readonly chunk: SnapshotChunk };

/** A peer message as a core message addressed from `from` to `to`; throws on malformed input. */
export function decodePeerMessage(pm: PeerMessage, from: NodeId, to: NodeId): DecodedPeerMessage {
  const body = pm.body;
  if (body === undefined) throw new InvalidArgumentError('peer message without a body');
  const rangeId = pm.rangeId;
  switch (body.$case) {
    case 'propose': {
      const v = body.value;
      return {
        kind: 'core',
        rangeId,
        message: {
          type: 'propose',
          from,
          to,
          epoch: v.epoch,
          prevLsn: fromPbLsn(v.prevLsn),
          entries: v.entries.map(fromPbEntry),
          commitSeq: seqOf(v.commitSeq),
          commitLsn: fromPbLsn(v.commitLsn),
          leaderLastSeq: seqOf(v.leaderLastSeq),
        },
      };
    }
    case 'ack': {
      const v = body.value;
      return {
        kind: 'core',
        rangeId,
        message: {
          type: 'ack',
          from,
          to,
          epoch: v.epoch,
          matchSeq: seqOf(v.matchSeq),
          voter: v.voter,
        },
      };
    }
    case 'nack': {
      const v = body.value;
      return {
        kind: 'core',
        rangeId,
        message: {
          type: 'nack',
          from,
          to,
          epoch: v.epoch,
          rejectedPrevSeq: seqOf(v.rejectedPrevSeq),
          lastSeq: seqOf(v.lastSeq),
          commitSeq: seqOf(v.commitSeq),
        },
      };
    }
    case 'heartbeat': {
      const v = body.value;
      return {
        kind: 'core',
        rangeId,
        message: {
          type: 'heartbeat',
          from,
          to,
          epoch: v.epoch,
          round: seqOf(v.round),
          commitSeq: seqOf(v.commitSeq),
          commitLsn: fromPbLsn(v.commitLsn),
          leaderLastSeq: seqOf(v.leaderLastSeq),
        },
      };
    }
    case 'heartbeatAck': {
      const v = body.value;
      return {
        kind: 'core',
        rangeId,
        message: {
          type: 'heartbeat-ack',
          from,
          to,
          epoch: v.epoch,
          round: seqOf(v.round),
          lastLsn: fromPbLsn(v.lastLsn),
          commitSeq: seqOf(v.commitSeq),
          voter: v.voter,
        },
      };
    }
    case 'snapshotChunk':
      return { kind: 'snapshot-chunk', rangeId, chunk: body.value };
  }
}
