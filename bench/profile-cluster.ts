// Profiles a real 3-node cluster under a write load: starts it with the test harness, each node
// under `node --cpu-prof`, runs the benchmark runner's write-only workload through the client
// library, stops the nodes gracefully (so the profiles are written) and prints where the leader
// spent its time. Usage: node --import tsx bench/profile-cluster.ts [seconds] [workload]
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { TestCluster } from '../test/support/cluster.js';

const seconds = Number(process.argv[2] ?? 8);
const workload = process.argv[3] ?? 'write-only';
const profDir = path.resolve('bench/results/tmp/profiles');
await mkdir(profDir, { recursive: true });
process.env.SKV_TEST_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${profDir}`;
const cluster = await TestCluster.start({ nodes: 3, ranges: 3 });
try {
  const pids = cluster.nodes.map((n) => n.process?.pid).join(',');
  const out = execFileSync(
    process.execPath,
    [
      'bin/skv.js',
      'bench',
      '--servers',
      cluster.addresses.join(','),
      '--workload',
      workload,
      '--duration',
      String(seconds),
      '--warmup',
      '1',
      '--record-count',
      '2000',
      '--quiet',
      '--server-pids',
      pids,
      '--out',
      path.join(profDir, 'bench'),
    ],
    { encoding: 'utf8' },
  );
  console.log(
    out
      .split('\n')
      .filter((l) => /ops\/s|update|read |CPU/.test(l))
      .join('\n'),
  );
} finally {
  for (const n of cluster.nodes) await cluster.terminate(n.id);
  await cluster.stop();
}
// Summarise each profile: self time by function.
for (const f of (await readdir(profDir)).filter((x) => x.endsWith('.cpuprofile'))) {
  const prof = JSON.parse(await readFile(path.join(profDir, f), 'utf8')) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
    timeDeltas: number[];
  };
  const self = new Map<number, number>();
  for (const [i, id] of prof.samples.entries()) {
    self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  const byFn = new Map<string, number>();
  let total = 0;
  for (const n of prof.nodes) {
    const t = self.get(n.id) ?? 0;
    total += t;
    const where = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${n.callFrame.lineNumber}`;
    byFn.set(where, (byFn.get(where) ?? 0) + t);
  }
  console.log(`\n== ${f}: ${(total / 1000).toFixed(0)} ms sampled`);
  for (const [fn, t] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`${((100 * t) / total).toFixed(1).padStart(5)}%  ${fn}`);
  }
}
