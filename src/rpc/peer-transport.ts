// The peer side of the gRPC edge: one outgoing `Exchange` stream per peer node carrying batches
// of replication messages, and the handler for incoming streams. Delivery is best effort with
// TCP order per stream: when a stream breaks, what was queued or in flight is dropped (the
// replication protocol retransmits) and the next send opens a fresh stream after a backoff.

import {
  type ClientWritableStream,
  credentials,
  type handleClientStreamingCall,
  Metadata,
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

/** Messages queued for one peer at most; beyond, new ones are dropped (they are retransmitted). */
export const PEER_QUEUE_MESSAGES_MAX = 65_536;
/** Messages per batch at most. */
export const PEER_BATCH_MESSAGES_MAX = 1024;
const RECONNECT_BACKOFF_MS = 100;

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
  readonly stats: PeerSendStats = { batches: 0, messages: 0, dropped: 0, reconnects: 0 };

  constructor(
    readonly address: string,
    private readonly self: NodeId,
    private readonly cluster: string,
  ) {
    this.client = new PeerClient(address, credentials.createInsecure(), {
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
    const stream = this.client.exchange(new Metadata(), (_err: unknown, _res?: ExchangeSummary) => {
      if (this.stream === stream) {
        this.stream = null;
        this.retryAt = Date.now() + RECONNECT_BACKOFF_MS;
        this.stats.reconnects++;
      }
    });
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

/** Receives every incoming batch; the handler validates sender, cluster and ranges. */
export type PeerBatchHandler = (batch: PeerBatch) => void;

export function peerServiceImplementation(onBatch: PeerBatchHandler): {
  exchange: handleClientStreamingCall<PeerBatch, ExchangeSummary>;
} {
  return {
    exchange: (call, callback) => {
      let batches = 0;
      call.on('data', (batch: PeerBatch) => {
        batches++;
        try {
          onBatch(batch);
        } catch {
          // Malformed or unauthorised input never crashes the node: drop the stream.
          call.destroy(new Error('bad peer batch'));
        }
      });
      call.on('end', () => callback(null, { batches: BigInt(batches) }));
      call.on('error', () => {});
    },
  };
}

export { PeerService };
