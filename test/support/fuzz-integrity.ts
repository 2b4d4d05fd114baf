// Fuzz harness: what "the node still serves and its data is intact" means, checked after a fuzz
// run against a TestCluster (issue #8, last "Must show" bullet):
//   1. every node process is the one that was running before the fuzz (same PID) and alive;
//   2. every node answers the gRPC health check SERVING;
//   3. control rows written before the fuzz read back byte-identical with their version, strongly
//      (through the client library) and by timeline at every replica (each node asked directly);
//   4. every range's replicas converge to one digest (applied LSN + contents checksum), read from
//      each node's SIGUSR2 status line (src/server/failpoints.ts; as test/jepsen does);
//   5. nothing the fuzzer sent with a valid shape but invalid content was stored: the sentinel
//      rows are absent, strongly and at every replica.
// Checks that depend on replication catching up wait for it with a deadline (no fixed sleeps).

import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import type { SkvClient } from '../../src/client/index.js';
import {
  Consistency,
  type GetResponse,
  KVClient,
  type ReadRowResponse,
} from '../../src/rpc/generated/skv/v1/kv.js';
import { checkHealth } from '../../src/rpc/health-client.js';
import type { TestCluster } from './cluster.js';

const CONVERGENCE_MS_MAX = 20_000;
const STATUS_WAIT_MS_MAX = 3_000;
const POLL_MS = 100;
const SENTINELS_PER_REPLICA_MAX = 300;
const PARALLEL_READS = 16;

async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  f: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await f(items[next++]!);
    }),
  );
}

export interface ControlRow {
  readonly key: Buffer;
  readonly column: Buffer;
  readonly value: Buffer;
  version: number;
}

export interface SentinelCell {
  readonly key: Buffer;
  readonly column: Buffer;
}

/** Marks keys the fuzzer writes only with invalid content: none of them may ever be stored. */
export const SENTINEL_PREFIX = Buffer.from('fuzz-sentinel/');

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Writes `n` control rows with binary values, spread over the key space (first byte 0..255) so
 * that every range holds some, plus an empty value and a 64 KiB one.
 */
export async function writeControlRows(client: SkvClient, n: number): Promise<ControlRow[]> {
  const rows: ControlRow[] = [];
  for (let i = 0; i < n; i++) {
    const key = Buffer.concat([
      Buffer.from([Math.floor((i * 256) / n)]),
      Buffer.from(`ctl-${i}-`),
      randomBytes(8),
    ]);
    const column = Buffer.concat([Buffer.from('c'), randomBytes(3)]);
    const size = i === 0 ? 0 : i === 1 ? 64 * 1024 : 1 + (i % 200);
    const value = randomBytes(size);
    const version = await client.put(key, column, value);
    rows.push({ key, column, value, version });
  }
  return rows;
}

export interface NodeSnapshot {
  readonly id: string;
  readonly pid: number;
}

export function snapshotPids(cluster: TestCluster): NodeSnapshot[] {
  return cluster.nodes.map((n) => ({ id: n.id, pid: cluster.pid(n.id) }));
}

interface CohortDigest {
  rangeId: number;
  digest: { lsn: { epoch: number; seq: number }; checksum: string | number };
}

/** Every cohort's digest from the node's SIGUSR2 status line, or null when none appears. */
export async function nodeDigests(
  cluster: TestCluster,
  id: string,
): Promise<CohortDigest[] | null> {
  const node = cluster.node(id);
  const p = node.process;
  if (p === null || p.exitCode !== null) return null;
  const from = (await stat(node.logFile)).size;
  p.kill('SIGUSR2');
  const deadline = Date.now() + STATUS_WAIT_MS_MAX;
  while (Date.now() < deadline) {
    await sleep(POLL_MS);
    const text = (await readFile(node.logFile)).subarray(from).toString('utf8');
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const parsed = JSON.parse(line) as { msg?: string; cohorts?: CohortDigest[] };
        if (parsed.msg === 'status' && parsed.cohorts !== undefined) return parsed.cohorts;
      } catch {
        // a line still being written
      }
    }
  }
  return null;
}

function getAt(kv: KVClient, key: Buffer, column: Buffer, timeline: boolean): Promise<GetResponse> {
  return new Promise((resolve, reject) =>
    kv.get(
      { key, column, consistency: timeline ? Consistency.TIMELINE : Consistency.STRONG },
      new Metadata(),
      { deadline: Date.now() + 3_000 },
      (err: ServiceError | null, res: GetResponse) => (err ? reject(err) : resolve(res)),
    ),
  );
}

function readRowAt(kv: KVClient, key: Buffer): Promise<ReadRowResponse> {
  return new Promise((resolve, reject) =>
    kv.readRow(
      { key, columns: [], consistency: Consistency.TIMELINE },
      new Metadata(),
      { deadline: Date.now() + 3_000 },
      (err: ServiceError | null, res: ReadRowResponse) => (err ? reject(err) : resolve(res)),
    ),
  );
}

export interface IntegrityFigures {
  controlRows: number;
  sentinels: number;
  ranges: number;
  convergedMs: number;
}

/**
 * Runs checks 1–5; returns the problems found (empty: intact) and figures. `pids` is the
 * snapshot taken before the fuzz.
 */
export async function checkIntegrity(
  cluster: TestCluster,
  client: SkvClient,
  pids: readonly NodeSnapshot[],
  controlRows: readonly ControlRow[],
  sentinels: readonly SentinelCell[],
): Promise<{ problems: string[]; figures: IntegrityFigures }> {
  const problems: string[] = [];
  // 1. Same processes, alive.
  for (const s of pids) {
    const p = cluster.node(s.id).process;
    if (p === null || p.pid !== s.pid || p.exitCode !== null || p.signalCode !== null) {
      problems.push(
        `node ${s.id}: pid ${s.pid} is gone (now ${p?.pid}, exit ${p?.exitCode}, signal ${p?.signalCode})`,
      );
    }
  }
  if (problems.length > 0) return { problems, figures: emptyFigures() };

  // 2. Health.
  for (const n of cluster.nodes) {
    if (!(await checkHealth(n.address, 'skv.v1.KV', 3_000))) {
      problems.push(`node ${n.id}: health check is not SERVING`);
    }
  }

  // 3. Control rows, strongly.
  await forEachLimited(controlRows, PARALLEL_READS, async (r) => {
    const got = await client.get(r.key, r.column, { timeoutMs: 5_000 });
    if (!got.found || !Buffer.from(got.value).equals(r.value) || got.version !== r.version) {
      problems.push(
        `control row ${r.key.toString('hex')}: strong read ${got.found ? `v${got.version} ${got.value.length} bytes` : 'not found'}, wrote v${r.version} ${r.value.length} bytes`,
      );
    }
  });
  // 5. Sentinels, strongly: one scan over the whole sentinel prefix (catches rows the fuzzer
  // did not list too), then each listed row (the fuzzed column itself may be unreadable).
  const prefixEnd = Buffer.from(SENTINEL_PREFIX);
  prefixEnd[prefixEnd.length - 1]! += 1;
  for await (const row of client.scan(SENTINEL_PREFIX, prefixEnd, { timeoutMs: 10_000 })) {
    problems.push(`sentinel row ${row.key.toString('latin1')} was stored (strong scan)`);
    if (problems.length > 20) break;
  }
  // Timeline reads at every replica: a bounded sample of the listed rows.
  const sentinelKeys = [
    ...new Map(sentinels.map((s) => [s.key.toString('hex'), s.key])).values(),
  ].slice(0, SENTINELS_PER_REPLICA_MAX);
  // 3 and 5 at every replica (timeline), waiting for each replica to catch up.
  const started = Date.now();
  const kvs = cluster.nodes.map((n) => ({
    id: n.id,
    kv: new KVClient(n.address, credentials.createInsecure()),
  }));
  try {
    for (const { id, kv } of kvs) {
      await forEachLimited(controlRows, PARALLEL_READS, async (r) => {
        let last = '';
        for (;;) {
          const got = await getAt(kv, r.key, r.column, true).catch((e: unknown) => e);
          if (
            !(got instanceof Error) &&
            (got as GetResponse).found &&
            Buffer.from((got as GetResponse).value).equals(r.value) &&
            Number((got as GetResponse).version) === r.version
          ) {
            break;
          }
          last = got instanceof Error ? got.message : `v${(got as GetResponse).version}`;
          if (Date.now() - started > CONVERGENCE_MS_MAX) {
            problems.push(`control row ${r.key.toString('hex')} at ${id} (timeline): ${last}`);
            break;
          }
          await sleep(POLL_MS);
        }
      });
      await forEachLimited(sentinelKeys, PARALLEL_READS, async (key) => {
        const got = await readRowAt(kv, key).catch((e: unknown) => e);
        if (got instanceof Error) problems.push(`sentinel read at ${id}: ${got.message}`);
        else if ((got as ReadRowResponse).cells.length > 0) {
          problems.push(`sentinel row ${key.toString('latin1')} was stored at ${id} (timeline)`);
        }
      });
    }
  } finally {
    for (const { kv } of kvs) kv.close();
  }

  // 4. Per-range digests agree across replicas (the fuzz is over: writes have quiesced).
  let ranges = 0;
  let convergedMs = -1;
  let lastView = '';
  while (Date.now() - started < CONVERGENCE_MS_MAX) {
    const byRange = new Map<number, Map<string, string>>();
    for (const n of cluster.nodes) {
      for (const c of (await nodeDigests(cluster, n.id)) ?? []) {
        const m = byRange.get(c.rangeId) ?? new Map<string, string>();
        m.set(n.id, `${c.digest.lsn.epoch}.${c.digest.lsn.seq}:${String(c.digest.checksum)}`);
        byRange.set(c.rangeId, m);
      }
    }
    ranges = byRange.size;
    lastView = JSON.stringify([...byRange].map(([r, m]) => [r, Object.fromEntries(m)]));
    const agree =
      byRange.size > 0 &&
      [...byRange.values()].every(
        (m) => m.size === cluster.nodes.length && new Set(m.values()).size === 1,
      );
    if (agree) {
      convergedMs = Date.now() - started;
      break;
    }
    await sleep(300);
  }
  if (convergedMs < 0) problems.push(`replica digests differ: ${lastView}`);
  return {
    problems,
    figures: {
      controlRows: controlRows.length,
      sentinels: sentinelKeys.length,
      ranges,
      convergedMs,
    },
  };
}

function emptyFigures(): IntegrityFigures {
  return { controlRows: 0, sentinels: 0, ranges: 0, convergedMs: -1 };
}
