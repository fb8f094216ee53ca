/**
 * `sluice serve`: run the daemon. SIGTERM or SIGINT shuts down gracefully
 * (in-flight deliveries finish, sessions close, the spool is committed, exit
 * 0); a second signal exits at once. SIGHUP reloads the policy.
 */
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { Daemon, DEFAULT_LISTEN, parseListen } from '../daemon.js';
import { describeError } from '../lua/check.js';
import { createLogger } from '../logging/logger.js';
import { DEFAULT_INSTRUCTION_LIMIT } from '../lua/vm.js';
import { parseDuration } from '../config/duration.js';

interface ServeArgs {
  policy: string;
  'data-dir': string;
  listen?: string;
  'lua-instruction-limit': number;
  'admin-token'?: string;
  'shutdown-timeout': number;
  watch: boolean;
  'records-log'?: string;
  'webhook-max-failure-age': string;
}

export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'Run the daemon: load the policy, open the spool, deliver, serve the HTTP API',
  builder: (y) =>
    y
      .option('policy', { type: 'string', demandOption: true, describe: 'the init.lua to run' })
      .option('data-dir', { type: 'string', default: './sluice-data', describe: 'where the spool lives (one sluice process per directory)' })
      .option('listen', { type: 'string', describe: `HTTP API address HOST:PORT (port 0 picks a free one); overrides kumo.start_http_listener [default: ${DEFAULT_LISTEN}]` })
      .option('lua-instruction-limit', { type: 'number', default: DEFAULT_INSTRUCTION_LIMIT, describe: 'instructions a Lua handler may run without yielding (0: no limit)' })
      .option('admin-token', { type: 'string', describe: 'bearer token required by admin routes [env: SLUICE_ADMIN_TOKEN]' })
      .option('shutdown-timeout', { type: 'number', default: 30, describe: 'seconds to wait for in-flight deliveries at shutdown' })
      .option('watch', { type: 'boolean', default: true, describe: 'reload the policy when its files change (--no-watch to turn off)' })
      .option('records-log', { type: 'string', describe: 'append every log record sluice makes to this event log (log_...)' })
      .option('webhook-max-failure-age', { type: 'string', default: '3 days', describe: 'an egress webhook failing this long goes inactive' })
      .check((a) => {
        if (a.listen !== undefined) parseListen(a.listen);
        if (!Number.isInteger(a['lua-instruction-limit']) || a['lua-instruction-limit'] < 0) throw new Error('--lua-instruction-limit must be a non-negative integer');
        if (!(a['shutdown-timeout'] >= 0)) throw new Error('--shutdown-timeout must be a number of seconds, 0 or more');
        try {
          parseDuration(a['webhook-max-failure-age']);
        } catch (err) {
          throw new Error(`--webhook-max-failure-age: ${(err as Error).message}`);
        }
        return true;
      }) as never,
  handler: async (a) => {
    const logger = createLogger();
    let daemon: Daemon;
    try {
      daemon = await Daemon.start({
        policyPath: path.resolve(a.policy),
        dataDir: path.resolve(a['data-dir']),
        listen: a.listen,
        instructionLimit: a['lua-instruction-limit'],
        adminToken: a['admin-token'] ?? process.env.SLUICE_ADMIN_TOKEN,
        shutdownTimeoutMs: a['shutdown-timeout'] * 1000,
        watch: a.watch,
        recordsLog: a['records-log'],
        webhookMaxFailureAgeMs: parseDuration(a['webhook-max-failure-age']),
        logger,
      });
    } catch (err) {
      logger.error({ error: describeError(err) }, `sluice could not start: ${describeError(err).split('\n')[0]}`);
      process.stderr.write(`sluice: ${describeError(err)}\n`);
      process.exit(1);
    }
    let signals = 0;
    const stop = (signal: string) => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      logger.info({ signal }, 'graceful shutdown');
      daemon.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ error: describeError(err) }, 'error during shutdown');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void daemon.reload('SIGHUP'));
  },
};
