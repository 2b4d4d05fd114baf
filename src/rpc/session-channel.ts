// The client side of the Session stream (DESIGN.md §2 "the throughput path is a stream"): one
// long-lived bidirectional stream per node that carries many requests with ids, batched into one
// HTTP/2 message per turn of the event loop, answered in any order.
//
// Outcomes: a response settles its request; a request whose deadline passes is rejected with
// `deadline-exceeded` (for a write: outcome unknown); when the stream breaks, every request in
// flight on it is rejected with `deadline-exceeded` too (it may or may not have been applied) and
// the next request opens a fresh stream. Nothing here retries: retries are the router's decision.
//
// Bounds (issue #8): a request's timer is at most TIMER_DELAY_MS_MAX (a longer setTimeout fires
// at once) and the timeout it carries at most REQUEST_TIMEOUT_MS_MAX (the server's own cap, and
// inside the uint32 field); a frame holds at most SESSION_BATCH_REQUESTS_MAX requests and, unless
// one request alone is larger, SESSION_FRAME_BYTES_SOFT_MAX bytes.

import { performance } from 'node:perf_hooks';
import { type ClientDuplexStream, type Metadata, status } from '@grpc/grpc-js';
import { SkvError, type SkvErrorCode } from '../core/errors.js';
import {
  GRPC_MESSAGE_BYTES_MAX,
  REQUEST_TIMEOUT_MS_MAX,
  SESSION_FRAME_BYTES_SOFT_MAX,
  timerDelayMs,
} from '../core/limits.js';
import {
  KVClient,
  type SessionError,
  type SessionRequest,
  type SessionRequestBatch,
  type SessionResponse,
  type SessionResponseBatch,
} from './generated/skv/v1/kv.js';
import { reasonOf } from './status.js';
import { type ChannelSecurity, channelCredentials, connectHint, tokenMetadata } from './tls.js';

/** Requests in flight on one stream at most; callers beyond wait for room. */
export const SESSION_CLIENT_INFLIGHT_MAX = 4096;
/** Requests per batch message at most. */
export const SESSION_BATCH_REQUESTS_MAX = 512;

const REQUEST_OVERHEAD_BYTES = 64;
const FIELD_OVERHEAD_BYTES = 16;

/** An upper bound of a request's encoded size inside a SessionRequestBatch. */
export function sessionRequestBytesMax(req: SessionRequest): number {
  const op = req.op;
  if (op === undefined) return REQUEST_OVERHEAD_BYTES;
  switch (op.$case) {
    case 'get':
    case 'delete':
      return REQUEST_OVERHEAD_BYTES + op.value.key.length + op.value.column.length;
    case 'put':
      return (
        REQUEST_OVERHEAD_BYTES +
        op.value.key.length +
        op.value.column.length +
        op.value.value.length
      );
    case 'readRow': {
      let n = REQUEST_OVERHEAD_BYTES + op.value.key.length;
      for (const c of op.value.columns) n += FIELD_OVERHEAD_BYTES + c.length;
      return n;
    }
    case 'writeRow': {
      let n = REQUEST_OVERHEAD_BYTES + op.value.key.length;
      for (const w of op.value.writes) {
        n += 2 * FIELD_OVERHEAD_BYTES + w.column.length + (w.value?.length ?? 0);
      }
      return n;
    }
  }
}

type Op = NonNullable<SessionRequest['op']>;
type Result = NonNullable<SessionResponse['result']>;

interface Pending {
  readonly resolve: (r: Result) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  readonly stream: ClientDuplexStream<SessionRequestBatch, SessionResponseBatch>;
}

/** An error reported by the server for one session request. */
export class RemoteError extends SkvError {
  override readonly name = 'RemoteError';
  constructor(
    code: SkvErrorCode,
    message: string,
    readonly grpcCode: number,
    readonly leaderHint: string | null,
  ) {
    super(code, message);
  }
}

const CODE_BY_GRPC: Partial<Record<number, SkvErrorCode>> = {
  [status.INVALID_ARGUMENT]: 'invalid-argument',
  [status.FAILED_PRECONDITION]: 'version-mismatch',
  [status.UNAVAILABLE]: 'unavailable',
  [status.DEADLINE_EXCEEDED]: 'deadline-exceeded',
  [status.RESOURCE_EXHAUSTED]: 'overloaded',
  [status.UNAUTHENTICATED]: 'unauthenticated',
  [status.DATA_LOSS]: 'corruption',
};

function remoteError(e: SessionError): RemoteError {
  const code = (e.reason as SkvErrorCode) || CODE_BY_GRPC[e.code] || 'internal';
  return new RemoteError(code, e.message, e.code, e.leaderHint === '' ? null : e.leaderHint);
}

export class SessionChannel {
  readonly client: KVClient;
  private stream: ClientDuplexStream<SessionRequestBatch, SessionResponseBatch> | null = null;
  private readonly pending = new Map<bigint, Pending>();
  private nextId = 1n;
  private outbox: SessionRequest[] = [];
  private flushScheduled = false;
  private closed = false;
  private readonly waiters: (() => void)[] = [];
  /** The bearer token, sent on every call (null: none configured). */
  readonly metadata: Metadata | null;
  /** Said after "no connection" errors (tls.ts connectHint). */
  readonly connectHint: string;

  constructor(
    readonly address: string,
    security: ChannelSecurity = {},
  ) {
    this.metadata = tokenMetadata(security);
    this.connectHint = connectHint(security);
    this.client = new KVClient(address, channelCredentials(security), {
      'grpc.max_receive_message_length': GRPC_MESSAGE_BYTES_MAX,
      'grpc.max_send_message_length': GRPC_MESSAGE_BYTES_MAX,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.enable_retries': 0,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1_000,
    });
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** Sends one request; resolves with its result or rejects with an SkvError. */
  async call(op: Op, timeoutMs: number, forwarded = false): Promise<Result> {
    if (this.closed) throw new SkvError('closed', `session to ${this.address} is closed`);
    const deadline = performance.now() + timeoutMs;
    while (this.pending.size >= SESSION_CLIENT_INFLIGHT_MAX) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      if (performance.now() >= deadline) {
        throw new SkvError('deadline-exceeded', `no room on the session to ${this.address}`);
      }
    }
    const stream = this.ensureStream();
    const id = this.nextId++;
    return await new Promise<Result>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.settle(id)) {
          reject(new SkvError('deadline-exceeded', `deadline of ${timeoutMs} ms exceeded`));
        }
      }, timerDelayMs(deadline));
      this.pending.set(id, { resolve, reject, timer, stream });
      // The server clamps to the same maximum; a larger value would also wrap the uint32 field.
      const wireTimeoutMs = Math.min(REQUEST_TIMEOUT_MS_MAX, Math.max(1, Math.ceil(timeoutMs)));
      this.outbox.push({ id, timeoutMs: wireTimeoutMs, op, forwarded });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.breakStream(new SkvError('closed', `session to ${this.address} closed`));
    this.client.close();
  }

  private ensureStream(): ClientDuplexStream<SessionRequestBatch, SessionResponseBatch> {
    if (this.stream !== null) return this.stream;
    const stream =
      this.metadata === null ? this.client.session() : this.client.session(this.metadata.clone());
    this.stream = stream;
    stream.on('data', (batch: SessionResponseBatch) => {
      for (const res of batch.responses) {
        const p = this.pending.get(res.id);
        if (p === undefined || !this.settle(res.id)) continue;
        const result = res.result;
        if (result === undefined) p.reject(new SkvError('internal', 'empty session response'));
        else if (result.$case === 'error') p.reject(remoteError(result.value));
        else p.resolve(result);
      }
    });
    const broken = (err?: Error & { code?: number; metadata?: unknown }) => {
      if (this.stream !== stream) return;
      const code = err?.code;
      const reason =
        err !== undefined && typeof err === 'object' && 'metadata' in err
          ? reasonOf(err.metadata as never)
          : null;
      const detail = err?.message ?? 'stream ended';
      // In flight when the stream broke: the outcome is unknown — unless the channel never
      // connected at all (grpc-js: UNAVAILABLE "No connection established"), in which case no
      // request left this process and the failure is a safe-to-retry refusal.
      const neverConnected =
        code === status.UNAVAILABLE && reason === null && /No connection established/.test(detail);
      // Refused for want of credentials: nothing ran, and retrying cannot help.
      const refused = code === status.UNAUTHENTICATED || code === status.PERMISSION_DENIED;
      const failure = refused
        ? new SkvError('unauthenticated', `${this.address} refused the session: ${detail}`)
        : neverConnected ||
            (code === status.UNAVAILABLE && reason === null && this.pending.size === 0)
          ? new SkvError(
              'unavailable',
              `session to ${this.address} broke: ${detail}${neverConnected ? this.connectHint : ''}`,
            )
          : new SkvError('deadline-exceeded', `session to ${this.address} broke: ${detail}`);
      this.breakStream(failure, stream);
    };
    stream.on('error', broken);
    stream.on('end', () => broken());
    return stream;
  }

  private breakStream(
    failure: Error,
    which: ClientDuplexStream<SessionRequestBatch, SessionResponseBatch> | null = this.stream,
  ): void {
    if (which === null) return;
    if (this.stream === which) this.stream = null;
    for (const [id, p] of this.pending) {
      if (p.stream !== which) continue;
      this.settle(id);
      p.reject(failure);
    }
    this.outbox = this.outbox.filter((r) => this.pending.has(r.id));
    which.cancel();
  }

  /** Removes a request from the table; false when it had already been settled. */
  private settle(id: bigint): boolean {
    const p = this.pending.get(id);
    if (p === undefined) return false;
    clearTimeout(p.timer);
    this.pending.delete(id);
    const w = this.waiters.shift();
    if (w !== undefined) w();
    return true;
  }

  private flush(): void {
    this.flushScheduled = false;
    const stream = this.stream;
    if (stream === null) return;
    let requests: SessionRequest[] = [];
    let bytes = 0;
    for (const req of this.outbox) {
      const n = sessionRequestBytesMax(req);
      if (
        requests.length > 0 &&
        (requests.length >= SESSION_BATCH_REQUESTS_MAX || bytes + n > SESSION_FRAME_BYTES_SOFT_MAX)
      ) {
        stream.write({ requests });
        requests = [];
        bytes = 0;
      }
      requests.push(req);
      bytes += n;
    }
    if (requests.length > 0) stream.write({ requests });
    this.outbox = [];
  }
}
