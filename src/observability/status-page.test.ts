import { describe, expect, it } from 'vitest';
import { ELECTIONS_MAX, ElectionLog, LiveRequestStats, RING_SECONDS } from './status-page.js';

describe('LiveRequestStats', () => {
  it('counts requests per second and method, the current second left out', () => {
    let now = 1_000_000;
    const live = new LiveRequestStats(() => now);
    live.observe('write', 0.002);
    live.observe('write', 0.002);
    live.observe('get', 0.001);
    now += 1000;
    live.observe('get', 0.001); // the current second: not in the series yet
    const s = live.series();
    expect(s).toHaveLength(RING_SECONDS - 1);
    const last = s[s.length - 1]!;
    expect(last.atMs).toBe(1_000_000);
    expect(last.total).toBe(3);
    expect(last.ops).toEqual({ write: 2, get: 1 });
    expect(s[s.length - 2]!.total).toBe(0);
  });

  it('p50 and p99 fall in the buckets of the observed latencies (within one 20 % bucket)', () => {
    let now = 5_000;
    const live = new LiveRequestStats(() => now);
    for (let i = 0; i < 98; i++) live.observe('get', 0.001);
    live.observe('get', 0.1);
    live.observe('get', 0.1);
    now += 1000;
    const last = live.series().at(-1)!;
    expect(last.p50Ms).toBeGreaterThanOrEqual(1);
    expect(last.p50Ms).toBeLessThan(1.2);
    expect(last.p99Ms).toBeGreaterThanOrEqual(100);
    expect(last.p99Ms).toBeLessThan(120);
  });

  it('a slot reused a ring later starts from zero (an idle node needs no timer)', () => {
    let now = 0;
    const live = new LiveRequestStats(() => now);
    live.observe('write', 0.001);
    now += RING_SECONDS * 1000; // same slot, next lap
    live.observe('write', 0.001);
    now += 1000;
    const s = live.series();
    expect(s.at(-1)!.total).toBe(1);
    expect(s.reduce((a, x) => a + x.total, 0)).toBe(1);
  });

  it('folds methods beyond the bound into "other"', () => {
    let now = 0;
    const live = new LiveRequestStats(() => now);
    for (let i = 0; i < 20; i++) live.observe(`m${i}`, 0.001);
    now += 1000;
    const ops = live.series().at(-1)!.ops;
    expect(Object.keys(ops).length).toBeLessThanOrEqual(8);
    expect(Object.values(ops).reduce((a, b) => a + b, 0)).toBe(20);
    expect(ops.other).toBeGreaterThan(0);
  });
});

describe('ElectionLog', () => {
  it('keeps the newest ELECTIONS_MAX, newest first, and counts them all', () => {
    const log = new ElectionLog(() => 42);
    for (let i = 0; i < ELECTIONS_MAX + 7; i++) log.record(i % 3, `n${i % 3}`, i + 1);
    const recent = log.recent();
    expect(recent).toHaveLength(ELECTIONS_MAX);
    expect(recent[0]!.epoch).toBe(ELECTIONS_MAX + 7);
    expect(recent.at(-1)!.epoch).toBe(8);
    expect(log.total).toBe(ELECTIONS_MAX + 7);
  });
});
