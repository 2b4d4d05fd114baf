// Property test: RangeStore against a plain in-memory model over random operation sequences
// with random (awaited and background) flushes, crash-reopen with log replay, and snapshot
// round trips. Replay a failure with the seed fast-check prints (FC_SEED=n).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Lsn, lsn } from '../core/lsn.js';
import type { ApplyResult, ColumnWrite, RowMutation } from '../core/mutation.js';
import { cellHash, checksumAdd } from './checksum.js';
import { encodeCellKey, type SnapshotCell } from './encoding.js';
import { NodeStorage } from './node-storage.js';
import type { RangeStore, StoreApplyResult } from './range-store.js';

interface ModelCell {
  key: Buffer;
  column: Buffer;
  value: Buffer;
  version: number;
}

class Model {
  readonly cells = new Map<string, ModelCell>();
  private id(key: Uint8Array, column: Uint8Array): string {
    return encodeCellKey(key, column).toString('latin1');
  }
  version(key: Uint8Array, column: Uint8Array): number {
    return this.cells.get(this.id(key, column))?.version ?? 0;
  }
  apply(seq: number, m: RowMutation): ApplyResult {
    const before = m.writes.map((w) => this.version(m.key, w.column));
    for (let i = 0; i < m.writes.length; i++) {
      const e = m.writes[i]!.expectedVersion;
      if (e !== undefined && e !== before[i]) {
        return { ok: false, reason: 'version-mismatch', writeIndex: i, actualVersion: before[i]! };
      }
    }
    for (const w of m.writes) {
      const id = this.id(m.key, w.column);
      if (w.value === null) this.cells.delete(id);
      else {
        this.cells.set(id, {
          key: Buffer.from(m.key),
          column: Buffer.from(w.column),
          value: Buffer.from(w.value),
          version: seq,
        });
      }
    }
    return {
      ok: true,
      previousVersions: before,
      versions: m.writes.map((w) => (w.value === null ? 0 : seq)),
    };
  }
  sorted(): ModelCell[] {
    return [...this.cells.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, c]) => c);
  }
  checksum(): bigint {
    let s = 0n;
    for (const c of this.cells.values())
      s = checksumAdd(s, cellHash(c.key, c.column, c.value, c.version));
    return s;
  }
}

const KEYS = [
  [0x00],
  [0x00, 0x00],
  [0x00, 0xff],
  [0x61],
  [0x61, 0x00],
  [0x62],
  [0xff],
  [0xff, 0xff],
];
const COLS = ['', 'a', 'b', '\u0000'];
const keyArb = fc.constantFrom(...KEYS.map((k) => Buffer.from(k)));
const colArb = fc.constantFrom(...COLS.map((c) => Buffer.from(c, 'latin1')));

type Op =
  | {
      kind: 'apply';
      key: Buffer;
      writes: Array<{
        column: Buffer;
        del: boolean;
        size: number;
        cond: Cond;
      }>;
      /** Queued without waiting for it (several applies in flight, as the node does). */
      queued: boolean;
      /** Applied as a follower does: no previous versions asked for (no table read for them). */
      follower: boolean;
      /** Tried with applyAtOnce first, as a cohort does with nothing in its apply chain. */
      atOnce: boolean;
    }
  | { kind: 'flush' }
  | { kind: 'flush-background' }
  | { kind: 'reopen' }
  | { kind: 'snapshot-roundtrip' }
  | { kind: 'get'; key: Buffer; column: Buffer }
  | { kind: 'row'; key: Buffer }
  | { kind: 'scan'; start: Buffer; end: Buffer | null; limit: number };

type Cond = 'none' | 'match' | 'zero' | 'wrong';

/** An apply of 1-3 writes to one row. */
function applyArb(
  del: fc.Arbitrary<boolean>,
  cond: fc.Arbitrary<Cond>,
  follower: fc.Arbitrary<boolean>,
): fc.Arbitrary<Op> {
  return fc.record({
    kind: fc.constant('apply' as const),
    key: keyArb,
    writes: fc.array(fc.record({ column: colArb, del, size: fc.nat(300), cond }), {
      minLength: 1,
      maxLength: 3,
    }),
    queued: fc.boolean(),
    follower,
    atOnce: fc.boolean(),
  });
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: applyArb(
      fc.boolean(),
      fc.constantFrom<Cond>('none', 'none', 'match', 'zero', 'wrong'),
      fc.boolean(),
    ),
  },
  {
    // A follower's unconditional puts: no table read, the old cell settled later.
    weight: 12,
    arbitrary: applyArb(fc.constant(false), fc.constant<Cond>('none'), fc.constant(true)),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'flush' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'flush-background' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'snapshot-roundtrip' as const }) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('get' as const), key: keyArb, column: colArb }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('row' as const), key: keyArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('scan' as const),
      start: keyArb,
      end: fc.option(keyArb, { nil: null }),
      limit: fc.integer({ min: 1, max: 5 }),
    }),
  },
);

async function modelScan(model: Model, start: Buffer, end: Buffer | null, limit: number) {
  const rows: Array<{ key: string; cells: string[] }> = [];
  for (const c of model.sorted()) {
    if (Buffer.compare(c.key, start) < 0) continue;
    if (end !== null && Buffer.compare(c.key, end) >= 0) continue;
    const k = c.key.toString('hex');
    if (rows.at(-1)?.key !== k) {
      if (rows.length === limit) break;
      rows.push({ key: k, cells: [] });
    }
    rows.at(-1)!.cells.push(`${c.column.toString('hex')}=${c.value.length}@${c.version}`);
  }
  return rows;
}

async function storeScan(r: RangeStore, start: Buffer, end: Buffer | null, limit: number) {
  const res = await r.scan(start, end, { limit });
  return res.rows.map((row) => ({
    key: Buffer.from(row.key).toString('hex'),
    cells: row.cells.map(
      (c) => `${Buffer.from(c.column).toString('hex')}=${c.value.length}@${c.version}`,
    ),
  }));
}

describe('RangeStore against an in-memory model', () => {
  it('agrees on every read, result and checksum over random ops, flushes, reopens and snapshots', async () => {
    let appliedAtOnce = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom(1, 2, 4, 1024),
        async (ops, settleBatchKeys, checksumUnreadKeysMax) => {
          const dir = await mkdtemp(join(tmpdir(), 'skv-model-'));
          // Follower writes' unread cells are read in batches of 1 to 3 keys, and past 1 to
          // 1,024 of them the store stops keeping the checksum (digests then scan).
          const options = { memtableSizeBytesMax: 2048, settleBatchKeys, checksumUnreadKeysMax };
          let node = await NodeStorage.open(dir, options);
          let r = node.range(1);
          const model = new Model();
          const log: Array<[Lsn, RowMutation]> = [];
          let seq = 0;
          let inFlight: Promise<void>[] = [];
          const settle = async () => {
            const all = inFlight;
            inFlight = [];
            await Promise.all(all);
          };
          try {
            for (const op of ops) {
              // Queued applies stay in flight across background flushes; anything that reads
              // or reopens waits for them first.
              if (op.kind !== 'apply' && op.kind !== 'flush-background') await settle();
              switch (op.kind) {
                case 'apply': {
                  const writes: ColumnWrite[] = op.writes.map((w) => {
                    const actual = model.version(op.key, w.column);
                    const expectedVersion =
                      w.cond === 'match'
                        ? actual
                        : w.cond === 'zero'
                          ? 0
                          : w.cond === 'wrong'
                            ? actual + 1
                            : undefined;
                    return {
                      column: w.column,
                      value: w.del ? null : Buffer.alloc(w.size, seq & 0xff),
                      ...(expectedVersion === undefined ? {} : { expectedVersion }),
                    };
                  });
                  const m: RowMutation = { key: op.key, writes };
                  const l = lsn(1 + (seq >> 4), ++seq);
                  log.push([l, m]);
                  // Applies run in queue order, so the model's answer is known now.
                  const want = model.apply(seq, m);
                  // A follower's apply may report 0 for a previous version it did not read.
                  const check = (got: StoreApplyResult) =>
                    op.follower && got.ok && want.ok
                      ? expect({ ...got, previousVersions: [] }).toEqual({
                          ...want,
                          previousVersions: [],
                        })
                      : expect(got).toEqual(want);
                  const options = { previousVersions: !op.follower };
                  const now = op.atOnce ? r.applyAtOnce(l, m, options) : null;
                  if (now !== null) {
                    appliedAtOnce++;
                    check(now);
                  } else if (op.queued) {
                    inFlight.push(r.apply(l, m, options).then(check));
                  } else {
                    await settle();
                    check(await r.apply(l, m, options));
                  }
                  break;
                }
                case 'flush':
                  expect(await r.flush()).toEqual(r.lastAppliedLsn);
                  break;
                case 'flush-background':
                  void r.flush().catch(() => undefined);
                  break;
                case 'reopen': {
                  // Unflushed state is lost as in a crash; replay the whole log (idempotent).
                  await node.close();
                  node = await NodeStorage.open(dir, options);
                  r = node.range(1);
                  // As recovery replays: nobody waits for an answer.
                  for (const [l, m] of log) await r.apply(l, m, { previousVersions: false });
                  break;
                }
                case 'snapshot-roundtrip': {
                  const snap = await r.exportSnapshot({ chunkCellsMax: 3 });
                  const chunks: SnapshotCell[][] = [];
                  for await (const c of snap.chunks()) chunks.push(c);
                  async function* replay() {
                    yield* chunks;
                  }
                  await r.importSnapshot(replay(), snap.lsn, snap.checksum);
                  expect(await r.digest()).toEqual({ lsn: snap.lsn, checksum: snap.checksum });
                  break;
                }
                case 'get': {
                  const got = await r.get(op.key, op.column);
                  const id = encodeCellKey(op.key, op.column).toString('latin1');
                  const want = model.cells.get(id);
                  expect(got).toEqual(
                    want === undefined
                      ? { found: false, version: 0 }
                      : { found: true, value: want.value, version: want.version },
                  );
                  break;
                }
                case 'row': {
                  const got = (await r.readRow(op.key, 'all')).map(
                    (c) => `${Buffer.from(c.column).toString('hex')}@${c.version}`,
                  );
                  const want = model
                    .sorted()
                    .filter((c) => c.key.equals(op.key))
                    .map((c) => `${c.column.toString('hex')}@${c.version}`);
                  expect(got).toEqual(want);
                  break;
                }
                case 'scan':
                  expect(await storeScan(r, op.start, op.end, op.limit)).toEqual(
                    await modelScan(model, op.start, op.end, op.limit),
                  );
                  break;
              }
              if (inFlight.length === 0) expect((await r.digest()).checksum).toBe(model.checksum());
            }
            await settle();
            expect((await r.digest()).checksum).toBe(model.checksum());
            await r.flush();
            await node.close();
            // Everything flushed: a reopen without replay holds exactly the model.
            node = await NodeStorage.open(dir, options);
            r = node.range(1);
            expect(r.lastAppliedLsn).toEqual(log.at(-1)?.[0] ?? lsn(0, 0));
            expect((await r.digest()).checksum).toBe(model.checksum());
            expect(await storeScan(r, Buffer.alloc(0), null, 1000)).toEqual(
              await modelScan(model, Buffer.alloc(0), null, 1000),
            );
          } finally {
            await node.close();
            await rm(dir, { recursive: true, force: true });
          }
        },
      ),
      {
        numRuns: Number(process.env.FC_RUNS ?? 60),
        ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
      },
    );
    // The at-once path ran, not only its refusals.
    expect(appliedAtOnce).toBeGreaterThan(0);
  });
});
