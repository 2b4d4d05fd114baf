// Counter checker (TESTING.md workload W4, increment by CAS loop): with `ok` increments that
// definitely happened and `info` increments that may have, the final value must satisfy
// initial + ok <= final <= initial + ok + info. Amounts are the sums of the (positive) deltas.

import { assert } from '../../core/assert.js';

export interface CounterCheckInput {
  /** Sum of the deltas of increments that ended `ok`. */
  okIncrements: number;
  /** Sum of the deltas of increments whose outcome is unknown. */
  infoIncrements: number;
  finalValue: number;
  initialValue?: number;
}

export interface CounterCheckResult {
  ok: boolean;
  lower: number;
  upper: number;
  finalValue: number;
  /** 'lost-increments' when below `lower`, 'phantom-increments' when above `upper`. */
  reason?: 'lost-increments' | 'phantom-increments';
}

export function checkCounter(input: CounterCheckInput): CounterCheckResult {
  const { okIncrements, infoIncrements, finalValue } = input;
  const initial = input.initialValue ?? 0;
  for (const [name, v] of [
    ['okIncrements', okIncrements],
    ['infoIncrements', infoIncrements],
  ] as const) {
    assert(Number.isSafeInteger(v) && v >= 0, `counter: ${name} must be a natural number`);
  }
  assert(Number.isSafeInteger(finalValue), 'counter: finalValue must be an integer');
  const lower = initial + okIncrements;
  const upper = lower + infoIncrements;
  const result: CounterCheckResult = { ok: true, lower, upper, finalValue };
  if (finalValue < lower) return { ...result, ok: false, reason: 'lost-increments' };
  if (finalValue > upper) return { ...result, ok: false, reason: 'phantom-increments' };
  return result;
}
