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
//
// Every refused stream ends with a status at once (issue #8: a dropped stream used to stay open
// until its sender's deadline, and PeerLink streams have none): bytes that are not a PeerBatch
// and batches the handler cannot read get INVALID_ARGUMENT, refused senders PERMISSION_DENIED;
// later data on the stream is ignored. The sending side reconnects with a doubling backoff
// (PEER_RECONNECT_BACKOFF_MS_MIN..MAX) and reports a broken link once per outage, not per retry.
//
// Bulk data (snapshot chunks) goes on a second stream of the same connection, one message at a
// time and only while that stream's buffer has room (`sendBulk`): a range's snapshot is hundreds
// of megabytes at 10 M rows, and written into the protocol's stream at once it held all of it in
// memory and delayed every other range's proposes and acks behind it.

import { crc32 } from 'node:zlib';
import {
  type ChannelCredentials,
  type ClientOptions,
  type ClientWritableStream,
  type handleClientStreamingCall,
  Metadata,
  makeGenericClientConstructor,
  status,
} from '@grpc/grpc-js';
import type { NodeId } from '../core/ids.js';
import { GRPC_MESSAGE_BYTES_MAX } from '../core/limits.js';
import {
  type ExchangeSummary,
  type PeerClient as GeneratedPeerClient,
  PeerService as GeneratedPeerService,
  PeerBatch,
  type PeerMessage,
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
/**
 * Entry payload bytes per batch at most (a single message may carry more): a batch stays well
 * under GRPC_MESSAGE_BYTES_MAX, which would end the stream. Proposes are split at the replica's
 * messageBytesMax (4 MiB), so several of them, or of several ranges, share a batch up to this.
 */
export const PEER_BATCH_PAYLOAD_BYTES_MAX = 8 * 1024 * 1024;
/**
 * The wait before reopening a broken stream: doubles per consecutive failure, up to the max. The
 * max stays short: a restarted peer must hear from its leader soon (it may be the one a commit
 * needs next), and a retry of a dead peer costs one failed connect.
 */
export const PEER_RECONNECT_BACKOFF_MS_MIN = 100;
export const PEER_RECONNECT_BACKOFF_MS_MAX = 500;
/** A stream that lived this long before breaking was healthy: the next break starts an outage. */
export const PEER_STREAM_HEALTHY_MS = 5_000;
/** Distinct refusals reported at most (then one last report says the rest are not). */
export const PEER_REFUSALS_REPORTED_MAX = 1024;

export interface PeerSendStats {
  batches: number;
  messages: number;
  dropped: number;
  reconnects: number;
}

/** A link's stream broke (once per outage: the first failure after a healthy stream). */
export interface PeerLinkBroken {
  readonly address: string;
  /** The gRPC status code the stream ended with. */
  readonly code: number;
  readonly details: string;
}

export interface PeerLinkOptions {
  /** Told once per outage; further failures of the same outage only count in stats. */
  readonly onBroken?: (event: PeerLinkBroken) => void;
}

export class PeerLink {
  private readonly client: GeneratedPeerClient;
  private stream: ClientWritableStream<PeerBatch> | null = null;
  private bulk: ClientWritableStream<PeerBatch> | null = null;
  /** Bulk streams opened so far (the current one's number). */
  private bulkNumber = 0;
  /** Settled when the bulk stream has room again or broke (true) — see `sendBulk`. */
  private bulkWaiters: Array<(broken: boolean) => void> = [];
  private queue: PeerMessage[] = [];
  private flushScheduled = false;
  private retryAt = 0;
  private closed = false;
  /** Consecutive streams that broke before PEER_STREAM_HEALTHY_MS. */
  private failures = 0;
  private readonly metadata: Metadata | null;
  readonly stats: PeerSendStats = { batches: 0, messages: 0, dropped: 0, reconnects: 0 };

  constructor(
    readonly address: string,
    private readonly self: NodeId,
    private readonly cluster: string,
    security: ChannelSecurity = {},
    private readonly options: PeerLinkOptions = {},
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

  /**
   * Sends one bulk message (a snapshot chunk) on the bulk stream, after the ones before it have
   * left the stream's buffer, and resolves with the stream's number. A transfer passes the
   * number its first message got with each later one: if that stream broke meanwhile (what was
   * in flight on it is lost), or the link closed, this rejects and the caller starts over.
   */
  async sendBulk(m: PeerMessage, streamNumber?: number): Promise<number> {
    if (this.closed) throw new PeerLinkClosedError(this.address);
    if (streamNumber !== undefined && (this.bulk === null || streamNumber !== this.bulkNumber)) {
      throw new PeerLinkClosedError(this.address);
    }
    let stream = this.bulk;
    if (stream === null) {
      this.bulkNumber++;
      const s = this.exchange(() => this.bulkBroken(s));
      s.on('drain', () => {
        if (this.bulk === s) this.wakeBulk(false);
      });
      this.bulk = s;
      stream = s;
    }
    const number = this.bulkNumber;
    if (stream.write({ from: this.self, cluster: this.cluster, messages: [m], checksum: 0 }))
      return number;
    const broken = await new Promise<boolean>((resolve) => this.bulkWaiters.push(resolve));
    if (broken) throw new PeerLinkClosedError(this.address);
    return number;
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.stream?.end();
    this.stream = null;
    const bulk = this.bulk;
    this.bulk = null;
    bulk?.end();
    this.wakeBulk(true);
    this.client.close();
  }

  private bulkBroken(stream: ClientWritableStream<PeerBatch>): void {
    if (this.bulk !== stream) return;
    this.bulk = null;
    this.wakeBulk(true);
  }

  private wakeBulk(broken: boolean): void {
    const waiters = this.bulkWaiters;
    this.bulkWaiters = [];
    for (const w of waiters) w(broken);
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
      let count = 1;
      let bytes = payloadBytes(this.queue[0]!);
      while (count < this.queue.length && count < PEER_BATCH_MESSAGES_MAX) {
        bytes += payloadBytes(this.queue[count]!);
        if (bytes > PEER_BATCH_PAYLOAD_BYTES_MAX) break;
        count++;
      }
      const messages = this.queue.splice(0, count);
      this.stats.batches++;
      this.stats.messages += messages.length;
      stream.write({ from: this.self, cluster: this.cluster, messages, checksum: 0 });
    }
  }

  private open(): ClientWritableStream<PeerBatch> | null {
    if (this.stream !== null) return this.stream;
    if (Date.now() < this.retryAt) return null;
    const openedAt = Date.now();
    const stream = this.exchange((err) => this.broken(stream, openedAt, err));
    this.stream = stream;
    return stream;
  }

  /** Opens an Exchange stream; `ended` hears of its end (the callback and 'error' may both). */
  private exchange(
    ended: (err: { code?: number; details?: string } | null) => void,
  ): ClientWritableStream<PeerBatch> {
    const stream = this.client.exchange(
      this.metadata?.clone() ?? new Metadata(),
      (err: { code?: number; details?: string } | null, _res?: ExchangeSummary) => ended(err),
    );
    stream.on('error', (err: { code?: number; details?: string }) => ended(err));
    return stream;
  }

  /** A stream ended (the callback and 'error' may both report it: the first one counts). */
  private broken(
    stream: ClientWritableStream<PeerBatch>,
    openedAt: number,
    err: { code?: number; details?: string } | null,
  ): void {
    if (this.stream !== stream) return;
    this.stream = null;
    this.stats.reconnects++;
    const now = Date.now();
    if (now - openedAt >= PEER_STREAM_HEALTHY_MS) this.failures = 0;
    this.failures++;
    this.retryAt = now + reconnectBackoffMs(this.failures);
    if (this.failures === 1 && !this.closed) {
      this.options.onBroken?.({
        address: this.address,
        code: err?.code ?? status.OK,
        details: err?.details ?? 'the peer ended the stream',
      });
    }
  }
}

/** Entry payload bytes a message carries (what makes a propose large; the rest is small). */
function payloadBytes(m: PeerMessage): number {
  if (m.body?.$case !== 'propose') return 0;
  let bytes = 0;
  for (const e of m.body.value.entries) bytes += e.payload.length;
  return bytes;
}

/** A bulk send to a peer whose link closed or whose bulk stream broke. */
export class PeerLinkClosedError extends Error {
  constructor(address: string) {
    super(`the bulk stream to ${address} closed`);
    this.name = 'PeerLinkClosedError';
  }
}

/** Backoff after the n-th consecutive failure (n >= 1), with ±20% jitter so links desynchronise. */
export function reconnectBackoffMs(failures: number, random: () => number = Math.random): number {
  const base = Math.min(
    PEER_RECONNECT_BACKOFF_MS_MAX,
    PEER_RECONNECT_BACKOFF_MS_MIN * 2 ** Math.min(failures - 1, 16),
  );
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** What the deserializer hands the handler for bytes that are not a PeerBatch (never throws). */
export class MalformedPeerBatch {
  constructor(readonly reason: string) {}
}

/** The checksum field's tag (field 4, wire type fixed32) and its encoded size with the value. */
const CHECKSUM_TAG = (4 << 3) | 5;
const CHECKSUM_FIELD_BYTES = 5;

/**
 * A batch's bytes on the wire: its encoding, then its `checksum` field (the CRC-32 of the bytes
 * before it) as the last field. The batch's own `checksum` is ignored.
 */
export function encodePeerBatch(batch: PeerBatch): Buffer {
  return withBatchChecksum(
    PeerBatch.encode(batch.checksum === 0 ? batch : { ...batch, checksum: 0 }).finish(),
  );
}

/** `body` followed by the checksum field that covers it (the wire form of encodePeerBatch). */
export function withBatchChecksum(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(body.length + CHECKSUM_FIELD_BYTES);
  out.set(body, 0);
  out[body.length] = CHECKSUM_TAG;
  out.writeUInt32LE(crc32(body), body.length + 1);
  return out;
}

/** A batch from the wire, or why it is refused (its checksum is last and matches; never throws). */
export function decodePeerBatch(bytes: Buffer): PeerBatch | MalformedPeerBatch {
  const end = bytes.length - CHECKSUM_FIELD_BYTES;
  if (end < 0 || bytes[end] !== CHECKSUM_TAG) {
    return new MalformedPeerBatch(`a frame of ${bytes.length} bytes does not end in its checksum`);
  }
  const want = bytes.readUInt32LE(end + 1);
  const got = crc32(bytes.subarray(0, end));
  if (got !== want) {
    return new MalformedPeerBatch(
      `a frame of ${bytes.length} bytes was damaged in transit (checksum ${got.toString(16)}, ` +
        `the sender's ${want.toString(16)})`,
    );
  }
  try {
    return PeerBatch.decode(bytes);
  } catch (err) {
    return new MalformedPeerBatch(
      `a frame of ${bytes.length} bytes is not a PeerBatch: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/**
 * The Peer service with the batch checksum (encodePeerBatch) and a request deserializer that
 * never throws (grpc-js: INTERNAL).
 */
export const PeerService = {
  exchange: {
    ...GeneratedPeerService.exchange,
    requestSerialize: encodePeerBatch,
    requestDeserialize: decodePeerBatch,
  },
} as const;

/** A Peer client whose batches carry their checksum (the generated one's do not). */
export const PeerClient = makeGenericClientConstructor(
  PeerService,
  'skv.peer.v1.Peer',
) as unknown as new (
  address: string,
  credentials: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => GeneratedPeerClient;

/** The receiving node's decision on one batch. */
/**
 * `wait`: the receiver is behind (a snapshot's chunks are written to disk as they come): the
 * stream reads nothing more until it settles, so HTTP/2 flow control holds the sender back.
 */
export type PeerVerdict =
  | { readonly ok: true; readonly wait?: Promise<void> }
  | { readonly ok: false; readonly reason: string };

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
  exchange: handleClientStreamingCall<PeerBatch | MalformedPeerBatch, ExchangeSummary>;
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
      /** `detail`: said to the sender only; the report keeps the stable reason (one per kind). */
      const refuse = (code: status, claimed: string, reason: string, detail = '') => {
        if (done) return;
        done = true;
        report({ claimed, certificateNames: names, remote, reason });
        callback({ code, details: `peer refused: ${reason}${detail === '' ? '' : `: ${detail}`}` });
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
      call.on('data', (batch: PeerBatch | MalformedPeerBatch) => {
        if (done) return;
        if (batch instanceof MalformedPeerBatch) {
          refuse(status.INVALID_ARGUMENT, '', 'a frame that is not a PeerBatch', batch.reason);
          return;
        }
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
        } catch (err) {
          // Malformed input never crashes the node: end the stream with a status (destroy()
          // would only drop the read side and leave the sender waiting).
          refuse(
            status.INVALID_ARGUMENT,
            batch.from,
            'an unreadable batch',
            err instanceof Error ? err.message : String(err),
          );
          return;
        }
        if (!verdict.ok) {
          refuse(status.PERMISSION_DENIED, batch.from, verdict.reason);
        } else if (verdict.wait !== undefined) {
          call.pause();
          const resume = () => {
            if (!done) call.resume();
          };
          verdict.wait.then(resume, resume);
        }
      });
      call.on('end', () => {
        if (done) return;
        done = true;
        callback(null, { batches: BigInt(batches) });
      });
    },
  };
}
