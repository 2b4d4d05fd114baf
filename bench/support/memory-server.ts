// The in-memory skv edge as a server: the real KvGrpcServer over MemoryBackend on 127.0.0.1.
// Started in-process by tests, or as a child process by the `memory` bench target so that the
// server's CPU is measured apart from the load generator's (run directly, it prints one JSON
// line `{"address": ..., "pid": ...}` on stdout and stops on SIGTERM, SIGINT or stdin's end).

import { pathToFileURL } from 'node:url';
import { KvGrpcServer } from '../../src/rpc/kv-server.js';
import { MemoryBackend } from './memory-backend.js';

export interface MemoryServer {
  readonly address: string;
  readonly backend: MemoryBackend;
  stop(): Promise<void>;
}

export async function startMemoryServer(options: { port?: number } = {}): Promise<MemoryServer> {
  const backend = new MemoryBackend();
  const server = await KvGrpcServer.start(backend, { host: '127.0.0.1', port: options.port ?? 0 });
  const address = `127.0.0.1:${server.port}`;
  backend.setAddress(address);
  server.setServing(true);
  let stopped: Promise<void> | null = null;
  return {
    address,
    backend,
    stop: () => {
      stopped ??= server.stop();
      return stopped;
    },
  };
}

async function runAsProcess(): Promise<void> {
  const port = Number(process.env.SKV_MEMORY_PORT ?? '0');
  const server = await startMemoryServer({ port });
  const stop = () => {
    server.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The parent holds our stdin: when it goes away, so do we (no orphaned servers).
  process.stdin.on('end', stop);
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ address: server.address, pid: process.pid })}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runAsProcess().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
