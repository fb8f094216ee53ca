/**
 * Event-log commands, with klev's verbs: `sluice logs create|list|get|stats|update|delete`,
 * `sluice publish LOG_ID`, `sluice consume LOG_ID`.
 */
import fs from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { callApi, clientOptions, fail, printJson, type ClientArgs } from './client.js';

interface LogArgs extends ClientArgs {
  id?: string;
  metadata?: string;
  compacting?: boolean;
  'trim-seconds'?: number;
  'trim-size'?: number;
  'trim-count'?: number;
  'compact-seconds'?: number;
  'expire-seconds'?: number;
}

function settingsOptions<T>(y: Argv<T>, create: boolean): Argv<T & LogArgs> {
  let z = clientOptions(y)
    .option('metadata', { type: 'string', describe: 'free-form text (often JSON)' })
    .option('trim-seconds', { type: 'number', describe: 'drop messages older than this' })
    .option('trim-size', { type: 'number', describe: 'keep at most this many bytes of keys and values' })
    .option('trim-count', { type: 'number', describe: 'keep at most this many messages' })
    .option('compact-seconds', { type: 'number', describe: 'compacting logs: drop superseded messages older than this' })
    .option('expire-seconds', { type: 'number', describe: 'compacting logs: drop delete markers older than this' });
  if (create) z = z.option('compacting', { type: 'boolean', describe: 'keep only the newest message per key' });
  return z as Argv<T & LogArgs>;
}

function settingsBody(a: LogArgs): Record<string, unknown> {
  return {
    metadata: a.metadata, compacting: a.compacting, trim_seconds: a['trim-seconds'], trim_size: a['trim-size'],
    trim_count: a['trim-count'], compact_seconds: a['compact-seconds'], expire_seconds: a['expire-seconds'],
  };
}

const idArg = <T>(y: Argv<T>) => clientOptions(y).positional('id', { type: 'string', demandOption: true, describe: 'the log id (log_...)' });

export const logsCommand: CommandModule<object, LogArgs> = {
  command: 'logs <command>',
  describe: 'Manage event logs (create, list, get, stats, update, delete)',
  builder: (y) =>
    y
      .command<LogArgs>('create', 'Create a log; prints it', (z) => settingsOptions(z, true) as never, async (a) => printJson(await callApi(a, 'POST', 'logs', settingsBody(a))))
      .command<LogArgs>('list', 'List logs', (z) => clientOptions(z).option('metadata', { type: 'string', describe: 'only logs with exactly this metadata' }) as never, async (a) =>
        printJson(await callApi(a, 'GET', `logs${a.metadata !== undefined ? `?metadata=${encodeURIComponent(a.metadata)}` : ''}`)))
      .command<LogArgs>('get <id>', 'Show a log', idArg as never, async (a) => printJson(await callApi(a, 'GET', `log/${a.id}`)))
      .command<LogArgs>('stats <id>', 'Size and count of a log', idArg as never, async (a) => printJson(await callApi(a, 'GET', `log/${a.id}/stats`)))
      .command<LogArgs>('update <id>', 'Change metadata or retention', (z) => settingsOptions(idArg(z), false) as never, async (a) => printJson(await callApi(a, 'PATCH', `log/${a.id}`, settingsBody(a))))
      .command<LogArgs>('delete <id>', 'Delete a log and its messages', idArg as never, async (a) => printJson(await callApi(a, 'DELETE', `log/${a.id}`)))
      .demandCommand(1, 'name a logs command: create, list, get, stats, update or delete') as never,
  handler: () => undefined,
};

interface PublishArgs extends ClientArgs {
  id: string;
  key?: string;
  'key-file'?: string;
  'key-bytes'?: string;
  value?: string;
  'value-file'?: string;
  'value-bytes'?: string;
  time?: number;
}

function oneOf(a: PublishArgs, what: 'key' | 'value'): string | undefined {
  const given = [a[what], a[`${what}-file`], a[`${what}-bytes`]].filter((x) => x !== undefined);
  if (given.length > 1) fail(`give the ${what} once: --${what}, --${what}-file or --${what}-bytes`);
  if (a[what] !== undefined) return Buffer.from(a[what] as string, 'utf8').toString('base64');
  if (a[`${what}-file`] !== undefined) return fs.readFileSync(a[`${what}-file`] as string).toString('base64');
  if (a[`${what}-bytes`] !== undefined) {
    const b = a[`${what}-bytes`] as string;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b)) fail(`--${what}-bytes: not base64`);
    return b;
  }
  return undefined;
}

export const publishCommand: CommandModule<object, PublishArgs> = {
  command: 'publish <id>',
  describe: 'Publish one message to a log; prints {"next_offset": N}',
  builder: (y) =>
    clientOptions(y)
      .positional('id', { type: 'string', demandOption: true, describe: 'the log id' })
      .option('key', { type: 'string' }).option('key-file', { type: 'string' }).option('key-bytes', { type: 'string', describe: 'base64' })
      .option('value', { type: 'string' }).option('value-file', { type: 'string' }).option('value-bytes', { type: 'string', describe: 'base64' })
      .option('time', { type: 'number', describe: 'unix microseconds (default: now)' }) as never,
  handler: async (a) => {
    const body = { encoding: 'base64', key: oneOf(a, 'key'), value: oneOf(a, 'value'), time: a.time };
    printJson(await callApi(a, 'POST', `message/${a.id}`, body));
  },
};

interface ConsumeArgs extends ClientArgs {
  id: string;
  offset: number;
  size?: number;
  poll?: string;
  encoding: string;
}

export const consumeCommand: CommandModule<object, ConsumeArgs> = {
  command: 'consume <id>',
  describe: 'Read messages from a log; prints {next_offset, encoding, messages}',
  builder: (y) =>
    clientOptions(y)
      .positional('id', { type: 'string', demandOption: true })
      .option('offset', { type: 'number', default: -2, describe: 'first offset (-2: oldest, -1: newest)' })
      .option('size', { type: 'number', describe: 'most messages to return [default: 100]' })
      .option('poll', { type: 'string', describe: 'wait up to this long for new messages, e.g. 10s' })
      .option('encoding', { type: 'string', default: 'string', choices: ['string', 'base64'] }) as never,
  handler: async (a) => {
    const q = new URLSearchParams({ offset: String(a.offset), encoding: a.encoding });
    if (a.size !== undefined) q.set('len', String(a.size));
    if (a.poll !== undefined) {
      const { parseDuration } = await import('../config/duration.js');
      try {
        q.set('poll', String(Math.round(parseDuration(a.poll))));
      } catch (err) {
        fail(`--poll: ${(err as Error).message}`);
      }
    }
    printJson(await callApi(a, 'GET', `messages/${a.id}?${q}`));
  },
};
