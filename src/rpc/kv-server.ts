// The public gRPC edge (DESIGN.md §2): the KV service's unary methods for simple clients, the
// streamed Scan, the RangeMap call and the Session stream that the skv client library uses for
// throughput (many requests per HTTP/2 message, answered in any order). It validates every
// request before the backend sees it and maps errors through status.ts. Plus the standard gRPC
// health-checking service.
//
// Security (issue #8, tls.ts): TLS on the port when configured; the bearer-token check is a
// server interceptor installed only when a token is configured, so it runs before any handler of
// every service but health; the peer service checks certificates and membership itself.
//
// Hostile input (issue #8): request deserializers never throw; bytes that are not the method's
// message reach the handler as a RefusedRequest, answered INVALID_ARGUMENT (a Session frame:
// the stream ends with that status, and nothing is written after it). A Session frame carrying
// more than SESSION_FRAME_REQUESTS_MAX requests is refused (RESOURCE_EXHAUSTED) before it is
// decoded. Deadlines are clamped to REQUEST_TIMEOUT_MS_MAX. Answer frames are split so that
// none exceeds SESSION_FRAME_BYTES_SOFT_MAX unless one answer alone does, and an answer over
// the gRPC message limit becomes that request's RESOURCE_EXHAUSTED instead of failing the stream.

import { performance } from 'node:perf_hooks';
import {
  type MethodDefinition,
  Server,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { InvalidArgumentError, SkvError } from '../core/errors.js';
import {
  GRPC_MESSAGE_BYTES_MAX,
  REQUEST_TIMEOUT_MS_MAX,
  SCAN_ROWS_DEFAULT,
  SESSION_FRAME_BYTES_SOFT_MAX,
  SESSION_FRAME_REQUESTS_MAX,
} from '../core/limits.js';
import type { ApplyResult, RowMutation } from '../core/mutation.js';
import { type CallContext, type KvBackend, NotLeaderError, type WriteOptions } from './backend.js';
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
  SessionRequestBatch,
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
  sessionFrameRequestCount,
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

/** A put's answer has no previous version: the store need not read the old cell for it. */
const PUT_WRITE: WriteOptions = { previousVersions: false };

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

/**
 * The time a request may take here: what the client asked for (0 or less: already past), at most
 * REQUEST_TIMEOUT_MS_MAX (issue #8: a 2^31 ms deadline overflowed a timer and fired at once, so a
 * stored write was answered "outcome unknown"); not a number: the default.
 */
export function requestTimeoutMs(askedMs: number): number {
  if (Number.isNaN(askedMs)) return DEFAULT_REQUEST_TIMEOUT_MS;
  return Math.min(REQUEST_TIMEOUT_MS_MAX, Math.max(0, askedMs));
}

/**
 * A call's context from its gRPC deadline, or an error when that deadline has passed before the
 * handler runs: nothing is started then. Besides late calls this catches a grpc-js server limit:
 * it reads a `grpc-timeout` of 2^31 ms or more (24.8 days) through a 32-bit `| 0`, so the call's
 * deadline lies in the past and grpc-js's own timer ends the call DEADLINE_EXCEEDED within a
 * millisecond (issue #8: a unary Put with a 30-day deadline was stored yet answered so).
 */
function contextFromDeadline(deadline: Date | number | undefined): CallContext | SkvError {
  const now = performance.now();
  if (deadline === undefined || deadline === Number.POSITIVE_INFINITY) {
    return { deadlineMs: now + DEFAULT_REQUEST_TIMEOUT_MS };
  }
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  const leftMs = at - Date.now();
  if (!(leftMs > 0)) {
    return new SkvError(
      'deadline-exceeded',
      "the call's deadline passed before it started (grpc-js servers cannot time a deadline of " +
        '2^31 ms or more: it reads as past); nothing was done',
    );
  }
  return { deadlineMs: now + requestTimeoutMs(leftMs) };
}

/**
 * What a request deserializer hands the handler instead of throwing: grpc-js answers a throwing
 * deserializer with INTERNAL "Error deserializing request" before any handler runs, and on a
 * Session stream it sent that status while the handler went on writing answers (issue #8).
 */
export class RefusedRequest {
  constructor(readonly error: SkvError) {}
}

function decodeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A Session frame: counted before it is decoded, refused when it carries too many requests. */
function decodeSessionFrame(bytes: Buffer): SessionRequestBatch | RefusedRequest {
  try {
    const count = sessionFrameRequestCount(bytes);
    if (count > SESSION_FRAME_REQUESTS_MAX) {
      return new RefusedRequest(
        new SkvError(
          'overloaded',
          `a session frame carries ${count} requests; the limit is ${SESSION_FRAME_REQUESTS_MAX}`,
        ),
      );
    }
    return SessionRequestBatch.decode(bytes);
  } catch (err) {
    return new RefusedRequest(
      new InvalidArgumentError(
        `a session frame of ${bytes.length} bytes is not a valid SessionRequestBatch: ${decodeError(err)}`,
      ),
    );
  }
}

/** The KV service with request deserializers that never throw. */
function tolerantKvService(): ServiceDefinition {
  const service: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(KVService)) {
    const decode = def.requestDeserialize as (bytes: Buffer) => unknown;
    const method = def.path.slice(def.path.lastIndexOf('/') + 1);
    service[name] = {
      ...(def as MethodDefinition<unknown, unknown>),
      requestDeserialize:
        name === 'session'
          ? decodeSessionFrame
          : (bytes: Buffer) => {
              try {
                return decode(bytes);
              } catch (err) {
                return new RefusedRequest(
                  new InvalidArgumentError(
                    `a ${method} request of ${bytes.length} bytes is not valid protobuf: ${decodeError(err)}`,
                  ),
                );
              }
            },
    };
  }
  return service as ServiceDefinition;
}

/** Encoded bytes of one answer at most (field tags, lengths and varints at their widest). */
const RESPONSE_OVERHEAD_BYTES = 64;
const CELL_OVERHEAD_BYTES = 32;
const VARINT_BYTES_MAX = 11;
/** One answer larger than this cannot go out in a frame (the gRPC message limit, with room). */
const SESSION_ANSWER_BYTES_MAX = GRPC_MESSAGE_BYTES_MAX - 64 * 1024;

/** An upper bound of a session answer's encoded size inside a SessionResponseBatch. */
export function sessionResponseBytesMax(res: SessionResponse): number {
  const r = res.result;
  if (r === undefined) return RESPONSE_OVERHEAD_BYTES;
  switch (r.$case) {
    case 'get':
      return RESPONSE_OVERHEAD_BYTES + r.value.value.length;
    case 'put':
    case 'delete':
      return RESPONSE_OVERHEAD_BYTES;
    case 'readRow': {
      let n = RESPONSE_OVERHEAD_BYTES;
      for (const c of r.value.cells) n += CELL_OVERHEAD_BYTES + c.column.length + c.value.length;
      return n;
    }
    case 'writeRow':
      return (
        RESPONSE_OVERHEAD_BYTES +
        VARINT_BYTES_MAX * (r.value.versions.length + r.value.previousVersions.length)
      );
    case 'error':
      // UTF-8: at most 3 bytes per UTF-16 unit.
      return (
        RESPONSE_OVERHEAD_BYTES +
        3 * (r.value.message.length + r.value.reason.length + r.value.leaderHint.length)
      );
  }
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

/** A request as a handler receives it: the message, or why its bytes were refused. */
type Decoded<Req> = Req | RefusedRequest;

/** The KV service implementation over a backend. */
export class KvEdge {
  constructor(private readonly backend: KvBackend) {}

  private unary<Req, Res>(
    call: ServerUnaryCall<Req | RefusedRequest, Res>,
    callback: sendUnaryData<Res>,
    run: (req: Req, ctx: CallContext) => Promise<Res>,
  ): void {
    const request = call.request;
    if (request instanceof RefusedRequest) {
      callback(toGrpcError(request.error));
      return;
    }
    const ctx = contextFromDeadline(call.getDeadline());
    if (ctx instanceof SkvError) {
      callback(toGrpcError(ctx));
      return;
    }
    let result: Promise<Res>;
    try {
      result = run(request, ctx);
    } catch (err) {
      callback(toGrpcError(err, leaderOf(err)));
      return;
    }
    result.then(
      (res) => callback(null, res),
      (err: unknown) => callback(toGrpcError(err, leaderOf(err))),
    );
  }

  get = (call: ServerUnaryCall<Decoded<GetRequest>, GetResponse>, cb: sendUnaryData<GetResponse>) =>
    this.unary(call, cb, (req, ctx) => this.doGet(req, ctx));

  put = (call: ServerUnaryCall<Decoded<PutRequest>, PutResponse>, cb: sendUnaryData<PutResponse>) =>
    this.unary(call, cb, (req, ctx) =>
      this.doWrite(putToMutation(req), ctx, putResponse, PUT_WRITE),
    );

  delete = (
    call: ServerUnaryCall<Decoded<DeleteRequest>, DeleteResponse>,
    cb: sendUnaryData<DeleteResponse>,
  ) => this.unary(call, cb, (req, ctx) => this.doWrite(deleteToMutation(req), ctx, deleteResponse));

  readRow = (
    call: ServerUnaryCall<Decoded<ReadRowRequest>, ReadRowResponse>,
    cb: sendUnaryData<ReadRowResponse>,
  ) => this.unary(call, cb, (req, ctx) => this.doReadRow(req, ctx));

  writeRow = (
    call: ServerUnaryCall<Decoded<WriteRowRequest>, WriteRowResponse>,
    cb: sendUnaryData<WriteRowResponse>,
  ) =>
    this.unary(call, cb, (req, ctx) =>
      this.doWrite(writeRowToMutation(req), ctx, writeRowResponse),
    );

  batchGet = (
    call: ServerUnaryCall<Decoded<BatchGetRequest>, BatchGetResponse>,
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
    call: ServerUnaryCall<Decoded<BatchPutRequest>, BatchPutResponse>,
    cb: sendUnaryData<BatchPutResponse>,
  ) =>
    this.unary(call, cb, async (req, ctx) => {
      validateBatchSize(req.puts.length);
      // Validate everything first: a bad item fails the whole batch before anything is written.
      const mutations = req.puts.map(putToMutation);
      const settled = await Promise.allSettled(
        mutations.map((m) => this.doWrite(m, ctx, putResponse, PUT_WRITE)),
      );
      return {
        results: settled.map((s) => (s.status === 'fulfilled' ? s.value : { version: 0n })),
        statuses: settled.map((s) => (s.status === 'fulfilled' ? OK_STATUS : itemStatus(s.reason))),
      };
    });

  scan = (call: ServerWritableStream<Decoded<ScanRequest>, ScanResponse>) => {
    const ctx = contextFromDeadline(call.getDeadline());
    const run = async () => {
      const request = call.request;
      if (request instanceof RefusedRequest) throw request.error;
      if (ctx instanceof SkvError) throw ctx;
      const req = validateScan(request, SCAN_ROWS_DEFAULT);
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
    call: ServerUnaryCall<Decoded<RangeMapRequest>, RangeMapResponse>,
    cb: sendUnaryData<RangeMapResponse>,
  ) =>
    this.unary(call, cb, async (_req: RangeMapRequest) => {
      const view = await this.backend.rangeMap();
      // A map covers the whole key space with at least one range: none means this node has not
      // read it yet (it just started). An empty answer would leave a client with no routes.
      if (view.ranges.length === 0) {
        throw new SkvError(
          'unavailable',
          'this node has not read the range map from ZooKeeper yet; ask another node',
        );
      }
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
    call: ServerUnaryCall<Decoded<NodeStatusRequest>, NodeStatusResponse>,
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

  /**
   * The throughput path: batches in, batches out, answers in any order. Back-pressure: reading
   * stops while SESSION_INFLIGHT_MAX requests are in flight (a frame adds at most
   * SESSION_FRAME_REQUESTS_MAX) or while grpc-js buffers answers it has not sent. The stream ends
   * with OK once the client has half-closed and every request is answered; a refused frame ends
   * it at once with the refusal's status, after the answers already made. Once the status is on
   * its way nothing more is written (requests still in flight then are the client's unknowns).
   */
  session = (stream: ServerDuplexStream<Decoded<SessionRequestBatch>, SessionResponseBatch>) => {
    let inflight = 0;
    let pending: SessionResponse[] = [];
    let flushScheduled = false;
    /** The status is sent or on its way: write nothing more. */
    let closed = false;
    let halfClosed = false;
    let writeBlocked = false;
    const maybeResume = () => {
      if (!closed && !writeBlocked && inflight < SESSION_INFLIGHT_MAX && stream.isPaused()) {
        stream.resume();
      }
    };
    const write = (responses: SessionResponse[]) => {
      if (stream.write({ responses }) || writeBlocked) return;
      writeBlocked = true;
      stream.pause();
      stream.once('drain', () => {
        writeBlocked = false;
        maybeResume();
      });
    };
    /** Writes every pending answer, in frames of at most SESSION_FRAME_BYTES_SOFT_MAX. */
    const writePending = () => {
      let frame: SessionResponse[] = [];
      let frameBytes = 0;
      for (const res of pending) {
        const bytes = sessionResponseBytesMax(res);
        if (frame.length > 0 && frameBytes + bytes > SESSION_FRAME_BYTES_SOFT_MAX) {
          write(frame);
          frame = [];
          frameBytes = 0;
        }
        frame.push(res);
        frameBytes += bytes;
      }
      if (frame.length > 0) write(frame);
      pending = [];
    };
    const finishIfDone = () => {
      if (closed || !halfClosed || inflight > 0) return;
      writePending();
      closed = true;
      stream.end();
    };
    const flush = () => {
      flushScheduled = false;
      if (closed) return;
      writePending();
      finishIfDone();
    };
    const respond = (res: SessionResponse) => {
      inflight--;
      if (closed) return;
      const bytes = sessionResponseBytesMax(res);
      pending.push(
        bytes <= SESSION_ANSWER_BYTES_MAX
          ? res
          : {
              id: res.id,
              result: {
                $case: 'error',
                value: sessionError(
                  new SkvError(
                    'overloaded',
                    `the answer of about ${bytes} bytes is over the message limit of ${GRPC_MESSAGE_BYTES_MAX}`,
                  ),
                ),
              },
            },
      );
      maybeResume();
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    };
    /** Ends the stream with the refusal's status; the answers already made go out first. */
    const refuse = (err: SkvError) => {
      if (closed) return;
      writePending();
      closed = true;
      // emit('error') sets the status that end() sends after the queued writes (grpc-js).
      stream.emit('error', serviceError(err));
    };
    stream.on('data', (batch: Decoded<SessionRequestBatch>) => {
      if (closed) return;
      if (batch instanceof RefusedRequest) {
        refuse(batch.error);
        return;
      }
      for (const req of batch.requests) {
        inflight++;
        this.sessionRequest(req).then(respond, (err: unknown) =>
          respond({ id: req.id, result: { $case: 'error', value: sessionError(err) } }),
        );
      }
      if (inflight >= SESSION_INFLIGHT_MAX) stream.pause();
    });
    stream.on('end', () => {
      halfClosed = true;
      if (!flushScheduled) finishIfDone();
    });
    stream.on('error', () => {
      closed = true;
    });
    stream.on('cancelled', () => {
      closed = true;
    });
  };

  private async sessionRequest(req: SessionRequest): Promise<SessionResponse> {
    const timeoutMs =
      req.timeoutMs > 0 ? requestTimeoutMs(req.timeoutMs) : DEFAULT_REQUEST_TIMEOUT_MS;
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
            value: await this.doWrite(putToMutation(op.value), ctx, putResponse, PUT_WRITE),
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
    options: WriteOptions = {},
  ): Promise<Res> {
    return shape(await this.backend.write(mutation, ctx, options));
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
    server.addService(tolerantKvService(), {
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
