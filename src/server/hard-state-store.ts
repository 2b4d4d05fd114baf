// The replication core's hard state (src/replication/types.ts HardState: the fence epoch a
// candidacy promised and whether this replica is a voter), per range, in one small file per node.
//
// Durability contract: `write` resolves only once the new state is on disk (write a temp file,
// fsync it, rename it over the old one, fsync the directory), so a crash leaves either the old or
// the new file whole. Writes are serialised and coalesced: the state changes rarely (candidacy,
// promotion), never per client write.

import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CorruptionError } from '../core/errors.js';
import type { RangeId } from '../core/ids.js';
import type { HardState } from '../replication/types.js';
import { writeFileDurably } from './durable-file.js';

const FILE = 'hard-state.json';

export class HardStateStore {
  private state = new Map<RangeId, HardState>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly dir: string) {}

  static async open(dir: string): Promise<HardStateStore> {
    await mkdir(dir, { recursive: true });
    const store = new HardStateStore(dir);
    let text: string | null = null;
    try {
      text = await readFile(path.join(dir, FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== null) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new CorruptionError('hard state file does not parse', path.join(dir, FILE));
      }
      for (const [id, hs] of Object.entries(parsed as Record<string, HardState>)) {
        if (typeof hs?.fenceEpoch !== 'number' || typeof hs?.voter !== 'boolean') {
          throw new CorruptionError(`bad hard state for range ${id}`, path.join(dir, FILE));
        }
        store.state.set(Number(id), { fenceEpoch: hs.fenceEpoch, voter: hs.voter });
      }
    }
    return store;
  }

  get(rangeId: RangeId): HardState | null {
    return this.state.get(rangeId) ?? null;
  }

  /** Records the state and resolves once it is durable. */
  write(rangeId: RangeId, hs: HardState): Promise<void> {
    this.state.set(rangeId, hs);
    const snapshot = JSON.stringify(Object.fromEntries(this.state));
    this.writing = this.writing.then(() => this.persist(snapshot));
    return this.writing;
  }

  private async persist(text: string): Promise<void> {
    await writeFileDurably(this.dir, FILE, text);
  }
}
