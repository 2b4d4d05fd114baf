// The peer side of the gRPC edge: one outgoing `Exchange` stream per peer node carrying batches
// of replication messages, and the handler for incoming streams. Delivery is best effort with
// TCP order per stream: when a stream breaks, what was queued or in flight is dropped (the
// replication protocol retransmits) and the next send opens a fresh stream after a backoff.
//
// Who may send (issue #8): the receiving side refuses a stream (PERMISSION_DENIED) whose batches
// claim a sender that the node's handler rejects (not in the range's cohort, wrong cluster) or,
// when TLS is on, that the client certificate does not name; with TLS on, a stream without a
// verified client certificate is refused at once (UNAUTHENTICATED). Nothing of a refused batch
// reaches the cohorts. Each distinct refusal is reported once (bounded), not once per retry.

import {
  type ClientWritableStream,
  type handleClientStreamingCall,
  Metadata,
  status,
} from '@grpc/grpc-js';
import type { NodeId } from '../core/ids.js';
import { GRPC_MESSAGE_BYTES_MAX } from '../core/limits.js';
import {
  type ExchangeSummary,
  type PeerBatch,
  PeerClient,
  type PeerMessage,
  PeerService,
} from './generated/skv/peer/v1/peer.js';
import {
  type ChannelSecurity,
  certificateNames,
  channelCredentials,
  tokenMetadata,
} from './tls.js';

/** Messages queued for one peer at most; beyond, new ones are dropped (they are retransmitted). */
export const PEER_QUEUE_MESSAGES_MAX = 65_536;
/** Messages per batch at most. */
export const PEER_BATCH_MESSAGES_MAX = 1024;
const RECONNECT_BACKOFF_MS = 100;
/** Distinct refusals reported at most (then one last report says the rest are not). */
export const PEER_REFUSALS_REPORTED_MAX = 1024;

export interface PeerSendStats {
  batches: number;
  messages: number;
  dropped: number;
  reconnects: number;
}

export class PeerLink {
  private readonly client: PeerClient;
  private stream: ClientWritableStream<PeerBatch> | null = null;
  private queue: PeerMessage[] = [];
  private flushScheduled = false;
  private retryAt = 0;
  private closed = false;
  private readonly metadata: Metadata | null;
  readonly stats: PeerSendStats = { batches: 0, messages: 0, dropped: 0, reconnects: 0 };

  constructor(
    readonly address: string,
    private readonly self: NodeId,
    private readonly cluster: string,
    security: ChannelSecurity = {},
  ) {
    this.metadata = tokenMetadata(security);
    this.client = new PeerClient(address, channelCredentials(security), {
      'grpc.max_send_message_length': GRPC_MESSAGE_BYTES_MAX,
      'grpc.max_receive_message_length': GRPC_MESSAGE_BYTES_MAX,
      'grpc.keepalive_time_ms': 5_000,
      'grpc.keepalive_timeout_ms': 3_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1_000,
      'grpc.enable_retries': 0,
    });
  }

  send(m: PeerMessage): void {
    if (this.closed) return;
    if (this.queue.length >= PEER_QUEUE_MESSAGES_MAX) {
      this.stats.dropped++;
      return;
    }
    this.queue.push(m);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.stream?.end();
    this.stream = null;
    this.client.close();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.queue.length === 0) return;
    const stream = this.open();
    if (stream === null) {
      // Backing off after a broken stream: drop (the protocol retransmits on its ticks).
      this.stats.dropped += this.queue.length;
      this.queue = [];
      return;
    }
    while (this.queue.length > 0) {
      const messages = this.queue.splice(0, PEER_BATCH_MESSAGES_MAX);
      this.stats.batches++;
      this.stats.messages += messages.length;
      stream.write({ from: this.self, cluster: this.cluster, messages });
    }
  }

  private open(): ClientWritableStream<PeerBatch> | null {
    if (this.stream !== null) return this.stream;
    if (Date.now() < this.retryAt) return null;
    const stream = this.client.exchange(
      this.metadata?.clone() ?? new Metadata(),
      (_err: unknown, _res?: ExchangeSummary) => {
        if (this.stream === stream) {
          this.stream = null;
          this.retryAt = Date.now() + RECONNECT_BACKOFF_MS;
          this.stats.reconnects++;
        }
      },
    );
    stream.on('error', () => {
      if (this.stream === stream) {
        this.stream = null;
        this.retryAt = Date.now() + RECONNECT_BACKOFF_MS;
      }
    });
    this.stream = stream;
    return stream;
  }
}

/** The receiving node's decision on one batch. */
export type PeerVerdict = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Receives every incoming batch; validates sender, cluster and ranges before acting on any. */
export type PeerBatchHandler = (batch: PeerBatch) => PeerVerdict;

export interface PeerRefusal {
  /** The node id the batch claimed ('' when refused before any batch). */
  readonly claimed: string;
  /** Names on the verified client certificate (empty without TLS or without a certificate). */
  readonly certificateNames: readonly string[];
  readonly remote: string;
  readonly reason: string;
}

export interface PeerServiceOptions {
  /** TLS is on: every stream must carry a verified client certificate naming its sender. */
  readonly requireCertificate: boolean;
  /** Called once per distinct refusal (claimed sender, certificate, reason). */
  readonly onRefused?: (refusal: PeerRefusal) => void;
}

export function peerServiceImplementation(
  onBatch: PeerBatchHandler,
  options: PeerServiceOptions = { requireCertificate: false },
): {
  exchange: handleClientStreamingCall<PeerBatch, ExchangeSummary>;
} {
  const reported = new Set<string>();
  const report = (refusal: PeerRefusal) => {
    if (options.onRefused === undefined) return;
    const key = `${refusal.claimed}|${refusal.certificateNames.join(',')}|${refusal.reason}`;
    if (reported.has(key) || reported.size > PEER_REFUSALS_REPORTED_MAX) return;
    reported.add(key);
    options.onRefused(
      reported.size > PEER_REFUSALS_REPORTED_MAX
        ? { ...refusal, reason: `${refusal.reason} (further refusals are not reported)` }
        : refusal,
    );
  };
  return {
    exchange: (call, callback) => {
      let batches = 0;
      let done = false;
      const remote = call.getPeer();
      let names: readonly string[] = [];
      const refuse = (code: status, claimed: string, reason: string) => {
        if (done) return;
        done = true;
        report({ claimed, certificateNames: names, remote, reason });
        callback({ code, details: `peer refused: ${reason}` });
      };
      call.on('error', () => {});
      if (options.requireCertificate) {
        const cert = call.getAuthContext().sslPeerCertificate;
        if (cert === undefined) {
          refuse(status.UNAUTHENTICATED, '', 'no client certificate signed by the cluster CA');
          return;
        }
        names = certificateNames(cert);
      }
      call.on('data', (batch: PeerBatch) => {
        if (done) return;
        batches++;
        if (options.requireCertificate && !names.includes(batch.from)) {
          refuse(
            status.PERMISSION_DENIED,
            batch.from,
            `the client certificate names ${names.join(', ') || 'nobody'}, not ${batch.from}`,
          );
          return;
        }
        let verdict: PeerVerdict;
        try {
          verdict = onBatch(batch);
        } catch {
          // Malformed input never crashes the node: drop the stream.
          done = true;
          call.destroy(new Error('bad peer batch'));
          return;
        }
        if (!verdict.ok) refuse(status.PERMISSION_DENIED, batch.from, verdict.reason);
      });
      call.on('end', () => {
        if (done) return;
        done = true;
        callback(null, { batches: BigInt(batches) });
      });
    },
  };
}

export { PeerService };
