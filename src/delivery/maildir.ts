/**
 * The `maildir_path` protocol (KumoMTA's): each message is written as one
 * file into `<maildir_path>/new`, through `tmp` and a rename so a reader
 * never sees half a file. The path is used as given (no placeholders).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomHex } from '../random.js';
import type { Message } from '../queue/message.js';
import type { MaildirProtocol } from '../queue/config.js';
import type { Connector, DeliveryConnection } from './connector.js';
import { response } from '../logging/record.js';
import type { Outcome } from './disposition.js';

export class MaildirConnector implements Connector {
  readonly batchSize = 1;
  readonly minBatchSize = 1;
  readonly maxBatchLatency = 0;
  readonly recordFields = { deliveryProtocol: 'Maildir', peerName: 'localhost', peerAddr: '127.0.0.1' };
  #ready: Promise<void> | null = null;

  constructor(readonly protocol: MaildirProtocol) {}

  async open(): Promise<DeliveryConnection> {
    const root = this.protocol.maildir_path;
    const dirMode = this.protocol.dir_mode ?? 0o775;
    const fileMode = this.protocol.file_mode ?? 0o664;
    this.#ready ??= Promise.all(['tmp', 'new', 'cur'].map((d) => fs.mkdir(path.join(root, d), { recursive: true, mode: dirMode }))).then(() => undefined);
    await this.#ready;
    return {
      async deliver(batch: readonly Message[]): Promise<Outcome> {
        try {
          for (const m of batch) {
            const name = `${Date.now()}.${m.id}.${randomHex(4)}.${os.hostname()}`;
            const tmp = path.join(root, 'tmp', name);
            await fs.writeFile(tmp, m.data, { mode: fileMode, flush: true });
            await fs.rename(tmp, path.join(root, 'new', name));
          }
          return { kind: 'delivered', response: response(250, 'ok') };
        } catch (err) {
          return { kind: 'transient', response: response(400, `maildir write failed: ${(err as Error).message}`), closeConnection: true };
        }
      },
      async close() {},
    };
  }
}
