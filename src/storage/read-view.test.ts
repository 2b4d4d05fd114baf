import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lsn } from '../core/lsn.js';
import { dataPrefix, dataPrefixEnd, encodeCellKey, encodeDataValue } from './encoding.js';
import { Memtable } from './memtable.js';
import { type ReadView, viewCellBatches } from './read-view.js';
import type { TableIterateOptions, TableStore } from './table-store.js';

/** A table store that only iterates, over a sorted array, in batches of the asked size. */
function arrayTables(entries: Array<[Buffer, Buffer]>): TableStore {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a[0], b[0]));
  const unused = (): never => {
    throw new Error('not used by the merge');
  };
  return {
    async *iterate(o: TableIterateOptions) {
      const inRange = sorted.filter(
        ([k]) => Buffer.compare(k, o.gte) >= 0 && Buffer.compare(k, o.lt) < 0,
      );
      const n = o.batchEntries ?? 256;
      for (let i = 0; i < inRange.length; i += n) yield inRange.slice(i, i + n);
    },
    get: unused,
    snapshot: unused,
    write: unused,
    batch: unused,
    clear: unused,
    flushToTables: unused,
    levelStats: unused,
    close: unused,
  };
}

const row = (i: number) => Buffer.from(`r${String(i).padStart(3, '0')}`);
const col = Buffer.from('c');

describe('viewCellBatches', () => {
  it('merges tables and memtables (newest wins, tombstones hide) across table batch boundaries', async () => {
    // Each of 60 row keys is absent, or in the tables, the older memtable and/or the newer one
    // (a layer's cell a tombstone or not); table batches of 1-5 entries.
    const layer = fc.constantFrom('absent', 'live', 'tombstone');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.boolean(), layer, layer), { minLength: 60, maxLength: 60 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 59 }),
        async (rows, batchEntries, fromRow) => {
          const prefix = dataPrefix(1, 1);
          const tables: Array<[Buffer, Buffer]> = [];
          const older = new Memtable(7);
          const newer = new Memtable(5);
          const want: string[] = [];
          rows.forEach(([inTables, inOlder, inNewer], i) => {
            const ck = encodeCellKey(row(i), col);
            const key = ck.toString('latin1');
            if (inTables)
              tables.push([Buffer.concat([prefix, ck]), encodeDataValue(1, Buffer.from('t'))]);
            for (const [m, state, version] of [
              [older, inOlder, 2],
              [newer, inNewer, 3],
            ] as const) {
              if (state === 'absent') continue;
              m.put(key, {
                key: row(i),
                column: col,
                value: state === 'live' ? Buffer.from(`v${version}`) : null,
                version,
              });
            }
            const top =
              inNewer !== 'absent'
                ? inNewer
                : inOlder !== 'absent'
                  ? inOlder
                  : inTables
                    ? 'live'
                    : 'absent';
            const version = inNewer !== 'absent' ? 3 : inOlder !== 'absent' ? 2 : 1;
            if (i >= fromRow && top === 'live') want.push(`${row(i).toString()}@${version}`);
          });
          const view: ReadView = {
            lsn: lsn(1, 1),
            checksum: null,
            prefix,
            prefixEnd: dataPrefixEnd(1, 1),
            layers: [newer.view(), older.freeze()],
            tables: arrayTables(tables),
            snapshot: { close: async () => {} },
          };
          const got: string[] = [];
          const from = encodeCellKey(row(fromRow), Buffer.alloc(0)).toString('latin1');
          for await (const batch of viewCellBatches(view, from, null, batchEntries)) {
            expect(batch.length).toBeGreaterThan(0);
            for (const { cell } of batch)
              got.push(`${Buffer.from(cell.key).toString()}@${cell.version}`);
          }
          expect(got).toEqual(want);
        },
      ),
      { numRuns: 200 },
    );
  });
});
