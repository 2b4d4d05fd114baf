// The peer port's edges (issue #8): every refused stream ends with a status at once (never left
// open until the sender's deadline), later data of a refused stream reaches nobody, and the
// honest sender (PeerLink) backs off and reports an outage once. A batch damaged on the way is
// refused by its checksum.

import { Client, credentials, type Server, type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPeerServer } from '../../test/support/peer-server.js';
import {
  decodePeerBatch,
  encodePeerBatch,
  MalformedPeerBatch,
  PEER_RECONNECT_BACKOFF_MS_MAX,
  PEER_RECONNECT_BACKOFF_MS_MIN,
  PeerLink,
  type PeerLinkBroken,
  PeerLinkClosedError,
  type PeerVerdict,
  reconnectBackoffMs,
  withBatchChecksum,
} from './peer-transport.js';

const EXCHANGE = '/skv.peer.v1.Peer/Exchange';
const identity = (b: Buffer) => b;
/** Field 1 with wire type 7 (none such): no decoder accepts it. */
const UNDECODABLE = Buffer.from([0x0f, 0xff, 0xff]);

const batch = (from: string) => encodePeerBatch({ from, cluster: 'c', messages: [], checksum: 0 });

/** A snapshot chunk of `bytes` zero bytes (index `index` of transfer 1 of range 1). */
const chunk = (index: number, bytes: number) => ({
  rangeId: 1,
  body: {
    $case: 'snapshotChunk' as const,
    value: {
      epoch: 1,
      lsn: { epoch: 1, seq: 10n },
      checksum: 0n,
      transferId: 1n,
      index,
      last: false,
      cells: Buffer.alloc(bytes),
    },
  },
});

describe('peer port', () => {
  let server: Server;
  let raw: Client;
  let address: string;
  const seen: string[] = [];
  const refusals: string[] = [];

  beforeAll(async () => {
    ({ server, address } = await startPeerServer(
      (b): PeerVerdict => {
        seen.push(b.from);
        if (b.from === 'boom') throw new Error('cannot read this batch');
        if (b.from === 'stranger') return { ok: false, reason: 'stranger is not a member' };
        return { ok: true };
      },
      { requireCertificate: false, onRefused: (r) => refusals.push(r.reason) },
    ));
    raw = new Client(address, credentials.createInsecure());
  });
  afterAll(() => {
    raw.close();
    server.forceShutdown();
  });

  /** Writes the frames and leaves the stream open: only the server can end it in time. */
  const exchange = (frames: Buffer[]) =>
    new Promise<{ code: status; details: string; ms: number }>((resolve) => {
      const started = performance.now();
      const call = raw.makeClientStreamRequest(
        EXCHANGE,
        identity,
        identity,
        { deadline: Date.now() + 3_000 },
        (err: ServiceError | null) =>
          resolve({
            code: err?.code ?? status.OK,
            details: err?.details ?? '',
            ms: performance.now() - started,
          }),
      );
      call.on('error', () => {});
      for (const f of frames) call.write(f);
    });

  it('ends a stream of undecodable bytes with INVALID_ARGUMENT at once, ignoring what follows', async () => {
    const o = await exchange([UNDECODABLE, batch('after-garbage')]);
    expect(o.code).toBe(status.INVALID_ARGUMENT);
    expect(o.details).toContain('does not end in its checksum');
    expect(o.ms).toBeLessThan(2_000);
    expect(seen).not.toContain('after-garbage');
    // With a checksum that matches, the bytes still have to be a PeerBatch.
    const p = await exchange([withBatchChecksum(UNDECODABLE), batch('after-garbage')]);
    expect(p.code).toBe(status.INVALID_ARGUMENT);
    expect(p.details).toContain('is not a PeerBatch');
    expect(seen).not.toContain('after-garbage');
  });

  it('refuses a batch damaged in transit: one changed byte anywhere, nothing reaches the node', async () => {
    const good = encodePeerBatch({
      from: 'damaged',
      cluster: 'c',
      messages: [
        {
          rangeId: 1,
          body: {
            $case: 'propose',
            value: {
              epoch: 1,
              prevLsn: { epoch: 1, seq: 1n },
              entries: [
                { lsn: { epoch: 1, seq: 2n }, kind: 0, payload: Buffer.from('a row mutation') },
              ],
              commitSeq: 1n,
              commitLsn: { epoch: 1, seq: 1n },
              leaderLastSeq: 2n,
            },
          },
        },
      ],
      checksum: 0,
    });
    expect(decodePeerBatch(good)).toMatchObject({ from: 'damaged', checksum: expect.any(Number) });
    for (const at of [0, 3, good.length - 30, good.length - 6, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x10;
      expect(decodePeerBatch(bad)).toBeInstanceOf(MalformedPeerBatch);
    }
    const swapped = Buffer.from(good);
    const at = good.indexOf('row');
    swapped[at] = good[at + 1]!;
    swapped[at + 1] = good[at]!;
    const o = await exchange([swapped, batch('after-damage')]);
    expect(o.code).toBe(status.INVALID_ARGUMENT);
    expect(o.details).toContain('damaged in transit');
    expect(seen).not.toContain('damaged');
    expect(seen).not.toContain('after-damage');
  });

  it('reports garbage of every shape once, not once per stream', async () => {
    for (const g of [UNDECODABLE, Buffer.from([0x0a, 0x09, 0x01]), Buffer.from([0xff, 0xff])]) {
      expect((await exchange([g])).code).toBe(status.INVALID_ARGUMENT);
    }
    expect(refusals.filter((r) => r === 'a frame that is not a PeerBatch')).toHaveLength(1);
  });

  it('ends a stream whose batch the handler cannot read with INVALID_ARGUMENT (not dropped)', async () => {
    const o = await exchange([batch('boom'), batch('after-boom')]);
    expect(o.code).toBe(status.INVALID_ARGUMENT);
    expect(o.details).toContain('cannot read this batch');
    expect(o.ms).toBeLessThan(2_000);
    expect(seen).not.toContain('after-boom');
  });

  it('ends a stream of a refused sender with PERMISSION_DENIED at once', async () => {
    const o = await exchange([batch('stranger'), batch('after-stranger')]);
    expect(o.code).toBe(status.PERMISSION_DENIED);
    expect(o.ms).toBeLessThan(2_000);
    expect(seen).not.toContain('after-stranger');
  });

  it('reconnects a refused link with a growing backoff and reports the outage once', async () => {
    const broken: PeerLinkBroken[] = [];
    const link = new PeerLink(address, 'stranger', 'c', {}, { onBroken: (e) => broken.push(e) });
    try {
      // Drive traffic for 1.6 s; a fixed 100 ms backoff would reconnect about 15 times.
      const started = Date.now();
      while (Date.now() - started < 1_600) {
        link.send({ rangeId: 1 });
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(broken).toHaveLength(1);
      expect(broken[0]?.code).toBe(status.PERMISSION_DENIED);
      expect(link.stats.reconnects).toBeGreaterThanOrEqual(2);
      expect(link.stats.reconnects).toBeLessThanOrEqual(7);
    } finally {
      link.close();
    }
  });
});

describe('peer port: bulk messages', () => {
  let server: Server;
  let address: string;
  const chunks: number[] = [];
  const protocol: number[] = [];

  beforeAll(async () => {
    ({ server, address } = await startPeerServer(
      (b): PeerVerdict => {
        if (b.from === 'stranger') return { ok: false, reason: 'stranger is not a member' };
        for (const m of b.messages) {
          if (m.body?.$case === 'snapshotChunk') chunks.push(m.body.value.index);
          else protocol.push(m.rangeId);
        }
        return { ok: true };
      },
      { requireCertificate: false },
    ));
  });
  afterAll(() => server.forceShutdown());

  it('sends a transfer in order on a stream of its own, each message once the stream has room; protocol messages go on meanwhile', async () => {
    const link = new PeerLink(address, 'node', 'c');
    try {
      let stream: number | undefined;
      const first = link.sendBulk(chunk(0, 1024 * 1024));
      link.send({ rangeId: 7 });
      stream = await first;
      // 48 MiB in 1 MiB chunks: written one at a time as the stream drains, not all at once.
      for (let i = 1; i < 48; i++) {
        expect(await link.sendBulk(chunk(i, 1024 * 1024), stream)).toBe(stream);
        if (i === 8) link.send({ rangeId: 8 });
      }
      // The sender never ran far ahead of the receiver (without the waits, all 48 MiB would be
      // queued in the sender's memory before the receiver had seen most of them).
      expect(chunks.length).toBeGreaterThanOrEqual(32);
      await new Promise((r) => setTimeout(r, 200));
      expect(chunks).toEqual(Array.from({ length: 48 }, (_, i) => i));
      expect(protocol).toEqual([7, 8]);
    } finally {
      link.close();
    }
  });

  it('refuses the next chunk of a transfer whose stream broke (the receiver would drop it)', async () => {
    const link = new PeerLink(address, 'stranger', 'c');
    try {
      const stream = await link.sendBulk(chunk(0, 100));
      // The server refuses the sender and ends the stream.
      await new Promise((r) => setTimeout(r, 300));
      await expect(link.sendBulk(chunk(1, 100), stream)).rejects.toBeInstanceOf(
        PeerLinkClosedError,
      );
      // A new transfer opens a new stream.
      expect(await link.sendBulk(chunk(0, 100))).toBe(stream + 1);
    } finally {
      link.close();
    }
    await expect(link.sendBulk(chunk(0, 100))).rejects.toBeInstanceOf(PeerLinkClosedError);
  });
});

describe('peer port: large proposes', () => {
  it('splits what one tick queues into batches under the message limit, in order, on one stream', async () => {
    const batches: number[][] = [];
    const { server, address } = await startPeerServer(
      (b): PeerVerdict => {
        batches.push(b.messages.map((m) => m.rangeId));
        return { ok: true };
      },
      { requireCertificate: false },
    );
    const broken: PeerLinkBroken[] = [];
    const link = new PeerLink(address, 'node', 'c', {}, { onBroken: (e) => broken.push(e) });
    const propose = (rangeId: number, mib: number) => ({
      rangeId,
      body: {
        $case: 'propose' as const,
        value: {
          epoch: 1,
          prevLsn: { epoch: 1, seq: 0n },
          entries: [
            { lsn: { epoch: 1, seq: 1n }, kind: 1, payload: Buffer.alloc(mib * 1024 * 1024) },
          ],
          commitSeq: 0n,
          commitLsn: { epoch: 1, seq: 0n },
          leaderLastSeq: 1n,
        },
      },
    });
    try {
      // 6 x 4 MiB (24 MiB, over GRPC_MESSAGE_BYTES_MAX together), then small ones, one tick.
      for (let i = 1; i <= 6; i++) link.send(propose(i, 4));
      for (let i = 7; i <= 9; i++) link.send({ rangeId: i });
      for (let i = 0; i < 100 && batches.flat().length < 9; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(broken).toEqual([]);
      expect(batches.flat()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      // Two 4 MiB proposes per batch at most (8 MiB of payload); the small ones join the last.
      expect(batches).toEqual([
        [1, 2],
        [3, 4],
        [5, 6, 7, 8, 9],
      ]);
      expect(link.stats.reconnects).toBe(0);
    } finally {
      link.close();
      server.forceShutdown();
    }
  });
});

describe('peer port: a receiver that is behind', () => {
  it('reads nothing more of the stream until its wait settles, so the bulk sender is held back', async () => {
    const seen: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const { server, address } = await startPeerServer(
      (b): PeerVerdict => {
        for (const m of b.messages) {
          if (m.body?.$case === 'snapshotChunk') seen.push(m.body.value.index);
        }
        return seen.length === 1 ? { ok: true, wait: gate } : { ok: true };
      },
      { requireCertificate: false },
    );
    const link = new PeerLink(address, 'node', 'c');
    try {
      let sent = 0;
      const sending = (async () => {
        const stream = await link.sendBulk(chunk(0, 1024 * 1024));
        sent++;
        for (let i = 1; i < 64; i++) {
          await link.sendBulk(chunk(i, 1024 * 1024), stream);
          sent++;
        }
      })();
      await new Promise((r) => setTimeout(r, 500));
      // Held: the receiver took one chunk, and the sender stopped once the windows and buffers
      // filled (64 MiB would have gone at once without flow control).
      expect(seen).toEqual([0]);
      expect(sent).toBeLessThan(32);
      release();
      await sending;
      for (let i = 0; i < 100 && seen.length < 64; i++) await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual(Array.from({ length: 64 }, (_, i) => i));
    } finally {
      link.close();
      server.forceShutdown();
    }
  });
});

describe('reconnectBackoffMs', () => {
  it('doubles from the minimum to the maximum, within the jitter', () => {
    const mid = () => 0.5;
    expect(reconnectBackoffMs(1, mid)).toBe(PEER_RECONNECT_BACKOFF_MS_MIN);
    expect(reconnectBackoffMs(2, mid)).toBe(2 * PEER_RECONNECT_BACKOFF_MS_MIN);
    expect(reconnectBackoffMs(50, mid)).toBe(PEER_RECONNECT_BACKOFF_MS_MAX);
    expect(reconnectBackoffMs(1, () => 0)).toBe(0.8 * PEER_RECONNECT_BACKOFF_MS_MIN);
    expect(reconnectBackoffMs(50, () => 1)).toBe(1.2 * PEER_RECONNECT_BACKOFF_MS_MAX);
  });
});
