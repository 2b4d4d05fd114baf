// A peer link whose bytes get damaged on the way (a faulty NIC or middlebox: damage TCP's own
// checksum misses) must never hand the receiving node a batch that differs from what was sent:
// the batch checksum (src/rpc/peer-transport.ts encodePeerBatch) refuses it, the sender's link
// reconnects, and the node takes clean batches after it. Real grpc-js streams through the Jepsen link proxy
// in its `corrupt` mode, which flips one bit in a share of the TCP chunks.

import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../src/devtools/local-zookeeper.js';
import type { PeerBatch, PeerMessage } from '../src/rpc/generated/skv/peer/v1/peer.js';
import { PeerLink, type PeerVerdict } from '../src/rpc/peer-transport.js';
import { LinkProxy } from './jepsen/proxy.js';
import { startPeerServer } from './support/peer-server.js';

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The payload the sender puts in the entry of seq `seq` (so the receiver can check it). */
function payloadFor(seq: number): Buffer {
  const h = createHash('sha256').update(`entry ${seq}`).digest();
  return Buffer.concat([h, h, h, h, h, h]); // 192 bytes
}

function propose(seq: number): PeerMessage {
  return {
    rangeId: 1,
    body: {
      $case: 'propose',
      value: {
        epoch: 7,
        prevLsn: { epoch: 7, seq: BigInt(seq - 1) },
        entries: [{ lsn: { epoch: 7, seq: BigInt(seq) }, kind: 0, payload: payloadFor(seq) }],
        commitSeq: BigInt(seq - 1),
        commitLsn: { epoch: 7, seq: BigInt(seq - 1) },
        leaderLastSeq: BigInt(seq),
      },
    },
  };
}

describe('a peer link that damages bytes', () => {
  it('never hands the node a damaged batch, and the node takes clean ones after it', async () => {
    let received = 0;
    let damaged = 0;
    let lastSeq = 0;
    const refusals: string[] = [];
    const onBatch = (b: PeerBatch): PeerVerdict => {
      if (b.from !== 'n1' || b.cluster !== 'c') damaged++;
      for (const m of b.messages) {
        if (m.rangeId !== 1 || m.body?.$case !== 'propose') {
          damaged++;
          continue;
        }
        const p = m.body.value;
        for (const e of p.entries) {
          const seq = Number(e.lsn?.seq ?? 0n);
          if (p.epoch !== 7 || !payloadFor(seq).equals(Buffer.from(e.payload))) damaged++;
          received++;
          lastSeq = Math.max(lastSeq, seq);
        }
      }
      return { ok: true };
    };
    const { server, port: serverPort } = await startPeerServer(onBatch, {
      requireCertificate: false,
      onRefused: (r) => refusals.push(r.reason),
    });
    cleanups.push(() => {
      server.forceShutdown();
    });
    const proxyPort = await freePort();
    const proxy = new LinkProxy(
      'n1->n2',
      { host: '127.0.0.1', port: proxyPort },
      { host: '127.0.0.1', port: serverPort },
      '127.0.0.1',
    );
    await proxy.start();
    cleanups.push(() => proxy.stop());
    // Damage until eight chunks were hit: one chunk in ten has a bit flipped. Each hit ends its
    // connection, or can leave it stuck (a flipped bit in a gRPC message's length prefix makes the
    // receiver wait for that many bytes; the batch checksum cannot cover the prefix): a new link
    // every 0.5 s keeps bytes flowing. Bounded: 15 s, 60,000 messages.
    proxy.setMode({ kind: 'corrupt', probability: 0.1 });
    const links: PeerLink[] = [];
    cleanups.push(() => {
      for (const l of links) l.close();
    });
    let seq = 0;
    const damageUntil = Date.now() + 15_000;
    while (proxy.chunksCorrupted < 8 && Date.now() < damageUntil && seq < 60_000) {
      links.at(-1)?.close();
      const link = new PeerLink(`127.0.0.1:${proxyPort}`, 'n1', 'c');
      links.push(link);
      for (let i = 0; i < 100; i++) {
        for (let j = 0; j < 20; j++) link.send(propose(++seq));
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const sentDuringDamage = seq;
    const receivedDuringDamage = received;

    // Then clean bytes, on a new link: what is sent now arrives.
    proxy.setMode({ kind: 'pass' });
    const clean = new PeerLink(`127.0.0.1:${proxyPort}`, 'n1', 'c');
    cleanups.push(() => clean.close());
    const cleanUntil = Date.now() + 10_000;
    while (Date.now() < cleanUntil && lastSeq <= sentDuringDamage) {
      for (let i = 0; i < 20; i++) clean.send(propose(++seq));
      await new Promise((r) => setTimeout(r, 20));
    }

    expect(proxy.chunksCorrupted).toBeGreaterThanOrEqual(8);
    expect(damaged).toBe(0);
    expect(receivedDuringDamage).toBeGreaterThan(0);
    expect(receivedDuringDamage).toBeLessThan(sentDuringDamage);
    // Damage inside a batch's bytes is refused by its checksum (other damage breaks the HTTP/2
    // connection itself): the node said why.
    expect(refusals).toContain('a frame that is not a PeerBatch');
    expect(lastSeq).toBeGreaterThan(sentDuringDamage);
  });
});
