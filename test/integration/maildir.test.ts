/**
 * The maildir_path protocol: an injected message lands in <path>/new as one
 * file holding exactly its data, and the Delivery record names the Maildir
 * protocol.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readLocalLogs } from '../../src/logging/local-logs.js';
import type { JsonLogRecord } from '../../src/logging/record.js';
import type { Engine } from '../../src/engine.js';
import { startEngine } from '../helpers/engine.js';
import { tempDir } from '../helpers/policy.js';
import { waitFor } from '../helpers/fake-clock.js';

let engine: Engine | null = null;
afterEach(async () => {
  await engine?.close();
  engine = null;
});

function policy(logDir: string, maildir: string): string {
  return `
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '${logDir}' }
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  ARGS = { domain = domain, tenant = tenant, campaign = campaign, routing_domain = routing_domain }
  return kumo.make_queue_config { protocol = { maildir_path = '${maildir}' } }
end)
kumo.on('stats', function() return ARGS end)
`;
}

async function localLogsWhen(e: Engine, logDir: string, pred: (recs: JsonLogRecord[]) => boolean, what: string): Promise<JsonLogRecord[]> {
  let last: JsonLogRecord[] = [];
  await waitFor(async () => {
    await e.hub.flush();
    last = await readLocalLogs(logDir).catch(() => []);
    return pred(last);
  }, what);
  return last;
}

describe('maildir delivery', () => {
  it('writes the message into <path>/new as one file with the exact data, and logs a Maildir Delivery', async () => {
    const dir = tempDir('sluice-maildir-');
    const logDir = path.join(dir, 'logs');
    const maildir = path.join(dir, 'Maildir');
    ({ engine } = await startEngine(policy(logDir, maildir)));
    const data = 'Subject: Maildir test\r\nFrom: sender@example.com\r\nTo: recip@example.com\r\n\r\nLine one\r\nLine two: ünïcödé\r\n.\r\n';
    const msg = await engine.inject({ sender: 'sender@example.com', recipients: ['recip@example.com'], data });

    const local = await localLogsWhen(engine, logDir, (r) => r.some((x) => x.type === 'Delivery'), 'the Delivery record');
    const files = fs.readdirSync(path.join(maildir, 'new'));
    expect(files).toHaveLength(1);
    expect(files[0]).toContain(msg.id);
    expect(fs.readFileSync(path.join(maildir, 'new', files[0]!)).equals(Buffer.from(data, 'utf8'))).toBe(true);
    expect(fs.readdirSync(path.join(maildir, 'tmp'))).toEqual([]);
    expect(fs.readdirSync(path.join(maildir, 'cur'))).toEqual([]);

    expect(local.map((r) => r.type)).toEqual(['Reception', 'Delivery']);
    const delivery = local[1]!;
    expect(delivery).toMatchObject({
      type: 'Delivery',
      id: msg.id,
      sender: 'sender@example.com',
      recipient: 'recip@example.com',
      queue: 'example.com',
      site: `unspecified->maildir:${maildir}`,
      size: Buffer.byteLength(data),
      delivery_protocol: 'Maildir',
      reception_protocol: 'HTTP',
      num_attempts: 0,
      response: { code: 250, content: 'ok' },
    });
    expect(await engine.policy.fire('stats', []).then((r) => r.values[0])).toEqual({ domain: 'example.com' });
    await waitFor(async () => (await engine!.spool.size()) === 0, 'the spool to empty');
    expect(engine.manager.stats()).toMatchObject([{ name: 'example.com', delivered: 1, scheduled: 0, in_flight: 0 }]);
  });

  it('keeps binary data byte for byte', async () => {
    const dir = tempDir('sluice-maildir-');
    const logDir = path.join(dir, 'logs');
    const maildir = path.join(dir, 'Maildir');
    ({ engine } = await startEngine(policy(logDir, maildir)));
    const data = new Uint8Array([...Buffer.from('Subject: bin\r\n\r\n'), 0x00, 0xff, 0xfe, 0x80, 0x0d, 0x0a, 0xc3, 0x28]);
    const msg = await engine.inject({ sender: 'sender@example.com', recipients: ['recip@example.com'], data });
    await localLogsWhen(engine, logDir, (r) => r.some((x) => x.type === 'Delivery'), 'the Delivery record');
    const files = fs.readdirSync(path.join(maildir, 'new'));
    expect(files).toHaveLength(1);
    expect(files[0]).toContain(msg.id);
    expect([...fs.readFileSync(path.join(maildir, 'new', files[0]!))]).toEqual([...data]);
  });

  it('a tenant queue resolves its own config, and each message becomes its own file', async () => {
    const dir = tempDir('sluice-maildir-');
    const logDir = path.join(dir, 'logs');
    const maildir = path.join(dir, 'Maildir');
    ({ engine } = await startEngine(policy(logDir, maildir)));
    const a = await engine.inject({ sender: 's@example.com', recipients: ['x@dest.example'], data: 'Subject: a\r\n\r\na\r\n', meta: { tenant: 'acme' } });
    const b = await engine.inject({ sender: 's@example.com', recipients: ['y@dest.example'], data: 'Subject: b\r\n\r\nb\r\n', meta: { tenant: 'acme' } });
    const local = await localLogsWhen(engine, logDir, (r) => r.filter((x) => x.type === 'Delivery').length === 2, 'two deliveries');
    expect(await engine.policy.fire('stats', []).then((r) => r.values[0])).toEqual({ domain: 'dest.example', tenant: 'acme' });
    const deliveries = local.filter((r) => r.type === 'Delivery');
    expect(deliveries.map((r) => [r.id, r.queue, r.delivery_protocol]).sort()).toEqual([[a.id, 'acme@dest.example', 'Maildir'], [b.id, 'acme@dest.example', 'Maildir']].sort());
    const files = fs.readdirSync(path.join(maildir, 'new')).sort();
    expect(files).toHaveLength(2);
    const contents = files.map((f) => fs.readFileSync(path.join(maildir, 'new', f), 'utf8')).sort();
    expect(contents).toEqual(['Subject: a\r\n\r\na\r\n', 'Subject: b\r\n\r\nb\r\n']);
  });
});
