import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkvError } from '../core/errors.js';
import type { ApplyResult, RowMutation } from '../core/mutation.js';
import type {
  CallContext,
  CellValue,
  GetResult,
  KvBackend,
  RangeMapView,
  RowResult,
} from './backend.js';
import { NotLeaderError } from './backend.js';
import { KVClient, type PutResponse } from './generated/skv/v1/kv.js';
import { KvGrpcServer } from './kv-server.js';
import { RemoteError, SessionChannel } from './session-channel.js';
import type { ValidGet, ValidReadRow, ValidScan } from './validate.js';

/** A single-replica in-memory backend with the real version semantics. */
class MemoryBackend implements KvBackend {
  readonly cells = new Map<string, { value: Uint8Array; version: number }>();
  seq = 0;
  writes = 0;
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
  async write(m: RowMutation, ctx: CallContext): Promise<ApplyResult> {
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
  async rangeMap(): Promise<RangeMapView> {
    return { version: 1, ranges: [], nodes: [] };
  }
}

const b = (s: string) => Buffer.from(s);

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

  it('answers bad input with INVALID_ARGUMENT before the backend sees it', async () => {
    const before = backend.seq;
    const err = (await put({ key: b(''), column: b('c'), value: b('x') }).catch(
      (e: unknown) => e,
    )) as ServiceError;
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(backend.seq).toBe(before);
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
});
