// Fuzz harness: a raw grpc-js client that sends bytes as they are (identity serializers), so the
// fuzzer can put truncated, garbage or oversized protobuf on the wire of any method of the public
// KV service or the internal Peer service, and a classifier for the outcomes.
//
// Invariants: every call carries a client deadline, so a server that never answers shows up as a
// client-side DEADLINE_EXCEEDED (no `skv-reason` metadata: the server never said anything), never
// as a hung test. Message size limits are off on this client so oversized frames reach the server.

import { Client, credentials, type Metadata, status } from '@grpc/grpc-js';

const identity = (b: Buffer): Buffer => b;

export interface CallOutcome {
  readonly code: status;
  readonly details: string;
  /** The server's `skv-reason` metadata, or null when it sent none (or never answered). */
  readonly reason: string | null;
  /** Response messages, in arrival order (one for a unary call that succeeded). */
  readonly messages: readonly Buffer[];
  readonly ms: number;
}

function reasonOf(metadata: Metadata | undefined): string | null {
  const v = metadata?.get('skv-reason')[0];
  return typeof v === 'string' ? v : null;
}

interface StatusLike {
  code: status;
  details: string;
  metadata?: Metadata;
}

/** A raw client for one node address. */
export class RawGrpc {
  private readonly client: Client;

  constructor(readonly address: string) {
    this.client = new Client(address, credentials.createInsecure(), {
      'grpc.max_send_message_length': -1,
      'grpc.max_receive_message_length': -1,
      'grpc.enable_retries': 0,
    });
  }

  close(): void {
    this.client.close();
  }

  unary(path: string, body: Buffer, timeoutMs: number): Promise<CallOutcome> {
    const started = performance.now();
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        path,
        identity,
        identity,
        body,
        { deadline: Date.now() + timeoutMs },
        (err: StatusLike | null, res?: Buffer) => {
          const ms = performance.now() - started;
          if (err !== null) {
            resolve({
              code: err.code,
              details: err.details,
              reason: reasonOf(err.metadata),
              messages: [],
              ms,
            });
          } else {
            resolve({
              code: status.OK,
              details: '',
              reason: null,
              messages: res === undefined ? [] : [res],
              ms,
            });
          }
        },
      );
    });
  }

  /** A server-streaming call (Scan): every message until the status. */
  serverStream(path: string, body: Buffer, timeoutMs: number): Promise<CallOutcome> {
    const started = performance.now();
    return new Promise((resolve) => {
      const messages: Buffer[] = [];
      const call = this.client.makeServerStreamRequest(path, identity, identity, body, {
        deadline: Date.now() + timeoutMs,
      });
      call.on('data', (m: Buffer) => messages.push(m));
      call.on('error', () => {});
      call.on('status', (s: StatusLike) =>
        resolve({
          code: s.code,
          details: s.details,
          reason: reasonOf(s.metadata),
          messages,
          ms: performance.now() - started,
        }),
      );
    });
  }

  /**
   * A bidi call (Session): writes `frames`, keeps the stream open until `done(messages)` says
   * every answer is in (or the server ends it), then half-closes and waits for the status.
   */
  bidi(
    path: string,
    frames: readonly Buffer[],
    timeoutMs: number,
    done: (messages: readonly Buffer[]) => boolean,
  ): Promise<CallOutcome> {
    const started = performance.now();
    return new Promise((resolve) => {
      const messages: Buffer[] = [];
      const call = this.client.makeBidiStreamRequest(path, identity, identity, {
        deadline: Date.now() + timeoutMs,
      });
      let halfClosed = false;
      const maybeEnd = () => {
        if (!halfClosed && done(messages)) {
          halfClosed = true;
          call.end();
        }
      };
      call.on('data', (m: Buffer) => {
        messages.push(m);
        maybeEnd();
      });
      call.on('error', () => {});
      call.on('status', (s: StatusLike) =>
        resolve({
          code: s.code,
          details: s.details,
          reason: reasonOf(s.metadata),
          messages,
          ms: performance.now() - started,
        }),
      );
      for (const f of frames) call.write(f);
      maybeEnd();
    });
  }

  /** A client-streaming call (the peer Exchange): writes `frames`, half-closes, waits. */
  clientStream(path: string, frames: readonly Buffer[], timeoutMs: number): Promise<CallOutcome> {
    const started = performance.now();
    return new Promise((resolve) => {
      const call = this.client.makeClientStreamRequest(
        path,
        identity,
        identity,
        { deadline: Date.now() + timeoutMs },
        (err: StatusLike | null, res?: Buffer) => {
          const ms = performance.now() - started;
          resolve(
            err !== null
              ? {
                  code: err.code,
                  details: err.details,
                  reason: reasonOf(err.metadata),
                  messages: [],
                  ms,
                }
              : { code: status.OK, details: '', reason: null, messages: res ? [res] : [], ms },
          );
        },
      );
      call.on('error', () => {});
      for (const f of frames) call.write(f);
      call.end();
    });
  }
}

/**
 * grpc-js answers a request it cannot deserialize with INTERNAL and exactly this text (no stack,
 * nothing of ours ran). The edge's deserializers no longer throw (issue #8: INVALID_ARGUMENT), so
 * this fails the suites unless they run relaxed (FUZZ_STRICT=0), where it is only counted.
 */
export const GRPC_JS_DESERIALIZE_DETAILS = 'Error deserializing request';

export type Verdict =
  | { readonly ok: true; readonly knownDeserialize: boolean }
  | { readonly ok: false; readonly why: string };

/** Status codes a public call may end with (DESIGN.md §2): anything else is a fuzz failure. */
const CLEAR_CODES: ReadonlySet<status> = new Set([
  status.OK,
  status.INVALID_ARGUMENT,
  status.FAILED_PRECONDITION,
  status.NOT_FOUND,
  status.RESOURCE_EXHAUSTED,
  status.OUT_OF_RANGE,
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
]);

/** Judges one public-API outcome: a clear status, never INTERNAL/UNKNOWN, never a hung call. */
export function judgePublic(
  o: Pick<CallOutcome, 'code' | 'details' | 'reason'>,
  options: { strict?: boolean } = {},
): Verdict {
  if (
    options.strict !== true &&
    o.code === status.INTERNAL &&
    o.details === GRPC_JS_DESERIALIZE_DETAILS
  ) {
    return { ok: true, knownDeserialize: true };
  }
  if (!CLEAR_CODES.has(o.code)) {
    return { ok: false, why: `status ${status[o.code]} (${o.details.slice(0, 200)})` };
  }
  if (o.code === status.DEADLINE_EXCEEDED && o.reason === null) {
    return { ok: false, why: `hung: no answer before the client deadline (${o.details})` };
  }
  if (o.code === status.UNAVAILABLE && o.reason === null) {
    // Not the server's UNAVAILABLE (that carries a reason): the connection itself broke.
    return { ok: false, why: `connection failed: ${o.details.slice(0, 200)}` };
  }
  if (/\n\s+at /.test(o.details)) return { ok: false, why: `a stack in details: ${o.details}` };
  return { ok: true, knownDeserialize: false };
}
