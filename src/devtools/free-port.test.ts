import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, readEphemeralPortRange } from './local-zookeeper.js';

describe('freePort', () => {
  it('hands out distinct ports outside the ephemeral range that a server can listen on', async () => {
    const [lo, hi] = readEphemeralPortRange();
    const ports: number[] = [];
    for (let i = 0; i < 20; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    for (const p of ports) expect(p < lo || p > hi, `port ${p} outside ${lo}-${hi}`).toBe(true);
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.on('error', reject);
      server.listen(ports[0], '127.0.0.1', resolve);
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
