import { describe, expect, it } from 'vitest';
import { LogLimiter } from './log-limiter.js';

describe('LogLimiter', () => {
  it('lets one line per key and interval through, then reports how many it held back', () => {
    const l = new LogLimiter(1000);
    expect(l.admit('a', 0)).toBe(0);
    expect(l.admit('a', 10)).toBeNull();
    expect(l.admit('a', 999)).toBeNull();
    expect(l.admit('b', 500)).toBe(0); // keys are independent
    expect(l.admit('a', 1000)).toBe(2);
    expect(l.admit('a', 1500)).toBeNull();
    expect(l.admit('a', 5000)).toBe(1);
    expect(l.admit('a', 9000)).toBe(0);
  });
});
