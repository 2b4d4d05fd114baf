import { Client, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkvError } from '../core/errors.js';
import {
  REQUEST_TIMEOUT_MS_MAX,
  SESSION_FRAME_BYTES_SOFT_MAX,
  SESSION_FRAME_REQUESTS_MAX,
  VALUE_SIZE_BYTES_MAX,
} from '../core/limits.js';
import type { ApplyResult, RowMutation } from '../core/mutation.js';
import type {
  CallContext,
  CellValue,
  GetResult,
  KvBackend,
  RangeMapView,
  RowResult,
  WriteOptions,
} from './backend.js';
import { NotLeaderError } from './backend.js';
import {
  KVClient,
  type PutResponse,
  type RangeMapResponse,
  type SessionRequest,
  SessionRequestBatch,
  SessionResponseBatch,
} from './generated/skv/v1/kv.js';
import { KvGrpcServer } from './kv-server.js';
import { RemoteError, SessionChannel } from './session-channel.js';
import type { ValidGet, ValidReadRow, ValidScan } from './validate.js';

/** A single-replica in-memory backend with the real version semantics. */
class MemoryBackend implements KvBackend {
  readonly cells = new Map<string, { value: Uint8Array; version: number }>();
  seq = 0;
  writes = 0;
  /** Time left (ms) of the last request the backend saw, from its deadline. */
  lastTimeLeftMs = 0;
  /** Per write, whether the server asked for previous versions. */
  readonly previousVersionsAsked: boolean[] = [];
  private id(key: Uint8Array, column: Uint8Array) {
    return `${Buffer.from(key).toString('hex')}/${Buffer.from(column).toString('hex')}`;
  }
  async get(req: ValidGet): Promise<GetResult> {
    if (Buffer.from(req.key).toString() === 'not-here') {
      throw new NotLeaderError('not the leader', '127.0.0.1:9');
    }
    const c = this.cells.get(this.id(req.key, req.column));
    return c === undefined
      ? { found: false, value: Buffer.alloc(0), version: 0 }
      : { found: true, ...c };
  }
  async readRow(_req: ValidReadRow): Promise<CellValue[]> {
    return [];
  }
  async write(m: RowMutation, ctx: CallContext, options?: WriteOptions): Promise<ApplyResult> {
    this.lastTimeLeftMs = ctx.deadlineMs - performance.now();
    this.previousVersionsAsked.push(options?.previousVersions !== false);
    if (Buffer.from(m.key).toString() === 'hold') {
      await new Promise((r) => setTimeout(r, 100));
    }
    if (Buffer.from(m.key).toString() === 'slow') {
      await new Promise((r) => setTimeout(r, Math.max(0, ctx.deadlineMs - performance.now()) + 50));
      throw new SkvError('deadline-exceeded', 'too slow');
    }
    const seq = ++this.seq;
    const previous = m.writes.map((w) => this.cells.get(this.id(m.key, w.column))?.version ?? 0);
    for (const [i, w] of m.writes.entries()) {
      if (w.expectedVersion !== undefined && w.expectedVersion !== previous[i]) {
        return {
          ok: false,
          reason: 'version-mismatch',
          writeIndex: i,
          actualVersion: previous[i]!,
        };
      }
    }
    this.writes++;
    const versions = m.writes.map((w) => {
      const id = this.id(m.key, w.column);
      if (w.value === null) {
        this.cells.delete(id);
        return 0;
      }
      this.cells.set(id, { value: Buffer.from(w.value), version: seq });
      return seq;
    });
    return { ok: true, previousVersions: previous, versions };
  }
  async *scan(_req: ValidScan): AsyncIterable<RowResult[]> {
    yield [{ key: Buffer.from('a'), cells: [] }];
    yield [{ key: Buffer.from('b'), cells: [] }];
  }
  /** What rangeMap answers: none until a test gives it some (a node that has read no map). */
  mapRanges: RangeMapView['ranges'] = [];
  async rangeMap(): Promise<RangeMapView> {
    return { version: 1, ranges: this.mapRanges, nodes: [] };
  }
}

const b = (s: string) => Buffer.from(s);
const identity = (x: Buffer) => x;

interface RawOutcome {
  code: status;
  details: string;
  frames: Buffer[];
  ms: number;
}

/** A unary call with raw bytes (what a hostile client can put on the wire). */
function rawUnary(client: Client, path: string, body: Buffer): Promise<RawOutcome> {
  const started = performance.now();
  return new Promise((resolve) =>
    client.makeUnaryRequest(
      path,
      identity,
      identity,
      body,
      { deadline: Date.now() + 5_000 },
      (err: ServiceError | null, res?: Buffer) =>
        resolve({
          code: err?.code ?? status.OK,
          details: err?.details ?? '',
          frames: res === undefined ? [] : [res],
          ms: performance.now() - started,
        }),
    ),
  );
}

/** A Scan with raw bytes: every frame until the status. */
function rawScan(client: Client, body: Buffer): Promise<RawOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const frames: Buffer[] = [];
    const call = client.makeServerStreamRequest('/skv.v1.KV/Scan', identity, identity, body, {
      deadline: Date.now() + 5_000,
    });
    call.on('data', (m: Buffer) => frames.push(m));
    call.on('error', () => {});
    call.on('status', (st: { code: status; details: string }) =>
      resolve({ code: st.code, details: st.details, frames, ms: performance.now() - started }),
    );
  });
}

/**
 * A Session stream with raw frames; half-closes after the last frame when `halfClose`, else once
 * `answered` ids have come back. Resolves at the status (the client deadline: 5 s).
 */
function rawSession(
  client: Client,
  frames: readonly Buffer[],
  options: { halfClose: 'at-once' | { answered: number } },
): Promise<RawOutcome & { ids: bigint[] }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const ids: bigint[] = [];
    const call = client.makeBidiStreamRequest('/skv.v1.KV/Session', identity, identity, {
      deadline: Date.now() + 5_000,
    });
    const hc = options.halfClose;
    call.on('data', (m: Buffer) => {
      out.push(m);
      for (const r of SessionResponseBatch.decode(m).responses) ids.push(r.id);
      if (hc !== 'at-once' && ids.length === hc.answered) call.end();
    });
    call.on('error', () => {});
    call.on('status', (st: { code: status; details: string }) =>
      resolve({
        code: st.code,
        details: st.details,
        frames: out,
        ids,
        ms: performance.now() - started,
      }),
    );
    for (const f of frames) call.write(f);
    if (hc === 'at-once') call.end();
  });
}

const frameOf = (requests: SessionRequest[]) =>
  Buffer.from(SessionRequestBatch.encode({ requests }).finish());

const putReq = (id: number, key: string, timeoutMs = 0, value = b('v')): SessionRequest => ({
  id: BigInt(id),
  timeoutMs,
  forwarded: false,
  op: { $case: 'put', value: { key: b(key), column: b('c'), value } },
});

/** Bytes that no protobuf decoder accepts: field 1 with wire type 7 (there is none). */
const UNDECODABLE = Buffer.from([0x0f, 0xff, 0xff]);

describe('KV gRPC edge', () => {
  const backend = new MemoryBackend();
  let server: KvGrpcServer;
  let client: KVClient;
  let address: string;

  beforeAll(async () => {
    server = await KvGrpcServer.start(backend, { host: '127.0.0.1', port: 0 });
    address = `127.0.0.1:${server.port}`;
    client = new KVClient(address, credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await server.stop();
  });

  const put = (req: Parameters<KVClient['put']>[0]) =>
    new Promise<PutResponse>((resolve, reject) =>
      client.put(req, (err, res) => (err ? reject(err) : resolve(res))),
    );

  it('puts and gets over unary calls, with versions', async () => {
    const r1 = await put({ key: b('k1'), column: b('c'), value: b('v1') });
    const r2 = await put({ key: b('k1'), column: b('c'), value: b('v2') });
    expect(r2.version).toBeGreaterThan(r1.version);
    const got = await new Promise<{ found: boolean; value: Uint8Array; version: bigint }>(
      (res, rej) =>
        client.get({ key: b('k1'), column: b('c'), consistency: 0 }, (e, r) =>
          e ? rej(e) : res(r),
        ),
    );
    expect(got).toMatchObject({ found: true, version: r2.version });
    expect(Buffer.from(got.value).toString()).toBe('v2');
  });

  it('answers a stale conditional put with FAILED_PRECONDITION and writes nothing', async () => {
    const before = backend.writes;
    const err = (await put({
      key: b('k1'),
      column: b('c'),
      value: b('x'),
      expectedVersion: 999n,
    }).catch((e: unknown) => e)) as ServiceError;
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.metadata.get('skv-reason')).toEqual(['version-mismatch']);
    expect(backend.writes).toBe(before);
  });

  it('asks the backend for previous versions only where the answer carries them (not for a put)', async () => {
    backend.previousVersionsAsked.length = 0;
    await put({ key: b('pv'), column: b('c'), value: b('v1') });
    await new Promise((resolve, reject) =>
      client.writeRow({ key: b('pv'), writes: [{ column: b('c'), value: b('v2') }] }, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
    await new Promise((resolve, reject) =>
      client.delete({ key: b('pv'), column: b('c') }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    const session = new SessionChannel(address);
    try {
      await session.call(
        { $case: 'put', value: { key: b('pv'), column: b('c'), value: b('v') } },
        5_000,
      );
      await session.call(
        { $case: 'writeRow', value: { key: b('pv'), writes: [{ column: b('c'), value: b('w') }] } },
        5_000,
      );
      await session.call({ $case: 'delete', value: { key: b('pv'), column: b('c') } }, 5_000);
    } finally {
      session.close();
    }
    expect(backend.previousVersionsAsked).toEqual([false, true, true, false, true, true]);
  });

  it('answers bad input with INVALID_ARGUMENT before the backend sees it', async () => {
    const before = backend.seq;
    const err = (await put({ key: b(''), column: b('c'), value: b('x') }).catch(
      (e: unknown) => e,
    )) as ServiceError;
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(backend.seq).toBe(before);
  });

  it('answers RangeMap UNAVAILABLE while the node has read no map, then the map', async () => {
    const rangeMap = () =>
      new Promise<RangeMapResponse>((resolve, reject) =>
        client.rangeMap({}, (err, res) => (err ? reject(err) : resolve(res))),
      );
    await expect(rangeMap()).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      details: expect.stringContaining('has not read the range map'),
    });
    backend.mapRanges = [
      { rangeId: 0, start: b(''), end: null, members: ['n1'], leader: 'n1', epoch: 3 },
    ];
    try {
      const map = await rangeMap();
      expect(map.ranges).toHaveLength(1);
      expect(map.ranges[0]).toMatchObject({ rangeId: 0, leader: 'n1', epoch: 3n });
    } finally {
      backend.mapRanges = [];
    }
  });

  it('puts the leader hint in metadata', async () => {
    const err = await new Promise<ServiceError>((resolve) =>
      client.get({ key: b('not-here'), column: b('c'), consistency: 0 }, new Metadata(), (e) =>
        resolve(e as ServiceError),
      ),
    );
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.metadata.get('skv-leader')).toEqual(['127.0.0.1:9']);
  });

  it('streams scan results', async () => {
    const keys: string[] = [];
    const stream = client.scan({ start: b(''), end: b(''), limit: 0, consistency: 0, columns: [] });
    for await (const msg of stream)
      for (const row of msg.rows) keys.push(Buffer.from(row.key).toString());
    expect(keys).toEqual(['a', 'b']);
  });

  it('ends a failing scan with its status at once (not at the deadline)', async () => {
    const started = performance.now();
    const stream = client.scan({
      start: b(''),
      end: b(''),
      limit: 200_000,
      consistency: 0,
      columns: [],
    });
    const err = await (async () => {
      try {
        for await (const _ of stream) {
        }
      } catch (e) {
        return e as ServiceError;
      }
      return null;
    })();
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('serves many requests over one session stream, answered by id', async () => {
    const session = new SessionChannel(address);
    try {
      const n = 2000;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          session.call(
            { $case: 'put', value: { key: b(`s${i}`), column: b('c'), value: b(`v${i}`) } },
            5_000,
          ),
        ),
      );
      expect(results.every((r) => r.$case === 'put')).toBe(true);
      const got = await session.call(
        { $case: 'get', value: { key: b('s1234'), column: b('c'), consistency: 0 } },
        5_000,
      );
      expect(got.$case === 'get' && Buffer.from(got.value.value).toString()).toBe('v1234');
      const bad = await session
        .call({ $case: 'put', value: { key: b(''), column: b('c'), value: b('v') } }, 5_000)
        .catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(RemoteError);
      expect((bad as RemoteError).code).toBe('invalid-argument');
    } finally {
      session.close();
    }
  });

  it('reports requests to a node nobody listens on as unavailable (never sent), not unknown', async () => {
    const { freePort } = await import('../devtools/local-zookeeper.js');
    const session = new SessionChannel(`127.0.0.1:${await freePort()}`);
    try {
      const err = await session
        .call({ $case: 'put', value: { key: b('k'), column: b('c'), value: b('v') } }, 5_000)
        .catch((e: unknown) => e);
      expect((err as SkvError).code).toBe('unavailable');
    } finally {
      session.close();
    }
  });

  it('rejects a session request past its deadline as outcome unknown', async () => {
    const session = new SessionChannel(address);
    try {
      const err = await session
        .call({ $case: 'put', value: { key: b('slow'), column: b('c'), value: b('v') } }, 200)
        .catch((e: unknown) => e);
      expect((err as SkvError).code).toBe('deadline-exceeded');
    } finally {
      session.close();
    }
  });

  describe('hostile input (issue #8)', () => {
    let raw: Client;
    beforeAll(() => {
      raw = new Client(address, credentials.createInsecure(), {
        'grpc.max_send_message_length': -1,
        'grpc.max_receive_message_length': -1,
      });
    });
    afterAll(() => raw.close());

    it('answers an undecodable unary request INVALID_ARGUMENT, not grpc-js INTERNAL', async () => {
      for (const method of [
        'Get',
        'Put',
        'Delete',
        'ReadRow',
        'WriteRow',
        'BatchPut',
        'RangeMap',
      ]) {
        const o = await rawUnary(raw, `/skv.v1.KV/${method}`, UNDECODABLE);
        expect([method, o.code]).toEqual([method, status.INVALID_ARGUMENT]);
        expect(o.details).toContain(`a ${method} request of 3 bytes is not valid protobuf`);
      }
    });

    it('answers an undecodable Scan INVALID_ARGUMENT', async () => {
      const o = await rawScan(raw, UNDECODABLE);
      expect(o.code).toBe(status.INVALID_ARGUMENT);
      expect(o.frames).toEqual([]);
    });

    it('ends a session with an undecodable frame after answered ones with INVALID_ARGUMENT, every time', async () => {
      // The fuzz suite saw 3 hung streams in ~1,500 calls: repeat the shape many times.
      const outcomes = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          rawSession(
            raw,
            [
              frameOf([putReq(1, `ga${i}`), putReq(2, `gb${i}`)]),
              UNDECODABLE,
              frameOf([putReq(3, `gc${i}`)]),
            ],
            { halfClose: 'at-once' },
          ),
        ),
      );
      for (const o of outcomes) {
        expect(o.code).toBe(status.INVALID_ARGUMENT);
        expect(o.details).toContain('is not a valid SessionRequestBatch');
        expect(o.ms).toBeLessThan(4_000);
        // Nothing of the frame after the garbage ran: request 3 is never answered.
        expect(o.ids).not.toContain(3n);
      }
      expect(backend.cells.has(`${b('gc0').toString('hex')}/${b('c').toString('hex')}`)).toBe(
        false,
      );
    });

    it('answers every request of a session the client half-closed at once, then OK', async () => {
      const o = await rawSession(
        raw,
        [frameOf(Array.from({ length: 20 }, (_, i) => putReq(i + 1, `hc${i}`)))],
        { halfClose: 'at-once' },
      );
      expect(o.code).toBe(status.OK);
      expect(o.ids.sort((x, y) => Number(x - y))).toEqual(
        Array.from({ length: 20 }, (_, i) => BigInt(i + 1)),
      );
    });

    it('refuses a session frame of a million empty requests at once with RESOURCE_EXHAUSTED', async () => {
      const before = backend.seq;
      // Each empty request is 2 bytes on the wire (tag 0x0a, length 0): 2 MB in all.
      const flood = Buffer.alloc(2_000_000);
      for (let i = 0; i < flood.length; i += 2) flood[i] = 0x0a;
      const o = await rawSession(raw, [flood], { halfClose: 'at-once' });
      expect(o.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(o.details).toContain(
        `carries 1000000 requests; the limit is ${SESSION_FRAME_REQUESTS_MAX}`,
      );
      expect(o.ms).toBeLessThan(1_000);
      expect(o.frames).toEqual([]);
      expect(backend.seq).toBe(before);
    });

    it('serves a session frame of exactly SESSION_FRAME_REQUESTS_MAX requests', async () => {
      const n = SESSION_FRAME_REQUESTS_MAX;
      const o = await rawSession(
        raw,
        [frameOf(Array.from({ length: n }, (_, i) => putReq(i + 1, `fm${i}`)))],
        { halfClose: { answered: n } },
      );
      expect(o.code).toBe(status.OK);
      expect(new Set(o.ids).size).toBe(n);
    });

    it('splits answers into frames under the soft size (40 one-MiB values read in one frame)', async () => {
      const big = Buffer.alloc(VALUE_SIZE_BYTES_MAX, 0x61);
      const session = new SessionChannel(address);
      try {
        await session.call(
          { $case: 'put', value: { key: b('big'), column: b('c'), value: big } },
          5_000,
        );
      } finally {
        session.close();
      }
      const n = 40;
      const gets: SessionRequest[] = Array.from({ length: n }, (_, i) => ({
        id: BigInt(i + 1),
        timeoutMs: 0,
        forwarded: false,
        op: { $case: 'get', value: { key: b('big'), column: b('c'), consistency: 0 } },
      }));
      const o = await rawSession(raw, [frameOf(gets)], { halfClose: { answered: n } });
      expect(o.code).toBe(status.OK);
      expect(new Set(o.ids).size).toBe(n);
      expect(o.frames.length).toBeGreaterThan(1);
      for (const f of o.frames) expect(f.length).toBeLessThanOrEqual(SESSION_FRAME_BYTES_SOFT_MAX);
    });

    it('clamps a session timeout of 2^31 ms (and more) instead of overflowing a timer', async () => {
      for (const timeoutMs of [2 ** 31, 2 ** 32 - 1]) {
        const o = await rawSession(raw, [frameOf([putReq(1, 'hold', timeoutMs)])], {
          halfClose: { answered: 1 },
        });
        expect(o.code).toBe(status.OK);
        const res = SessionResponseBatch.decode(o.frames[0]!).responses[0];
        expect(res?.result?.$case).toBe('put');
        expect(backend.lastTimeLeftMs).toBeLessThanOrEqual(REQUEST_TIMEOUT_MS_MAX);
        expect(backend.lastTimeLeftMs).toBeGreaterThan(REQUEST_TIMEOUT_MS_MAX - 60_000);
      }
    });

    it('clamps a unary call with a 20-day deadline to REQUEST_TIMEOUT_MS_MAX', async () => {
      const res = await new Promise<PutResponse>((resolve, reject) =>
        client.put(
          { key: b('hold'), column: b('c'), value: b('v') },
          new Metadata(),
          { deadline: Date.now() + 20 * 24 * 3600 * 1000 },
          (err, r) => (err ? reject(err) : resolve(r)),
        ),
      );
      expect(res.version).toBeGreaterThan(0n);
      expect(backend.lastTimeLeftMs).toBeLessThanOrEqual(REQUEST_TIMEOUT_MS_MAX);
    });

    it('writes nothing for a unary call whose 30-day deadline grpc-js reads as past', async () => {
      // grpc-js's server reads grpc-timeout through `| 0`: 30 days (> 2^31 ms) is negative.
      const before = backend.seq;
      const err = await new Promise<ServiceError | null>((resolve) =>
        client.put(
          { key: b('thirty-days'), column: b('c'), value: b('v') },
          new Metadata(),
          { deadline: Date.now() + 30 * 24 * 3600 * 1000 },
          (e) => resolve(e),
        ),
      );
      expect(err?.code).toBe(status.DEADLINE_EXCEEDED);
      expect(backend.seq).toBe(before);
    });

    it('keeps a client timer of 2^31 ms from firing at once (session channel)', async () => {
      const session = new SessionChannel(address);
      try {
        const r = await session.call(
          { $case: 'put', value: { key: b('hold'), column: b('c'), value: b('v') } },
          2 ** 31,
        );
        expect(r.$case).toBe('put');
        expect(backend.lastTimeLeftMs).toBeLessThanOrEqual(REQUEST_TIMEOUT_MS_MAX);
      } finally {
        session.close();
      }
    });

    it('splits a session channel frame of large puts under the message limit', async () => {
      const session = new SessionChannel(address);
      try {
        const big = Buffer.alloc(VALUE_SIZE_BYTES_MAX, 0x62);
        // 30 MiB in one turn of the event loop: one frame would pass the 20 MiB gRPC limit.
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            session.call(
              { $case: 'put', value: { key: b(`bp${i}`), column: b('c'), value: big } },
              10_000,
            ),
          ),
        );
        expect(results.every((r) => r.$case === 'put')).toBe(true);
      } finally {
        session.close();
      }
    });
  });
});
