/**
 * `sluice records [FILE]`: publish log records to the daemon's log hooks
 * (`POST /api/log-records/v1`). The input is a JSON object, a JSON array,
 * or JSON lines; from FILE or stdin.
 */
import fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { callApi, clientOptions, fail, printJson, readStdin, type ClientArgs } from './client.js';

interface RecordsArgs extends ClientArgs {
  file?: string;
  'batch-size': number;
}

export const recordsCommand: CommandModule<object, RecordsArgs> = {
  command: 'records [file]',
  describe: 'Publish log records (JSON, a JSON array, or JSON lines) to the log hooks',
  builder: (y) =>
    clientOptions(y)
      .positional('file', { type: 'string', describe: 'file to read (default: stdin)' })
      .option('batch-size', { type: 'number', default: 1000, describe: 'records per request' }) as never,
  handler: async (a) => {
    const text = a.file && a.file !== '-' ? fs.readFileSync(a.file, 'utf8') : await readStdin();
    const records = parseRecords(text);
    if (!(a['batch-size'] >= 1)) fail('--batch-size must be at least 1');
    let accepted = 0;
    let queued = 0;
    for (let i = 0; i < records.length; i += a['batch-size']) {
      const r = (await callApi(a, 'POST', 'api/log-records/v1', records.slice(i, i + a['batch-size']))) as { accepted: number; queued: number };
      accepted += r.accepted;
      queued += r.queued;
    }
    printJson({ accepted, queued });
  },
};

export function parseRecords(text: string): unknown[] {
  const t = text.trim();
  if (t === '') fail('no records in the input');
  try {
    const v = JSON.parse(t) as unknown;
    return Array.isArray(v) ? v : [v];
  } catch {
    return t.split('\n').filter((l) => l.trim() !== '').map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch (err) {
        fail(`line ${i + 1}: not JSON: ${(err as Error).message}`);
      }
    });
  }
}
