// Hostile input on the public gRPC API never crashes a node or corrupts data (issue #8, DESIGN.md
// §2). Against a real 3-node cluster (real ZooKeeper, real `skv server` processes), a seeded
// fast-check generator (test/support/fuzz-public-cases.ts) sends unary calls, Scans and Session
// streams with random keys, columns, values, versions, out-of-range enums, left-out fields,
// oversized messages and truncated / garbage protobuf through a raw grpc-js client. Every call
// must end with OK or a clear status — never INTERNAL/UNKNOWN, never a stack, never hung — and
// the oracle's invalid requests must be refused. Then the cluster must be intact
// (test/support/fuzz-integrity.ts): same PIDs, healthy, control rows byte-identical strongly and
// at every replica, replica digests equal, no sentinel stored.
//
// Fixed edge cases run first (fuzz-public-cases.ts edgeCases): a Session frame of a million
// empty requests and one of SESSION_FRAME_REQUESTS_MAX + 1 puts (RESOURCE_EXHAUSTED at once,
// nothing written), Session puts with timeout_ms 2^31 and 2^32-1 (answered, not timed out) and
// unary Puts with 20- and 30-day gRPC deadlines.
//
// The seed is printed; FUZZ_SEED=n replays the same calls. FUZZ_PUBLIC_CALLS / FUZZ_PUBLIC_MS
// bound the run (defaults keep it near 30 s).

import { status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SkvClient } from '../src/client/index.js';
import { SESSION_FRAME_REQUESTS_MAX } from '../src/core/limits.js';
import { SessionResponseBatch } from '../src/rpc/generated/skv/v1/kv.js';
import { TestCluster } from './support/cluster.js';
import {
  type CallOutcome,
  GRPC_JS_DESERIALIZE_DETAILS,
  judgePublic,
  RawGrpc,
} from './support/fuzz-grpc.js';
import {
  type ControlRow,
  checkIntegrity,
  type NodeSnapshot,
  type SentinelCell,
  snapshotPids,
  writeControlRows,
} from './support/fuzz-integrity.js';
import {
  type Expect,
  edgeCases,
  KV_PATH,
  oversizedCases,
  type PublicCase,
  publicCaseArb,
} from './support/fuzz-public-cases.js';

const SEED =
  process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
const CALLS_MAX = Number(process.env.FUZZ_PUBLIC_CALLS ?? 1500);
const RUN_MS_MAX = Number(process.env.FUZZ_PUBLIC_MS ?? 25_000);
const CONCURRENCY = 8;
const CALL_TIMEOUT_MS = 10_000;
const CONTROL_ROWS = 24;
/**
 * Strict by default: the findings of the first fuzz runs (the grpc-js INTERNAL for undecodable
 * requests, a Session stream with an undecodable frame that never got its status, writes with a
 * deadline of 2^31 ms or more answered DEADLINE_EXCEEDED at once although they commit) are fixed
 * (issue #8) and fail the suite again. FUZZ_STRICT=0 only counts them (to explore an old build).
 */
const STRICT = process.env.FUZZ_STRICT !== '0';
const TIMER_MS_MAX = 2 ** 31 - 1;

interface Figures {
  cases: number;
  calls: number;
  sessionRequests: number;
  byCode: Record<string, number>;
  knownDeserializeInternal: number;
  knownSessionGarbageHung: number;
  knownHugeTimeoutDeadline: number;
  sentinels: number;
  ms: number;
}

function count(f: Figures, code: status): void {
  const name = status[code] ?? String(code);
  f.byCode[name] = (f.byCode[name] ?? 0) + 1;
}

/** Problems with one request's outcome given the oracle's expectation. */
function judge(o: Pick<CallOutcome, 'code' | 'details' | 'reason'>, expect: Expect): string | null {
  const v = judgePublic(o, { strict: STRICT });
  if (!v.ok) return v.why;
  if (v.knownDeserialize) return null;
  if (expect === 'invalid' && o.code === status.OK) return 'invalid input was accepted';
  if (
    expect === 'invalid' &&
    o.code !== status.INVALID_ARGUMENT &&
    o.code !== status.RESOURCE_EXHAUSTED
  ) {
    return `invalid input answered ${status[o.code]} (${o.details.slice(0, 120)})`;
  }
  if (expect === 'valid' && o.code === status.INVALID_ARGUMENT) {
    return `valid input refused: ${o.details.slice(0, 120)}`;
  }
  return null;
}

async function runCase(c: PublicCase, client: RawGrpc, figures: Figures): Promise<string[]> {
  switch (c.kind) {
    case 'unary': {
      const o = await client.unary(KV_PATH(c.method), c.body, c.deadlineMs ?? CALL_TIMEOUT_MS);
      figures.calls++;
      count(figures, o.code);
      if (o.code === status.INTERNAL && o.details === GRPC_JS_DESERIALIZE_DETAILS) {
        figures.knownDeserializeInternal++;
      }
      if (c.expectCode !== undefined) {
        return o.code === c.expectCode
          ? []
          : [
              `expected ${status[c.expectCode]}, got ${status[o.code]} (${o.details.slice(0, 160)})`,
            ];
      }
      const p = judge(o, c.expect);
      return p === null ? [] : [p];
    }
    case 'scan': {
      const o = await client.serverStream(KV_PATH('Scan'), c.body, CALL_TIMEOUT_MS);
      figures.calls++;
      count(figures, o.code);
      if (o.code === status.INTERNAL && o.details === GRPC_JS_DESERIALIZE_DETAILS) {
        figures.knownDeserializeInternal++;
      }
      const p = judge(o, c.expect);
      return p === null ? [] : [p];
    }
    case 'session': {
      const want = c.expects.size;
      const garbage = c.ids.some((x) => x === null);
      const answers = new Map<bigint, number>();
      const problems: string[] = [];
      const seen = (messages: readonly Buffer[]) => {
        answers.clear();
        for (const m of messages) {
          for (const r of SessionResponseBatch.decode(m).responses) {
            answers.set(r.id, (answers.get(r.id) ?? 0) + 1);
          }
        }
        return [...c.expects.keys()].every((id) => answers.has(id));
      };
      const o = await client.bidi(KV_PATH('Session'), c.frames, CALL_TIMEOUT_MS, seen);
      figures.calls++;
      figures.sessionRequests += want;
      count(figures, o.code);
      if (o.code === status.INTERNAL && o.details === GRPC_JS_DESERIALIZE_DETAILS) {
        figures.knownDeserializeInternal++;
      }
      let streamProblem = judge(o, 'unknown');
      const exact = c.expectStream;
      if (exact !== undefined && (o.code !== exact.code || o.ms > exact.msMax)) {
        streamProblem = `expected ${status[exact.code]} within ${exact.msMax} ms, got ${status[o.code]} after ${Math.round(o.ms)} ms (${o.details.slice(0, 160)})`;
      }
      if (
        !STRICT &&
        streamProblem !== null &&
        garbage &&
        o.code === status.DEADLINE_EXCEEDED &&
        o.reason === null
      ) {
        // Known finding: an undecodable frame after answered ones can leave the stream without
        // a status (grpc-js's deserialize failure path racing the session's own writes).
        figures.knownSessionGarbageHung++;
        streamProblem = null;
      }
      if (streamProblem !== null) {
        problems.push(
          `stream: ${streamProblem}; ${o.messages.length} response frames, answered ids [${[...answers.keys()].join(',')}] of ${want}`,
        );
      }
      for (const m of o.messages) {
        for (const r of SessionResponseBatch.decode(m).responses) {
          const expectOne = c.expects.get(r.id) ?? 'unknown';
          const res = r.result;
          if (res === undefined) {
            problems.push(`request ${r.id}: a response without a result`);
          } else if (res.$case === 'error') {
            count(figures, res.value.code);
            if (
              !STRICT &&
              res.value.code === status.DEADLINE_EXCEEDED &&
              (c.timeouts.get(r.id) ?? 0) > TIMER_MS_MAX
            ) {
              // Known finding: a timeout past setTimeout's range fires at once.
              figures.knownHugeTimeoutDeadline++;
              continue;
            }
            const p = judge(
              { code: res.value.code, details: res.value.message, reason: res.value.reason },
              expectOne,
            );
            if (p !== null) problems.push(`request ${r.id}: ${p}`);
          } else {
            count(figures, status.OK);
            const p = judge({ code: status.OK, details: '', reason: null }, expectOne);
            if (p !== null) problems.push(`request ${r.id}: ${p}`);
          }
        }
      }
      if (!garbage && o.code === status.OK) {
        for (const id of c.expects.keys()) {
          const n = answers.get(id) ?? 0;
          if (n !== 1) problems.push(`request ${id} answered ${n} times`);
        }
      }
      return problems;
    }
  }
}

function describeCase(c: PublicCase): string {
  switch (c.kind) {
    case 'unary':
    case 'scan':
      return `${c.note} body=${c.body.subarray(0, 48).toString('hex')}${c.body.length > 48 ? '…' : ''}`;
    case 'session':
      return `${c.note} frames=${c.frames.map((f) => f.subarray(0, 24).toString('hex')).join(',')}`;
  }
}

describe('fuzz: the public gRPC API', () => {
  let cluster: TestCluster;
  let kv: SkvClient;
  let pids: NodeSnapshot[];
  let controlRows: ControlRow[];
  const raw: RawGrpc[] = [];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, ranges: 3 });
    kv = cluster.client();
    controlRows = await writeControlRows(kv, CONTROL_ROWS);
    pids = snapshotPids(cluster);
    for (const a of cluster.addresses) raw.push(new RawGrpc(a));
  }, 120_000);

  afterAll(async () => {
    for (const r of raw) r.close();
    await cluster?.stop();
  });

  it('answers every hostile call with a clear status and keeps every node and its data intact', async () => {
    console.log(`fuzz-public: FUZZ_SEED=${SEED} (replay with FUZZ_SEED=${SEED})`);
    const cases = [
      ...edgeCases(SESSION_FRAME_REQUESTS_MAX),
      ...oversizedCases(),
      ...fc.sample(publicCaseArb, { seed: SEED, numRuns: CALLS_MAX }),
    ];
    const figures: Figures = {
      cases: 0,
      calls: 0,
      sessionRequests: 0,
      byCode: {},
      knownDeserializeInternal: 0,
      knownSessionGarbageHung: 0,
      knownHugeTimeoutDeadline: 0,
      sentinels: 0,
      ms: 0,
    };
    const sentinels: SentinelCell[] = [];
    const failures: string[] = [];
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, worker) => {
        while (next < cases.length && Date.now() - started < RUN_MS_MAX && failures.length < 20) {
          const index = next++;
          const c = cases[index]!;
          if (c.kind !== 'scan') sentinels.push(...c.sentinels);
          const client = raw[(index + worker) % raw.length]!;
          const problems = await runCase(c, client, figures);
          figures.cases++;
          for (const p of problems) {
            failures.push(`case #${index} at ${client.address}: ${p}\n    ${describeCase(c)}`);
          }
        }
      }),
    );
    figures.ms = Date.now() - started;
    figures.sentinels = sentinels.length;
    console.log(`fuzz-public figures (seed ${SEED}): ${JSON.stringify(figures)}`);
    if (failures.length > 0) {
      console.log(`fuzz-public failures (seed ${SEED}):\n${failures.join('\n')}`);
    }

    const integrity = await checkIntegrity(cluster, kv, pids, controlRows, sentinels);
    console.log(`fuzz-public integrity: ${JSON.stringify(integrity.figures)}`);
    if (integrity.problems.length > 0) console.log(await cluster.logTails(20));
    expect(integrity.problems).toEqual([]);
    expect(failures).toEqual([]);
    expect(figures.cases).toBeGreaterThan(100);
  }, 150_000);
});
