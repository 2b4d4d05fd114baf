import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import { compareBytes, fromBase64, toBase64 } from './bytes.js';
import {
  buildInitialRangeMap,
  chainedDeclusteringMembers,
  evenSplitKeys,
  parseSplitKeys,
} from './initial-map.js';
import { decodeRangeZnode, encodeRangeZnode } from './range-codec.js';
import {
  type KeyRange,
  makeRangeMap,
  rangeContains,
  rangeForKey,
  rangeMapProblems,
  rangesOfNode,
  rangesOverlapping,
} from './range-map.js';

const enc = (s: string) => new TextEncoder().encode(s);
const nodes = ['n0', 'n1', 'n2', 'n3', 'n4'];

describe('chained declustering (DESIGN.md §1)', () => {
  it('PlacesRangeIOnNodesIToIPlus2ModN', () => {
    expect(chainedDeclusteringMembers(nodes, 0)).toEqual(['n0', 'n1', 'n2']);
    expect(chainedDeclusteringMembers(nodes, 3)).toEqual(['n3', 'n4', 'n0']);
    expect(chainedDeclusteringMembers(nodes, 4)).toEqual(['n4', 'n0', 'n1']);
  });

  it('WrapsAroundTheRingWhenRangesExceedNodes', () => {
    const map = buildInitialRangeMap(['a', 'b', 'c'], { ranges: 7 });
    expect(map.ranges.map((r) => r.members.join(''))).toEqual([
      'abc',
      'bca',
      'cab',
      'abc',
      'bca',
      'cab',
      'abc',
    ]);
  });

  it('PutsEveryNodeInThreeCohortsWhenRangesEqualNodes', () => {
    const map = buildInitialRangeMap(nodes, { ranges: nodes.length });
    for (const n of nodes) expect(rangesOfNode(map, n)).toHaveLength(3);
  });

  it('RefusesFewerThanThreeNodesOrDuplicates', () => {
    expect(() => buildInitialRangeMap(['a', 'b'], { ranges: 2 })).toThrow(/at least 3 nodes/);
    expect(() => buildInitialRangeMap(['a', 'b', 'a'], { ranges: 2 })).toThrow(/listed twice/);
    expect(() => buildInitialRangeMap(['a', 'b', 'bad id'], { ranges: 2 })).toThrow(
      InvalidArgumentError,
    );
  });
});

describe('initial split points', () => {
  it('SplitsTheFirstTwoBytesEvenly', () => {
    expect(evenSplitKeys(1)).toEqual([]);
    expect(evenSplitKeys(4)).toEqual([
      Uint8Array.of(0x40, 0),
      Uint8Array.of(0x80, 0),
      Uint8Array.of(0xc0, 0),
    ]);
    expect(evenSplitKeys(3)).toEqual([Uint8Array.of(0x55, 0x55), Uint8Array.of(0xaa, 0xaa)]);
    expect(evenSplitKeys(65_536)).toHaveLength(65_535);
  });

  it('RefusesAZeroOrHugeOrFractionalRangeCount', () => {
    for (const bad of [0, -1, 1.5, 65_537]) {
      expect(() => evenSplitKeys(bad)).toThrow(/--ranges must be an integer/);
    }
  });

  it('ParsesExplicitSplitKeys', () => {
    const map = buildInitialRangeMap(nodes, { splitKeys: parseSplitKeys('g,p,user') });
    expect(map.ranges).toHaveLength(4);
    expect(rangeForKey(map, enc('apple')).rangeId).toBe(0);
    expect(rangeForKey(map, enc('g')).rangeId).toBe(1);
    expect(rangeForKey(map, enc('pear')).rangeId).toBe(2);
    expect(rangeForKey(map, enc('user')).rangeId).toBe(3);
    expect(rangeForKey(map, enc('zebra')).rangeId).toBe(3);
  });

  it('RejectsUnsortedDuplicateOrEmptySplitKeysWithClearErrors', () => {
    expect(() => parseSplitKeys('b,a')).toThrow(/must be sorted: "b" comes before "a"/);
    expect(() => parseSplitKeys('a,a')).toThrow(/"a" is repeated/);
    expect(() => parseSplitKeys('a,,b')).toThrow(/split key #2 is empty/);
    expect(() => parseSplitKeys('')).toThrow(/split key #1 is empty/);
    expect(() => parseSplitKeys('x'.repeat(4097))).toThrow(/max 4096/);
  });
});

describe('range map validation', () => {
  const r = (rangeId: number, start: string, end: string, members = ['a', 'b', 'c']): KeyRange => ({
    rangeId,
    start: enc(start),
    end: enc(end),
    members,
  });

  it('AcceptsAContiguousCover', () => {
    expect(rangeMapProblems({ ranges: [r(0, '', 'm'), r(1, 'm', '')] })).toEqual([]);
  });

  it('ReportsAGap', () => {
    const p = rangeMapProblems({ ranges: [r(0, '', 'k'), r(1, 'm', '')] });
    expect(p).toEqual(['gap between range 0 and range 1: ["k", "m")']);
  });

  it('ReportsAnOverlap', () => {
    expect(rangeMapProblems({ ranges: [r(0, '', 'p'), r(1, 'm', '')] })[0]).toMatch(/overlaps/);
  });

  it('ReportsMissingEndsOfTheKeySpace', () => {
    expect(rangeMapProblems({ ranges: [r(0, 'a', '')] })[0]).toMatch(/not at the empty key/);
    expect(rangeMapProblems({ ranges: [r(0, '', 'z')] })[0]).toMatch(/not \+∞/);
    expect(rangeMapProblems({ ranges: [] })).toEqual(['the range map has no ranges']);
  });

  it('ReportsBadCohorts', () => {
    const p = rangeMapProblems({
      ranges: [r(0, '', 'm', ['a', 'a', 'b']), r(1, 'm', '', ['a', 'b'])],
    });
    expect(p).toEqual([
      'range 0: members are not distinct (a,a,b)',
      'range 1: has 2 members, needs 3',
    ]);
  });

  it('ReportsDuplicateIdsAndEmptyRanges', () => {
    const p = rangeMapProblems({ ranges: [r(0, '', 'm'), r(0, 'm', 'm'), r(2, 'm', '')] });
    expect(p).toContain('range 0: duplicate range id');
    expect(p).toContain('range 0: start "m" is not below end "m"');
  });

  it('MakeRangeMapSortsThenThrowsListingEveryProblem', () => {
    expect(makeRangeMap([r(1, 'm', ''), r(0, '', 'm')]).ranges.map((x) => x.rangeId)).toEqual([
      0, 1,
    ]);
    expect(() => makeRangeMap([r(0, '', 'k'), r(1, 'm', '', ['a'])])).toThrow(
      /gap between.*; range 1: has 1 members/,
    );
  });
});

describe('lookups', () => {
  const map = buildInitialRangeMap(nodes, { splitKeys: parseSplitKeys('b,d,f') });

  it('FindsTheRangeAtItsExactStartAndJustBeforeItsEnd', () => {
    expect(rangeForKey(map, new Uint8Array(0)).rangeId).toBe(0);
    expect(rangeForKey(map, enc('b')).rangeId).toBe(1);
    expect(rangeForKey(map, Uint8Array.of(0x63, 0xff, 0xff)).rangeId).toBe(1);
    expect(rangeForKey(map, Uint8Array.of(0xff, 0xff)).rangeId).toBe(3);
  });

  it('ScansTouchOnlyOverlappingRanges', () => {
    const ids = (s: string, e: string) =>
      rangesOverlapping(map, enc(s), enc(e)).map((x) => x.rangeId);
    expect(ids('', '')).toEqual([0, 1, 2, 3]);
    expect(ids('b', 'd')).toEqual([1]); // end exclusive
    expect(ids('c', 'e')).toEqual([1, 2]);
    expect(ids('a', 'b')).toEqual([0]);
    expect(ids('e', '')).toEqual([2, 3]);
    expect(ids('e', 'c')).toEqual([]);
    expect(ids('c', 'c')).toEqual([]);
  });
});

describe('znode codec (DESIGN.md §4 ranges/<rangeId>)', () => {
  it('RoundTripsBinaryKeysAndTheOpenEnd', () => {
    const range: KeyRange = {
      rangeId: 7,
      start: Uint8Array.of(0, 255, 10),
      end: new Uint8Array(0),
      members: ['n1', 'n2', 'n3'],
    };
    const text = encodeRangeZnode(range);
    expect(JSON.parse(text)).toEqual({ start: 'AP8K', end: '', members: ['n1', 'n2', 'n3'] });
    expect(decodeRangeZnode(7, enc(text))).toEqual(range);
  });

  it('RejectsDamagedBodies', () => {
    const bad = [
      'not json',
      '[]',
      '{"start":"","end":"","members":["a","b","c"],"extra":1}',
      '{"start":"A","end":"","members":["a","b","c"]}',
      '{"start":"AP9=","end":"","members":["a","b","c"]}', // non-canonical padding bits
      '{"start":1,"end":"","members":["a","b","c"]}',
      '{"start":"","end":"","members":"a,b,c"}',
    ];
    for (const body of bad) {
      expect(() => decodeRangeZnode(3, body), body).toThrow(/znode ranges\/3/);
    }
  });
});

describe('placement properties (fast-check)', () => {
  const arbKey = fc.uint8Array({ minLength: 0, maxLength: 6 });
  const arbMap = fc
    .uniqueArray(fc.uint8Array({ minLength: 1, maxLength: 4 }), {
      maxLength: 20,
      selector: (k) => toBase64(k),
    })
    .map((keys) => buildInitialRangeMap(nodes, { splitKeys: [...keys].sort(compareBytes) }));

  it('EveryKeyMapsToExactlyOneRangeAndRangesAreContiguous', () => {
    fc.assert(
      fc.property(arbMap, fc.array(arbKey, { maxLength: 30 }), (map, keys) => {
        expect(rangeMapProblems(map)).toEqual([]);
        for (let i = 0; i + 1 < map.ranges.length; i++) {
          expect(compareBytes(map.ranges[i]!.end, map.ranges[i + 1]!.start)).toBe(0);
        }
        // split keys themselves and random keys
        for (const key of [...keys, ...map.ranges.map((r) => r.start)]) {
          const holders = map.ranges.filter((r) => rangeContains(r, key));
          expect(holders).toHaveLength(1);
          expect(rangeForKey(map, key)).toBe(holders[0]);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('ScanOverlapEqualsTheBruteForceSet', () => {
    fc.assert(
      fc.property(arbMap, arbKey, arbKey, (map, start, end) => {
        const expected = map.ranges.filter(
          (r) =>
            (end.length === 0 || compareBytes(start, end) < 0) &&
            (r.end.length === 0 || compareBytes(r.end, start) > 0) &&
            (end.length === 0 || compareBytes(r.start, end) < 0),
        );
        expect(rangesOverlapping(map, start, end)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('Base64RoundTripsAnyBytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(fromBase64(toBase64(b))).toEqual(b);
      }),
    );
  });
});
