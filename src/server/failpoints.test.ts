import { describe, expect, it } from 'vitest';
import { FAILPOINTS_ARMED, parseFailpoints } from './failpoints.js';

describe('failpoints', () => {
  it('an empty or absent SKV_FAILPOINTS arms nothing', () => {
    expect(parseFailpoints('').size).toBe(0);
    // The test runner does not set SKV_FAILPOINTS: call sites cost one constant check.
    expect(FAILPOINTS_ARMED).toBe(false);
  });

  it('parses crash, sleep, probability and count', () => {
    const fp = parseFailpoints('takeover=50%3*sleep(300); catch-up=crash');
    expect(fp.get('takeover')).toEqual({
      action: { kind: 'sleep', ms: 300 },
      probability: 0.5,
      remaining: 3,
    });
    expect(fp.get('catch-up')).toEqual({
      action: { kind: 'crash' },
      probability: 1,
      remaining: Number.POSITIVE_INFINITY,
    });
  });

  it('an unknown name is refused (a typo must not silently test nothing)', () => {
    expect(() => parseFailpoints('take-over=crash')).toThrow(/unknown failpoint/);
  });

  it('a malformed or out-of-range action is refused', () => {
    expect(() => parseFailpoints('takeover=panic')).toThrow(/bad action/);
    expect(() => parseFailpoints('takeover')).toThrow(/bad action/);
    expect(() => parseFailpoints('takeover=150%crash')).toThrow(/out of range/);
    expect(() => parseFailpoints('takeover=sleep(600000)')).toThrow(/out of range/);
  });

  it('drop is the action of the drop points only (elsewhere it would silently do nothing)', () => {
    expect(
      parseFailpoints('test-only-follower-drop-acks=drop').get('test-only-follower-drop-acks'),
    ).toEqual({ action: { kind: 'drop' }, probability: 1, remaining: Number.POSITIVE_INFINITY });
    expect(() => parseFailpoints('takeover=drop')).toThrow(/drop/);
    expect(() => parseFailpoints('test-only-follower-drop-acks=crash')).toThrow(/drop/);
  });
});
