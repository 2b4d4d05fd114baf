// Runs `skv bench` standalone until the integrator wires it into the skv command:
//   npx tsx bench/main.ts bench --target memory --workload a,b --duration 5
// (bench/cli.ts holds the command itself).

import { Command, CommanderError } from 'commander';
import { registerBenchCommand } from './cli.js';

const program = new Command('skv').exitOverride();
registerBenchCommand(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (!(err instanceof CommanderError))
    console.error(`skv bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = err instanceof CommanderError ? err.exitCode : 1;
}
