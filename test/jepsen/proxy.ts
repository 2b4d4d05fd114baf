// A small fault-injecting TCP proxy for the peer links (TESTING.md B.1 "Delay (no netem) →
// userspace fault proxy", etcd robustness' per-member proxy). One listener per directed link
// i→j; every accepted connection is piped to node j from node i's own address (so iptables
// partitions keyed on node addresses still apply to the proxied leg).
//
// Modes, switchable at any time:
//   pass       bytes flow
//   delay(ms)  every chunk is held `ms` (± 25 % jitter) before it is forwarded, order kept
//   blackhole  bytes are swallowed in both directions; the connections stay open, so peers only
//              notice by their deadlines/keepalives. Healing destroys the connections that lost
//              bytes (their HTTP/2 streams are corrupt) — to the peers: a connection that died.
//   reset      every connection is reset (RST) and new ones are reset at once
//   corrupt(p) bytes flow, but each chunk has one bit flipped with probability p: damage that
//              TCP's checksum would have missed (tests only: the schedules do not use it)
// Bounded: at most CONNECTIONS_MAX connections per link and QUEUE_BYTES_MAX held per direction.

import net from 'node:net';

export type ProxyMode =
  | { readonly kind: 'pass' }
  | { readonly kind: 'delay'; readonly ms: number }
  | { readonly kind: 'blackhole' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'corrupt'; readonly probability: number };

const CONNECTIONS_MAX = 256;
const QUEUE_BYTES_MAX = 64 * 1024 * 1024;

interface Pair {
  readonly a: net.Socket;
  readonly b: net.Socket;
  lostBytes: boolean;
}

export class LinkProxy {
  private mode: ProxyMode = { kind: 'pass' };
  private readonly pairs = new Set<Pair>();
  private server: net.Server | null = null;
  bytesForwarded = 0;
  chunksCorrupted = 0;

  constructor(
    readonly name: string,
    private readonly listen: { host: string; port: number },
    private readonly target: { host: string; port: number },
    private readonly localAddress: string,
  ) {}

  async start(): Promise<void> {
    const server = net.createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listen.port, this.listen.host, () => resolve());
    });
  }

  get currentMode(): ProxyMode {
    return this.mode;
  }

  setMode(mode: ProxyMode): void {
    const before = this.mode;
    this.mode = mode;
    if (mode.kind === 'reset') {
      for (const p of this.pairs) this.destroy(p, true);
    }
    if (before.kind === 'blackhole' && mode.kind !== 'blackhole') {
      for (const p of this.pairs) if (p.lostBytes) this.destroy(p, true);
    }
  }

  private accept(client: net.Socket): void {
    if (this.mode.kind === 'reset' || this.pairs.size >= CONNECTIONS_MAX) {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({
      host: this.target.host,
      port: this.target.port,
      localAddress: this.localAddress,
    });
    const pair: Pair = { a: client, b: upstream, lostBytes: false };
    this.pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    this.pipe(pair, client, upstream);
    this.pipe(pair, upstream, client);
    const close = () => this.destroy(pair, false);
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  }

  private pipe(pair: Pair, from: net.Socket, to: net.Socket): void {
    // One FIFO and one timer per direction: a chunk leaves at its due time, never before an
    // earlier chunk. (One timer per chunk reordered bytes: Node orders timers by its cached loop
    // time, so a later chunk given the same due time could fire first, and the HTTP/2 stream
    // carried bytes out of order: a corrupted peer message reached a node and killed it.)
    const held: { chunk: Buffer; due: number }[] = [];
    let queued = 0;
    let timer: NodeJS.Timeout | null = null;
    let lastDue = 0;
    const write = (chunk: Buffer) => {
      this.bytesForwarded += chunk.length;
      to.write(chunk);
    };
    const drain = () => {
      timer = null;
      const now = performance.now();
      while (held.length > 0 && held[0]!.due <= now) {
        const { chunk } = held.shift()!;
        queued -= chunk.length;
        if (!to.destroyed) write(chunk);
      }
      if (held.length > 0) timer = setTimeout(drain, Math.max(1, held[0]!.due - now));
    };
    const hold = (chunk: Buffer, ms: number) => {
      lastDue = Math.max(performance.now() + ms, lastDue);
      held.push({ chunk, due: lastDue });
      queued += chunk.length;
      if (timer === null) timer = setTimeout(drain, Math.max(0, held[0]!.due - performance.now()));
    };
    /** Now, unless chunks are still held (a delay just ended): then right behind them. */
    const forward = (chunk: Buffer) => {
      if (held.length === 0) write(chunk);
      else hold(chunk, 0);
    };
    from.on('data', (chunk: Buffer) => {
      const mode = this.mode;
      switch (mode.kind) {
        case 'pass':
          forward(chunk);
          return;
        case 'delay': {
          if (queued + chunk.length > QUEUE_BYTES_MAX) {
            this.destroy(pair, true);
            return;
          }
          hold(chunk, mode.ms + mode.ms * 0.25 * (Math.random() * 2 - 1));
          return;
        }
        case 'corrupt': {
          let out = chunk;
          if (Math.random() < mode.probability) {
            out = Buffer.from(chunk);
            out[Math.floor(Math.random() * out.length)]! ^= 1 << Math.floor(Math.random() * 8);
            this.chunksCorrupted++;
          }
          forward(out);
          return;
        }
        case 'blackhole':
          pair.lostBytes = true;
          return;
        case 'reset':
          this.destroy(pair, true);
          return;
      }
    });
    from.on('close', () => {
      if (timer !== null) clearTimeout(timer);
    });
  }

  private destroy(pair: Pair, reset: boolean): void {
    if (!this.pairs.delete(pair)) return;
    for (const s of [pair.a, pair.b]) {
      s.on('error', () => {});
      if (reset && !s.destroyed) s.resetAndDestroy();
      else s.destroy();
    }
  }

  async stop(): Promise<void> {
    for (const p of [...this.pairs]) this.destroy(p, false);
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
