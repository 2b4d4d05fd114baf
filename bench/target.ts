// The port every benchmarked datastore implements (skv now; etcd and ZooKeeper later), so that
// the same workload code, measurement and reports run against each of them.
//
// Contract: an operation resolves when the datastore has answered (for a write: acknowledged it
// as durable by its own definition) and rejects with an error whose `code` (a string; SkvError's
// codes for skv) classifies the failure. A read of a missing row resolves `false`, never throws;
// a conditional update that loses its race rejects with code `version-mismatch`.

export type ReadConsistency = 'strong' | 'timeline';

/** One column of a row: names are text, values opaque bytes. */
export interface Field {
  readonly column: string;
  readonly value: Uint8Array;
}

export interface ReadOptions {
  readonly consistency: ReadConsistency;
  /** Columns to read; empty: the whole row. */
  readonly columns: readonly string[];
}

export interface BenchOps {
  /** Resolves with whether the row exists. */
  read(key: string, options: ReadOptions): Promise<boolean>;
  /** Overwrites the given columns of an existing row. */
  update(key: string, fields: readonly Field[]): Promise<void>;
  /** Writes a new row with all its columns. */
  insert(key: string, fields: readonly Field[]): Promise<void>;
  /**
   * Read + conditional put (YCSB F's read-modify-write, the paper's conditional put): reads the
   * row strongly, then writes `fields` only if they are unchanged since that read.
   */
  conditionalUpdate(key: string, fields: readonly Field[]): Promise<void>;
  /** Reads up to `count` rows from `startKey` in key order; resolves with the rows read. */
  scan(startKey: string, count: number): Promise<number>;
}

export interface BenchTarget {
  /** A short name for reports ("skv", "etcd", "zookeeper", "memory"). */
  readonly name: string;
  readonly ops: BenchOps;
  /** Connects (and for embedded targets starts the servers); idempotent. */
  setup(): Promise<void>;
  /** Releases every connection and process the target started; idempotent. */
  teardown(): Promise<void>;
  /** Server processes on this machine, for CPU and RSS accounting; empty when unknown. */
  serverPids(): readonly number[];
  /** Facts for the report (addresses, versions, settings). */
  describe(): Record<string, string>;
}

/** The stable code of an operation's failure, for the errors table. */
export function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string' && code.length > 0) return code;
    if (typeof code === 'number') return `code-${code}`;
  }
  return 'internal';
}
