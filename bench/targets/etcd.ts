// The `etcd` target: the benchmark's operations against an etcd v3 cluster through the etcd3 npm
// client, connected to every member (the client picks a member at random per call, so requests
// spread over the cluster; a write that reaches a follower is forwarded to the leader by etcd).
//
// Rows: one etcd key per row (the 16-byte row key itself), the row's columns encoded in the value
// (bench/peers/row-codec.ts). Why not one key per column: a row write would then be a
// multi-key txn and a row read a range, two to N times the work of skv's one-request row calls,
// and with the one-column rows both layouts are the same single key anyway; one key per
// row keeps every operation one request. The cost lands on partial updates of multi-column
// rows, which need a read-modify-write (get + txn on mod_revision, retried a bounded number of
// times; giving up counts as `update-conflict`).
//
// Operations: read strong = a linearizable range get (etcd's default, through the leader's read
// index), timeline = a serializable get (the member's local state); update/insert = put;
// conditionalUpdate = linearizable get + txn that puts only if the key's mod_revision is still
// the one read (0: absent), failing with `version-mismatch` when it lost; scan = a range get
// from the start key with a limit. No client-side retries (fault handling is a no-op policy):
// every failure is counted, as for the other targets.

import {
  Etcd3,
  GRPCDeadlineExceededError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  type IKeyValue,
  type IOptions,
} from 'etcd3';
import { SkvError } from '../../src/core/errors.js';
import { coversRow, encodeFields, mergeRow } from '../peers/row-codec.js';
import type { BenchOps, BenchTarget, Field, ReadOptions } from '../target.js';

export interface EtcdTargetOptions {
  /** Client URLs of the members, e.g. http://127.0.0.1:2379. */
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  /** Columns every row has (the run's field count), to size scans and skip merges. */
  readonly columnsPerRow: number;
  readonly serverPids?: readonly number[];
  /** Extra facts for the report (the etcd version, where the cluster came from). */
  readonly facts?: Readonly<Record<string, string>>;
}

/** Read-modify-write attempts of a partial update before it counts as `update-conflict`. */
const PARTIAL_UPDATE_ATTEMPTS_MAX = 8;

/** What a conditional update read: the row and its mod_revision ("0" when absent). */
export interface EtcdReadToken {
  readonly key: string;
  readonly modRevision: string;
  readonly row: Buffer | null;
}

type FaultPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

const neverAborted = new AbortController().signal;
const noEvent = () => ({ dispose() {} });
/** No retries, no circuit breaker: each operation is one call and its failure is counted. */
const noopPolicy = {
  onSuccess: noEvent,
  onFailure: noEvent,
  execute: <T>(
    fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T,
    signal?: AbortSignal,
  ) => Promise.resolve(fn({ signal: signal ?? neverAborted })),
} as unknown as FaultPolicy;

function toError(err: unknown): Error {
  if (err instanceof SkvError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof GRPCDeadlineExceededError) return new SkvError('deadline-exceeded', message);
  if (err instanceof GRPCUnavailableError) return new SkvError('unavailable', message);
  if (err instanceof GRPCResourceExhastedError) return new SkvError('overloaded', message);
  const name = err instanceof Error ? err.constructor.name : 'unknown';
  return Object.assign(new Error(message), { code: `etcd-${name}` });
}

export class EtcdTarget implements BenchTarget {
  readonly name = 'etcd';
  readonly ops: EtcdOps;
  private client: Etcd3 | null = null;

  constructor(private readonly options: EtcdTargetOptions) {
    if (options.endpoints.length === 0) throw new SkvError('invalid-argument', 'no etcd endpoints');
    if (!(options.columnsPerRow >= 1)) {
      throw new SkvError('invalid-argument', 'columns per row must be >= 1');
    }
    this.ops = new EtcdOps(() => {
      if (this.client === null) throw new SkvError('closed', 'the etcd target is not set up');
      return this.client;
    }, options.columnsPerRow);
  }

  async setup(): Promise<void> {
    if (this.client !== null) return;
    const timeoutMs = this.options.timeoutMs;
    this.client = new Etcd3({
      hosts: [...this.options.endpoints],
      dialTimeout: timeoutMs,
      defaultCallOptions: (context) =>
        context.isStream ? {} : { deadline: Date.now() + timeoutMs },
      faultHandling: { host: () => noopPolicy, global: noopPolicy },
    });
    // The client picks a member per call at random: a few calls per member open the channels,
    // so that connection setup is not measured.
    const client = this.client;
    await Promise.all(
      Array.from({ length: 4 * this.options.endpoints.length }, () =>
        client.kv.range({ key: Buffer.from('warm-up') }),
      ),
    );
  }

  async teardown(): Promise<void> {
    this.client?.close();
    this.client = null;
  }

  serverPids(): readonly number[] {
    return this.options.serverPids ?? [];
  }

  describe(): Record<string, string> {
    return {
      target: this.name,
      servers: this.options.endpoints.join(','),
      path: 'etcd3 npm client, one gRPC call per operation, members picked at random',
      rows: 'one key per row, columns encoded in the value',
      timeoutMs: String(this.options.timeoutMs),
      ...this.options.facts,
    };
  }
}

export class EtcdOps implements BenchOps {
  constructor(
    private readonly client: () => Etcd3,
    private readonly columnsPerRow: number,
  ) {}

  async read(key: string, options: ReadOptions): Promise<boolean> {
    const kv = await this.get(key, options.consistency === 'timeline');
    return kv !== null;
  }

  update(key: string, fields: readonly Field[]): Promise<void> {
    return this.write(key, fields);
  }

  insert(key: string, fields: readonly Field[]): Promise<void> {
    return this.write(key, fields);
  }

  async conditionalUpdate(key: string, fields: readonly Field[]): Promise<void> {
    await this.writeIfUnchanged(await this.readForUpdate(key), fields);
  }

  async scan(startKey: string, count: number): Promise<number> {
    try {
      const res = await this.client().kv.range({
        key: Buffer.from(startKey),
        range_end: Buffer.from([0]), // every key >= key
        limit: count,
      });
      return res.kvs.length;
    } catch (err) {
      throw toError(err);
    }
  }

  /** The first half of a conditional update: a linearizable read of the row. */
  async readForUpdate(key: string): Promise<EtcdReadToken> {
    const kv = await this.get(key, false);
    return { key, modRevision: kv?.mod_revision ?? '0', row: kv?.value ?? null };
  }

  /** The second half: writes only if the row's mod_revision is still the one read. */
  async writeIfUnchanged(token: EtcdReadToken, fields: readonly Field[]): Promise<void> {
    if (!(await this.putIf(token, fields))) {
      throw new SkvError('version-mismatch', `row ${token.key} changed since it was read`);
    }
  }

  private async get(key: string, serializable: boolean): Promise<IKeyValue | null> {
    try {
      const res = await this.client().kv.range({ key: Buffer.from(key), serializable });
      return res.kvs[0] ?? null;
    } catch (err) {
      throw toError(err);
    }
  }

  private async putIf(token: EtcdReadToken, fields: readonly Field[]): Promise<boolean> {
    const key = Buffer.from(token.key);
    const value = coversRow(fields, this.columnsPerRow)
      ? encodeFields(fields)
      : mergeRow(token.row, fields);
    try {
      const res = await this.client().kv.txn({
        compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: token.modRevision }],
        success: [{ request_put: { key, value } }],
      });
      return res.succeeded;
    } catch (err) {
      throw toError(err);
    }
  }

  private async write(key: string, fields: readonly Field[]): Promise<void> {
    if (coversRow(fields, this.columnsPerRow)) {
      try {
        await this.client().kv.put({ key: Buffer.from(key), value: encodeFields(fields) });
      } catch (err) {
        throw toError(err);
      }
      return;
    }
    // A partial update of a multi-column row: merge into the current row, atomically.
    for (let attempt = 0; attempt < PARTIAL_UPDATE_ATTEMPTS_MAX; attempt++) {
      if (await this.putIf(await this.readForUpdate(key), fields)) return;
    }
    throw Object.assign(new Error(`row ${key}: ${PARTIAL_UPDATE_ATTEMPTS_MAX} conflicts`), {
      code: 'update-conflict',
    });
  }
}
