// The `skv-unary` target: skv through plain gRPC unary calls (one call per operation, the
// generated KVClient, no client library), as a user of a plain gRPC client behind a Service would
// use it. Requests go round-robin to the given servers; any node accepts any request and
// forwards it (DESIGN.md §2). The report gives this path its own row: it is bounded by the
// per-call cost of grpc-js, not by skv.
//
// Errors: the `skv-reason` metadata when the server sent one, else the gRPC status as
// `deadline-exceeded` / `unavailable` / `grpc-<code>`.

import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { SkvError } from '../../src/core/errors.js';
import { GRPC_MESSAGE_BYTES_MAX } from '../../src/core/limits.js';
import { Consistency, KVClient } from '../../src/rpc/generated/skv/v1/kv.js';
import { reasonOf } from '../../src/rpc/status.js';
import type { BenchOps, BenchTarget, Field, ReadOptions } from '../target.js';

export interface UnaryTargetOptions {
  readonly servers: readonly string[];
  readonly timeoutMs: number;
  readonly serverPids?: readonly number[];
  /** The name in reports; "skv-unary" unless a wrapper (the in-memory target) says otherwise. */
  readonly name?: string;
}

type Callback<R> = (err: ServiceError | null, res: R) => void;
type UnaryFn<Q, R> = (req: Q, md: Metadata, opts: { deadline: number }, cb: Callback<R>) => unknown;

function toError(err: ServiceError): SkvError {
  const reason = reasonOf(err.metadata);
  if (reason !== null) return new SkvError(reason, err.details);
  switch (err.code) {
    case status.DEADLINE_EXCEEDED:
      return new SkvError('deadline-exceeded', err.details);
    case status.UNAVAILABLE:
      return new SkvError('unavailable', err.details);
    default:
      return Object.assign(new SkvError('internal', err.details), { code: `grpc-${err.code}` });
  }
}

const buf = (s: string) => Buffer.from(s, 'utf8');
/** A Buffer view of the value, without a copy. */
const view = (v: Uint8Array) =>
  Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);

export class UnaryTarget implements BenchTarget {
  readonly name: string;
  readonly ops: BenchOps;
  private clients: KVClient[] = [];
  private next = 0;

  constructor(private readonly options: UnaryTargetOptions) {
    if (options.servers.length === 0) throw new SkvError('invalid-argument', 'no servers given');
    this.name = options.name ?? 'skv-unary';
    this.ops = new UnaryOps(this);
  }

  async setup(): Promise<void> {
    if (this.clients.length > 0) return;
    this.clients = this.options.servers.map(
      (address) =>
        new KVClient(address, credentials.createInsecure(), {
          'grpc.max_receive_message_length': GRPC_MESSAGE_BYTES_MAX,
          'grpc.max_send_message_length': GRPC_MESSAGE_BYTES_MAX,
        }),
    );
    // One cheap call per server so that connection setup is not measured.
    await Promise.all(
      this.clients.map((c) => this.call(c.rangeMap.bind(c) as UnaryFn<object, unknown>, {})),
    );
  }

  async teardown(): Promise<void> {
    for (const c of this.clients) c.close();
    this.clients = [];
  }

  serverPids(): readonly number[] {
    return this.options.serverPids ?? [];
  }

  describe(): Record<string, string> {
    return {
      target: this.name,
      servers: this.options.servers.join(','),
      path: 'plain gRPC unary calls (one per operation)',
      timeoutMs: String(this.options.timeoutMs),
    };
  }

  get timeoutMs(): number {
    return this.options.timeoutMs;
  }

  client(): KVClient {
    const c = this.clients[this.next++ % this.clients.length];
    if (c === undefined) throw new SkvError('closed', 'the skv-unary target is not set up');
    return c;
  }

  call<Q, R>(fn: UnaryFn<Q, R>, req: Q): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      fn(req, new Metadata(), { deadline: Date.now() + this.options.timeoutMs }, (err, res) =>
        err ? reject(toError(err)) : resolve(res),
      );
    });
  }
}

class UnaryOps implements BenchOps {
  constructor(private readonly t: UnaryTarget) {}

  async read(key: string, options: ReadOptions): Promise<boolean> {
    const c = this.t.client();
    const consistency =
      options.consistency === 'timeline' ? Consistency.TIMELINE : Consistency.STRONG;
    const only = options.columns.length === 1 ? options.columns[0] : undefined;
    if (only !== undefined) {
      const r = await this.t.call(c.get.bind(c) as UnaryFn<object, { found: boolean }>, {
        key: buf(key),
        column: buf(only),
        consistency,
      });
      return r.found;
    }
    const r = await this.t.call(c.readRow.bind(c) as UnaryFn<object, { cells: unknown[] }>, {
      key: buf(key),
      columns: options.columns.map(buf),
      consistency,
    });
    return r.cells.length > 0;
  }

  update(key: string, fields: readonly Field[]): Promise<void> {
    return this.write(key, fields, null);
  }

  insert(key: string, fields: readonly Field[]): Promise<void> {
    return this.write(key, fields, null);
  }

  async conditionalUpdate(key: string, fields: readonly Field[]): Promise<void> {
    const c = this.t.client();
    const r = await this.t.call(
      c.readRow.bind(c) as UnaryFn<object, { cells: { column: Buffer; version: bigint }[] }>,
      { key: buf(key), columns: fields.map((f) => buf(f.column)), consistency: Consistency.STRONG },
    );
    const versions = new Map(r.cells.map((cell) => [cell.column.toString('utf8'), cell.version]));
    await this.write(key, fields, versions);
  }

  async scan(startKey: string, count: number): Promise<number> {
    const c = this.t.client();
    const stream = c.scan(
      { start: buf(startKey), end: Buffer.alloc(0), limit: count, consistency: 0, columns: [] },
      new Metadata(),
      { deadline: Date.now() + this.t.timeoutMs },
    );
    let rows = 0;
    try {
      for await (const msg of stream) rows += (msg as { rows: unknown[] }).rows.length;
    } catch (err) {
      throw toError(err as ServiceError);
    }
    return rows;
  }

  private async write(
    key: string,
    fields: readonly Field[],
    versions: Map<string, bigint> | null,
  ): Promise<void> {
    const c = this.t.client();
    const expected = (f: Field) =>
      versions === null ? {} : { expectedVersion: versions.get(f.column) ?? 0n };
    const only = fields.length === 1 ? fields[0] : undefined;
    if (only !== undefined) {
      await this.t.call(c.put.bind(c) as UnaryFn<object, unknown>, {
        key: buf(key),
        column: buf(only.column),
        value: view(only.value),
        ...expected(only),
      });
      return;
    }
    await this.t.call(c.writeRow.bind(c) as UnaryFn<object, unknown>, {
      key: buf(key),
      writes: fields.map((f) => ({
        column: buf(f.column),
        value: view(f.value),
        ...expected(f),
      })),
    });
  }
}
