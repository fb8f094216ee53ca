/**
 * `POST /api/inject/v1` against the real `sluice serve`: KumoMTA's reply,
 * the Reception and Delivery records at the new_json webhook, the message
 * in the maildir; and the same through `sluice inject`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, postJson, type Daemon } from '../helpers/daemon.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/policy.js';

let receiver: Receiver;
let daemon: Daemon;
let maildir: string;

beforeAll(async () => {
  receiver = await startReceiver();
  maildir = path.join(tempDir('sluice-maildir-'), 'maildir');
  daemon = await startDaemon({
    policy: `
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json { name = 'webhook', url = '${receiver.url}/log', log_parameters = { headers = { 'Subject' } } }
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { maildir_path = '${maildir}' } }
end)
`,
  });
});
afterAll(async () => {
  expect(await daemon.stop()).toBe(0);
  await receiver.close();
});

const mailFiles = () => {
  try {
    return fs.readdirSync(path.join(maildir, 'new')).map((f) => fs.readFileSync(path.join(maildir, 'new', f), 'utf8'));
  } catch {
    return [];
  }
};

describe('inject into sluice serve', () => {
  it('POST /api/inject/v1 → KumoMTA reply, Reception and Delivery at the webhook, message in the maildir', async () => {
    const res = await postJson(`${daemon.url}/api/inject/v1`, {
      envelope_sender: 'sender@example.com',
      recipients: [{ email: 'recip@example.com' }],
      content: { subject: 'Hello over HTTP', text_body: 'Hi there' },
    });
    expect(res).toEqual({ status: 200, json: { success_count: 1, fail_count: 0, failed_recipients: [], errors: [] } });

    const records = await receiver.waitForRecords(2);
    expect(records.map((r) => r.type).sort()).toEqual(['Delivery', 'Reception']);
    const reception = records.find((r) => r.type === 'Reception')!;
    const delivery = records.find((r) => r.type === 'Delivery')!;
    expect(reception.id).toBe(delivery.id);
    expect(reception).toMatchObject({ sender: 'sender@example.com', recipient: 'recip@example.com', reception_protocol: 'HTTP', headers: { Subject: 'Hello over HTTP' } });
    expect(delivery).toMatchObject({ sender: 'sender@example.com', recipient: 'recip@example.com', queue: 'example.com', delivery_protocol: 'Maildir', headers: { Subject: 'Hello over HTTP' } });
    expect((delivery.response as { code: number }).code).toBe(250);

    const files = mailFiles();
    expect(files).toHaveLength(1);
    expect(files[0]).toContain('Subject: Hello over HTTP');
    expect(files[0]).toContain('To: recip@example.com');
    expect(files[0]).toContain('Hi there');
    expect(receiver.requests).toHaveLength(2);
  });

  it('sluice inject --server URL ... does the same', async () => {
    const before = receiver.records().length;
    const r = await runCli(['inject', '--server', daemon.url, '--from', 'cli@example.com', '--to', 'someone@example.org', '--subject', 'From the CLI', '--body', 'Body text']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ success_count: 1, fail_count: 0, failed_recipients: [], errors: [] });

    const records = (await receiver.waitForRecords(before + 2)).slice(before);
    expect(records.map((x) => x.type).sort()).toEqual(['Delivery', 'Reception']);
    for (const x of records) expect(x).toMatchObject({ sender: 'cli@example.com', recipient: 'someone@example.org', headers: { Subject: 'From the CLI' } });
    const files = mailFiles();
    expect(files).toHaveLength(2);
    expect(files.filter((f) => f.includes('Subject: From the CLI') && f.includes('Body text'))).toHaveLength(1);
  });
});
