// Hostile frames on a node's peer port never crash it or corrupt data (issue #8). Against a real
// 3-node cluster, a seeded fast-check generator (test/support/fuzz-peer-cases.ts) sends garbage
// bytes, truncated and bit-flipped batches, batches of another cluster, from non-members, for
// unknown ranges, and from members with stale epochs (with LSNs far in the future, seqs past
// 2^53, missing LSNs, unknown entry kinds, odd snapshot chunks) straight to the nodes' peer
// port through a raw grpc-js client, while a client keeps writing. Every call must end before its
// deadline; afterwards every node is the same process, healthy, the control rows read back
// byte-identical strongly and at every replica, replica digests agree, and no sentinel row that
// a fuzzed propose or snapshot carried was stored (test/support/fuzz-integrity.ts).
//
// The seed is printed; FUZZ_SEED=n replays the frames. FUZZ_PEER_CALLS / FUZZ_PEER_MS bound the
// run. FUZZ_PEER_FORGED=1 adds frames from a member's id with the current or a higher epoch:
// exploratory (the peer port trusts the sender id until peers are authenticated), see the report.

import { status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SkvClient } from '../src/client/index.js';
import { TestCluster } from './support/cluster.js';
import { RawGrpc } from './support/fuzz-grpc.js';
import {
  type ControlRow,
  checkIntegrity,
  type NodeSnapshot,
  snapshotPids,
  writeControlRows,
} from './support/fuzz-integrity.js';
import {
  type ClusterShape,
  describePeerCase,
  PEER_EXCHANGE_PATH,
  peerCaseArb,
} from './support/fuzz-peer-cases.js';

const SEED =
  process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
const CALLS_MAX = Number(process.env.FUZZ_PEER_CALLS ?? 4000);
const RUN_MS_MAX = Number(process.env.FUZZ_PEER_MS ?? 20_000);
const FORGED = process.env.FUZZ_PEER_FORGED === '1';
const CONCURRENCY = 24;
/** A peer batch is handled in well under a millisecond: 2 s is a hang. */
const CALL_TIMEOUT_MS = 2_000;
/**
 * Strict by default: a stream the node once dropped on a bad batch without a status (its sender
 * waited for its own deadline; PeerLink streams have none) is fixed (issue #8, peer-transport.ts)
 * and fails the suite again, as does INTERNAL or UNKNOWN (undecodable frames are
 * INVALID_ARGUMENT). FUZZ_STRICT=0 only counts hung streams (to explore an old build).
 */
const STRICT = process.env.FUZZ_STRICT !== '0';
const CONTROL_ROWS = 24;
/** Rows written by the client while the fuzz runs, at most. */
const WRITES_DURING_MAX = 200;

describe('fuzz: the peer port', () => {
  let cluster: TestCluster;
  let kv: SkvClient;
  let pids: NodeSnapshot[];
  let controlRows: ControlRow[];
  let shape: ClusterShape;
  const raw: RawGrpc[] = [];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, ranges: 3 });
    kv = cluster.client();
    controlRows = await writeControlRows(kv, CONTROL_ROWS);
    pids = snapshotPids(cluster);
    for (const a of cluster.addresses) raw.push(new RawGrpc(a));
    const map = await cluster.rangeMap();
    shape = {
      cluster: cluster.cluster,
      nodeIds: cluster.nodes.map((n) => n.id),
      ranges: new Map(
        map.ranges.map((r) => [r.rangeId, { epoch: Number(r.epoch), members: r.members }]),
      ),
    };
  }, 120_000);

  afterAll(async () => {
    for (const r of raw) r.close();
    await cluster?.stop();
  });

  it('survives garbage, strangers, unknown ranges and stale epochs with its data intact', async () => {
    console.log(
      `fuzz-peer: FUZZ_SEED=${SEED} (replay with FUZZ_SEED=${SEED})${FORGED ? ' FORGED' : ''}`,
    );
    const cases = fc.sample(peerCaseArb(shape, { forged: FORGED }), {
      seed: SEED,
      numRuns: CALLS_MAX,
    });
    const figures = {
      calls: 0,
      frames: 0,
      byClass: {} as Record<string, number>,
      byCode: {} as Record<string, number>,
      writesDuring: 0,
      knownDroppedWithoutStatus: 0,
      ms: 0,
    };
    const failures: string[] = [];
    const started = Date.now();
    let next = 0;
    let fuzzing = true;
    // Real traffic while the fuzz runs: the fuzz must not break replication under way. The
    // written rows join the control rows (their versions are known once acknowledged).
    const writer = (async () => {
      const rows = await writeControlRows(kv, 1).catch(() => []);
      let i = 0;
      while (fuzzing && figures.writesDuring < WRITES_DURING_MAX) {
        const more = await writeControlRows(kv, 4).catch(() => [] as ControlRow[]);
        controlRows.push(...more);
        figures.writesDuring += more.length;
        i++;
      }
      controlRows.push(...rows);
      return i;
    })();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < cases.length && Date.now() - started < RUN_MS_MAX && failures.length < 20) {
          const index = next++;
          const c = cases[index]!;
          const client = raw[c.target]!;
          const o = await client.clientStream(PEER_EXCHANGE_PATH, c.frames, CALL_TIMEOUT_MS);
          figures.calls++;
          figures.frames += c.frames.length;
          figures.byClass[c.cls] = (figures.byClass[c.cls] ?? 0) + 1;
          const code = status[o.code] ?? String(o.code);
          figures.byCode[code] = (figures.byCode[code] ?? 0) + 1;
          if (o.code === status.DEADLINE_EXCEEDED && !STRICT) {
            figures.knownDroppedWithoutStatus++;
          } else if (o.code === status.DEADLINE_EXCEEDED) {
            failures.push(`case #${index}: hung (${o.details})\n    ${describePeerCase(c)}`);
          } else if (STRICT && (o.code === status.INTERNAL || o.code === status.UNKNOWN)) {
            failures.push(
              `case #${index}: ${code} (${o.details.slice(0, 160)})\n    ${describePeerCase(c)}`,
            );
          }
          // A node that died takes its port with it: stop at once and say which frames did it.
          try {
            cluster.checkAlive();
          } catch (err) {
            failures.push(`case #${index}: ${String(err)}\n    ${describePeerCase(c)}`);
            return;
          }
        }
      }),
    );
    fuzzing = false;
    await writer;
    figures.ms = Date.now() - started;
    console.log(`fuzz-peer figures (seed ${SEED}): ${JSON.stringify(figures)}`);
    if (failures.length > 0) {
      console.log(`fuzz-peer failures (seed ${SEED}):\n${failures.join('\n')}`);
      console.log(await cluster.logTails(15));
    }

    // Sentinel rows live under SENTINEL_PREFIX; the integrity check scans the whole prefix.
    const integrity = await checkIntegrity(cluster, kv, pids, controlRows, []);
    console.log(`fuzz-peer integrity: ${JSON.stringify(integrity.figures)}`);
    if (integrity.problems.length > 0) console.log(await cluster.logTails(20));
    expect(failures).toEqual([]);
    expect(integrity.problems).toEqual([]);
    expect(figures.calls).toBeGreaterThan(100);
  }, 150_000);
});
