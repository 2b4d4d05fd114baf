import { describe, expect, it } from 'vitest';
import { defaultMaxOpenFiles, openFilesLimit } from './level-table-store.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                40000                files
Max locked memory         8388608              8388608              bytes
`;

describe('LevelDB open-files budget', () => {
  it('reads the soft open-files limit from /proc/self/limits text', () => {
    expect(openFilesLimit(LIMITS)).toBe(20000);
    expect(openFilesLimit(LIMITS.replace('20000 ', 'unlimited'))).toBe(Number.POSITIVE_INFINITY);
    expect(openFilesLimit('Max cpu time  unlimited unlimited seconds\n')).toBeNull();
    expect(openFilesLimit('Max open files            lots    lots   files\n')).toBeNull();
  });

  it.skipIf(process.platform !== 'linux')('reads this process limit on Linux', () => {
    const limit = openFilesLimit();
    expect(limit).not.toBeNull();
    expect(limit!).toBeGreaterThan(0);
  });

  it('keeps three quarters of the limit for tables, between classic-level default and LevelDB cap', () => {
    expect(defaultMaxOpenFiles(20000)).toBe(15000);
    expect(defaultMaxOpenFiles(1024)).toBe(1000);
    expect(defaultMaxOpenFiles(null)).toBe(1000);
    expect(defaultMaxOpenFiles(1_048_576)).toBe(50_000);
    expect(defaultMaxOpenFiles(Number.POSITIVE_INFINITY)).toBe(50_000);
  });
});
