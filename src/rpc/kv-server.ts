// The public gRPC edge (DESIGN.md §2): the KV service's unary methods for simple clients, the
// streamed Scan, the RangeMap call and the Session stream that the skv client library uses for
// throughput (many requests per HTTP/2 message, answered in any order). It validates every
// request before the backend sees it and maps errors through status.ts. Plus the standard gRPC
// health-checking service.
//
// Security (issue #8, tls.ts): TLS on the port when configured; the bearer-token check is a
// server interceptor installed only when a token is configured, so it runs before any handler of
// every service but health; the peer service checks certificates and membership itself.

import { performance } from 'node:perf_hooks';
import {
  Server,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { SkvError } from '../core/errors.js';
import { GRPC_MESSAGE_BYTES_MAX, SCAN_ROWS_DEFAULT } from '../core/limits.js';
import type { ApplyResult, RowMutation } from '../core/mutation.js';
import { type CallContext, type KvBackend, NotLeaderError } from './backend.js';
import {
  type BatchGetRequest,
  type BatchGetResponse,
  type BatchPutRequest,
  type BatchPutResponse,
  type DeleteRequest,
  type DeleteResponse,
  type GetRequest,
  type GetResponse,
  type ItemStatus,
  KVService,
  type NodeStatusRequest,
  type NodeStatusResponse,
  type PutRequest,
  type PutResponse,
  type RangeMapRequest,
  type RangeMapResponse,
  type ReadRowRequest,
  type ReadRowResponse,
  type ScanRequest,
  type ScanResponse,
  type SessionRequest,
  type SessionRequestBatch,
  type SessionResponse,
  type SessionResponseBatch,
  type WriteRowRequest,
  type WriteRowResponse,
} from './generated/skv/v1/kv.js';
import {
  type PeerBatchHandler,
  type PeerRefusal,
  PeerService,
  peerServiceImplementation,
} from './peer-transport.js';
import { grpcStatusOf, toGrpcError } from './status.js';
import { type ServerSecurity, serverCredentials, tokenInterceptor } from './tls.js';
import {
  deleteToMutation,
  putToMutation,
  validateBatchSize,
  validateGet,
  validateReadRow,
  validateScan,
  writeRowToMutation,
} from './validate.js';

/** Used when a unary call or a session request carries no deadline. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Session requests in flight per stream before the server stops reading (back-pressure). */
export const SESSION_INFLIGHT_MAX = 4096;

function mismatch(result: ApplyResult & { ok: false }): SkvError {
  return new SkvError(
    'version-mismatch',
    `version mismatch: the column's version is ${result.actualVersion}`,
  );
}

function putResponse(result: ApplyResult): PutResponse {
  if (!result.ok) throw mismatch(result);
  return { version: BigInt(result.versions[0] ?? 0) };
}

function deleteResponse(result: ApplyResult): DeleteResponse {
  if (!result.ok) throw mismatch(result);
  const previous = result.previousVersions[0] ?? 0;
  return { found: previous > 0, version: BigInt(previous) };
}

function writeRowResponse(result: ApplyResult): WriteRowResponse {
  if (!result.ok) throw mismatch(result);
  return {
    versions: result.versions.map((v) => BigInt(v)),
    previousVersions: result.previousVersions.map((v) => BigInt(v)),
  };
}

function leaderOf(err: unknown): string | undefined {
  return err instanceof NotLeaderError ? (err.leaderAddress ?? undefined) : undefined;
}

function contextFromDeadline(deadline: Date | number | undefined): CallContext {
  const now = performance.now();
  if (deadline === undefined || deadline === Number.POSITIVE_INFINITY) {
    return { deadlineMs: now + DEFAULT_REQUEST_TIMEOUT_MS };
  }
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return { deadlineMs: now + Math.max(0, at - Date.now()) };
}

function itemStatus(err: unknown): ItemStatus {
  const e = toGrpcError(err);
  const reason = e.metadata.get('skv-reason')[0];
  return { code: e.code, reason: typeof reason === 'string' ? reason : '', message: e.details };
}

/** A Buffer view of the same bytes (the generated code types bytes as Buffer). */
function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function toCell(c: { column: Uint8Array; value: Uint8Array; version: number }) {
  return { column: asBuffer(c.column), value: asBuffer(c.value), version: BigInt(c.version) };
}

const OK_STATUS: ItemStatus = { code: status.OK, reason: '', message: '' };

/** The KV service implementation over a backend. */
export class KvEdge {
  constructor(private readonly backend: KvBackend) {}

  private unary<Req, Res>(
    call: ServerUnaryCall<Req, Res>,
    callback: sendUnaryData<Res>,
    run: (req: Req, ctx: CallContext) => Promise<Res>,
  ): void {
    const ctx = contextFromDeadline(call.getDeadline());
    let result: Promise<Res>;
    try {
      result = run(call.request, ctx);
    } catch (err) {
      callback(toGrpcError(err, leaderOf(err)));
      return;
    }
    result.then(
      (res) => callback(null, res),
      (err: unknown) => callback(toGrpcError(err, leaderOf(err))),
    );
  }

  get = (call: ServerUnaryCall<GetRequest, GetResponse>, cb: sendUnaryData<GetResponse>) =>
    this.unary(call, cb, (req, ctx) => this.doGet(req, ctx));

  put = (call: ServerUnaryCall<PutRequest, PutResponse>, cb: sendUnaryData<PutResponse>) =>
    this.unary(call, cb, (req, ctx) => this.doWrite(putToMutation(req), ctx, putResponse));

  delete = (
    call: ServerUnaryCall<DeleteRequest, DeleteResponse>,
    cb: sendUnaryData<DeleteResponse>,
  ) => this.unary(call, cb, (req, ctx) => this.doWrite(deleteToMutation(req), ctx, deleteResponse));

  readRow = (
    call: ServerUnaryCall<ReadRowRequest, ReadRowResponse>,
    cb: sendUnaryData<ReadRowResponse>,
  ) => this.unary(call, cb, (req, ctx) => this.doReadRow(req, ctx));

  writeRow = (
    call: ServerUnaryCall<WriteRowRequest, WriteRowResponse>,
    cb: sendUnaryData<WriteRowResponse>,
  ) =>
    this.unary(call, cb, (req, ctx) =>
      this.doWrite(writeRowToMutation(req), ctx, writeRowResponse),
    );

  batchGet = (
    call: ServerUnaryCall<BatchGetRequest, BatchGetResponse>,
    cb: sendUnaryData<BatchGetResponse>,
  ) =>
    this.unary(call, cb, async (req, ctx) => {
      validateBatchSize(req.gets.length);
      const settled = await Promise.allSettled(req.gets.map((g) => this.doGet(g, ctx)));
      return {
        results: settled.map((s) =>
          s.status === 'fulfilled'
            ? s.value
            : { found: false, value: Buffer.alloc(0), version: 0n },
        ),
        statuses: settled.map((s) => (s.status === 'fulfilled' ? OK_STATUS : itemStatus(s.reason))),
      };
    });

  batchPut = (
    call: ServerUnaryCall<BatchPutRequest, BatchPutResponse>,
    cb: sendUnaryData<BatchPutResponse>,
  ) =>
    this.unary(call, cb, async (req, ctx) => {
      validateBatchSize(req.puts.length);
      // Validate everything first: a bad item fails the whole batch before anything is written.
      const mutations = req.puts.map(putToMutation);
      const settled = await Promise.allSettled(
        mutations.map((m) => this.doWrite(m, ctx, putResponse)),
      );
      return {
        results: settled.map((s) => (s.status === 'fulfilled' ? s.value : { version: 0n })),
        statuses: settled.map((s) => (s.status === 'fulfilled' ? OK_STATUS : itemStatus(s.reason))),
      };
    });

  scan = (call: ServerWritableStream<ScanRequest, ScanResponse>) => {
    const ctx = contextFromDeadline(call.getDeadline());
    const run = async () => {
      const req = validateScan(call.request, SCAN_ROWS_DEFAULT);
      for await (const rows of this.backend.scan(req, ctx)) {
        if (call.cancelled) return;
        const ok = call.write({
          rows: rows.map((r) => ({
            key: asBuffer(r.key),
            cells: r.cells.map(toCell),
          })),
        });
        if (!ok) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
      }
      call.end();
    };
    // emit('error') sends the status to the client (destroy() would only drop the stream).
    run().catch((err: unknown) => call.emit('error', serviceError(err)));
  };

  rangeMap = (
    call: ServerUnaryCall<RangeMapRequest, RangeMapResponse>,
    cb: sendUnaryData<RangeMapResponse>,
  ) =>
    this.unary(call, cb, async (_req: RangeMapRequest) => {
      const view = await this.backend.rangeMap();
      return {
        version: BigInt(view.version),
        ranges: view.ranges.map((r) => ({
          rangeId: r.rangeId,
          start: asBuffer(r.start),
          end: r.end === null ? Buffer.alloc(0) : asBuffer(r.end),
          members: [...r.members],
          leader: r.leader ?? '',
          epoch: BigInt(r.epoch),
        })),
        nodes: view.nodes.map((n) => ({ ...n })),
      };
    });

  /** This node's own facts, for `skv status` (the backend's optional nodeStatus). */
  nodeStatus = (
    call: ServerUnaryCall<NodeStatusRequest, NodeStatusResponse>,
    cb: sendUnaryData<NodeStatusResponse>,
  ) =>
    this.unary(call, cb, async (_req: NodeStatusRequest) => {
      if (this.backend.nodeStatus === undefined)
        throw new SkvError('internal', 'this backend does not serve NodeStatus');
      const s = await this.backend.nodeStatus();
      return {
        nodeId: s.nodeId,
        address: s.address,
        sessionState: s.sessionState,
        uptimeMs: BigInt(Math.max(0, Math.round(s.uptimeMs))),
        cohorts: s.cohorts.map((c) => ({
          rangeId: c.rangeId,
          role: c.role,
          voter: c.voter,
          epoch: BigInt(c.epoch),
          lastLsnEpoch: BigInt(c.lastLsn.epoch),
          lastSeq: BigInt(c.lastLsn.seq),
          durableSeq: BigInt(c.durableSeq),
          committedSeq: BigInt(c.committedSeq),
          appliedSeq: BigInt(c.appliedSeq),
          memtableBytes: BigInt(c.memtableBytes),
          followerLagEntries: BigInt(c.followerLagEntries),
        })),
      };
    });

  /** The throughput path: batches in, batches out, answers in any order. */
  session = (stream: ServerDuplexStream<SessionRequestBatch, SessionResponseBatch>) => {
    let inflight = 0;
    let pending: SessionResponse[] = [];
    let flushScheduled = false;
    let ended = false;
    const flush = () => {
      flushScheduled = false;
      if (pending.length === 0 || ended) return;
      const responses = pending;
      pending = [];
      stream.write({ responses });
    };
    const respond = (res: SessionResponse) => {
      inflight--;
      if (inflight < SESSION_INFLIGHT_MAX && stream.isPaused()) stream.resume();
      pending.push(res);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    };
    stream.on('data', (batch: SessionRequestBatch) => {
      for (const req of batch.requests) {
        inflight++;
        this.sessionRequest(req).then(respond, (err: unknown) =>
          respond({ id: req.id, result: { $case: 'error', value: sessionError(err) } }),
        );
      }
      if (inflight >= SESSION_INFLIGHT_MAX) stream.pause();
    });
    const finish = () => {
      if (ended) return;
      ended = true;
      stream.end();
    };
    stream.on('end', finish);
    stream.on('error', () => {
      ended = true;
    });
    stream.on('cancelled', () => {
      ended = true;
    });
  };

  private async sessionRequest(req: SessionRequest): Promise<SessionResponse> {
    const timeoutMs = req.timeoutMs > 0 ? req.timeoutMs : DEFAULT_REQUEST_TIMEOUT_MS;
    const ctx: CallContext = {
      deadlineMs: performance.now() + timeoutMs,
      forwarded: req.forwarded,
    };
    const op = req.op;
    if (op === undefined) throw new SkvError('invalid-argument', 'a session request carries no op');
    switch (op.$case) {
      case 'get':
        return { id: req.id, result: { $case: 'get', value: await this.doGet(op.value, ctx) } };
      case 'put':
        return {
          id: req.id,
          result: {
            $case: 'put',
            value: await this.doWrite(putToMutation(op.value), ctx, putResponse),
          },
        };
      case 'delete':
        return {
          id: req.id,
          result: {
            $case: 'delete',
            value: await this.doWrite(deleteToMutation(op.value), ctx, deleteResponse),
          },
        };
      case 'readRow':
        return {
          id: req.id,
          result: { $case: 'readRow', value: await this.doReadRow(op.value, ctx) },
        };
      case 'writeRow':
        return {
          id: req.id,
          result: {
            $case: 'writeRow',
            value: await this.doWrite(writeRowToMutation(op.value), ctx, writeRowResponse),
          },
        };
    }
  }

  private async doGet(req: GetRequest, ctx: CallContext): Promise<GetResponse> {
    const r = await this.backend.get(validateGet(req), ctx);
    return { found: r.found, value: asBuffer(r.value), version: BigInt(r.version) };
  }

  private async doReadRow(req: ReadRowRequest, ctx: CallContext): Promise<ReadRowResponse> {
    const cells = await this.backend.readRow(validateReadRow(req), ctx);
    return { cells: cells.map(toCell) };
  }

  private async doWrite<Res>(
    mutation: RowMutation,
    ctx: CallContext,
    shape: (result: ApplyResult) => Res,
  ): Promise<Res> {
    return shape(await this.backend.write(mutation, ctx));
  }
}

function sessionError(err: unknown) {
  const e = toGrpcError(err, leaderOf(err));
  const reason = e.metadata.get('skv-reason')[0];
  return {
    code: e.code,
    reason: typeof reason === 'string' ? reason : 'internal',
    message: e.details,
    leaderHint: leaderOf(err) ?? '',
  };
}

function serviceError(err: unknown) {
  const e = toGrpcError(err, leaderOf(err));
  return Object.assign(new Error(e.details), e);
}

export interface KvServerOptions {
  readonly host: string;
  readonly port: number;
  /** Serve the internal peer protocol on the same port. */
  readonly onPeerBatch?: PeerBatchHandler;
  /** Told once per distinct refused peer (who, and why). */
  readonly onPeerRefused?: (refusal: PeerRefusal) => void;
  /** TLS and the bearer token (default: neither). */
  readonly security?: ServerSecurity;
}

/** A gRPC server with the KV and health services; `port` 0 picks a free one. */
export class KvGrpcServer {
  private constructor(
    private readonly server: Server,
    readonly health: HealthImplementation,
    readonly port: number,
  ) {}

  static async start(backend: KvBackend, options: KvServerOptions): Promise<KvGrpcServer> {
    const security = options.security ?? {};
    const server = new Server({
      ...(security.token === undefined ? {} : { interceptors: [tokenInterceptor(security.token)] }),
      'grpc.max_receive_message_length': GRPC_MESSAGE_BYTES_MAX,
      'grpc.max_send_message_length': GRPC_MESSAGE_BYTES_MAX,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    });
    const edge = new KvEdge(backend);
    server.addService(KVService, {
      get: edge.get,
      put: edge.put,
      delete: edge.delete,
      readRow: edge.readRow,
      writeRow: edge.writeRow,
      batchGet: edge.batchGet,
      batchPut: edge.batchPut,
      scan: edge.scan,
      rangeMap: edge.rangeMap,
      session: edge.session,
      nodeStatus: edge.nodeStatus,
    });
    if (options.onPeerBatch !== undefined) {
      server.addService(
        PeerService,
        peerServiceImplementation(options.onPeerBatch, {
          requireCertificate: security.tls !== undefined,
          ...(options.onPeerRefused === undefined ? {} : { onRefused: options.onPeerRefused }),
        }),
      );
    }
    const health = new HealthImplementation({ '': 'NOT_SERVING', 'skv.v1.KV': 'NOT_SERVING' });
    health.addToServer(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${options.host}:${options.port}`,
        serverCredentials(security),
        (err, bound) => (err ? reject(err) : resolve(bound)),
      ),
    );
    return new KvGrpcServer(server, health, port);
  }

  setServing(serving: boolean): void {
    const s = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', s);
    this.health.setStatus('skv.v1.KV', s);
  }

  async stop(graceMs = 2_000): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

export { grpcStatusOf };
