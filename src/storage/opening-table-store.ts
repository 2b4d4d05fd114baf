// A TableStore usable while the store it wraps is still opening: NodeStorage.range() is
// synchronous, and a range new to the node gets a database of its own, which opens
// asynchronously.
//
// Until the open completes nothing can have been written to the new (empty) database, so a
// snapshot taken before then is the empty snapshot: gets and iterators that name it find nothing.
// Everything else waits for the open; a failed open fails every call.

import type {
  TableBatch,
  TableIterateOptions,
  TableOp,
  TableSnapshot,
  TableStore,
} from './table-store.js';

const EMPTY_SNAPSHOT: TableSnapshot = { close: async () => {} };

export class OpeningTableStore implements TableStore {
  private store: TableStore | null = null;
  /** Resolves with the open store; rejects with the open's error. */
  readonly ready: Promise<TableStore>;

  constructor(opening: Promise<TableStore>) {
    this.ready = opening.then((s) => {
      this.store = s;
      return s;
    });
    this.ready.catch(() => {}); // every call reports it
  }

  async get(key: Buffer, snapshot?: TableSnapshot): Promise<Buffer | undefined> {
    if (snapshot === EMPTY_SNAPSHOT) return undefined;
    return await (this.store ?? (await this.ready)).get(key, snapshot);
  }

  snapshot(): TableSnapshot {
    return this.store?.snapshot() ?? EMPTY_SNAPSHOT;
  }

  async *iterate(options: TableIterateOptions): AsyncGenerator<Array<[Buffer, Buffer]>> {
    if (options.snapshot === EMPTY_SNAPSHOT) return;
    yield* (this.store ?? (await this.ready)).iterate(options);
  }

  async write(ops: readonly TableOp[]): Promise<void> {
    await (this.store ?? (await this.ready)).write(ops);
  }

  batch(): TableBatch {
    if (this.store !== null) return this.store.batch();
    // Rare (a flush of a range whose database is still opening): keep copies, write at once.
    const ops: TableOp[] = [];
    return {
      put: (key, value) => {
        ops.push({ type: 'put', key: Buffer.from(key), value: Buffer.from(value) });
      },
      del: (key) => {
        ops.push({ type: 'del', key: Buffer.from(key) });
      },
      write: () => this.write(ops),
      close: async () => {
        ops.length = 0;
      },
    };
  }

  async clear(gte: Buffer, lt: Buffer): Promise<void> {
    await (this.store ?? (await this.ready)).clear(gte, lt);
  }

  async flushToTables(): Promise<void> {
    await (this.store ?? (await this.ready)).flushToTables();
  }

  async close(): Promise<void> {
    const store = await this.ready.catch(() => null);
    await store?.close();
  }
}
