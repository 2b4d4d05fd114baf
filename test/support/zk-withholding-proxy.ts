// Test-only TCP proxy in front of ZooKeeper. Two faults:
// - withhold: models the reported "withheld reply": after the first server frame (the connect
//   response), bytes from the server are held back until the client sends something more (its
//   next request or ping), then released. A lone request's reply then waits for the session's
//   next ping unless the client nudges. Two scopes: `all` (default) holds every byte, watch
//   notifications and ping replies too; `replies` holds only replies to requests (frames whose
//   xid is not -1, a notification, or -2, a ping) — the reported behaviour — and passes the
//   others at once unless something is already held (then they queue behind it: the order of
//   the stream is kept).
// - partitioned: a network partition: every byte in both directions is dropped, connections
//   stay open (new ones are accepted and black-holed too). The server keeps running, so it
//   expires the sessions behind the proxy exactly as it would in production.

import net from 'node:net';

export interface WithholdingProxy {
  readonly connectString: string;
  /** Set to false to pass everything through at once. */
  withhold: boolean;
  partitioned: boolean;
  close(): Promise<void>;
}

/** Frames the server sends with these xids are not replies to a request. */
const XID_NOTIFICATION = -1;
const XID_PING = -2;
/** A frame longer than this is not ZooKeeper's (jute.maxbuffer is 1 MiB by default). */
const FRAME_BYTES_MAX = 16 * 1024 * 1024;

export async function startWithholdingProxy(
  target: string,
  options: { scope?: 'all' | 'replies' } = {},
): Promise<WithholdingProxy> {
  const scope = options.scope ?? 'all';
  const [host, portText] = target.split(':');
  const sockets = new Set<net.Socket>();
  const state = { withhold: true, partitioned: false };
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: host ?? '127.0.0.1', port: Number(portText) });
    sockets.add(client);
    sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let held: Buffer[] = [];
    let firstReplySeen = false;
    const release = (): void => {
      if (held.length > 0) client.write(Buffer.concat(held));
      held = [];
    };
    // `replies` scope: whole frames (4-byte length, then the reply header's xid).
    let pending: Buffer = Buffer.alloc(0);
    const frames = (chunk: Buffer): void => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const length = pending.readInt32BE(0);
        if (length < 0 || length > FRAME_BYTES_MAX) {
          end(); // not ZooKeeper's protocol: stop, rather than pass or hold garbage
          return;
        }
        if (pending.length < 4 + length) return;
        const frame = pending.subarray(0, 4 + length);
        pending = pending.subarray(4 + length);
        const xid = length >= 4 ? frame.readInt32BE(4) : 0;
        const reply = xid !== XID_NOTIFICATION && xid !== XID_PING;
        if (!firstReplySeen || !state.withhold || (!reply && held.length === 0)) {
          firstReplySeen = true;
          client.write(frame);
        } else {
          held.push(frame);
        }
      }
    };
    upstream.on('data', (chunk: Buffer) => {
      if (state.partitioned) return;
      if (scope === 'replies') {
        frames(chunk);
        return;
      }
      if (!firstReplySeen || !state.withhold) {
        firstReplySeen = true;
        client.write(chunk);
        return;
      }
      held.push(chunk);
    });
    client.on('data', (chunk: Buffer) => {
      if (state.partitioned) return;
      release();
      upstream.write(chunk);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    connectString: `127.0.0.1:${port}`,
    get withhold() {
      return state.withhold;
    },
    set withhold(value: boolean) {
      state.withhold = value;
    },
    get partitioned() {
      return state.partitioned;
    },
    set partitioned(value: boolean) {
      state.partitioned = value;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
