// The benchmark's workloads: YCSB's core workloads A–F (Cooper et al., SoCC 2010, Table 2 and
// the `workloads/workload[a-f]` files) and the Spinnaker paper's experiments (PAPER-NOTES.md §5:
// writes, strong and timeline reads, conditional puts, the mixed read/write sweep of App. D.3).
//
// A workload is data: operation proportions (summing to 1), the key distribution and the read
// consistency. The run's parameters (record count, row shape, concurrency, rate) are separate,
// so the same workload runs against every target.

import { assert, unreachable } from '../src/core/assert.js';
import type { ReadConsistency } from './target.js';

export type OpKind = 'read' | 'update' | 'insert' | 'scan' | 'conditional-update';
export const OP_KINDS: readonly OpKind[] = [
  'read',
  'update',
  'insert',
  'scan',
  'conditional-update',
];

export type Distribution = 'uniform' | 'zipfian' | 'latest';
export const DISTRIBUTIONS: readonly Distribution[] = ['uniform', 'zipfian', 'latest'];

export interface WorkloadSpec {
  readonly name: string;
  readonly description: string;
  readonly proportions: Readonly<Record<OpKind, number>>;
  readonly distribution: Distribution;
  readonly readConsistency: ReadConsistency;
  /** Reads fetch the whole row (YCSB readallfields=true) or one random column. */
  readonly readAllFields: boolean;
  /** Updates write every column (YCSB writeallfields) or one random column. */
  readonly writeAllFields: boolean;
  /** Scan lengths are uniform in [1, scanLengthMax] (YCSB E: 100). */
  readonly scanLengthMax: number;
}

export const WORKLOAD_NAMES = [
  'a',
  'b',
  'c',
  'd',
  'e',
  'f',
  'write-only',
  'strong-read',
  'timeline-read',
  'conditional-put',
  'mixed',
] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

/** The Spinnaker paper's mixed-workload x-axis (App. D.3, Fig. 12): % writes. */
export const SWEEP_WRITE_PERCENTS_DEFAULT: readonly number[] = [10, 20, 30, 40, 50];

export interface WorkloadOverrides {
  readonly distribution?: Distribution;
  readonly readConsistency?: ReadConsistency;
  /** For `mixed`: the share of writes in [0, 1]. */
  readonly writeProportion?: number;
  readonly scanLengthMax?: number;
}

const none: Record<OpKind, number> = {
  read: 0,
  update: 0,
  insert: 0,
  scan: 0,
  'conditional-update': 0,
};

export function isWorkloadName(s: string): s is WorkloadName {
  return (WORKLOAD_NAMES as readonly string[]).includes(s);
}

export function workload(name: WorkloadName, overrides: WorkloadOverrides = {}): WorkloadSpec {
  const base = baseWorkload(name, overrides.writeProportion ?? 0.5);
  const spec: WorkloadSpec = {
    ...base,
    distribution: overrides.distribution ?? base.distribution,
    readConsistency: overrides.readConsistency ?? base.readConsistency,
    scanLengthMax: overrides.scanLengthMax ?? base.scanLengthMax,
  };
  validateWorkload(spec);
  return spec;
}

/** The mixed sweep: one `mixed` workload per write percentage, named `mixed-w<pct>`. */
export function sweepWorkloads(
  writePercents: readonly number[],
  overrides: Omit<WorkloadOverrides, 'writeProportion'> = {},
): WorkloadSpec[] {
  return writePercents.map((pct) => {
    assert(pct >= 0 && pct <= 100, 'sweep write percentage must be in [0, 100]');
    const w = workload('mixed', { ...overrides, writeProportion: pct / 100 });
    return { ...w, name: `mixed-w${pct}` };
  });
}

export function validateWorkload(w: WorkloadSpec): void {
  let sum = 0;
  for (const kind of OP_KINDS) {
    const p = w.proportions[kind];
    assert(p >= 0 && p <= 1, `proportion of ${kind} must be in [0, 1]`);
    sum += p;
  }
  assert(Math.abs(sum - 1) < 1e-9, `workload ${w.name}: proportions sum to ${sum}, not 1`);
  assert(w.scanLengthMax >= 1, 'scan length max must be >= 1');
}

function baseWorkload(name: WorkloadName, writeProportion: number): WorkloadSpec {
  const common = {
    readConsistency: 'strong' as ReadConsistency,
    readAllFields: true,
    writeAllFields: false,
    scanLengthMax: 100,
  };
  switch (name) {
    case 'a':
      return {
        ...common,
        name,
        description: 'YCSB A: update heavy, 50% reads / 50% updates, zipfian',
        proportions: { ...none, read: 0.5, update: 0.5 },
        distribution: 'zipfian',
      };
    case 'b':
      return {
        ...common,
        name,
        description: 'YCSB B: read mostly, 95% reads / 5% updates, zipfian',
        proportions: { ...none, read: 0.95, update: 0.05 },
        distribution: 'zipfian',
      };
    case 'c':
      return {
        ...common,
        name,
        description: 'YCSB C: read only, zipfian',
        proportions: { ...none, read: 1 },
        distribution: 'zipfian',
      };
    case 'd':
      return {
        ...common,
        name,
        description: 'YCSB D: read latest, 95% reads / 5% inserts, latest',
        proportions: { ...none, read: 0.95, insert: 0.05 },
        distribution: 'latest',
      };
    case 'e':
      return {
        ...common,
        name,
        description: 'YCSB E: short ranges, 95% scans (1..100 rows) / 5% inserts, zipfian',
        proportions: { ...none, scan: 0.95, insert: 0.05 },
        distribution: 'zipfian',
      };
    case 'f':
      return {
        ...common,
        name,
        description: 'YCSB F: read-modify-write, 50% reads / 50% read + conditional put, zipfian',
        proportions: { ...none, read: 0.5, 'conditional-update': 0.5 },
        distribution: 'zipfian',
      };
    case 'write-only':
      return {
        ...common,
        name,
        description: 'Spinnaker: writes only (puts over the loaded records), uniform',
        proportions: { ...none, update: 1 },
        distribution: 'uniform',
      };
    case 'strong-read':
      return {
        ...common,
        name,
        description: 'Spinnaker: strong (leader) reads only, uniform',
        proportions: { ...none, read: 1 },
        distribution: 'uniform',
      };
    case 'timeline-read':
      return {
        ...common,
        name,
        readConsistency: 'timeline',
        description: 'Spinnaker: timeline (any replica) reads only, uniform',
        proportions: { ...none, read: 1 },
        distribution: 'uniform',
      };
    case 'conditional-put':
      return {
        ...common,
        name,
        description: 'Spinnaker: conditional puts (read version + conditional put), uniform',
        proportions: { ...none, 'conditional-update': 1 },
        distribution: 'uniform',
      };
    case 'mixed':
      assert(writeProportion >= 0 && writeProportion <= 1, 'write proportion must be in [0, 1]');
      return {
        ...common,
        name,
        description: `Spinnaker mixed: ${Math.round(writeProportion * 100)}% writes, uniform`,
        proportions: { ...none, read: 1 - writeProportion, update: writeProportion },
        distribution: 'uniform',
      };
    default:
      return unreachable(name, 'workload');
  }
}
