import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HistoryOp, HistoryResult } from './history.js';
import { validateHistory } from './history.js';
import { checkLinearizable } from './linearizability.js';
import { randomLegalHistory } from './random-history.js';

// Tiny builders: one history per test, ids in creation order.
function builder() {
  const ops: HistoryOp[] = [];
  const add = (op: Omit<HistoryOp, 'id' | 'process'>): HistoryOp => {
    const full = { id: ops.length, process: ops.length, ...op };
    ops.push(full);
    return full;
  };
  const span = (t: [number, number]) => ({ call: t[0], ret: t[1] });
  return {
    ops,
    put: (value: string, t: [number, number], version: number, key = 'k') =>
      add({ key, f: 'put', value, ...span(t), outcome: 'ok', result: { version } }),
    putInfo: (value: string, call: number, key = 'k') =>
      add({ key, f: 'put', value, call, ret: call, outcome: 'info' }),
    putFail: (value: string, t: [number, number], key = 'k') =>
      add({ key, f: 'put', value, ...span(t), outcome: 'fail' }),
    cput: (value: string, expected: number, t: [number, number], result: HistoryResult) =>
      add({
        key: 'k',
        f: 'put',
        value,
        expectedVersion: expected,
        ...span(t),
        outcome: 'ok',
        result,
      }),
    cputInfo: (value: string, expected: number, call: number) =>
      add({
        key: 'k',
        f: 'put',
        value,
        expectedVersion: expected,
        call,
        ret: call,
        outcome: 'info',
      }),
    get: (t: [number, number], value: string | null, version?: number, key = 'k') =>
      add({
        key,
        f: 'get',
        ...span(t),
        outcome: 'ok',
        result:
          value === null
            ? { found: false, version: 0 }
            : { found: true, value, ...(version === undefined ? {} : { version }) },
      }),
    del: (t: [number, number], found: boolean, version: number, expected?: number) =>
      add({
        key: 'k',
        f: 'delete',
        ...(expected === undefined ? {} : { expectedVersion: expected }),
        ...span(t),
        outcome: 'ok',
        result: { found, version },
      }),
    delInfo: (call: number) => add({ key: 'k', f: 'delete', call, ret: call, outcome: 'info' }),
  };
}

function verdict(ops: HistoryOp[], opts?: Parameters<typeof checkLinearizable>[1]) {
  validateHistory(ops);
  return checkLinearizable(ops, opts);
}

describe('checkLinearizable rejects (sanity checkers that should fail, TESTING.md §B.3)', () => {
  it('StaleReadAfterNewerWriteCompleted', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.put('b', [20, 30], 2);
    h.get([40, 50], 'a', 1);
    const r = verdict(h.ops);
    expect(r.ok).toBe(false);
    expect(r.illegalKeys).toEqual(['k']);
    // The report names where the search got stuck: after put a, put b cannot go (the read of a
    // still needs version 1) and the read cannot go before b returned.
    expect(r.failures[0]?.longestPrefix).toEqual([0]);
    expect(r.failures[0]?.blockedOpIds).toContain(1);
  });

  it('LostWriteReadsAbsentAfterAckedPut', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.get([20, 30], null);
    expect(verdict(h.ops).illegalKeys).toEqual(['k']);
  });

  it('LostWriteReadsOlderValueAfterAckedOverwrite', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.get([11, 12], 'a', 1);
    h.put('b', [20, 30], 2);
    h.get([40, 50], 'a', 1);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('TwoConditionalWritesSucceedOnTheSameVersion', () => {
    const h = builder();
    h.cput('a', 0, [0, 10], { version: 1 });
    h.cput('b', 0, [5, 15], { version: 2 });
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('ReadOfAValueNobodyWrote', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.get([5, 20], 'ghost', 1);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('ReadOfAValueWhoseWriteFailed', () => {
    const h = builder();
    h.putFail('a', [0, 10]);
    h.get([20, 30], 'a', 1);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('VersionGoesBackwards', () => {
    const h = builder();
    h.put('a', [0, 10], 5);
    h.put('b', [20, 30], 3);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('ReadReportsAVersionOtherThanTheWritesVersion', () => {
    const h = builder();
    h.put('a', [0, 10], 5);
    h.get([20, 30], 'a', 6);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('InfoWriteObservedWithAVersionBelowAnEarlierWrite', () => {
    const h = builder();
    h.put('a', [0, 10], 5);
    h.putInfo('b', 20);
    h.get([30, 40], 'b', 3);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('InfoWriteObservedWithTwoDifferentVersions', () => {
    const h = builder();
    h.putInfo('b', 0);
    h.get([30, 40], 'b', 7);
    h.get([50, 60], 'b', 8);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('ConditionalFailureReportedWhileVersionMatched', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.cput('b', 1, [20, 30], { succeeded: false });
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('ConditionalPutOnAbsentFailsWhenNothingWasWritten', () => {
    const h = builder();
    h.cput('a', 0, [0, 10], { succeeded: false });
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('DeleteReportsWrongPreviousVersion', () => {
    const h = builder();
    h.put('a', [0, 10], 4);
    h.del([20, 30], true, 3);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('DeleteReportsFoundOnAbsentColumn', () => {
    const h = builder();
    h.del([0, 10], true, 0);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('ReadFindsValueAfterCompletedDelete', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.del([20, 30], true, 1);
    h.get([40, 50], 'a', 1);
    expect(verdict(h.ops).ok).toBe(false);
  });

  it('PutAfterDeleteReusesAnOlderVersion (floor across deletes)', () => {
    const h = builder();
    h.put('a', [0, 10], 4);
    h.del([20, 30], true, 4);
    h.put('b', [40, 50], 2);
    expect(verdict(h.ops).ok).toBe(false);
    expect(verdict(h.ops, { versionFloorAcrossDeletes: false }).ok).toBe(true);
  });

  it('OnlyTheBrokenKeyIsReported', () => {
    const h = builder();
    h.put('a', [0, 10], 1, 'x');
    h.get([20, 30], 'a', 1, 'x');
    h.put('a', [0, 10], 1, 'y');
    h.get([20, 30], null, undefined, 'y');
    const r = verdict(h.ops);
    expect(r.illegalKeys).toEqual(['y']);
    expect(r.keysChecked).toBe(2);
  });
});

describe('checkLinearizable accepts tricky legal histories', () => {
  it('EmptyHistory', () => {
    expect(verdict([])).toMatchObject({ ok: true, keysChecked: 0 });
  });

  it('ConcurrentReadsSeeOldAndNewValueInEitherOrder', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.put('b', [20, 60], 2);
    h.get([25, 30], 'b', 2);
    h.get([26, 31], 'b', 2);
    h.get([10, 70], 'a', 1); // long read, may linearize before b
    expect(verdict(h.ops).ok).toBe(true);
  });

  it('TouchingIntervalsAreConcurrent', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.get([10, 20], null); // called exactly when the put returned: may precede it
    expect(verdict(h.ops).ok).toBe(true);
  });

  it('InfoWriteThatTookEffectLaterWithAnUnknownVersion', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.putInfo('b', 20);
    h.get([30, 40], 'a', 1); // not yet
    h.get([100, 110], 'b', 9); // now it did; binds version 9
    h.put('c', [120, 130], 10);
    h.get([140, 150], 'c', 10);
    expect(verdict(h.ops).ok).toBe(true);
  });

  it('InfoWriteThatNeverTookEffect', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.putInfo('b', 20);
    h.get([30, 40], 'a', 1);
    h.get([1000, 1010], 'a', 1);
    expect(verdict(h.ops).ok).toBe(true);
  });

  it('InfoConditionalPutThatDidOrDidNotMatch', () => {
    const h = builder();
    h.put('a', [0, 10], 3);
    h.cputInfo('b', 3, 20);
    h.get([30, 40], 'b', 4);
    h.cputInfo('c', 3, 50); // cannot match any more: a no-op
    h.get([60, 70], 'b', 4);
    expect(verdict(h.ops).ok).toBe(true);
  });

  it('ConditionalPutMatchesAnUnknownVersion', () => {
    const h = builder();
    h.putInfo('a', 0);
    h.cput('b', 7, [10, 20], { version: 8 }); // binds a's version to 7
    h.get([30, 40], 'b', 8);
    expect(verdict(h.ops).ok).toBe(true);
  });

  it('FailedAndInfoGetsAreIgnored', () => {
    const h = builder();
    h.putFail('a', [0, 10]);
    h.ops.push({ id: 99, process: 9, key: 'k', f: 'get', call: 5, ret: 5, outcome: 'info' });
    h.get([20, 30], null);
    expect(verdict(h.ops).ok).toBe(true);
  });

  it('DeleteThenPutThenConditionalDelete', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.del([20, 30], true, 1);
    h.get([40, 50], null);
    h.cput('b', 0, [60, 70], { version: 3 });
    h.del([80, 90], true, 3, 3);
    h.del([100, 110], false, 0);
    h.del([120, 130], false, 0, 5); // conditional on 5 but absent: reported as not found
    expect(verdict(h.ops).ok).toBe(false); // a mismatched conditional delete must say succeeded:false
    h.ops.pop();
    h.ops.push({
      id: 50,
      process: 50,
      key: 'k',
      f: 'delete',
      expectedVersion: 5,
      call: 120,
      ret: 130,
      outcome: 'ok',
      result: { succeeded: false },
    });
    expect(verdict(h.ops).ok).toBe(true);
  });

  it('InfoDeleteMayOrMayNotHappen', () => {
    const h = builder();
    h.put('a', [0, 10], 1);
    h.delInfo(20);
    h.get([30, 40], 'a', 1);
    h.get([50, 60], null);
    expect(verdict(h.ops).ok).toBe(true);
  });
});

describe('checkLinearizable deadline', () => {
  it('ManyConcurrentInfoWritesWithAnIllegalReadTimeOutAsUnknown', () => {
    // 22 concurrent info writes and a read (without a version, so no pruning) of a value nobody
    // wrote: refuting it means exploring every subset of the info writes (memoized, still
    // ~2^22 states): far beyond 50 ms.
    const h = builder();
    for (let i = 0; i < 22; i++) h.putInfo(`w${i}`, 0);
    h.get([10, 20], 'ghost');
    const r = verdict(h.ops, { timeoutMs: 50 });
    expect(r.ok).toBe(false);
    expect(r.unknownKeys).toEqual(['k']);
    expect(r.illegalKeys).toEqual([]);
  });
});

// --- Properties -----------------------------------------------------------------------------

/** Mutates one ok get so that the result is illegal in EVERY linearization, or returns null. */
function mutateObservably(ops: HistoryOp[], pick: number, mode: number): HistoryOp[] | null {
  const gets = ops.filter((o) => o.f === 'get' && o.outcome === 'ok');
  if (gets.length === 0) return null;
  const target = gets[pick % gets.length]!;
  const okPuts = ops.filter(
    (o) => o.key === target.key && o.f === 'put' && o.outcome === 'ok' && o.result?.version,
  );
  let result: HistoryResult | null = null;
  switch (mode % 4) {
    case 0: // a value nobody wrote
      result = { found: true, value: 'never-written', version: 1 };
      break;
    case 1: {
      // the right value with a version its (acknowledged) write never had
      const w = okPuts.find((p) => p.value === target.result?.value);
      if (w !== undefined) result = { found: true, value: w.value!, version: 1e9 };
      break;
    }
    case 2: {
      // stale: an older acked write, superseded by an acked write that returned before the call
      const newer = okPuts.filter((p) => p.ret < target.call);
      for (const w2 of newer) {
        const old = okPuts.find((p) => p.result!.version! < w2.result!.version!);
        if (old !== undefined) {
          result = { found: true, value: old.value!, version: old.result!.version! };
          break;
        }
      }
      break;
    }
    case 3: {
      // absent although an acked put returned before the call and no delete touched the key
      const deletes = ops.some((o) => o.key === target.key && o.f === 'delete');
      if (!deletes && okPuts.some((p) => p.ret < target.call)) {
        result = { found: false, version: 0 };
      }
      break;
    }
  }
  if (result === null) return null;
  return ops.map((o) => (o === target ? { ...o, result: result! } : o));
}

describe('checkLinearizable properties (fast-check)', () => {
  const params = fc.record({
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
    opsCount: fc.integer({ min: 1, max: 60 }),
    keysCount: fc.integer({ min: 1, max: 3 }),
    widthMax: fc.integer({ min: 0, max: 60 }),
    infoRate: fc.constantFrom(0, 0.05, 0.15),
  });

  it('RandomLegalHistoriesAreAccepted', () => {
    fc.assert(
      fc.property(params, (p) => {
        const ops = randomLegalHistory(p);
        validateHistory(ops);
        const r = checkLinearizable(ops, { timeoutMs: 5_000 });
        expect(r).toMatchObject({ ok: true, illegalKeys: [], unknownKeys: [] });
      }),
      { numRuns: 300 },
    );
  });

  it('OneObservablyMutatedReadIsRejected', () => {
    let mutated = 0;
    fc.assert(
      fc.property(params, fc.nat(), fc.nat(), (p, pick, mode) => {
        const bad = mutateObservably(randomLegalHistory(p), pick, mode);
        fc.pre(bad !== null);
        mutated++;
        const r = checkLinearizable(bad, { timeoutMs: 5_000 });
        expect(r.unknownKeys).toEqual([]);
        expect(r.illegalKeys.length).toBe(1);
      }),
      { numRuns: 300 },
    );
    expect(mutated).toBeGreaterThan(100);
  });
});

describe('checkLinearizable speed', () => {
  it('TenThousandOpsOverOneHundredKeysWithFivePercentInfo', () => {
    // ~100 ops per key; each op's interval spans up to ±2,000 time units around its point at
    // 10·i, i.e. up to ~400 concurrent ops overall and a few per key (and every info write stays
    // concurrent with everything after it).
    const ops = randomLegalHistory({
      seed: 42,
      opsCount: 10_000,
      keysCount: 100,
      processesCount: 50,
      infoRate: 0.05,
      widthMax: 2_000,
    });
    const infos = ops.filter((o) => o.outcome === 'info').length;
    const started = performance.now();
    const r = checkLinearizable(ops, { timeoutMs: 30_000 });
    const tookMs = performance.now() - started;
    console.log(
      `linearizability: ${ops.length} ops, ${infos} info, ${r.keysChecked} keys, ` +
        `${r.steps} steps, ${tookMs.toFixed(0)} ms`,
    );
    expect(r.ok).toBe(true);
    expect(tookMs).toBeLessThan(10_000);

    // A planted stale read in that same history is found.
    const bad = mutateObservably(ops, 1234, 2);
    expect(bad).not.toBeNull();
    const started2 = performance.now();
    const r2 = checkLinearizable(bad!, { timeoutMs: 30_000 });
    console.log(
      `linearizability: planted stale read found in ${(performance.now() - started2).toFixed(0)} ms`,
    );
    expect(r2.illegalKeys.length).toBe(1);
  });
});
