// `skv cluster init` as a function, shared by the command and `skv dev`.

import type { RangeMap } from '../coordination/coordinator.js';
import { ZooKeeperCoordinator } from '../coordination/zookeeper/zk-coordinator.js';
import { buildInitialRangeMap, type InitialSplit } from '../placement/initial-map.js';
import type { RangeMap as PlacementRangeMap } from '../placement/range-map.js';

/** Writes the range map once; throws SkvError `already-exists` when one exists. */
export async function initCluster(
  zk: string,
  cluster: string,
  nodes: readonly string[],
  split: InitialSplit,
): Promise<PlacementRangeMap> {
  const map = buildInitialRangeMap(nodes, split);
  const coordinator = new ZooKeeperCoordinator({ connectString: zk, cluster });
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
