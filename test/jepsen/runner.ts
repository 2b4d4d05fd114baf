// The Jepsen runner (issue #5): runs INSIDE a private network namespace (launch.ts starts it via
// `unshare -n`), starts ZooKeeper and 3 `skv server` processes (the built bin/skv.js, 3 ranges
// so leaders differ), drives the workloads (workloads.ts) while the nemesis (nemesis.ts) injects
// a seeded random schedule of faults, heals everything, and checks (checks.ts). Writes one JSON
// report to --out and exits 0 whether the checks passed or not (the caller judges the report);
// exits non-zero only when the harness itself broke.
//
// Usage: node --import tsx test/jepsen/runner.ts --out FILE --seed N --duration-ms MS
//        [--server-arg FLAG]... [--failpoints SPEC]

import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { connect } from '../../src/client/index.js';
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
import { type JepsenConfig, type JepsenReport, SESSION_TIMEOUT_MS } from './report.js';
import { Workloads } from './workloads.js';

const NODES = 3;
const SPLIT_KEYS = ['h', 'p'];

function parseArgs(argv: string[]): JepsenConfig & { out: string } {
  let out = '';
  let seed = 1;
  let durationMs = 90_000;
  let failpoints = '';
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
      default:
        throw new Error(`runner: unknown argument ${a}`);
    }
  }
  if (out === '') throw new Error('runner: --out is required');
  return { out, seed, durationMs, serverArgs, failpoints };
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
    ...(config.failpoints === '' ? {} : { env: { SKV_FAILPOINTS: config.failpoints } }),
  });
  const nemesis = new Nemesis(cluster, rng, now);
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
    workloads.start({ register: 8, set: 2, timeline: 2, counter: 2 });
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
