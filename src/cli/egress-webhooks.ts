/**
 * `sluice egress-webhooks create|list|get|status|rotate|update|activate|delete`,
 * with klev's flags.
 */
import type { Argv, CommandModule } from 'yargs';
import { callApi, clientOptions, printJson, type ClientArgs } from './client.js';

interface HookArgs extends ClientArgs {
  id?: string;
  'log-id'?: string;
  destination?: string;
  payload?: string;
  metadata?: string;
  'expire-seconds'?: number;
}

const idArg = <T>(y: Argv<T>) => clientOptions(y).positional('id', { type: 'string', demandOption: true, describe: 'the webhook id (ewh_...)' });

export const egressWebhooksCommand: CommandModule<object, HookArgs> = {
  command: 'egress-webhooks <command>',
  describe: 'Manage egress webhooks (create, list, get, status, rotate, update, activate, delete)',
  builder: (y) =>
    y
      .command<HookArgs>('create', 'Create a webhook on a log; prints it with its generated secret',
        (z) => clientOptions(z)
          .option('log-id', { type: 'string', demandOption: true })
          .option('destination', { type: 'string', demandOption: true, describe: 'the URL to POST to' })
          .option('payload', { type: 'string', default: 'message', choices: ['message', 'key', 'value'] })
          .option('metadata', { type: 'string' }) as never,
        async (a) => printJson(await callApi(a, 'POST', 'egress_webhooks', { log_id: a['log-id'], destination: a.destination, payload: a.payload, metadata: a.metadata })))
      .command<HookArgs>('list', 'List webhooks', (z) => clientOptions(z).option('metadata', { type: 'string' }) as never,
        async (a) => printJson(await callApi(a, 'GET', `egress_webhooks${a.metadata !== undefined ? `?metadata=${encodeURIComponent(a.metadata)}` : ''}`)))
      .command<HookArgs>('get <id>', 'Show a webhook', idArg as never, async (a) => printJson(await callApi(a, 'GET', `egress_webhook/${a.id}`)))
      .command<HookArgs>('status <id>', 'Delivery status: offsets, last attempt and reply, next attempt', idArg as never,
        async (a) => printJson(await callApi(a, 'GET', `egress_webhook/${a.id}/status`)))
      .command<HookArgs>('rotate <id>', 'Generate a new secret; the old one keeps signing for --expire-seconds',
        (z) => idArg(z).option('expire-seconds', { type: 'number', default: 0 }) as never,
        async (a) => printJson(await callApi(a, 'PATCH', `egress_webhook/${a.id}/secret`, { expire_seconds: a['expire-seconds'] })))
      .command<HookArgs>('update <id>', 'Change metadata or destination',
        (z) => idArg(z).option('metadata', { type: 'string' }).option('destination', { type: 'string' }) as never,
        async (a) => printJson(await callApi(a, 'PATCH', `egress_webhook/${a.id}`, { metadata: a.metadata, destination: a.destination })))
      .command<HookArgs>('activate <id>', 'Resume an inactive webhook from its cursor', idArg as never,
        async (a) => printJson(await callApi(a, 'PATCH', `egress_webhook/${a.id}`, { active: true })))
      .command<HookArgs>('delete <id>', 'Delete a webhook', idArg as never, async (a) => printJson(await callApi(a, 'DELETE', `egress_webhook/${a.id}`)))
      .demandCommand(1, 'name an egress-webhooks command') as never,
  handler: () => undefined,
};
