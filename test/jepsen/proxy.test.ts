// The Jepsen link proxy must delay bytes without reordering them: it once held each chunk on its
// own timer, which reordered chunks that got the same due time, so a delayed link corrupted the
// HTTP/2 stream between two nodes (a peer message with a damaged entry reached a node's log).

import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../src/devtools/local-zookeeper.js';
import { LinkProxy } from './proxy.js';

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Counts bytes received and the places where the sequence 0,1,2,… (mod 256) breaks. */
async function countingSink(): Promise<{
  port: number;
  done: Promise<{ bytes: number; breaks: number }>;
}> {
  let resolveDone: (r: { bytes: number; breaks: number }) => void = () => {};
  const done = new Promise<{ bytes: number; breaks: number }>((r) => {
    resolveDone = r;
  });
  const server = net.createServer((s) => {
    let expect = 0;
    let breaks = 0;
    let bytes = 0;
    s.on('data', (d: Buffer) => {
      for (const x of d) {
        if (x !== (expect & 0xff)) {
          breaks++;
          expect = x;
        }
        expect++;
        bytes++;
      }
    });
    s.on('end', () => resolveDone({ bytes, breaks }));
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port, done };
}

describe('jepsen link proxy', () => {
  it('a delayed link delivers every byte, in order', async () => {
    const sink = await countingSink();
    const listen = await freePort();
    const proxy = new LinkProxy(
      'test',
      { host: '127.0.0.1', port: listen },
      { host: '127.0.0.1', port: sink.port },
      '127.0.0.1',
    );
    await proxy.start();
    cleanups.push(() => proxy.stop());
    proxy.setMode({ kind: 'delay', ms: 200 });
    const client = net.connect(listen, '127.0.0.1');
    cleanups.push(() => {
      client.destroy();
    });
    await new Promise<void>((r) => client.once('connect', () => r()));
    // Many writes of varied size, some in one turn of the event loop, for 1.5 s (bounded).
    let sent = 0;
    const startMs = Date.now();
    for (let i = 0; i < 20_000 && Date.now() - startMs < 1500; i++) {
      const chunk = Buffer.alloc(500 + ((i * 7919) % 2500));
      for (let j = 0; j < chunk.length; j++) chunk[j] = (sent + j) & 0xff;
      sent += chunk.length;
      client.write(chunk);
      if (i % 3 === 0) await new Promise((r) => setTimeout(r, 1));
      else await new Promise((r) => setImmediate(r));
    }
    // Held chunks go out within the delay (+25 %); the proxy drops what it holds when a side closes.
    await new Promise((r) => setTimeout(r, 600));
    client.end();
    const got = await sink.done;
    expect(sent).toBeGreaterThan(100_000);
    expect(got.bytes).toBe(sent);
    expect(got.breaks).toBe(0);
  });
});
