// Random LEGAL histories for checker self-tests and measurements (TESTING.md §B.3).
//
// A sequential model of versioned registers runs the ops one by one at linearization points
// 10·i; each op's [call, ret] interval is then widened randomly around its point, so the real-time
// order is respected by construction and the history is linearizable. Versions come from one
// counter per history (like a cohort's seq), consumed by every applied write including deletes.
// Indeterminate (`info`) writes take effect or not at random; `fail` writes never take effect.
// Deterministic from `seed` (mulberry32), so a failing case replays exactly.

import type { HistoryOp } from './history.js';

export interface RandomHistoryOptions {
  seed: number;
  opsCount: number;
  keysCount: number;
  processesCount?: number;
  /** Share of writes whose outcome is unknown. */
  infoRate?: number;
  /** Share of writes that fail (definitely not applied). */
  failRate?: number;
  /** How far (time units) call and ret stretch from the linearization point, at most. */
  widthMax?: number;
}

/** mulberry32: a tiny seeded PRNG; returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Cell {
  value: string;
  version: number;
}

export function randomLegalHistory(opts: RandomHistoryOptions): HistoryOp[] {
  const rand = prng(opts.seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const processes = opts.processesCount ?? 5;
  const infoRate = opts.infoRate ?? 0.05;
  const failRate = opts.failRate ?? 0.02;
  const widthMax = opts.widthMax ?? 25;
  const state = new Map<string, Cell>();
  const ops: HistoryOp[] = [];
  let seq = 0;

  for (let i = 0; i < opts.opsCount; i++) {
    const key = `k${int(opts.keysCount)}`;
    const at = 10 * i;
    const call = at - int(widthMax + 1);
    const ret = at + int(widthMax + 1);
    const base = { id: i, process: i % processes, key, call, ret };
    const cur = state.get(key);
    const curVersion = cur?.version ?? 0;
    const dice = rand();

    if (dice < 0.45) {
      const info = rand() < infoRate; // an info get: dropped by the checker, must not matter
      ops.push({
        ...base,
        f: 'get',
        outcome: info ? 'info' : 'ok',
        ...(info
          ? {}
          : {
              result:
                cur === undefined
                  ? { found: false, version: 0 }
                  : { found: true, value: cur.value, version: cur.version },
            }),
      });
      continue;
    }

    const isPut = dice < 0.85;
    const conditional = rand() < 0.3;
    const expectedVersion = conditional
      ? rand() < 0.6
        ? curVersion
        : [0, curVersion + 1, Math.max(0, curVersion - 1)][int(3)]!
      : undefined;
    const matches = expectedVersion === undefined || expectedVersion === curVersion;
    const r = rand();
    const outcome = r < infoRate ? 'info' : r < infoRate + failRate ? 'fail' : 'ok';
    // info: applied or not at random; fail: never; ok: when the condition holds.
    const applied = matches && (outcome === 'ok' || (outcome === 'info' && rand() < 0.5));
    const value = `v${i}`;
    const op: HistoryOp = {
      ...base,
      f: isPut ? 'put' : 'delete',
      outcome,
      ...(isPut ? { value } : {}),
      ...(expectedVersion === undefined ? {} : { expectedVersion }),
    };
    if (applied) {
      seq++;
      if (isPut) state.set(key, { value, version: seq });
      else state.delete(key);
    }
    if (outcome === 'ok') {
      if (!matches) op.result = { succeeded: false };
      else if (isPut) op.result = { version: seq };
      else op.result = { found: cur !== undefined, version: curVersion };
    }
    if (outcome === 'info') op.ret = op.call; // ignored
    ops.push(op);
  }
  return ops;
}
