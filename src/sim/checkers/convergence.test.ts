import { describe, expect, it } from 'vitest';
import { checkAllRangesConverged, checkReplicasEqual } from './convergence.js';

describe('checkReplicasEqual', () => {
  it('AcceptsIdenticalDigests', () => {
    expect(checkReplicasEqual({ n1: 'x', n2: 'x', n3: 'x' })).toMatchObject({
      ok: true,
      divergent: [],
    });
  });

  it('NamesTheOneReplicaThatDiffers', () => {
    const r = checkReplicasEqual(
      new Map([
        ['n1', 'x'],
        ['n2', 'y'],
        ['n3', 'x'],
      ]),
    );
    expect(r.ok).toBe(false);
    expect(r.divergent).toEqual(['n2']);
  });

  it('ReportsAllReplicasWhenNoMajorityAgrees', () => {
    const r = checkReplicasEqual({ n1: 'a', n2: 'b', n3: 'c' });
    expect(r.ok).toBe(false);
    expect(r.divergent).toEqual(['n1', 'n2', 'n3']);
  });

  it('RejectsFewerThanTwoReplicasAsProvingNothing', () => {
    expect(checkReplicasEqual({ n1: 'a' }).ok).toBe(false);
    expect(checkReplicasEqual({}).ok).toBe(false);
  });

  it('ListsOnlyTheDivergentRanges', () => {
    const r = checkAllRangesConverged(
      new Map([
        [
          0,
          new Map([
            ['n1', 'a'],
            ['n2', 'a'],
            ['n3', 'a'],
          ]),
        ],
        [
          1,
          new Map([
            ['n2', 'b'],
            ['n3', 'c'],
            ['n4', 'b'],
          ]),
        ],
      ]),
    );
    expect(r.ok).toBe(false);
    expect(r.divergentRanges.map((d) => d.rangeId)).toEqual([1]);
    expect(r.divergentRanges[0]?.result.divergent).toEqual(['n3']);
  });
});
