// Test helper: a real standalone ZooKeeper on a free 127.0.0.1 port in a temp dir.

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalZooKeeper } from '../../src/devtools/local-zookeeper.js';

export interface TestZooKeeper {
  readonly zk: LocalZooKeeper;
  readonly connectString: string;
  stop(): Promise<void>;
}

export async function startTestZooKeeper(
  options: { tickTimeMs?: number; host?: string; port?: number } = {},
): Promise<TestZooKeeper> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skv-zk-'));
  const zk = await LocalZooKeeper.start({ dir, ...options });
  return {
    zk,
    connectString: zk.connectString,
    async stop() {
      await zk.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
