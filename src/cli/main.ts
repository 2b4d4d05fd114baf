// The `skv` command (DESIGN.md §3). The only place that wires real adapters together.

import { Command, CommanderError } from 'commander';

export function buildProgram(): Command {
  const program = new Command('skv')
    .description('skv: a Spinnaker-style sharded, replicated key-value datastore')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    console.error(`skv: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
