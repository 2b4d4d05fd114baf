// Cross-checks the search (Lowe's just-in-time linearization, memoization, floor pruning, early
// stop once every ok op is placed) against brute force on tiny histories: try every order that
// respects real time, replay it through the same model transition, accept if any order is legal.
// Arbitrary random results make most histories illegal and some legal, so both verdicts count.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HistoryOp } from './history.js';
import {
  checkLinearizable,
  REGISTER_ABSENT,
  type RegisterState,
  stepRegister,
} from './linearizability.js';

function bruteForce(ops: HistoryOp[], floorAcrossDeletes: boolean): boolean {
  const live = ops.filter((o) => o.outcome !== 'fail' && !(o.outcome === 'info' && o.f === 'get'));
  const retOf = (o: HistoryOp): number => (o.outcome === 'info' ? Number.POSITIVE_INFINITY : o.ret);
  const used = new Array<boolean>(live.length).fill(false);
  const opts = { versionFloorAcrossDeletes: floorAcrossDeletes };
  const go = (state: RegisterState, placed: number): boolean => {
    if (placed === live.length) return true;
    for (let i = 0; i < live.length; i++) {
      if (used[i]) continue;
      const o = live[i]!;
      // o may go next only if no other unplaced op returned before o was called.
      const blocked = live.some((p, j) => j !== i && !used[j] && retOf(p) < o.call);
      if (blocked) continue;
      const next = stepRegister(state, o, opts);
      if (next === null) continue;
      used[i] = true;
      const ok = go(next, placed + 1);
      used[i] = false;
      if (ok) return true;
    }
    return false;
  };
  return go(REGISTER_ABSENT, 0);
}

const arbOp = fc.record({
  f: fc.constantFrom('get', 'get', 'put', 'put', 'delete'),
  outcome: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'info', 'fail'),
  conditional: fc.boolean(),
  expected: fc.integer({ min: 0, max: 4 }),
  found: fc.boolean(),
  valueIndex: fc.integer({ min: 0, max: 6 }),
  version: fc.integer({ min: 0, max: 5 }),
  succeeded: fc.boolean(),
  call: fc.integer({ min: 0, max: 20 }),
  length: fc.integer({ min: 0, max: 8 }),
});

type RawOp = typeof arbOp extends fc.Arbitrary<infer T> ? T : never;

function toHistory(raw: RawOp[]): HistoryOp[] {
  return raw.map((r, id): HistoryOp => {
    const base = {
      id,
      process: id,
      key: 'k',
      call: r.call,
      ret: r.call + r.length,
      outcome: r.outcome as HistoryOp['outcome'],
    };
    switch (r.f) {
      case 'get':
        return {
          ...base,
          f: 'get',
          ...(r.outcome === 'ok'
            ? {
                result: r.found
                  ? { found: true, value: `v${r.valueIndex}`, version: r.version }
                  : { found: false, version: 0 },
              }
            : {}),
        };
      case 'put':
      case 'delete': {
        const isPut = r.f === 'put';
        const op: HistoryOp = {
          ...base,
          f: isPut ? 'put' : 'delete',
          ...(isPut ? { value: `v${id}` } : {}),
          ...(r.conditional ? { expectedVersion: r.expected } : {}),
        };
        if (r.outcome === 'ok') {
          if (r.conditional && !r.succeeded) op.result = { succeeded: false };
          else if (isPut) op.result = { version: r.version };
          else op.result = { found: r.found, version: r.found ? r.version : 0 };
        }
        return op;
      }
      default:
        throw new Error(`bad f ${r.f}`);
    }
  });
}

describe('checkLinearizable agrees with brute force on tiny histories', () => {
  for (const floorAcrossDeletes of [true, false]) {
    it(`SameVerdictOnRandomHistories (versionFloorAcrossDeletes=${floorAcrossDeletes})`, () => {
      let legal = 0;
      let illegal = 0;
      fc.assert(
        fc.property(fc.array(arbOp, { minLength: 1, maxLength: 6 }), (raw) => {
          const ops = toHistory(raw);
          const expected = bruteForce(ops, floorAcrossDeletes);
          const r = checkLinearizable(ops, {
            timeoutMs: 5_000,
            versionFloorAcrossDeletes: floorAcrossDeletes,
          });
          expect(r.unknownKeys).toEqual([]);
          expect(r.ok).toBe(expected);
          if (expected) legal++;
          else illegal++;
        }),
        { numRuns: 3_000 },
      );
      console.log(`oracle: ${legal} legal, ${illegal} illegal histories agreed`);
      // Both verdicts must be well represented or the comparison proves little.
      expect(legal).toBeGreaterThan(300);
      expect(illegal).toBeGreaterThan(300);
    });
  }
});
