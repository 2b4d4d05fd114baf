import { describe, expect, it } from 'vitest';
import { checkCounter } from './counter.js';

describe('checkCounter', () => {
  it('AcceptsEveryValueBetweenOkAndOkPlusInfo', () => {
    for (const finalValue of [10, 11, 13]) {
      expect(checkCounter({ okIncrements: 10, infoIncrements: 3, finalValue }).ok).toBe(true);
    }
    expect(
      checkCounter({ okIncrements: 2, infoIncrements: 0, finalValue: 7, initialValue: 5 }).ok,
    ).toBe(true);
  });

  it('RejectsLostIncrements', () => {
    expect(checkCounter({ okIncrements: 10, infoIncrements: 3, finalValue: 9 })).toMatchObject({
      ok: false,
      reason: 'lost-increments',
      lower: 10,
    });
  });

  it('RejectsPhantomIncrements', () => {
    expect(checkCounter({ okIncrements: 10, infoIncrements: 3, finalValue: 14 })).toMatchObject({
      ok: false,
      reason: 'phantom-increments',
      upper: 13,
    });
  });

  it('RefusesNegativeCounts', () => {
    expect(() => checkCounter({ okIncrements: -1, infoIncrements: 0, finalValue: 0 })).toThrow();
  });
});
