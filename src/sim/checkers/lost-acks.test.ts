import { describe, expect, it } from 'vitest';
import type { HistoryOp } from './history.js';
import { checkNoLostAcks, type FinalCell } from './lost-acks.js';

let nextId = 0;
function put(
  key: string,
  value: string,
  call: number,
  ret: number,
  version?: number,
  outcome: HistoryOp['outcome'] = 'ok',
): HistoryOp {
  return {
    id: nextId++,
    process: 0,
    key,
    f: 'put',
    value,
    call,
    ret,
    outcome,
    ...(outcome === 'ok' ? { result: version === undefined ? {} : { version } } : {}),
  };
}
function del(key: string, call: number, ret: number, outcome: HistoryOp['outcome'] = 'ok') {
  const op: HistoryOp = { id: nextId++, process: 0, key, f: 'delete', call, ret, outcome };
  if (outcome === 'ok') op.result = { found: true, version: 1 };
  return op;
}
const final = (entries: [string, FinalCell | null][]) => new Map(entries);

describe('checkNoLostAcks', () => {
  it('AcceptsTheLastWriteAsFinalValue', () => {
    const h = [put('k', 'a', 0, 10, 1), put('k', 'b', 20, 30, 2)];
    expect(checkNoLostAcks(h, final([['k', { value: 'b', version: 2 }]])).ok).toBe(true);
  });

  it('AcceptsAConcurrentWriteWinning', () => {
    const h = [put('k', 'a', 0, 10), put('k', 'b', 5, 15)];
    expect(checkNoLostAcks(h, final([['k', { value: 'a' }]])).ok).toBe(true);
    expect(checkNoLostAcks(h, final([['k', { value: 'b' }]])).ok).toBe(true);
  });

  it('AcceptsAnInfoWriteThatLandedLater', () => {
    const h = [put('k', 'a', 0, 10), put('k', 'b', 20, 20, undefined, 'info')];
    expect(checkNoLostAcks(h, final([['k', { value: 'b' }]])).ok).toBe(true);
  });

  it('RejectsTheFinalStateHoldingAnOlderAckedWrite', () => {
    const h = [put('k', 'a', 0, 10, 1), put('k', 'b', 20, 30, 2)];
    const r = checkNoLostAcks(h, final([['k', { value: 'a', version: 1 }]]));
    expect(r.ok).toBe(false);
    expect(r.lost.map((l) => l.value)).toEqual(['b']);
  });

  it('RejectsOlderFinalVersionEvenWithoutTimingEvidence', () => {
    // Concurrent writes, but the final version is below the acked write's version.
    const h = [put('k', 'a', 0, 10, 5), put('k', 'b', 0, 10, 4)];
    const r = checkNoLostAcks(h, final([['k', { value: 'b', version: 4 }]]));
    expect(r.lost.map((l) => l.value)).toEqual(['a']);
  });

  it('RejectsAnAckedWriteMissingWithNoDelete', () => {
    const h = [put('k', 'a', 0, 10, 1)];
    expect(checkNoLostAcks(h, final([])).lost).toHaveLength(1);
    expect(checkNoLostAcks(h, final([['k', null]])).lost).toHaveLength(1);
  });

  it('AcceptsAbsentAfterADeleteButNotAfterAFailedDelete', () => {
    expect(checkNoLostAcks([put('k', 'a', 0, 10), del('k', 20, 30)], final([])).ok).toBe(true);
    expect(checkNoLostAcks([put('k', 'a', 0, 10), del('k', 20, 30, 'fail')], final([])).ok).toBe(
      false,
    );
  });

  it('RejectsADeleteThatFinishedBeforeTheWriteWasCalled', () => {
    const h = [del('k', 0, 5), put('k', 'a', 10, 20)];
    expect(checkNoLostAcks(h, final([])).ok).toBe(false);
  });

  it('RejectsAPhantomFinalValue', () => {
    const h = [put('k', 'a', 0, 10), put('k', 'x', 0, 10, undefined, 'fail')];
    const r = checkNoLostAcks(h, final([['k', { value: 'x' }]]));
    expect(r.ok).toBe(false);
    expect(r.phantoms).toEqual([{ key: 'k', value: 'x' }]);
  });
});
