// Test-only TCP proxy in front of ZooKeeper. Two faults:
// - withhold: models the reported "withheld reply": after the first server frame (the connect
//   response), bytes from the server are held back until the client sends something more (its
//   next request or ping), then released. A lone request's reply then waits for the session's
//   next ping unless the client nudges.
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

export async function startWithholdingProxy(target: string): Promise<WithholdingProxy> {
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
    upstream.on('data', (chunk: Buffer) => {
      if (state.partitioned) return;
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
