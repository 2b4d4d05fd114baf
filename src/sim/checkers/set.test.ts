import { describe, expect, it } from 'vitest';
import { checkSet } from './set.js';

describe('checkSet', () => {
  const attempted = ['a', 'b', 'c', 'd'];

  it('AcceptsInfoAddsEitherWay', () => {
    const r = checkSet({ attempted, acked: ['a', 'b'], failed: ['d'], finalRead: ['a', 'b', 'c'] });
    expect(r).toMatchObject({ ok: true, infoPresent: 1, infoAbsent: 0 });
    expect(checkSet({ attempted, acked: ['a'], failed: [], finalRead: ['a'] })).toMatchObject({
      ok: true,
      infoAbsent: 3,
    });
  });

  it('RejectsALostAcknowledgedAdd', () => {
    const r = checkSet({ attempted, acked: ['a', 'b'], failed: [], finalRead: ['a'] });
    expect(r.ok).toBe(false);
    expect(r.lost).toEqual(['b']);
  });

  it('RejectsAPhantomNeverAttempted', () => {
    const r = checkSet({ attempted, acked: ['a'], failed: [], finalRead: ['a', 'zz'] });
    expect(r.ok).toBe(false);
    expect(r.phantom).toEqual(['zz']);
  });

  it('RejectsAFailedAddThatIsPresent', () => {
    const r = checkSet({ attempted, acked: [], failed: ['c'], finalRead: ['c'] });
    expect(r.ok).toBe(false);
    expect(r.failedButPresent).toEqual(['c']);
  });

  it('RejectsADuplicateInTheFinalRead', () => {
    const r = checkSet({ attempted, acked: ['a'], failed: [], finalRead: ['a', 'a'] });
    expect(r.ok).toBe(false);
    expect(r.duplicated).toEqual(['a']);
  });

  it('RefusesAHarnessThatAckedSomethingNeverAttempted', () => {
    expect(() => checkSet({ attempted, acked: ['q'], failed: [], finalRead: [] })).toThrow(
      /never attempted/,
    );
    expect(() => checkSet({ attempted, acked: ['a'], failed: ['a'], finalRead: [] })).toThrow(
      /both acked and failed/,
    );
  });
});
