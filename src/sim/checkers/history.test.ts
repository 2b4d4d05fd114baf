import { describe, expect, it } from 'vitest';
import { type HistoryOp, HistoryRecorder, validateHistory } from './history.js';

const op = (o: Partial<HistoryOp> & { id: number }): HistoryOp => ({
  process: 0,
  key: 'k',
  f: 'get',
  call: 0,
  ret: 1,
  outcome: 'ok',
  result: { found: false },
  ...o,
});

describe('validateHistory', () => {
  it('AcceptsAWellFormedHistory', () => {
    expect(() =>
      validateHistory([
        op({ id: 0, f: 'put', value: 'a', result: { version: 1 } }),
        op({ id: 1, f: 'put', value: 'b', outcome: 'info', ret: Number.NaN }),
        op({ id: 2 }),
      ]),
    ).not.toThrow();
  });

  it('RejectsDuplicateIdsReturnsBeforeCallsAndReusedValues', () => {
    expect(() => validateHistory([op({ id: 0 }), op({ id: 0 })])).toThrow(/duplicate op id/);
    expect(() => validateHistory([op({ id: 0, call: 5, ret: 4 })])).toThrow(/before its call/);
    expect(() =>
      validateHistory([
        op({ id: 0, f: 'put', value: 'a' }),
        op({ id: 1, f: 'put', value: 'a', outcome: 'fail' }),
      ]),
    ).toThrow(/written twice/);
    expect(() => validateHistory([op({ id: 0, f: 'put' })])).toThrow(/has no value/);
    expect(() => validateHistory([op({ id: 0, result: { found: true } })])).toThrow(/no value/);
  });
});

describe('HistoryRecorder', () => {
  it('RecordsOutcomesAndLeavesUnfinishedOpsAsInfo', () => {
    const h = new HistoryRecorder();
    const a = h.invoke({ process: 1, key: 'k', f: 'put', value: 'v' }, 10);
    const b = h.invoke({ process: 2, key: 'k', f: 'get' }, 11);
    h.complete(a, 'ok', 20, { version: 3 });
    expect(h.op(a)).toMatchObject({ outcome: 'ok', call: 10, ret: 20, result: { version: 3 } });
    expect(h.op(b).outcome).toBe('info');
    expect(h.size).toBe(2);
    expect(h.history()).toHaveLength(2);
    expect(() => h.complete(a, 'ok', 30)).toThrow(/not open/);
  });

  it('RefusesMoreOpsThanItsBound', () => {
    const h = new HistoryRecorder(1);
    h.invoke({ process: 1, key: 'k', f: 'get' }, 0);
    expect(() => h.invoke({ process: 1, key: 'k', f: 'get' }, 1)).toThrow(/more than 1 ops/);
  });
});
