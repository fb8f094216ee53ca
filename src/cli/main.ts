#!/usr/bin/env node
/**
 * The `sluice` command: wires the subcommands (one file each) into yargs.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { checkCommand } from './check.js';

await yargs(hideBin(process.argv))
  .scriptName('sluice')
  .usage('$0 <command> [options]\n\nA Lua-scriptable event-delivery engine that runs KumoMTA webhook policies.')
  .command(checkCommand)
  .demandCommand(1, 'Name a command; `sluice --help` lists them.')
  .strict()
  .recommendCommands()
  .help()
  .alias('h', 'help')
  .version()
  .wrap(Math.min(100, process.stdout.columns ?? 100))
  .fail((msg, err) => {
    if (err) throw err;
    process.stderr.write(`sluice: ${msg}\nRun with --help for usage.\n`);
    process.exit(2);
  })
  .parseAsync();
