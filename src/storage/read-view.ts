// A consistent read view of one range: the memtable views (newest first) and a table snapshot,
// captured synchronously at one instant, so every cell read through it is the state at one LSN.
// The merge walks the layers in cell-key order; the newest layer holding a cell key wins and a
// tombstone hides the cell (FORMAT.md: memtable and LevelDB share one key order).
//
// Invariant relied on: at every instant, (table contents of the generation) overlaid by the
// memtables in the range's list equals the range state, because a frozen memtable leaves the
// list only after its flush batch is in the tables (overlap is harmless: same cells).

import { assert } from '../core/assert.js';
import type { Lsn } from '../core/lsn.js';
import { DATA_PREFIX_BYTES, decodeCellKey, decodeDataValue } from './encoding.js';
import type { MemCell, MemLayer } from './memtable.js';
import type { TableSnapshot, TableStore } from './table-store.js';

export interface ReadView {
  readonly lsn: Lsn;
  /** The range checksum at `lsn`; null when the store does not keep it (see RangeStore). */
  readonly checksum: bigint | null;
  readonly prefix: Buffer;
  /** Exclusive end of the generation's data keys. */
  readonly prefixEnd: Buffer;
  /** Newest first. */
  readonly layers: readonly MemLayer[];
  readonly tables: TableStore;
  readonly snapshot: TableSnapshot;
}

/** A live or deleted cell as the merge yields it; `cell.value === null` never escapes merge. */
export interface MergedCell {
  readonly cellKey: string;
  readonly cell: MemCell;
}

export function cellFromTable(cellKey: Uint8Array, value: Uint8Array): MemCell {
  const { key, column } = decodeCellKey(cellKey);
  const stored = decodeDataValue(value);
  return { key, column, value: stored.value, version: stored.version };
}

/** The newest state of one cell key in the view, or undefined if absent/deleted. */
export async function viewGet(view: ReadView, cellKey: string): Promise<MemCell | undefined> {
  for (const layer of view.layers) {
    const c = layer.get(cellKey);
    if (c !== undefined) return c.value === null ? undefined : c;
  }
  const k = Buffer.concat([view.prefix, Buffer.from(cellKey, 'latin1')]);
  const v = await view.tables.get(k, view.snapshot);
  return v === undefined ? undefined : cellFromTable(k.subarray(DATA_PREFIX_BYTES), v);
}

/** Live cells with from <= cellKey < to (to null: to the end of the range), in key order. */
export async function* viewCells(
  view: ReadView,
  from: string,
  to: string | null,
  tableBatchEntries = 256,
): AsyncGenerator<MergedCell> {
  for await (const cells of viewCellBatches(view, from, to, tableBatchEntries)) yield* cells;
}

/** Cells handed out per batch at most (a scan's caller may stop after the first). */
const MERGED_BATCH_CELLS_MAX = 256;

/**
 * The cells of `viewCells`, in batches: the merge runs synchronously between the table's batch
 * reads, so a caller awaits once per batch rather than twice per cell (a 500-cell scan paid about
 * a thousand promise hops for nothing).
 */
export async function* viewCellBatches(
  view: ReadView,
  from: string,
  to: string | null,
  tableBatchEntries = 256,
): AsyncGenerator<MergedCell[]> {
  const mems = view.layers.map((l) => l.entries(from, to));
  const heads = mems.map((g) => g.next());
  const tableIt = view.tables.iterate({
    gte: Buffer.concat([view.prefix, Buffer.from(from, 'latin1')]),
    lt: to === null ? view.prefixEnd : Buffer.concat([view.prefix, Buffer.from(to, 'latin1')]),
    snapshot: view.snapshot,
    batchEntries: tableBatchEntries,
  });
  let batch: Array<[Buffer, Buffer]> = [];
  let bi = 0;
  let tableDone = false;
  /** The cell key of the table batch's entry i; undefined past the batch (read the next one). */
  const tableKeyAt = (i: number): string | undefined =>
    i < batch.length ? batch[i]![0].subarray(DATA_PREFIX_BYTES).toString('latin1') : undefined;
  try {
    for (;;) {
      // The only await: the next table batch, when this one is used up.
      while (!tableDone && bi >= batch.length) {
        const r = await tableIt.next();
        if (r.done === true) tableDone = true;
        else {
          batch = r.value;
          bi = 0;
        }
      }
      let tableKey = tableKeyAt(bi);
      let out: MergedCell[] = [];
      // Merge while the table's next key is known (or the table is done).
      while (tableDone || bi < batch.length) {
        let best: string | undefined;
        for (const h of heads) {
          if (h.done !== true && (best === undefined || h.value[0] < best)) best = h.value[0];
        }
        if (tableKey !== undefined && (best === undefined || tableKey < best)) {
          const [k, v] = batch[bi]!;
          out.push({ cellKey: tableKey, cell: cellFromTable(k.subarray(DATA_PREFIX_BYTES), v) });
          bi++;
          tableKey = tableKeyAt(bi);
        } else {
          if (best === undefined) {
            if (out.length > 0) yield out;
            return;
          }
          let winner: MemCell | undefined;
          for (let i = 0; i < heads.length; i++) {
            const h = heads[i]!;
            if (h.done !== true && h.value[0] === best) {
              winner ??= h.value[1];
              heads[i] = mems[i]!.next();
            }
          }
          assert(winner !== undefined, 'merge winner');
          if (tableKey === best) {
            bi++;
            tableKey = tableKeyAt(bi);
          }
          if (winner.value !== null) out.push({ cellKey: best, cell: winner });
        }
        if (out.length >= MERGED_BATCH_CELLS_MAX) {
          yield out;
          out = [];
        }
      }
      if (out.length > 0) yield out;
    }
  } finally {
    await tableIt.return(undefined);
  }
}
