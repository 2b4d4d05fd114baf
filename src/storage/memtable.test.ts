import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type MemCell, Memtable } from './memtable.js';

function cell(v: number): MemCell {
  return {
    key: Buffer.from('k'),
    column: Buffer.from('c'),
    value: Buffer.from(String(v)),
    version: v,
  };
}

describe('Memtable', () => {
  it('keeps keys sorted across chunk splits and replaces in place', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 4 }), { maxLength: 2000 }), (keys) => {
        const m = new Memtable();
        const model = new Map<string, number>();
        keys.forEach((k, i) => {
          m.put(k, cell(i + 1));
          model.set(k, i + 1);
        });
        const got = [...m.view().entries('', null)].map(([k, c]) => [k, c.version]);
        const want = [...model.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
        expect(got).toEqual(want);
        expect(m.count).toBe(model.size);
        // Point lookups (a hash index) and a view's (binary search) agree with the model.
        const view = m.view();
        for (const [k, v] of model) {
          expect(m.get(k)?.version).toBe(v);
          expect(view.get(k)?.version).toBe(v);
        }
        expect(m.get('absent-key')).toBeUndefined();
      }),
      { numRuns: 50 },
    );
  });

  it('a view does not change when later puts insert, replace and split chunks', () => {
    const m = new Memtable();
    for (let i = 0; i < 1000; i += 2) m.put(String(i).padStart(5, '0'), cell(i + 1));
    const view = m.view();
    const before = [...view.entries('', null)].map(([k, c]) => `${k}=${c.version}`);
    for (let i = 0; i < 1000; i++) m.put(String(i).padStart(5, '0'), cell(10_000 + i));
    const after = [...view.entries('', null)].map(([k, c]) => `${k}=${c.version}`);
    expect(after).toEqual(before);
    expect(view.get('00002')?.version).toBe(3);
    expect(m.get('00002')?.version).toBe(10_002);
    expect(view.count).toBe(500);
    expect(m.count).toBe(1000);
  });

  it('views taken between puts match the contents at their instant, whatever merges come after', () => {
    // A small pending bound makes puts merge now and then, besides the merges views force.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(
          fc.oneof(
            fc.record({ put: fc.string({ maxLength: 3 }) }),
            fc.record({ view: fc.constant(true) }),
          ),
          { maxLength: 600 },
        ),
        (pendingMax, ops) => {
          const m = new Memtable(pendingMax);
          const model = new Map<string, number>();
          const taken: Array<{
            view: ReturnType<Memtable['view']>;
            want: Array<[string, number]>;
          }> = [];
          ops.forEach((op, i) => {
            if ('put' in op) {
              expect(m.put(op.put, cell(i + 1))?.version).toBe(model.get(op.put));
              model.set(op.put, i + 1);
            } else {
              const want = [...model.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
              taken.push({ view: m.view(), want });
            }
          });
          for (const { view, want } of taken) {
            expect([...view.entries('', null)].map(([k, c]) => [k, c.version])).toEqual(want);
            expect(view.count).toBe(want.length);
            for (const [k, v] of want) expect(view.get(k)?.version).toBe(v);
          }
          const all = [...model.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
          expect([...m.view().entries('', null)].map(([k, c]) => [k, c.version])).toEqual(all);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('a frozen memtable takes no puts, and hands out its cells unordered and in order', () => {
    const m = new Memtable(16);
    for (let i = 0; i < 100; i++) m.put(String((i * 37) % 100).padStart(3, '0'), cell(i + 1));
    const frozen = m.freeze();
    expect(() => m.put('x', cell(1))).toThrow(/frozen/);
    const unordered = [...frozen.cells()].map(([k, c]) => `${k}=${c.version}`);
    const ordered = [...frozen.entries('', null)].map(([k, c]) => `${k}=${c.version}`);
    expect(ordered).toHaveLength(100);
    expect([...unordered].sort()).toEqual(ordered);
    expect(frozen.get('037')?.version).toBe(2);
    expect(frozen.count).toBe(100);
    expect(() => new Memtable().cells()).toThrow(/still taking puts/);
  });

  it('entries honours [from, to) bounds', () => {
    const m = new Memtable();
    for (const k of ['a', 'b', 'c', 'd']) m.put(k, cell(1));
    expect([...m.view().entries('b', 'd')].map(([k]) => k)).toEqual(['b', 'c']);
    expect([...m.view().entries('bb', null)].map(([k]) => k)).toEqual(['c', 'd']);
    expect([...new Memtable().view().entries('', null)]).toEqual([]);
  });

  it('tracks size on insert and replace', () => {
    const m = new Memtable();
    m.put('a', { ...cell(1), value: Buffer.alloc(1000) });
    const s1 = m.sizeBytes;
    m.put('a', { ...cell(2), value: Buffer.alloc(10) });
    expect(m.sizeBytes).toBe(s1 - 990);
  });
});
