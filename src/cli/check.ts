/**
 * `sluice check <init.lua>`: load a policy as the daemon would at start —
 * the top level, then `pre_init`, `init` and `validate_config` — without
 * starting a listener or delivering anything. HTTP calls the policy makes
 * while loading really happen. Prints `OK`, or each problem with its file and
 * line; exits 0 or 1.
 */
import type { CommandModule } from 'yargs';
import { checkPolicy } from '../lua/check.js';

interface CheckArgs {
  policy: string;
  'lua-instruction-limit': number;
}

export const checkCommand: CommandModule<object, CheckArgs> = {
  command: 'check <policy>',
  describe: 'Load a policy (top level, pre_init, init, validate_config) and report problems',
  builder: (y) =>
    y
      .positional('policy', { type: 'string', demandOption: true, describe: 'the init.lua to check' })
      .option('lua-instruction-limit', {
        type: 'number',
        default: 50_000_000,
        describe: 'instructions a Lua handler may run without yielding before it is stopped (0: no limit)',
      })
      .check((argv) => {
        const n = argv['lua-instruction-limit'];
        if (!Number.isInteger(n) || n < 0) throw new Error('--lua-instruction-limit must be a non-negative integer');
        return true;
      }) as never,
  handler: async (argv) => {
    const result = await checkPolicy(argv.policy, { instructionLimit: argv['lua-instruction-limit'] });
    for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
    if (result.problems.length === 0) {
      process.stdout.write('OK\n');
      return;
    }
    for (const p of result.problems) process.stdout.write(`${p}\n`);
    process.exitCode = 1;
  },
};
