// The Jepsen runner (issue #5): runs INSIDE a private network namespace (launch.ts starts it via
// `unshare -n`), starts ZooKeeper and 3 `skv server` processes (the built bin/skv.js, 3 ranges
// so leaders differ), drives the workloads (workloads.ts) while the nemesis (nemesis.ts) injects
// a seeded random schedule of faults, heals everything, and checks (checks.ts). Writes one JSON
// report to --out and exits 0 whether the checks passed or not (the caller judges the report);
// exits non-zero only when the harness itself broke.
//
// Every node runs with SKV_TEST_POWER_LOSS=1 (src/log/power-loss-fs.ts): a SIGKILL of a node is a
// power cut of that node (its unsynced log writes are lost), which is what lets the suite tell
// `--unsafe-ack-before-durable` from the safe build (jepsen.test.ts, the durability sanity run).
//
// Usage: node --import tsx test/jepsen/runner.ts --out FILE --seed N --duration-ms MS
//        [--server-arg FLAG]... [--failpoints SPEC] [--schedule mixed|power-cuts]
//        [--power-loss-sync-ms MS]

import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { connect } from '../../src/client/index.js';
import { POWER_LOSS_ENV, POWER_LOSS_SYNC_MS_ENV } from '../../src/log/power-loss-fs.js';
import { GrpcNodeTransport } from '../../src/rpc/node-transport.js';
import { Prng } from '../../src/sim/prng.js';
import { TestCluster } from '../support/cluster.js';
import { runChecks } from './checks.js';
import { Nemesis } from './nemesis.js';
import {
  NODE_PORT,
  NODE_UID_BASE,
  networkProblem,
  nodeHost,
  setupNetwork,
  ZK_HOST,
  ZK_PORT,
} from './net.js';
import {
  type JepsenConfig,
  type JepsenReport,
  type ScheduleKind,
  SESSION_TIMEOUT_MS,
} from './report.js';
import { Workloads } from './workloads.js';

const NODES = 3;
const SPLIT_KEYS = ['h', 'p'];

function parseArgs(argv: string[]): JepsenConfig & { out: string } {
  let out = '';
  let seed = 1;
  let durationMs = 90_000;
  let failpoints = '';
  let schedule: ScheduleKind = 'mixed';
  let powerLossSyncMs = 0;
  const serverArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1] ?? '';
    switch (a) {
      case '--out':
        out = v;
        i++;
        break;
      case '--seed':
        seed = Number(v);
        i++;
        break;
      case '--duration-ms':
        durationMs = Number(v);
        i++;
        break;
      case '--server-arg':
        serverArgs.push(v);
        i++;
        break;
      case '--failpoints':
        failpoints = v;
        i++;
        break;
      case '--schedule':
        if (v !== 'mixed' && v !== 'power-cuts') throw new Error(`runner: unknown schedule ${v}`);
        schedule = v;
        i++;
        break;
      case '--power-loss-sync-ms':
        powerLossSyncMs = Number(v);
        i++;
        break;
      default:
        throw new Error(`runner: unknown argument ${a}`);
    }
  }
  if (out === '') throw new Error('runner: --out is required');
  return { out, seed, durationMs, serverArgs, failpoints, schedule, powerLossSyncMs };
}

const OP_TIMEOUT_MS = 4000;
export async function runJepsenInNamespace(config: JepsenConfig): Promise<JepsenReport> {
  const problem = await networkProblem();
  if (problem !== null) {
    return { config, skipped: problem, ok: false, failures: [], faults: [], figures: {} };
  }
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  await setupNetwork(NODES, { proxied: true });
  const rng = new Prng(config.seed);
  const hosts = Array.from({ length: NODES }, (_, i) => nodeHost(i));
  const cluster = await TestCluster.start({
    nodes: NODES,
    splitKeys: SPLIT_KEYS,
    hosts,
    port: NODE_PORT,
    zkHost: ZK_HOST,
    zkPort: ZK_PORT,
    uids: hosts.map((_, i) => NODE_UID_BASE + i),
    sessionTimeoutMs: SESSION_TIMEOUT_MS,
    serverArgs: config.serverArgs,
    env: {
      [POWER_LOSS_ENV]: '1',
      // Until the first power cut every node's emulated disk flushes in half the maximum.
      [POWER_LOSS_SYNC_MS_ENV]: String(Math.round((config.powerLossSyncMs ?? 0) / 2)),
      ...(config.failpoints === '' ? {} : { SKV_FAILPOINTS: config.failpoints }),
    },
  });
  const nemesis = new Nemesis(cluster, rng, now, {
    schedule: config.schedule ?? 'mixed',
    powerLossSyncMsMax: config.powerLossSyncMs ?? 0,
  });
  await nemesis.startProxies();
  // Deadlines longer than a leader failover (2 s session + election): a client that waits that
  // long sees its operation succeed on the new leader instead of failing during the failover.
  const client = connect({ servers: cluster.addresses, timeoutMs: OP_TIMEOUT_MS });
  const transport = new GrpcNodeTransport();
  const workloads = new Workloads({
    rng,
    client,
    transport,
    liveNodes: () => nemesis.reachableNodes(),
    now,
    opTimeoutMs: OP_TIMEOUT_MS,
    tag: `s${config.seed}`,
  });
  nemesis.probeClient = client;
  let report: JepsenReport;
  try {
    // The power-cut schedule is a durability test: most workers insert (a lost acknowledged
    // insert is the plainest evidence), and no timeline readers take CPU from the writers.
    workloads.start(
      (config.schedule ?? 'mixed') === 'power-cuts'
        ? { register: 4, set: 24, timeline: 0, counter: 1 }
        : { register: 8, set: 2, timeline: 2, counter: 2 },
    );
    await nemesis.runSchedule(config.durationMs);
    report = await runChecks({ config, cluster, nemesis, workloads, client, now });
  } finally {
    await workloads.stop().catch(() => undefined);
    client.close();
    transport.close();
    await nemesis.stop().catch(() => undefined);
    await cluster.stop().catch(() => undefined);
  }
  return report;
}

async function main(): Promise<void> {
  const { out, ...config } = parseArgs(process.argv.slice(2));
  // The launcher holds our stdin: if it dies, so do we (and our nodes, which hold theirs).
  process.stdin.on('end', () => process.exit(3));
  process.stdin.resume();
  const report = await runJepsenInNamespace(config);
  await writeFile(out, JSON.stringify(report, null, 1));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('runner failed:', err);
    process.exit(2);
  },
);
