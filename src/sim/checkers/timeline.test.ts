import { describe, expect, it } from 'vitest';
import { type CommittedWrite, checkTimelineReads, type TimelineRead } from './timeline.js';

const committed: CommittedWrite[] = [
  { key: 'k', value: 'a', version: 1 },
  { key: 'k', value: 'b', version: 2 },
  { key: 'k', version: 3 }, // delete
  { key: 'k', value: 'c', version: 4 },
];
let nextId = 0;
function read(
  replica: string,
  t: [number, number],
  value: string | null,
  version?: number,
): TimelineRead {
  return {
    id: nextId++,
    replica,
    key: 'k',
    found: value !== null,
    ...(value === null ? {} : { value }),
    ...(version === undefined ? {} : { version }),
    call: t[0],
    ret: t[1],
  };
}

describe('checkTimelineReads', () => {
  it('AcceptsStaleButMonotonicReadsPerReplica', () => {
    const reads = [
      read('n2', [0, 1], null),
      read('n2', [2, 3], 'a', 1),
      read('n3', [2, 3], 'b', 2),
      read('n2', [4, 5], 'a', 1), // stale relative to n3, fine: different replica
      read('n2', [6, 7], null), // after the delete at version 3
      read('n2', [8, 9], 'c', 4),
    ];
    expect(checkTimelineReads(reads, committed).ok).toBe(true);
  });

  it('AcceptsConcurrentReadsOnOneReplicaInAnyOrder', () => {
    const reads = [read('n2', [0, 10], 'b', 2), read('n2', [1, 9], 'a', 1)];
    expect(checkTimelineReads(reads, committed).ok).toBe(true);
  });

  it('RejectsAnUncommittedValue', () => {
    const r = checkTimelineReads([read('n2', [0, 1], 'z', 9)], committed);
    expect(r.ok).toBe(false);
    expect(r.notCommitted).toHaveLength(1);
  });

  it('RejectsACommittedValueWithTheWrongVersion', () => {
    expect(checkTimelineReads([read('n2', [0, 1], 'a', 2)], committed).ok).toBe(false);
  });

  it('RejectsAVersionGoingBackOnOneReplica', () => {
    const r = checkTimelineReads(
      [read('n2', [0, 1], 'b', 2), read('n2', [2, 3], 'a', 1)],
      committed,
    );
    expect(r.ok).toBe(false);
    expect(r.wentBack[0]?.read.version).toBe(1);
  });

  it('RejectsAbsentAfterAVersionNoDeleteFollows', () => {
    const r = checkTimelineReads([read('n2', [0, 1], 'c', 4), read('n2', [2, 3], null)], committed);
    expect(r.ok).toBe(false);
    expect(r.wentBack).toHaveLength(1);
  });
});
