// The peer port's edges (issue #8): every refused stream ends with a status at once (never left
// open until the sender's deadline), later data of a refused stream reaches nobody, and the
// honest sender (PeerLink) backs off and reports an outage once.

import {
  Client,
  credentials,
  Server,
  ServerCredentials,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerBatch } from './generated/skv/peer/v1/peer.js';
import {
  PEER_RECONNECT_BACKOFF_MS_MAX,
  PEER_RECONNECT_BACKOFF_MS_MIN,
  PeerLink,
  type PeerLinkBroken,
  PeerService,
  type PeerVerdict,
  peerServiceImplementation,
  reconnectBackoffMs,
} from './peer-transport.js';

const EXCHANGE = '/skv.peer.v1.Peer/Exchange';
const identity = (b: Buffer) => b;
/** Field 1 with wire type 7 (none such): no decoder accepts it. */
const UNDECODABLE = Buffer.from([0x0f, 0xff, 0xff]);

const batch = (from: string) =>
  Buffer.from(PeerBatch.encode({ from, cluster: 'c', messages: [] }).finish());

describe('peer port', () => {
  let server: Server;
  let raw: Client;
  let address: string;
  const seen: string[] = [];
  const refusals: string[] = [];

  beforeAll(async () => {
    server = new Server();
    server.addService(
      PeerService,
      peerServiceImplementation(
        (b): PeerVerdict => {
          seen.push(b.from);
          if (b.from === 'boom') throw new Error('cannot read this batch');
          if (b.from === 'stranger') return { ok: false, reason: 'stranger is not a member' };
          return { ok: true };
        },
        { requireCertificate: false, onRefused: (r) => refusals.push(r.reason) },
      ),
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    address = `127.0.0.1:${port}`;
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
    expect(o.details).toContain('is not a PeerBatch');
    expect(o.ms).toBeLessThan(2_000);
    expect(seen).not.toContain('after-garbage');
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
