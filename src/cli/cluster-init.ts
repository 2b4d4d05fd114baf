// `skv cluster init` as a function, shared by the command and `skv dev`.

import type { RangeMap } from '../coordination/coordinator.js';
import { ZooKeeperCoordinator } from '../coordination/zookeeper/zk-coordinator.js';
import { buildInitialRangeMap, type InitialSplit } from '../placement/initial-map.js';
import type { RangeMap as PlacementRangeMap } from '../placement/range-map.js';

/**
 * How long the one-shot init waits for its ZooKeeper session. Longer than a server's default
 * (5 s): an operator's command, or a test harness next to a freshly started and busy ZooKeeper,
 * can wait, and failing there leaves a cluster with no range map. 20 s was once too short: in a
 * CI run (2026-11-24) a ZooKeeper started next to busy integration tests logged nothing for 20 s
 * after answering `ruok`, and the test's init gave up.
 */
export const INIT_CONNECT_TIMEOUT_MS = 60_000;

/** Writes the range map once; throws SkvError `already-exists` when one exists. */
export async function initCluster(
  zk: string,
  cluster: string,
  nodes: readonly string[],
  split: InitialSplit,
): Promise<PlacementRangeMap> {
  const map = buildInitialRangeMap(nodes, split);
  const coordinator = new ZooKeeperCoordinator({
    connectString: zk,
    cluster,
    connectTimeoutMs: INIT_CONNECT_TIMEOUT_MS,
  });
  try {
    await coordinator.start();
    const rangeMap: RangeMap = {
      ranges: map.ranges.map((r) => ({
        rangeId: r.rangeId,
        start: r.start,
        end: r.end,
        members: r.members,
      })),
    };
    await coordinator.initCluster(rangeMap);
    return map;
  } finally {
    await coordinator.close();
  }
}
