/**
 * Admin commands: `sluice queues`, `sluice bounce`, `sluice suspend`,
 * `sluice resume`, `sluice reload`.
 */
import type { Argv, CommandModule } from 'yargs';
import { callApi, clientOptions, fail, printJson, type ClientArgs } from './client.js';

interface MatchArgs extends ClientArgs {
  queue?: string[];
  domain?: string;
  tenant?: string;
  campaign?: string;
  reason: string;
  duration?: string;
}

function matchOptions<T>(y: Argv<T>): Argv<T & MatchArgs> {
  return clientOptions(y)
    .option('queue', { type: 'string', array: true, describe: 'scheduled queue name (repeatable), e.g. webhook.log_hook' })
    .option('domain', { type: 'string' })
    .option('tenant', { type: 'string' })
    .option('campaign', { type: 'string' })
    .option('reason', { type: 'string', demandOption: true })
    .option('duration', { type: 'string', describe: 'how long the rule lasts, e.g. 5m [default: 5m]' }) as Argv<T & MatchArgs>;
}

function matchBody(a: MatchArgs): Record<string, unknown> {
  return { queue_names: a.queue, domain: a.domain, tenant: a.tenant, campaign: a.campaign, reason: a.reason, duration: a.duration };
}

export const queuesCommand: CommandModule<object, ClientArgs> = {
  command: 'queues',
  describe: 'Show each queue: scheduled, ready, in flight, delivered, failed, suspended',
  builder: (y) => clientOptions(y) as never,
  handler: async (a) => printJson(await callApi(a, 'GET', 'api/admin/queues/v1')),
};

export const bounceCommand: CommandModule<object, MatchArgs> = {
  command: 'bounce',
  describe: 'Bounce (remove, with an AdminBounce record) the queued messages that match, and new ones while the rule lasts',
  builder: (y) => matchOptions(y) as never,
  handler: async (a) => {
    if (!a.queue && !a.domain && !a.tenant && !a.campaign) fail('name what to bounce: --queue, --domain, --tenant or --campaign (bouncing everything needs --queue for each queue)');
    printJson(await callApi(a, 'POST', 'api/admin/bounce/v1', matchBody(a)));
  },
};

export const suspendCommand: CommandModule<object, MatchArgs> = {
  command: 'suspend',
  describe: 'Suspend delivery for the matching queues; prints the suspension id',
  builder: (y) => matchOptions(y) as never,
  handler: async (a) => printJson(await callApi(a, 'POST', 'api/admin/suspend/v1', matchBody(a))),
};

export const resumeCommand: CommandModule<object, ClientArgs & { id: string }> = {
  command: 'resume <id>',
  describe: 'End a suspension',
  builder: (y) => clientOptions(y).positional('id', { type: 'string', demandOption: true }) as never,
  handler: async (a) => printJson(await callApi(a, 'DELETE', 'api/admin/suspend/v1', { id: a.id })),
};

export const reloadCommand: CommandModule<object, ClientArgs> = {
  command: 'reload',
  describe: 'Reload the policy now (as a file change or SIGHUP would)',
  builder: (y) => clientOptions(y) as never,
  handler: async (a) => printJson(await callApi(a, 'POST', 'api/admin/bump-config-epoch')),
};
