// `npm run test:chaos -- --minutes N --seed S [--unsafe-follower-strong-reads]
//   [--unsafe-ack-before-durable] [--schedule mixed|power-cuts] [--power-loss-sync-ms MS]`: one long Jepsen
// run (launch.ts) and a printed summary of faults, operations and outcomes. Exit 0 when every
// check passed, 1 when one failed, 2 when the run could not happen here.

import { jepsenProblem, runJepsen, summarize } from './launch.js';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let minutes = 5;
  let seed = Date.now() % 1_000_000;
  let failpoints = '';
  let keepDir: string | undefined;
  let schedule: 'mixed' | 'power-cuts' = 'mixed';
  let powerLossSyncMs = 0;
  const serverArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1] ?? '';
    if (a === '--minutes') minutes = Number(argv[++i]);
    else if (a === '--seed') seed = Number(argv[++i]);
    else if (a === '--failpoints') failpoints = argv[++i] ?? '';
    else if (a === '--keep') keepDir = argv[++i];
    else if (a === '--schedule' && (v === 'mixed' || v === 'power-cuts')) {
      schedule = v;
      i++;
    } else if (a === '--power-loss-sync-ms') powerLossSyncMs = Number(argv[++i]);
    else if (a?.startsWith('--unsafe-')) serverArgs.push(a);
    else throw new Error(`test:chaos: unknown argument ${a} ${v}`);
  }
  const problem = await jepsenProblem();
  if (problem !== null) {
    console.error(`[chaos] cannot run here: ${problem}`);
    return 2;
  }
  const durationMs = Math.round(minutes * 60_000);
  console.log(
    `[chaos] seed ${seed}, ${minutes} min${serverArgs.length > 0 ? `, ${serverArgs.join(' ')}` : ''}`,
  );
  const report = await runJepsen(
    { seed, durationMs, serverArgs, failpoints, schedule, powerLossSyncMs },
    { timeoutMs: durationMs + 300_000, ...(keepDir === undefined ? {} : { keepDir }) },
  );
  console.log(summarize(report));
  return report.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
