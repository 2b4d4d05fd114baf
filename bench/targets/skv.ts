// The skv target: the benchmark's operations through the skv client library (src/client), i.e.
// over one Session stream per node with batching, routed to range leaders (DESIGN.md §2).
//
// A one-column row uses the single-column calls (get/put); several columns use the atomic row
// calls (readRow/writeRow). A conditional update reads strongly, then writes with `ifVersion`
// per column, so a concurrent writer in between makes it fail with `version-mismatch` (S§5.1).

import { connect, type SkvClient } from '../../src/client/index.js';
import { SkvError } from '../../src/core/errors.js';
import type { BenchOps, BenchTarget, Field, ReadOptions } from '../target.js';

export interface SkvTargetOptions {
  readonly servers: readonly string[];
  /** Per-operation deadline. */
  readonly timeoutMs: number;
  /** Server PIDs on this machine, for CPU accounting (skv dev prints them; else empty). */
  readonly serverPids?: readonly number[];
  /** The name in reports; "skv" unless a wrapper (the in-memory target) says otherwise. */
  readonly name?: string;
}

export class SkvTarget implements BenchTarget {
  readonly name: string;
  readonly ops: BenchOps;
  private client: SkvClient | null = null;

  constructor(private readonly options: SkvTargetOptions) {
    if (options.servers.length === 0) throw new SkvError('invalid-argument', 'no servers given');
    this.name = options.name ?? 'skv';
    this.ops = new SkvOps(() => {
      if (this.client === null) throw new SkvError('closed', 'the skv target is not set up');
      return this.client;
    }, options.timeoutMs);
  }

  async setup(): Promise<void> {
    if (this.client !== null) return;
    this.client = connect({ servers: this.options.servers, timeoutMs: this.options.timeoutMs });
    // Fetch the range map now, so that the first measured operation does not pay for it.
    await this.client.rangeMap({ timeoutMs: this.options.timeoutMs });
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
      servers: this.options.servers.join(','),
      path: 'client library (Session streams)',
      timeoutMs: String(this.options.timeoutMs),
    };
  }
}

class SkvOps implements BenchOps {
  constructor(
    private readonly client: () => SkvClient,
    private readonly timeoutMs: number,
  ) {}

  async read(key: string, options: ReadOptions): Promise<boolean> {
    const timeline = options.consistency === 'timeline';
    const c = this.client();
    const only = options.columns.length === 1 ? options.columns[0] : undefined;
    if (only !== undefined) {
      return (await c.get(key, only, { timeline, timeoutMs: this.timeoutMs })).found;
    }
    const cells = await c.readRow(key, options.columns, { timeline, timeoutMs: this.timeoutMs });
    return cells.length > 0;
  }

  async update(key: string, fields: readonly Field[]): Promise<void> {
    await this.write(key, fields);
  }

  async insert(key: string, fields: readonly Field[]): Promise<void> {
    await this.write(key, fields);
  }

  async conditionalUpdate(key: string, fields: readonly Field[]): Promise<void> {
    const c = this.client();
    const only = fields.length === 1 ? fields[0] : undefined;
    if (only !== undefined) {
      const got = await c.get(key, only.column, { timeoutMs: this.timeoutMs });
      await c.put(key, only.column, only.value, {
        ifVersion: got.found ? got.version : 0,
        timeoutMs: this.timeoutMs,
      });
      return;
    }
    const cells = await c.readRow(
      key,
      fields.map((f) => f.column),
      { timeoutMs: this.timeoutMs },
    );
    const versions = new Map(cells.map((cell) => [cell.column.toString('utf8'), cell.version]));
    await c.writeRow(
      key,
      fields.map((f) => ({
        column: f.column,
        value: f.value,
        ifVersion: versions.get(f.column) ?? 0,
      })),
      { timeoutMs: this.timeoutMs },
    );
  }

  async scan(startKey: string, count: number): Promise<number> {
    let rows = 0;
    for await (const _row of this.client().scan(startKey, null, {
      limit: count,
      timeoutMs: this.timeoutMs,
    })) {
      rows++;
    }
    return rows;
  }

  private async write(key: string, fields: readonly Field[]): Promise<void> {
    const c = this.client();
    const only = fields.length === 1 ? fields[0] : undefined;
    if (only !== undefined) {
      await c.put(key, only.column, only.value, { timeoutMs: this.timeoutMs });
      return;
    }
    await c.writeRow(
      key,
      fields.map((f) => ({ column: f.column, value: f.value })),
      { timeoutMs: this.timeoutMs },
    );
  }
}
