/**
 * `sluice receive --secret S [--listen HOST:PORT]`: a test endpoint for
 * egress webhooks, like `klev receive`. It verifies each request's
 * signatures (klev's `X-Klev-Signature`, Standard Webhooks, or both) and
 * prints each message on stdout; rejected requests get a 4xx and a
 * `rejected: <code>: <message>` line on stderr, and the server keeps going.
 * Prints `running server at http://HOST:PORT` once listening (the real port
 * when 0 is asked for). SIGINT or SIGTERM stops it with exit 0.
 */
import type { CommandModule } from 'yargs';
import { startReceiver } from '../egress/receive.js';
import { fail } from './client.js';
import { splitListen } from '../http/listen.js';

interface ReceiveArgs {
  secret?: string;
  listen: string;
}

/** `HOST:PORT` (IPv6 as `[::1]:PORT`) → its parts; throws with a message naming the problem. */
export function parseListen(value: string): { host: string; port: number } {
  const usage = `--listen must be HOST:PORT, e.g. 127.0.0.1:9000 or [::1]:9000 (0.0.0.0:9000 for all interfaces; port 0 picks a free one), got ${JSON.stringify(value)}`;
  const r = splitListen(value);
  if ('problem' in r) throw new Error(r.problem === 'expected HOST:PORT' ? usage : `${usage}: ${r.problem}`);
  return r;
}

export const receiveCommand: CommandModule<object, ReceiveArgs> = {
  command: 'receive',
  describe: 'Receive egress webhooks: verify signatures and print each message (like klev receive)',
  builder: (y) =>
    y
      // No yargs default from the environment: --help would print the secret.
      .option('secret', { type: 'string', describe: 'the webhook secret (ewhsec_...) [env: SLUICE_WEBHOOK_SECRET]' })
      .option('listen', { type: 'string', default: '127.0.0.1:9000', describe: 'HOST:PORT to listen on (port 0: any free port)' })
      .check((argv) => {
        const secret = argv.secret ?? process.env.SLUICE_WEBHOOK_SECRET;
        if (secret === undefined || secret === '') throw new Error('--secret is required (or set SLUICE_WEBHOOK_SECRET)');
        parseListen(argv.listen);
        return true;
      }) as never,
  handler: async (argv) => {
    const secret = (argv.secret ?? process.env.SLUICE_WEBHOOK_SECRET)!;
    const { host, port } = parseListen(argv.listen);
    let receiver;
    try {
      receiver = await startReceiver({
        secret,
        host,
        port,
        out: (line) => process.stdout.write(`${line}\n`),
        err: (line) => process.stderr.write(`${line}\n`),
      });
    } catch (err) {
      fail(`cannot listen on ${argv.listen}: ${(err as Error).message}`);
    }
    process.stdout.write(`running server at ${receiver.url}\n`);
    const stop = () => {
      void receiver.close().then(() => process.exit(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  },
};
