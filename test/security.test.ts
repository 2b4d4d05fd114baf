// Issue #8 "safe to expose", against a real cluster (real ZooKeeper, three real `skv server`
// processes) running with TLS, mutual TLS (--tls-client-auth) and a bearer token, certificates made
// by the test (test/support/certs.ts):
//   - the client library works end to end, and a node forwards a request with its own identity;
//   - a client without the token, or with a wrong one, is refused with UNAUTHENTICATED on every
//     kind of call (session stream, unary, server stream) and nothing is written;
//   - a client without a certificate (or with a stranger's) is refused at the TLS handshake;
//   - a plaintext client fails with a message that names TLS; health needs no token;
//   - a foreign "peer" sending valid replication frames that would plant a committed forged write
//     on a follower is refused with PERMISSION_DENIED — impersonating the
//     leader with a client's or another member's certificate, or as a node outside the cohort —
//     and the follower's epoch, data and service are unchanged; each refusal is logged once.

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type SkvClient, SkvError } from '../src/client/index.js';
import { encodeRowMutation } from '../src/core/mutation.js';
import type { ExchangeSummary, PeerBatch } from '../src/rpc/generated/skv/peer/v1/peer.js';
import {
  Consistency,
  type GetResponse,
  KVClient,
  type PutResponse,
} from '../src/rpc/generated/skv/v1/kv.js';
import { checkHealth } from '../src/rpc/health-client.js';
import { encodePeerMessage } from '../src/rpc/peer-codec.js';
import { PeerClient } from '../src/rpc/peer-transport.js';
import { type ChannelSecurity, channelCredentials } from '../src/rpc/tls.js';
import { createTestPki, type TestCert, type TestPki } from './support/certs.js';
import { SKV_BIN, TestCluster } from './support/cluster.js';

const TOKEN = 'skv-test-token-7f3a9c';
const b = (s: string) => Buffer.from(s);

function bearer(token: string): Metadata {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

async function rejection(p: Promise<unknown>): Promise<SkvError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SkvError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

async function scrape(address: string): Promise<string> {
  const res = await fetch(`http://${address}/metrics`);
  return await res.text();
}

/** A gauge's value for one range, or NaN. */
function gauge(text: string, name: string, rangeId: number): number {
  const re = new RegExp(`^${name}\\{[^}]*range="${rangeId}"[^}]*\\} (\\S+)$`, 'm');
  const m = re.exec(text);
  return m === null ? Number.NaN : Number(m[1]);
}

describe('security: TLS, mutual TLS, bearer token, peer membership', () => {
  let pki: TestPki;
  let cluster: TestCluster;
  let kv: SkvClient;
  let alice: TestCert;
  const nodeCerts = new Map<string, TestCert>();
  const grpcClients: { close(): void }[] = [];

  beforeAll(async () => {
    pki = await createTestPki();
    for (const id of ['n0', 'n1', 'n2']) nodeCerts.set(id, await pki.ca.issue(id));
    alice = await pki.ca.issue('alice', { server: false });
    const tokenFile = path.join(pki.dir, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`);
    cluster = await TestCluster.start({
      nodes: 3,
      splitKeys: ['h', 'p'],
      metrics: true,
      nodeServerArgs: (id) => {
        const c = nodeCerts.get(id)!;
        return [
          '--tls-cert',
          c.certFile,
          '--tls-key',
          c.keyFile,
          '--tls-ca',
          pki.ca.certFile,
          '--tls-client-auth',
          '--auth-token-file',
          tokenFile,
        ];
      },
      clientSecurity: {
        tls: { ca: pki.ca.cert, cert: alice.cert, key: alice.key },
        token: TOKEN,
      },
    });
    kv = cluster.client();
  }, 120_000);

  afterAll(async () => {
    for (const c of grpcClients) c.close();
    await cluster?.stop();
    await pki?.remove();
  });

  const aliceTls = () => ({ ca: pki.ca.cert, cert: alice.cert, key: alice.key });

  function kvClient(address: string, security: ChannelSecurity): KVClient {
    const c = new KVClient(address, channelCredentials(security));
    grpcClients.push(c);
    return c;
  }

  function unaryPut(c: KVClient, md: Metadata, key: string): Promise<PutResponse> {
    return new Promise((resolve, reject) =>
      c.put(
        { key: b(key), column: b('c'), value: b('v') },
        md,
        { deadline: Date.now() + 5000 },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
  }

  function timelineGet(address: string, key: string): Promise<GetResponse> {
    const c = kvClient(address, { tls: aliceTls() });
    return new Promise((resolve, reject) =>
      c.get(
        { key: b(key), column: b('c'), consistency: Consistency.TIMELINE },
        bearer(TOKEN),
        { deadline: Date.now() + 5000 },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
  }

  it('the client library works end to end over mutual TLS with the token', async () => {
    const v1 = await kv.put('alpha', 'c', 'one');
    const v2 = await kv.put('hotel', 'c', 'two');
    await kv.put('papa', 'c', 'three');
    expect((await kv.get('alpha', 'c')).value.toString()).toBe('one');
    expect(await kv.get('hotel', 'c')).toMatchObject({ found: true, version: v2 });
    expect(await kv.delete('alpha', 'c')).toEqual({ found: true, version: v1 });
    const rows: string[] = [];
    for await (const row of kv.scan('', null)) rows.push(row.key.toString());
    expect(rows).toEqual(['hotel', 'papa']);
    // Any node accepts any request: each node forwards to the leaders of the ranges it does not
    // lead, presenting its own certificate and the token.
    const leaders = await cluster.waitForLeaders();
    for (const node of cluster.nodes) {
      for (const key of ['bravo', 'india', 'quebec']) {
        const put = await unaryPut(kvClient(node.address, { tls: aliceTls() }), bearer(TOKEN), key);
        expect(put.version).toBeGreaterThan(0n);
      }
    }
    expect(leaders.size).toBe(3);
  });

  it('a client without the token, or with a wrong one, is refused with UNAUTHENTICATED', async () => {
    for (const token of [undefined, 'not-the-token']) {
      const c = connect({
        servers: cluster.addresses,
        timeoutMs: 8000,
        tls: aliceTls(),
        ...(token === undefined ? {} : { token }),
      });
      try {
        const started = performance.now();
        const err = await rejection(c.put('mallory', 'c', 'x'));
        expect(err.code).toBe('unauthenticated');
        expect(err.message).toMatch(/token/);
        // Refused at once, not retried until the deadline.
        expect(performance.now() - started).toBeLessThan(4000);
        expect((await rejection(c.get('hotel', 'c'))).code).toBe('unauthenticated');
      } finally {
        c.close();
      }
    }
    // Plain gRPC: unary, the session stream and the scan stream, on every node.
    for (const node of cluster.nodes) {
      const c = kvClient(node.address, { tls: aliceTls() });
      const unary = await unaryPut(c, new Metadata(), 'mallory').then(
        () => null,
        (e: ServiceError) => e,
      );
      expect(unary?.code).toBe(status.UNAUTHENTICATED);
      const scanErr = await new Promise<ServiceError | null>((resolve) => {
        const s = c.scan({ start: b(''), end: b(''), limit: 10, consistency: 0, columns: [] });
        s.on('data', () => resolve(null));
        s.on('error', (e: ServiceError) => resolve(e));
        s.on('end', () => resolve(null));
      });
      expect(scanErr?.code).toBe(status.UNAUTHENTICATED);
      const sessionErr = await new Promise<ServiceError | null>((resolve) => {
        const s = c.session(bearer('wrong'));
        s.on('data', () => resolve(null));
        s.on('error', (e: ServiceError) => resolve(e));
        s.write({
          requests: [
            {
              id: 1n,
              timeoutMs: 2000,
              forwarded: false,
              op: { $case: 'put', value: { key: b('mallory'), column: b('c'), value: b('x') } },
            },
          ],
        });
      });
      expect(sessionErr?.code).toBe(status.UNAUTHENTICATED);
    }
    expect((await kv.get('mallory', 'c')).found).toBe(false);
  });

  it('with mutual TLS a client without a certificate, or with a stranger’s, is refused', async () => {
    const stranger = await pki.foreignCa.issue('alice', { server: false });
    for (const tls of [
      { ca: pki.ca.cert },
      { ca: pki.ca.cert, cert: stranger.cert, key: stranger.key },
    ]) {
      const c = connect({ servers: cluster.addresses, timeoutMs: 1500, tls, token: TOKEN });
      try {
        const err = await rejection(c.put('mallory', 'c', 'x'));
        expect(err.code).toBe('unavailable');
        expect(err.message).toMatch(/refused the TLS handshake|certificate required|unknown ca/);
      } finally {
        c.close();
      }
    }
    expect((await kv.get('mallory', 'c')).found).toBe(false);
  });

  it('a plaintext client against the TLS port fails clearly; health needs no token', async () => {
    const c = connect({ servers: cluster.addresses, timeoutMs: 1500, token: TOKEN });
    try {
      const err = await rejection(c.get('hotel', 'c'));
      expect(err.code).toBe('unavailable');
      expect(err.message).toMatch(/requires TLS/);
    } finally {
      c.close();
    }
    const address = cluster.nodes[0]!.address;
    expect(await checkHealth(address, '', 3000, { tls: aliceTls() })).toBe(true);
    expect(await checkHealth(address, '', 1000)).toBe(false);
  });

  it('a peer that is not in the cluster cannot join a cohort; the node keeps serving', async () => {
    const map = await cluster.rangeMap();
    const range = map.ranges.find((r) => Buffer.from(r.start).toString() === 'h')!;
    const leaderId = range.leader;
    const followerId = range.members.find((m) => m !== leaderId)!;
    const thirdId = range.members.find((m) => m !== leaderId && m !== followerId)!;
    const follower = cluster.node(followerId);
    // The follower's view of the range once it holds the leader's last record (a write of this
    // epoch), as its gauges show it.
    await kv.put('hotel', 'c', 'before');
    const leaderNode = cluster.node(leaderId);
    let before = '';
    const readyBy = Date.now() + 10_000;
    while (Date.now() < readyBy) {
      before = await scrape(follower.metricsAddress!);
      const leaderSeq = gauge(
        await scrape(leaderNode.metricsAddress!),
        'skv_cohort_last_lsn_seq',
        range.rangeId,
      );
      if (leaderSeq > 0 && gauge(before, 'skv_cohort_last_lsn_seq', range.rangeId) === leaderSeq)
        break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const epoch = gauge(before, 'skv_cohort_epoch', range.rangeId);
    const lastSeq = gauge(before, 'skv_cohort_last_lsn_seq', range.rangeId);
    expect(epoch).toBeGreaterThan(0);
    expect(lastSeq).toBeGreaterThan(0);

    // Valid frames the real leader would send: a propose in the current epoch that appends a
    // forged write right after the follower's last record (whose LSN is in the current epoch:
    // the write above) and commits it. (The core itself ignores leader messages from beyond the
    // newest known epoch, so only the membership check stands between these and the follower.)
    const forgedLsn = { epoch, seq: lastSeq + 1 };
    const frames = (from: string): PeerBatch => ({
      from,
      cluster: cluster.cluster,
      checksum: 0, // the client's serializer fills it in
      messages: [
        encodePeerMessage(range.rangeId, {
          type: 'propose',
          from,
          to: followerId,
          epoch,
          prevLsn: { epoch, seq: lastSeq },
          entries: [
            {
              lsn: forgedLsn,
              kind: 'data',
              payload: encodeRowMutation({
                key: b('hforged'),
                writes: [{ column: b('c'), value: b('forged') }],
              }),
            },
          ],
          commitSeq: lastSeq + 1,
          commitLsn: forgedLsn,
          leaderLastSeq: lastSeq + 1,
        }),
      ],
    });
    const sendAs = (cert: TestCert, ca: Buffer, from: string) =>
      new Promise<ServiceError | null>((resolve) => {
        const p = new PeerClient(
          follower.address,
          channelCredentials({ tls: { ca, cert: cert.cert, key: cert.key } }),
        );
        const s = p.exchange(
          bearer(TOKEN),
          { deadline: Date.now() + 5000 },
          (err: ServiceError | null, _res?: ExchangeSummary) => {
            p.close();
            resolve(err);
          },
        );
        s.on('error', () => {});
        s.write(frames(from));
        s.write(frames(from));
        s.end();
      });

    const outsider = await pki.ca.issue('n9');
    const stranger = await pki.foreignCa.issue(leaderId);
    // The leader's id with a client's certificate (twice: logged once).
    for (let i = 0; i < 2; i++) {
      expect((await sendAs(alice, pki.ca.cert, leaderId))?.code).toBe(status.PERMISSION_DENIED);
    }
    // The leader's id with another member's own certificate.
    const member = nodeCerts.get(thirdId)!;
    expect((await sendAs(member, pki.ca.cert, leaderId))?.code).toBe(status.PERMISSION_DENIED);
    // A node of the cluster's CA that is not in the cohort, as itself.
    expect((await sendAs(outsider, pki.ca.cert, 'n9'))?.code).toBe(status.PERMISSION_DENIED);
    // The leader's name on a certificate of another CA: refused at the TLS handshake.
    expect((await sendAs(stranger, pki.ca.cert, leaderId))?.code).toBe(status.UNAVAILABLE);

    // The follower's cohort state and data are unchanged, and the cluster keeps serving.
    const after = await scrape(follower.metricsAddress!);
    expect(gauge(after, 'skv_cohort_epoch', range.rangeId)).toBe(epoch);
    expect((await timelineGet(follower.address, 'hforged')).found).toBe(false);
    const again = await cluster.rangeMap();
    const sameRange = again.ranges.find((r) => r.rangeId === range.rangeId)!;
    expect([sameRange.leader, sameRange.epoch]).toEqual([leaderId, range.epoch]);
    const v = await kv.put('hotel', 'c', 'after');
    // The follower still replicates from the real leader: the new write reaches it.
    const deadline = Date.now() + 10_000;
    let seen: GetResponse | null = null;
    while (Date.now() < deadline) {
      seen = await timelineGet(follower.address, 'hotel');
      if (Number(seen.version) === v) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(Number(seen?.version)).toBe(v);
    expect(gauge(await scrape(follower.metricsAddress!), 'skv_cohort_epoch', range.rangeId)).toBe(
      epoch,
    );

    // Each distinct refusal is logged once, with the reason.
    const log = await readFile(follower.logFile, 'utf8');
    const refused = log.split('\n').filter((l) => l.includes('peer refused'));
    const aliceLines = refused.filter((l) => l.includes('"alice"'));
    expect(aliceLines).toHaveLength(1);
    expect(aliceLines[0]).toContain(`not ${leaderId}`);
    expect(refused.some((l) => l.includes(`"${thirdId}"`) && l.includes(`not ${leaderId}`))).toBe(
      true,
    );
    expect(refused.some((l) => l.includes('n9 is not in the cohort'))).toBe(true);
  });

  it('a server refuses to start on an unreadable or malformed credential file (exit 2)', async () => {
    const node = cluster.nodes[0]!;
    const garbage = path.join(pki.dir, 'garbage.pem');
    await writeFile(garbage, 'not a certificate\n');
    const { spawnSync } = await import('node:child_process');
    const bin = path.resolve(SKV_BIN);
    const cert = nodeCerts.get(node.id)!;
    const cases: [string[], RegExp][] = [
      [['--tls-cert', garbage, '--tls-key', cert.keyFile, '--tls-ca', pki.ca.certFile], /garbage/],
      [
        ['--tls-cert', cert.certFile, '--tls-key', alice.keyFile, '--tls-ca', pki.ca.certFile],
        /does not belong/,
      ],
      [['--tls-cert', cert.certFile, '--tls-key', cert.keyFile], /together/],
      [['--auth-token-file', path.join(pki.dir, 'missing')], /cannot read token file/],
    ];
    for (const [args, message] of cases) {
      const r = spawnSync(
        process.execPath,
        [
          bin,
          'server',
          '--id',
          'nx',
          '--listen',
          '127.0.0.1:0',
          '--zk',
          '127.0.0.1:1',
          '--data',
          path.join(pki.dir, 'nx'),
          ...args,
        ],
        { encoding: 'utf8', timeout: 20_000 },
      );
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});
