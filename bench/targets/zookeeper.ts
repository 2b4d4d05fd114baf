// The `zookeeper` target: the benchmark's operations against a ZooKeeper ensemble through
// node-zookeeper-client, with one client session per server (each connected to that server
// only) and requests spread round-robin over the sessions, so that reads are served by every
// server (the leader and the followers) as ZooKeeper's clients spread them in practice.
//
// Rows: one znode per row, `<root>/<row key>`, the row's columns encoded in its data
// (bench/peers/row-codec.ts; why, see bench/targets/etcd.ts). A partial update of a multi-column
// row is getData + setData with the version read, retried a bounded number of times.
//
// Operations:
// - read strong = sync + getData on the same session, pipelined (ZooKeeper's way to read
//   linearizably-ish: the server catches up with the leader before it serves the session's
//   next request; the sessions' FIFO order makes the getData wait for the sync, as the Java
//   client's `sync(path, cb); getData(path, ...)` idiom does). node-zookeeper-client has no sync
//   call, so `zkSync` below sends the real opcode 9 (SyncRequest {path}) through the client's
//   own connection manager: its reply (SyncResponse {path}) has CreateResponse's layout, which is
//   how the client is told to parse it.
// - read timeline = getData at the session's server (a follower read for 2 sessions of 3).
// - update = setData(version -1), creating the znode when missing; insert = create, or setData
//   when it exists.
// - conditionalUpdate = getData + setData(version read) (create when absent); BAD_VERSION or a
//   lost create race is `version-mismatch`. The getData is not preceded by a sync: the version
//   check happens at the leader, so a stale read can only make the put lose, never corrupt.
// - scan = getChildren(root), sorted, then getData of the first `count` children >= the start
//   key: ZooKeeper has no ordered range read, so a scan costs a listing of every row.
//
// No per-request deadline exists in the client: each call is bounded here by a timer and
// rejects `deadline-exceeded` (the request may still complete at the server). The client's own
// retries are off (retries: 0): every failure is counted.

import { createRequire } from 'node:module';
import zookeeper, { type Client, type Stat } from 'node-zookeeper-client';
import { SkvError } from '../../src/core/errors.js';
import { coversRow, encodeFields, mergeRow } from '../peers/row-codec.js';
import type { BenchOps, BenchTarget, Field, ReadOptions } from '../target.js';

export interface ZooKeeperTargetOptions {
  /** One `host:port` per server; one session is opened to each. */
  readonly connectStrings: readonly string[];
  readonly timeoutMs: number;
  readonly columnsPerRow: number;
  /** The parent znode of the rows (created if missing). */
  readonly root?: string;
  readonly sessionTimeoutMs?: number;
  readonly serverPids?: readonly number[];
  readonly facts?: Readonly<Record<string, string>>;
}

const ROOT_DEFAULT = '/skv-bench';
const PARTIAL_UPDATE_ATTEMPTS_MAX = 8;
/** Rows listed by a scan at most (getChildren returns every child; this bounds the sort). */
const SCAN_CHILDREN_MAX = 10_000_000;

/** What a conditional update read: the row and its znode version (-1: absent). */
export interface ZooKeeperReadToken {
  readonly key: string;
  readonly version: number;
  readonly row: Buffer | null;
}

// ---- sync: opcode 9 through node-zookeeper-client's connection manager ----------------------

interface JuteRecord {
  specification: { name: string; type: string }[];
  [field: string]: unknown;
}
interface JuteModule {
  OP_CODES: { SYNC: number; CREATE: number };
  protocol: { RequestHeader: new () => JuteRecord; CreateResponse: new () => JuteRecord };
  Request: new (header: JuteRecord, payload: JuteRecord) => unknown;
}
interface ConnectionManager {
  queue(request: unknown, callback: (err: unknown) => void): void;
}

const jute = createRequire(import.meta.url)(
  'node-zookeeper-client/lib/jute/index.js',
) as JuteModule;
// The header goes on the wire as {xid, SYNC}; the client reads `type` to pick the reply's parser.
const SYNC_HEADER_SPEC = [
  { name: 'xid', type: 'int' },
  { name: 'wireType', type: 'int' },
];

/** ZooKeeper's sync(path): resolves when the session's server has caught up with the leader. */
export function zkSync(client: Client, path: string, callback: (err: unknown) => void): void {
  const header = new jute.protocol.RequestHeader();
  header.specification = SYNC_HEADER_SPEC;
  header.wireType = jute.OP_CODES.SYNC;
  header.type = jute.OP_CODES.CREATE; // SyncResponse {path} has CreateResponse's layout
  const payload = new jute.protocol.CreateResponse(); // SyncRequest {path}: the same layout
  payload.path = path;
  const manager = (client as unknown as { connectionManager: ConnectionManager }).connectionManager;
  manager.queue(new jute.Request(header, payload), callback);
}

// ---- errors ---------------------------------------------------------------------------------

const E = zookeeper.Exception;

function toError(err: unknown): Error {
  if (err instanceof SkvError) return err;
  if (err instanceof E) {
    const message = err.toString();
    switch (err.getCode()) {
      case E.BAD_VERSION:
        return new SkvError('version-mismatch', message);
      case E.NO_NODE:
        return new SkvError('not-found', message);
      case E.NODE_EXISTS:
        return new SkvError('already-exists', message);
      case E.CONNECTION_LOSS:
      case E.SESSION_EXPIRED:
        return new SkvError('unavailable', message);
      case E.OPERATION_TIMEOUT:
        return new SkvError('deadline-exceeded', message);
      default:
        return Object.assign(new Error(message), { code: `zk-${err.getName()}` });
    }
  }
  return Object.assign(new Error(String(err)), { code: 'zk-client' });
}

const isCode = (err: unknown, code: number) => err instanceof E && err.getCode() === code;

// ---- the target -----------------------------------------------------------------------------

export class ZooKeeperTarget implements BenchTarget {
  readonly name = 'zookeeper';
  readonly ops: ZooKeeperOps;
  private clients: Client[] = [];
  private next = 0;
  private readonly root: string;

  constructor(private readonly options: ZooKeeperTargetOptions) {
    if (options.connectStrings.length === 0) {
      throw new SkvError('invalid-argument', 'no ZooKeeper servers given');
    }
    if (!(options.columnsPerRow >= 1)) {
      throw new SkvError('invalid-argument', 'columns per row must be >= 1');
    }
    this.root = options.root ?? ROOT_DEFAULT;
    this.ops = new ZooKeeperOps(
      () => this.pick(),
      this.root,
      options.timeoutMs,
      options.columnsPerRow,
    );
  }

  async setup(): Promise<void> {
    if (this.clients.length > 0) return;
    const timeoutMs = this.options.timeoutMs;
    try {
      for (const connectString of this.options.connectStrings) {
        const client = zookeeper.createClient(connectString, {
          sessionTimeout: this.options.sessionTimeoutMs ?? 30_000,
          spinDelay: 100,
          retries: 0,
        });
        this.clients.push(client);
        await withDeadline(
          new Promise<void>((resolve) => {
            client.once('connected', () => resolve());
            client.connect();
          }),
          timeoutMs,
          `connecting to ZooKeeper at ${connectString}`,
        );
      }
      const first = this.clients[0];
      if (first !== undefined) {
        await withDeadline(
          new Promise<void>((resolve, reject) =>
            first.mkdirp(this.root, (err) => (err ? reject(toError(err)) : resolve())),
          ),
          timeoutMs,
          `creating ${this.root}`,
        );
      }
    } catch (err) {
      await this.teardown();
      throw err;
    }
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
      servers: this.options.connectStrings.join(','),
      path: 'node-zookeeper-client, one session per server, requests round-robin',
      rows: `one znode per row under ${this.root}, columns encoded in the data`,
      timeoutMs: String(this.options.timeoutMs),
      ...this.options.facts,
    };
  }

  private pick(): Client {
    const c = this.clients[this.next++ % this.clients.length];
    if (c === undefined) throw new SkvError('closed', 'the zookeeper target is not set up');
    return c;
  }
}

export class ZooKeeperOps implements BenchOps {
  constructor(
    private readonly client: () => Client,
    private readonly root: string,
    private readonly timeoutMs: number,
    private readonly columnsPerRow: number,
  ) {}

  async read(key: string, options: ReadOptions): Promise<boolean> {
    const c = this.client();
    const path = this.path(key);
    try {
      if (options.consistency === 'strong') {
        const synced = this.call<void>((done) => zkSync(c, path, (err) => done(err)));
        const [, got] = await Promise.all([synced, this.getData(c, path)]);
        return got !== null;
      }
      return (await this.getData(c, path)) !== null;
    } catch (err) {
      throw toError(err);
    }
  }

  async update(key: string, fields: readonly Field[]): Promise<void> {
    const c = this.client();
    const path = this.path(key);
    try {
      if (coversRow(fields, this.columnsPerRow)) {
        await this.setOrCreate(c, path, encodeFields(fields));
        return;
      }
      for (let attempt = 0; attempt < PARTIAL_UPDATE_ATTEMPTS_MAX; attempt++) {
        if (await this.putIf(c, await this.readWith(c, key), fields)) return;
      }
    } catch (err) {
      throw toError(err);
    }
    throw Object.assign(new Error(`row ${key}: ${PARTIAL_UPDATE_ATTEMPTS_MAX} conflicts`), {
      code: 'update-conflict',
    });
  }

  async insert(key: string, fields: readonly Field[]): Promise<void> {
    const c = this.client();
    const path = this.path(key);
    const data = encodeFields(fields);
    try {
      await this.create(c, path, data);
    } catch (err) {
      if (!isCode(err, E.NODE_EXISTS)) throw toError(err);
      await this.setData(c, path, data, -1).catch((e: unknown) => {
        throw toError(e);
      });
    }
  }

  async conditionalUpdate(key: string, fields: readonly Field[]): Promise<void> {
    const c = this.client();
    await this.writeIfUnchanged(await this.readForUpdate(key, c), fields, c);
  }

  async scan(startKey: string, count: number): Promise<number> {
    const c = this.client();
    try {
      const children = await this.call<string[]>((done) =>
        c.getChildren(this.root, (err, names) => done(err, names)),
      );
      if (children.length > SCAN_CHILDREN_MAX) {
        throw new SkvError('overloaded', `${children.length} rows to list for one scan`);
      }
      children.sort();
      let lo = 0;
      let hi = children.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((children[mid] ?? '') < startKey) lo = mid + 1;
        else hi = mid;
      }
      const picked = children.slice(lo, lo + count);
      const rows = await Promise.all(picked.map((name) => this.getData(c, this.path(name))));
      return rows.filter((r) => r !== null).length;
    } catch (err) {
      throw toError(err);
    }
  }

  /** The first half of a conditional update: getData at the session's server. */
  async readForUpdate(key: string, client: Client = this.client()): Promise<ZooKeeperReadToken> {
    try {
      return await this.readWith(client, key);
    } catch (err) {
      throw toError(err);
    }
  }

  /** The second half: setData with the version read (create when it was absent). */
  async writeIfUnchanged(
    token: ZooKeeperReadToken,
    fields: readonly Field[],
    client: Client = this.client(),
  ): Promise<void> {
    let won: boolean;
    try {
      won = await this.putIf(client, token, fields);
    } catch (err) {
      throw toError(err);
    }
    if (!won) throw new SkvError('version-mismatch', `row ${token.key} changed since it was read`);
  }

  private path(key: string): string {
    return `${this.root}/${key}`;
  }

  private async readWith(c: Client, key: string): Promise<ZooKeeperReadToken> {
    const got = await this.getData(c, this.path(key));
    return got === null
      ? { key, version: -1, row: null }
      : { key, version: got.stat.version, row: got.data };
  }

  /** Resolves false when the version check (or the create race) was lost. */
  private async putIf(c: Client, token: ZooKeeperReadToken, fields: readonly Field[]) {
    const path = this.path(token.key);
    const data = coversRow(fields, this.columnsPerRow)
      ? encodeFields(fields)
      : mergeRow(token.row, fields);
    try {
      if (token.version < 0) await this.create(c, path, data);
      else await this.setData(c, path, data, token.version);
      return true;
    } catch (err) {
      if (isCode(err, E.BAD_VERSION) || isCode(err, E.NODE_EXISTS) || isCode(err, E.NO_NODE)) {
        return false;
      }
      throw err;
    }
  }

  private async setOrCreate(c: Client, path: string, data: Buffer): Promise<void> {
    try {
      await this.setData(c, path, data, -1);
    } catch (err) {
      if (!isCode(err, E.NO_NODE)) throw err;
      try {
        await this.create(c, path, data);
      } catch (e) {
        if (!isCode(e, E.NODE_EXISTS)) throw e;
        await this.setData(c, path, data, -1);
      }
    }
  }

  /** The znode's data and stat; null when it does not exist. */
  private getData(c: Client, path: string): Promise<{ data: Buffer; stat: Stat } | null> {
    return this.call((done) =>
      c.getData(path, (err, data, stat) => {
        if (isCode(err, E.NO_NODE)) done(null, null);
        else done(err, { data, stat });
      }),
    );
  }

  private setData(c: Client, path: string, data: Buffer, version: number): Promise<Stat> {
    return this.call((done) => c.setData(path, data, version, (err, stat) => done(err, stat)));
  }

  private create(c: Client, path: string, data: Buffer): Promise<string> {
    return this.call((done) =>
      c.create(path, data, zookeeper.CreateMode.PERSISTENT, (err, created) => done(err, created)),
    );
  }

  /** A callback call as a promise, bounded by the per-operation deadline. */
  private call<T>(start: (done: (err: unknown, value?: T) => void) => void): Promise<T> {
    return withDeadline(
      new Promise<T>((resolve, reject) =>
        start((err, value) => (err ? reject(err) : resolve(value as T))),
      ),
      this.timeoutMs,
      'ZooKeeper request',
    );
  }
}

function withDeadline<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new SkvError('deadline-exceeded', `${what}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
