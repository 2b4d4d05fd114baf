// The `memory` target: the real gRPC edge over the in-memory backend, in a child process of its
// own (so that its CPU is measured apart from the load generator's), driven through the skv
// client library. It measures the ceiling of the client + edge path: no log, no replication.
//
// Lifecycle: setup() spawns the server and waits (bounded) for its address line; teardown()
// sends SIGTERM to that one PID and waits (bounded) for it to exit, then SIGKILLs it.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { SkvError } from '../../src/core/errors.js';
import type { BenchOps, BenchTarget } from '../target.js';
import { SkvTarget } from './skv.js';
import { UnaryTarget } from './skv-unary.js';

/** How the load generator talks to the server: the client library's streams or unary calls. */
export type ApiPath = 'session' | 'unary';

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

export class MemoryTarget implements BenchTarget {
  readonly name: string;
  private child: ChildProcess | null = null;
  private inner: SkvTarget | UnaryTarget | null = null;
  private address = '';

  constructor(private readonly options: { timeoutMs: number; api?: ApiPath }) {
    this.name = options.api === 'unary' ? 'memory-unary' : 'memory';
  }

  get ops(): BenchOps {
    if (this.inner === null) throw new SkvError('closed', 'the memory target is not set up');
    return this.inner.ops;
  }

  async setup(): Promise<void> {
    if (this.inner !== null) return;
    const fromSource = import.meta.url.endsWith('.ts');
    const script = fileURLToPath(
      new URL(`../support/memory-server.${fromSource ? 'ts' : 'js'}`, import.meta.url),
    );
    const args = fromSource ? ['--import', 'tsx', script] : [script];
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child = child;
    const line = await firstLine(child, START_TIMEOUT_MS).catch(async (err: unknown) => {
      await this.stopChild();
      throw err;
    });
    child.stdout?.resume(); // anything it prints later must not fill the pipe
    const { address } = JSON.parse(line) as { address: string };
    this.address = address;
    const pid = child.pid;
    const inner = {
      servers: [address],
      timeoutMs: this.options.timeoutMs,
      serverPids: pid === undefined ? [] : [pid],
      name: this.name,
    };
    this.inner = this.options.api === 'unary' ? new UnaryTarget(inner) : new SkvTarget(inner);
    await this.inner.setup();
  }

  async teardown(): Promise<void> {
    await this.inner?.teardown();
    this.inner = null;
    await this.stopChild();
  }

  serverPids(): readonly number[] {
    return this.inner?.serverPids() ?? [];
  }

  describe(): Record<string, string> {
    const path =
      this.options.api === 'unary' ? 'plain gRPC unary calls' : 'client library (Session streams)';
    return {
      target: this.name,
      servers: this.address,
      path: `${path} -> gRPC edge -> in-memory backend (child process)`,
      timeoutMs: String(this.options.timeoutMs),
    };
  }

  private async stopChild(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}

function firstLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new SkvError('deadline-exceeded', `memory server did not start in ${timeoutMs} ms`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      cleanup();
      resolve(buffered.slice(0, nl));
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new SkvError('unavailable', `memory server exited (${code}) before listening`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.on('exit', onExit);
  });
}
