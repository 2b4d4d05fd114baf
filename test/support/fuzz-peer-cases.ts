// Fuzz harness: fast-check generators of hostile frames for a node's peer port (the internal
// `skv.peer.v1.Peer/Exchange` stream, proto/skv/peer/v1/peer.proto), for issue #8.
//
// Classes a node must survive with nothing changed (the default suite):
//   garbage      random bytes, and valid PeerBatch encodings truncated or bit-flipped
//   cluster      a well-formed batch naming another cluster
//   stranger     a sender id that is not a member of the range (unknown node, empty, the
//                receiver itself)
//   range        range ids no cohort has
//   stale        a member's id with an epoch below the range's current one (rule 2 fences it),
//                with LSNs far in the future, seqs past 2^53, missing LSNs, unknown entry kinds,
//                snapshot chunks out of order or with garbage cells
// and, only under FUZZ_PEER_FORGED=1 (exploratory: the peer port trusts the sender id it is
// given until peers are authenticated — see the fuzz report), `forged`: a member's id with the
// current or a higher epoch.
// Data entries in proposes carry row mutations of sentinel keys: were one ever applied, the
// integrity check finds it. Generation is pure in the seed (FUZZ_SEED=n replays).

import fc from 'fast-check';
import { encodeRowMutation } from '../../src/core/mutation.js';
import {
  EntryKind,
  type Entry as PbEntry,
  PeerBatch,
  type PeerMessage,
} from '../../src/rpc/generated/skv/peer/v1/peer.js';
import { encodePeerBatch } from '../../src/rpc/peer-transport.js';
import { encodeSnapshotChunk } from '../../src/storage/encoding.js';
import { SENTINEL_PREFIX } from './fuzz-integrity.js';

export const PEER_EXCHANGE_PATH = '/skv.peer.v1.Peer/Exchange';

export type PeerClass = 'garbage' | 'cluster' | 'stranger' | 'range' | 'stale' | 'forged';

export interface ClusterShape {
  readonly cluster: string;
  readonly nodeIds: readonly string[];
  /** rangeId -> current epoch and members. */
  readonly ranges: ReadonlyMap<
    number,
    { readonly epoch: number; readonly members: readonly string[] }
  >;
}

export interface PeerCase {
  readonly cls: PeerClass;
  /** Index of the node whose peer port receives the frames. */
  readonly target: number;
  readonly frames: readonly Buffer[];
  readonly note: string;
}

const SEQ_EXACT_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const UINT64_MAX = (1n << 64n) - 1n;

const seqArb: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 50n }) },
  // Far in the future, still exact.
  { weight: 3, arbitrary: fc.bigInt({ min: 1_000_000n, max: SEQ_EXACT_MAX }) },
  // Past 2^53: the codec must refuse it.
  { weight: 1, arbitrary: fc.constantFrom(SEQ_EXACT_MAX + 1n, 1n << 63n, UINT64_MAX) },
);

const sentinelPayloadArb: fc.Arbitrary<Buffer> = fc
  .tuple(fc.nat(), fc.uint8Array({ maxLength: 16 }))
  .map(([n, v]) =>
    Buffer.from(
      encodeRowMutation({
        key: Buffer.concat([SENTINEL_PREFIX, Buffer.from(`peer-${n.toString(36)}`)]),
        writes: [{ column: Buffer.from('c'), value: Buffer.from(v) }],
      }),
    ),
  );

const payloadArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: sentinelPayloadArb },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)) },
);

/** Builds a body for `epoch`; `lsnEpoch` is the epoch LSNs carry (never above `epoch`). */
function bodyArb(epoch: number): fc.Arbitrary<PeerMessage['body']> {
  const lsnArb = fc.option(fc.record({ epoch: fc.integer({ min: 0, max: epoch }), seq: seqArb }), {
    nil: undefined,
    freq: 10,
  });
  const entryArb: fc.Arbitrary<PbEntry> = fc.record({
    lsn: lsnArb,
    kind: fc.oneof(
      { weight: 8, arbitrary: fc.constant(EntryKind.ENTRY_KIND_DATA) },
      { weight: 1, arbitrary: fc.constant(EntryKind.ENTRY_KIND_BARRIER) },
      { weight: 1, arbitrary: fc.integer({ min: 2, max: 1000 }) },
    ),
    payload: payloadArb,
  });
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .record({
          prevLsn: lsnArb,
          entries: fc.array(entryArb, { maxLength: 4 }),
          commitSeq: seqArb,
          commitLsn: lsnArb,
          leaderLastSeq: seqArb,
        })
        .map((v) => ({ $case: 'propose' as const, value: { epoch, ...v } })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ matchSeq: seqArb, voter: fc.boolean() })
        .map((v) => ({ $case: 'ack' as const, value: { epoch, ...v } })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ rejectedPrevSeq: seqArb, lastSeq: seqArb, commitSeq: seqArb })
        .map((v) => ({ $case: 'nack' as const, value: { epoch, ...v } })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ round: seqArb, commitSeq: seqArb, commitLsn: lsnArb, leaderLastSeq: seqArb })
        .map((v) => ({ $case: 'heartbeat' as const, value: { epoch, ...v } })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ round: seqArb, lastLsn: lsnArb, commitSeq: seqArb, voter: fc.boolean() })
        .map((v) => ({ $case: 'heartbeatAck' as const, value: { epoch, ...v } })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({
          lsn: lsnArb,
          checksum: fc.bigInt({ min: 0n, max: UINT64_MAX }),
          transferId: fc.bigInt({ min: 0n, max: 3n }),
          index: fc.integer({ min: 0, max: 3 }),
          last: fc.boolean(),
          cells: fc.oneof(
            fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
            fc
              .array(
                fc.record({
                  key: fc
                    .nat()
                    .map((n) =>
                      Buffer.concat([SENTINEL_PREFIX, Buffer.from(`snap-${n.toString(36)}`)]),
                    ),
                  column: fc.constant(Buffer.from('c')),
                  value: fc.uint8Array({ maxLength: 16 }).map((u) => Buffer.from(u)),
                  version: fc.integer({ min: 1, max: 1_000_000 }),
                }),
                { maxLength: 4 },
              )
              .map((cells) => encodeSnapshotChunk(cells)),
          ),
        })
        .map((v) => ({ $case: 'snapshotChunk' as const, value: { epoch, ...v } })),
    },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
}

/** A batch as a node sends it (with its checksum: peer-transport.ts encodePeerBatch). */
const encodeBatch = (b: Omit<PeerBatch, 'checksum'>) => encodePeerBatch({ ...b, checksum: 0 });

function messagesArb(
  rangeIdArb: fc.Arbitrary<number>,
  epochFor: (rangeId: number) => fc.Arbitrary<number>,
): fc.Arbitrary<PeerMessage[]> {
  const one = rangeIdArb.chain((rangeId) =>
    epochFor(rangeId).chain((epoch) => bodyArb(epoch).map((body) => ({ rangeId, body }))),
  );
  return fc.array(one, { minLength: 1, maxLength: 6 });
}

/** The generator of peer cases for one cluster shape; `forged` adds the exploratory class. */
export function peerCaseArb(
  shape: ClusterShape,
  options: { forged: boolean },
): fc.Arbitrary<PeerCase> {
  const n = shape.nodeIds.length;
  const rangeIds = [...shape.ranges.keys()];
  const targetArb = fc.integer({ min: 0, max: n - 1 });
  const knownRange = fc.constantFrom(...rangeIds);
  const member = (target: number) =>
    fc.constantFrom(...shape.nodeIds.filter((_, i) => i !== target));
  const staleEpoch = (rangeId: number) =>
    fc.integer({ min: 0, max: Math.max(0, (shape.ranges.get(rangeId)?.epoch ?? 1) - 1) });
  const anyEpoch = () => fc.integer({ min: 0, max: 2 ** 32 - 1 });
  const forgedEpoch = (rangeId: number) => {
    const e = shape.ranges.get(rangeId)?.epoch ?? 1;
    return fc.oneof(fc.constant(e), fc.constant(e + 1), fc.integer({ min: e, max: 2 ** 32 - 1 }));
  };

  const batches = (
    fromArb: fc.Arbitrary<string>,
    clusterArb: fc.Arbitrary<string>,
    msgs: fc.Arbitrary<PeerMessage[]>,
  ) =>
    fc.array(fc.record({ from: fromArb, cluster: clusterArb, messages: msgs }).map(encodeBatch), {
      minLength: 1,
      maxLength: 3,
    });

  const ours = fc.constant(shape.cluster);

  const classes: { weight: number; arbitrary: fc.Arbitrary<PeerCase> }[] = [
    {
      weight: 3,
      arbitrary: targetArb.chain((target) =>
        fc
          .tuple(
            batches(member(target), ours, messagesArb(knownRange, staleEpoch)),
            fc.oneof(
              fc.uint8Array({ minLength: 1, maxLength: 128 }).map((u) => ({ kind: 'garbage', u })),
              fc.nat().map((at) => ({ kind: 'truncate', at })),
              fc
                .tuple(fc.nat(), fc.integer({ min: 1, max: 255 }))
                .map(([at, x]) => ({ kind: 'flip', at, x })),
            ),
          )
          .map(([frames, m]): PeerCase => {
            const out = frames.map((f) => {
              if (m.kind === 'garbage') return Buffer.from((m as { u: Uint8Array }).u);
              if (m.kind === 'truncate') return f.subarray(0, (m as { at: number }).at % f.length);
              const g = Buffer.from(f);
              const mm = m as { at: number; x: number };
              g[mm.at % g.length]! ^= mm.x;
              return g;
            });
            return { cls: 'garbage', target, frames: out, note: `garbage/${m.kind}` };
          }),
      ),
    },
    {
      weight: 1,
      arbitrary: targetArb.chain((target) =>
        batches(
          member(target),
          fc.constantFrom('', 'other', `${shape.cluster}x`),
          messagesArb(knownRange, anyEpoch),
        ).map((frames): PeerCase => ({ cls: 'cluster', target, frames, note: 'wrong cluster' })),
      ),
    },
    {
      weight: 2,
      arbitrary: targetArb.chain((target) =>
        batches(
          fc.oneof(
            fc.constantFrom('', 'n9', 'zz', shape.nodeIds[target]!),
            fc.string({ unit: 'binary', maxLength: 8 }),
          ),
          ours,
          messagesArb(knownRange, anyEpoch),
        ).map((frames): PeerCase => ({ cls: 'stranger', target, frames, note: 'not a member' })),
      ),
    },
    {
      weight: 1,
      arbitrary: targetArb.chain((target) =>
        batches(
          member(target),
          ours,
          messagesArb(fc.integer({ min: Math.max(...rangeIds) + 1, max: 2 ** 32 - 1 }), anyEpoch),
        ).map((frames): PeerCase => ({ cls: 'range', target, frames, note: 'unknown range' })),
      ),
    },
    {
      weight: 4,
      arbitrary: targetArb.chain((target) =>
        batches(member(target), ours, messagesArb(knownRange, staleEpoch)).map(
          (frames): PeerCase => ({ cls: 'stale', target, frames, note: 'member, stale epoch' }),
        ),
      ),
    },
  ];
  if (options.forged) {
    classes.push({
      weight: 4,
      arbitrary: targetArb.chain((target) =>
        batches(member(target), ours, messagesArb(knownRange, forgedEpoch)).map(
          (frames): PeerCase => ({
            cls: 'forged',
            target,
            frames,
            note: 'member, current/higher epoch',
          }),
        ),
      ),
    });
  }
  return fc.oneof(...classes);
}

/** A human-readable digest of a case's frames, for failure reports. */
export function describePeerCase(c: PeerCase): string {
  const parts = c.frames.map((f) => {
    try {
      const b = PeerBatch.decode(f);
      return JSON.stringify(
        {
          from: b.from,
          cluster: b.cluster,
          messages: b.messages.map((m) => ({
            rangeId: m.rangeId,
            body: m.body?.$case,
            value: m.body?.value,
          })),
        },
        (k, v) =>
          typeof v === 'bigint'
            ? v.toString()
            : k === 'payload' || k === 'cells'
              ? `<${(v as { data?: unknown[] }).data?.length ?? '?'}B>`
              : v,
      ).slice(0, 600);
    } catch {
      return `<garbage ${f.subarray(0, 32).toString('hex')}>`;
    }
  });
  return `${c.cls} -> n${c.target}: ${parts.join(' | ')}`;
}
