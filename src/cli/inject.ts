/** `sluice inject`: inject one message through `POST /api/inject/v1`. */
import fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { callApi, clientOptions, fail, printJson, readStdin, type ClientArgs } from './client.js';

interface InjectArgs extends ClientArgs {
  from: string;
  to: string[];
  subject?: string;
  body?: string;
  file?: string;
  meta: string[];
}

export const injectCommand: CommandModule<object, InjectArgs> = {
  command: 'inject',
  describe: 'Inject a message (KumoMTA\'s /api/inject/v1); prints the reply',
  builder: (y) =>
    clientOptions(y)
      .option('from', { type: 'string', demandOption: true, describe: 'envelope sender' })
      .option('to', { type: 'string', array: true, demandOption: true, describe: 'recipient (repeat for several)' })
      .option('subject', { type: 'string', describe: 'build a simple message with this subject' })
      .option('body', { type: 'string', describe: 'text body (with --subject), or the whole RFC 5322 message' })
      .option('file', { type: 'string', describe: 'read the whole message from this file (- for stdin)' })
      .option('meta', { type: 'string', array: true, default: [], describe: 'recipient metadata KEY=VALUE (repeatable)' }) as never,
  handler: async (a) => {
    const metadata: Record<string, string> = {};
    for (const kv of a.meta) {
      const i = kv.indexOf('=');
      if (i <= 0) fail(`--meta '${kv}': expected KEY=VALUE`);
      metadata[kv.slice(0, i)] = kv.slice(i + 1);
    }
    let content: unknown;
    if (a.file !== undefined) content = a.file === '-' ? await readStdin() : fs.readFileSync(a.file, 'utf8');
    else if (a.subject !== undefined) content = { subject: a.subject, text_body: a.body ?? '' };
    else if (a.body !== undefined) content = a.body;
    else fail('give the message with --subject/--body, --body or --file');
    const recipients = a.to.map((email) => ({ email, ...(Object.keys(metadata).length ? { metadata } : {}) }));
    printJson(await callApi(a, 'POST', 'api/inject/v1', { envelope_sender: a.from, recipients, content }));
  },
};
