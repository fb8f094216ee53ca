#!/usr/bin/env node
/**
 * The `sluice` command: wires the subcommands (one file each) into yargs.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { checkCommand } from './check.js';
import { serveCommand } from './serve.js';
import { injectCommand } from './inject.js';
import { recordsCommand } from './records.js';
import { consumeCommand, logsCommand, publishCommand } from './logs.js';
import { egressWebhooksCommand } from './egress-webhooks.js';
import { receiveCommand } from './receive.js';
import { bounceCommand, queuesCommand, reloadCommand, resumeCommand, suspendCommand } from './admin.js';

await yargs(hideBin(process.argv))
  .scriptName('sluice')
  .usage('$0 <command> [options]\n\nA Lua-scriptable event-delivery engine that runs KumoMTA webhook policies.')
  .command(serveCommand)
  .command(checkCommand)
  .command(injectCommand)
  .command(recordsCommand)
  .command(queuesCommand)
  .command(bounceCommand)
  .command(suspendCommand)
  .command(resumeCommand)
  .command(reloadCommand)
  .command(logsCommand)
  .command(publishCommand)
  .command(consumeCommand)
  .command(egressWebhooksCommand)
  .command(receiveCommand)
  .demandCommand(1, 'Name a command; `sluice --help` lists them.')
  .strict()
  .recommendCommands()
  .help()
  .alias('h', 'help')
  .version()
  .wrap(Math.min(100, process.stdout.columns ?? 100))
  .fail((msg, err) => {
    // Usage errors (unknown flags, failed checks) exit 2; commands report their own failures.
    process.stderr.write(`sluice: ${msg ?? err?.message}\nRun with --help for usage.\n`);
    process.exit(2);
  })
  .parseAsync();
