// The systems of the side-by-side benchmark, each started on 127.0.0.1 with 3 replicas and fsync
// on, wrapped as a BenchTarget, and stopped again (by PID) with its directories removed:
//   etcd       3 members (etcd-cluster.ts), the etcd3 client (targets/etcd.ts)
//   zookeeper  3 servers (zookeeper-ensemble.ts), node-zookeeper-client (targets/zookeeper.ts)
//   skv        3 nodes and their coordination ZooKeeper, started by the test harness
//              (test/support/cluster.ts, the built bin/skv.js), through the client library
//   skv-unary  the same cluster through plain gRPC unary calls (targets/skv-unary.ts)
// Server CPU is accounted over the 3 replicas' PIDs; skv's coordination ZooKeeper is not on the
// data path and is not counted.

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchTarget } from '../target.js';
import { EtcdTarget } from '../targets/etcd.js';
import { SkvTarget } from '../targets/skv.js';
import { UnaryTarget } from '../targets/skv-unary.js';
import { ZooKeeperTarget } from '../targets/zookeeper.js';
import { EtcdCluster } from './etcd-cluster.js';
import { ZooKeeperEnsemble } from './zookeeper-ensemble.js';

export const SYSTEM_NAMES = ['etcd', 'zookeeper', 'skv', 'skv-unary'] as const;
export type SystemName = (typeof SYSTEM_NAMES)[number];

export function isSystemName(s: string): s is SystemName {
  return (SYSTEM_NAMES as readonly string[]).includes(s);
}

export interface SystemOptions {
  /** A fresh directory is made under it for the system's data and logs. */
  readonly baseDir: string;
  readonly timeoutMs: number;
  /** The run's columns per row (targets size scans and merges with it). */
  readonly columnsPerRow: number;
}

export interface RunningSystem {
  readonly name: SystemName;
  readonly target: BenchTarget;
  /** The server's version, for the report. */
  readonly version: string;
  readonly startMs: number;
  /** Stops every process the system started (by PID) and removes its directories. */
  stop(): Promise<void>;
}

export async function startSystem(name: SystemName, o: SystemOptions): Promise<RunningSystem> {
  const t0 = Date.now();
  switch (name) {
    case 'etcd': {
      const dir = await mkdtemp(path.join(o.baseDir, 'etcd-'));
      const cluster = await EtcdCluster.start({ dir }).catch(async (err: unknown) => {
        await rm(dir, { recursive: true, force: true });
        throw err;
      });
      const target = new EtcdTarget({
        endpoints: cluster.endpoints,
        timeoutMs: o.timeoutMs,
        columnsPerRow: o.columnsPerRow,
        serverPids: cluster.pids(),
        facts: { version: `etcd ${cluster.version}`, replicas: '3 members, fsync on (default)' },
      });
      return {
        name,
        target,
        version: cluster.version,
        startMs: Date.now() - t0,
        async stop() {
          await cluster.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    case 'zookeeper': {
      const dir = await mkdtemp(path.join(o.baseDir, 'zookeeper-'));
      const ensemble = await ZooKeeperEnsemble.start({ dir }).catch(async (err: unknown) => {
        await rm(dir, { recursive: true, force: true });
        throw err;
      });
      const target = new ZooKeeperTarget({
        connectStrings: ensemble.connectStrings,
        timeoutMs: o.timeoutMs,
        columnsPerRow: o.columnsPerRow,
        serverPids: ensemble.pids(),
        facts: {
          version: `ZooKeeper ${ensemble.version}`,
          replicas: '3 servers, forceSync=yes',
        },
      });
      return {
        name,
        target,
        version: ensemble.version,
        startMs: Date.now() - t0,
        async stop() {
          await ensemble.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    case 'skv':
    case 'skv-unary': {
      // The harness makes (and removes) its own temp dir; it runs the built bin/skv.js, found
      // from here whether this file runs from source or from dist/ (the harness's own default
      // is only right from source), before the harness module reads SKV_TEST_BIN.
      if ((process.env.SKV_TEST_BIN ?? '') === '') {
        const bin = skvBin();
        if (bin !== null) process.env.SKV_TEST_BIN = bin;
      }
      const { TestCluster } = await import('../../test/support/cluster.js');
      // One range, so one cohort of 3 replicas against one Raft group (etcd) and one ZAB
      // ensemble (ZooKeeper). With the benchmark's keys spread over 3 ranges (hashedKeySplits)
      // the same machine measured about the same write throughput at ~30 % more server CPU per
      // write (smaller batches per cohort), and strong reads depended on where leaders landed.
      const cluster = await TestCluster.start({ nodes: 3, ranges: 1 });
      // Measure the settled cluster: leadership at the preferred node (a hand-over during the
      // measured seconds would show as a gap of a few hundred ms).
      await cluster.waitForLeaders(30_000, (m) => m.ranges.every((r) => r.leader === r.members[0]));
      const serverPids = cluster.nodes.flatMap((n) =>
        n.process?.pid === undefined ? [] : [n.process.pid],
      );
      const options = { servers: cluster.addresses, timeoutMs: o.timeoutMs, serverPids };
      const target = name === 'skv' ? new SkvTarget(options) : new UnaryTarget(options);
      return {
        name,
        target,
        version: 'this checkout',
        startMs: Date.now() - t0,
        async stop() {
          await cluster.stop();
        },
      };
    }
  }
}

/** The checkout's bin/skv.js, from bench/peers/ or from dist/bench/peers/; null if absent. */
export function skvBin(): string | null {
  for (const rel of ['../../bin/skv.js', '../../../bin/skv.js']) {
    const file = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(file)) return file;
  }
  return null;
}
