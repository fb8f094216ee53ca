/**
 * A message through the engine to a new_json hook and a maildir
 * (kumomta-facts §17.1–3, 9): the webhook gets the Reception and Delivery
 * records, the local log has the hook's own deliveries, a 500 is a bounce.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readLocalLogs } from '../../src/logging/local-logs.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { startEngine, mail } from '../helpers/engine.js';
import { tempDir } from '../helpers/policy.js';
import { waitFor } from '../helpers/fake-clock.js';
import type { Engine } from '../../src/engine.js';

let receiver: Receiver;
let engine: Engine | null = null;
beforeEach(async () => {
  receiver = await startReceiver();
});
afterEach(async () => {
  await engine?.close();
  engine = null;
  await receiver.close();
});

function policy(logDir: string, maildir: string) {
  return `
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json { name = 'W', url = '${receiver.url}/log', log_parameters = { headers = { 'Subject', 'X-*' } } }
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '${logDir}' }
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { protocol = { maildir_path = '${maildir}' } }
end)
`;
}

describe('engine: a message to a new_json hook', () => {
  it('delivers the message and POSTs its Reception and Delivery records (§17.1, §17.9)', async () => {
    const dir = tempDir();
    const logDir = path.join(dir, 'logs');
    const maildir = path.join(dir, 'maildir');
    ({ engine } = await startEngine(policy(logDir, maildir)));
    const msg = await engine.inject(mail('Hello! This is a test'));

    const records = await receiver.waitForRecords(2);
    expect(records.map((r) => r.type).sort()).toEqual(['Delivery', 'Reception']);
    for (const r of receiver.requests) {
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.body.endsWith('}\n')).toBe(true);
      expect(r.body.indexOf('\n')).toBe(r.body.length - 1);
    }
    const delivery = records.find((r) => r.type === 'Delivery') as Record<string, any>;
    expect(delivery).toMatchObject({
      id: msg.id,
      sender: 'sender@example.com',
      recipient: 'recip@example.com',
      queue: 'example.com',
      delivery_protocol: 'Maildir',
      reception_protocol: 'HTTP',
      headers: { Subject: 'Hello! This is a test', 'X-Test1': 'Test1' },
      response: { code: 250, content: 'ok' },
    });
    expect(fs.readdirSync(path.join(maildir, 'new'))).toHaveLength(1);

    // §17.2: the hook's own deliveries are in the local log, never re-hooked.
    await waitFor(async () => {
      await engine!.hub.flush();
      const local = await readLocalLogs(logDir).catch(() => []);
      return local.filter((r) => r.reception_protocol === 'LogRecord' && r.type === 'Delivery').length === 2;
    }, 'two hook Delivery records in the local log');
    const local = await readLocalLogs(logDir);
    const hookDeliveries = local.filter((r) => r.reception_protocol === 'LogRecord');
    for (const r of hookDeliveries) {
      expect(r).toMatchObject({
        type: 'Delivery',
        delivery_protocol: 'Lua',
        queue: 'W.log_hook',
        site: 'unspecified->W.log_hook@lua:make.W.log_hook',
        peer_address: { name: 'Lua via make.W.log_hook', addr: '0.0.0.0' },
      });
      expect(r.response.code).toBe(200);
      expect(r.response.content).toBe('200 OK: ok');
    }
    expect(receiver.requests).toHaveLength(2);
  });

  it('a 500 from the webhook is a Bounce, with no retry (§17.3)', async () => {
    const dir = tempDir();
    const logDir = path.join(dir, 'logs');
    receiver.respond = () => ({ status: 500, body: 'nope' });
    ({ engine } = await startEngine(policy(logDir, path.join(dir, 'maildir'))));
    await engine.inject(mail());
    await receiver.waitForRequests(2);
    await waitFor(async () => {
      await engine!.hub.flush();
      return (await readLocalLogs(logDir).catch(() => [])).filter((r) => r.type === 'Bounce').length === 2;
    }, 'two Bounce records');
    const bounces = (await readLocalLogs(logDir)).filter((r) => r.type === 'Bounce');
    expect(bounces[0]?.response).toMatchObject({ code: 500, content: '500 Internal Server Error: nope' });
    expect(engine.manager.totals.transfail).toBe(0);
    expect(receiver.requests).toHaveLength(2);
  });
});
