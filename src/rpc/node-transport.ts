// A pool of Session streams, one per node address, plus the unary RangeMap and Scan calls: the
// transport the routing client library runs on (src/client talks to it through the
// `NodeTransport` port so that it never touches gRPC itself).

import { performance } from 'node:perf_hooks';
import { Metadata } from '@grpc/grpc-js';
import { SkvError } from '../core/errors.js';
import type {
  RangeMapResponse,
  ScanRequest,
  ScanResponse,
  SessionRequest,
  SessionResponse,
} from './generated/skv/v1/kv.js';
import { SessionChannel } from './session-channel.js';
import { reasonOf } from './status.js';
import type { ChannelSecurity } from './tls.js';

export type SessionOp = NonNullable<SessionRequest['op']>;
export type SessionResult = Exclude<NonNullable<SessionResponse['result']>, { $case: 'error' }>;

export interface NodeTransport {
  /** `forwarded`: a node forwarding a client's request to the range leader (one hop only). */
  call(
    address: string,
    op: SessionOp,
    timeoutMs: number,
    forwarded?: boolean,
  ): Promise<SessionResult>;
  rangeMap(address: string, timeoutMs: number): Promise<RangeMapResponse>;
  scan(address: string, req: ScanRequest, timeoutMs: number): AsyncIterable<ScanResponse>;
  close(): void;
}

export class GrpcNodeTransport implements NodeTransport {
  private readonly channels = new Map<string, SessionChannel>();

  /** `security`: TLS material and token for every node (default: plaintext, no token). */
  constructor(private readonly security: ChannelSecurity = {}) {}

  private channel(address: string): SessionChannel {
    let ch = this.channels.get(address);
    if (ch === undefined) {
      ch = new SessionChannel(address, this.security);
      this.channels.set(address, ch);
    }
    return ch;
  }

  async call(
    address: string,
    op: SessionOp,
    timeoutMs: number,
    forwarded = false,
  ): Promise<SessionResult> {
    const result = await this.channel(address).call(op, timeoutMs, forwarded);
    if (result.$case === 'error') throw new SkvError('internal', 'unexpected error result');
    return result;
  }

  rangeMap(address: string, timeoutMs: number): Promise<RangeMapResponse> {
    const { client, metadata, connectHint } = this.channel(address);
    return new Promise((resolve, reject) => {
      client.rangeMap(
        {},
        metadata?.clone() ?? new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, res) => {
          if (err) reject(fromServiceError(err, address, connectHint));
          else resolve(res);
        },
      );
    });
  }

  async *scan(address: string, req: ScanRequest, timeoutMs: number): AsyncIterable<ScanResponse> {
    const { client, metadata, connectHint } = this.channel(address);
    const stream = client.scan(req, metadata?.clone() ?? new Metadata(), {
      deadline: Date.now() + timeoutMs,
    });
    const started = performance.now();
    try {
      for await (const msg of stream) yield msg as ScanResponse;
    } catch (err) {
      throw fromServiceError(
        err as Error & { code?: number },
        address,
        connectHint,
        performance.now() - started,
      );
    }
  }

  close(): void {
    for (const ch of this.channels.values()) ch.close();
    this.channels.clear();
  }
}

function fromServiceError(
  err: Error & { code?: number; metadata?: unknown; details?: string },
  address: string,
  connectHint: string,
  _elapsedMs = 0,
): SkvError {
  const reason = reasonOf(err.metadata as never);
  if (reason !== null) return new SkvError(reason, err.details ?? err.message);
  // No skv reason: the node was not reached or the call was cut.
  const code = err.code === 4 ? 'deadline-exceeded' : 'unavailable';
  const detail = err.details ?? err.message;
  const hint = /No connection established/.test(detail) ? connectHint : '';
  return new SkvError(code, `${address}: ${detail}${hint}`);
}
