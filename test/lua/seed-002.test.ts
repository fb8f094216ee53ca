/**
 * The three Lua snippets of seed 002, verbatim (only the URL comes from
 * WEBHOOK_URL), load, register the expected handlers, and their connections
 * deliver to a real receiver on loopback.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LuaConnection } from '../../src/delivery/lua-connection.js';
import { RejectError } from '../../src/errors.js';
import { QueueConfigHandle } from '../../src/lua/modules/kumo-config.js';
import { LuaVM } from '../../src/lua/vm.js';
import { Message } from '../../src/queue/message.js';
import { captureLogger, writePolicy } from '../helpers/policy.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

const FIXTURES = path.join(import.meta.dirname, '../fixtures/seed-002');
const seed = (name: string) => fs.readFileSync(path.join(FIXTURES, name), 'utf8');

function logMessage(record: Record<string, unknown>): Message {
  return new Message({
    sender: 'sender@example.com',
    recipients: ['recip@example.com'],
    data: `${JSON.stringify(record)}\n`,
    meta: { log_record: record, reception_protocol: 'LogRecord', queue: 'webhook.log_hook' },
  });
}

describe('seed 002 snippets', () => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await startReceiver();
    process.env.WEBHOOK_URL = `${receiver.url}/log`;
  });
  afterAll(async () => {
    delete process.env.WEBHOOK_URL;
    await receiver.close();
  });

  async function load(name: string): Promise<LuaVM> {
    const vm = await LuaVM.load({ policyPath: writePolicy(seed(name)), logger: captureLogger().logger });
    await vm.startup();
    return vm;
  }

  it('new_json: registers the hook and POSTs one record per send', async () => {
    const vm = await load('new-json.lua');
    expect(vm.settings.logHooks.get('webhook')).toMatchObject({ headers: ['Subject', 'X-Customer-ID'] });
    for (const e of ['pre_init', 'should_enqueue_log_record', 'get_queue_config', 'make.webhook.log_hook']) expect(vm.hasHandler(e)).toBe(true);
    const cfg = ((await vm.fire('get_queue_config', ['webhook.log_hook', null, null, null], 'refs')).values[0] as QueueConfigHandle).config;
    expect(cfg.protocol).toMatchObject({ kind: 'custom_lua', constructor: 'make.webhook.log_hook', batch_size: 1 });

    const before = receiver.requests.length;
    const conn = await LuaConnection.open(vm, 'make.webhook.log_hook', 'webhook.log_hook');
    const disposition = await conn.send(logMessage({ type: 'Delivery', id: 'abc' }));
    expect(disposition).toBe('200 OK: ok');
    const req = receiver.requests[before];
    expect(req?.headers['content-type']).toBe('application/json');
    expect(req?.body).toBe('{"type":"Delivery","id":"abc"}\n');
    expect(await conn.close()).toBeNull();
  });

  it('new_json: a non-2xx reply is kumo.reject(500, ...)', async () => {
    const vm = await load('new-json.lua');
    receiver.respond = () => ({ status: 503, body: 'busy' });
    try {
      const conn = await LuaConnection.open(vm, 'make.webhook.log_hook', 'webhook.log_hook');
      const err = (await conn.send(logMessage({ type: 'Delivery' })).catch((e: unknown) => e)) as RejectError;
      expect(err).toBeInstanceOf(RejectError);
      expect(err.smtpCode).toBe(500);
      expect(err.response).toBe('503 Service Unavailable: busy');
    } finally {
      receiver.respond = () => ({ status: 200, body: 'ok' });
    }
  });

  it('log_hooks:new with a constructor: send and close', async () => {
    const vm = await load('new-send.lua');
    const before = receiver.requests.length;
    const conn = await LuaConnection.open(vm, 'make.webhook.log_hook', 'webhook.log_hook');
    expect(await conn.send(logMessage({ type: 'Reception' }))).toBe('200 OK: ok');
    expect(receiver.requests[before]?.body).toBe('{"type":"Reception"}\n');
    expect(await conn.close()).toBeNull();
  });

  it('batched: send_batch POSTs a JSON array of the records', async () => {
    const vm = await load('new-send-batch.lua');
    const cfg = ((await vm.fire('get_queue_config', ['webhookbatch.log_hook', null, null, null], 'refs')).values[0] as QueueConfigHandle).config;
    expect(cfg.protocol).toMatchObject({ kind: 'custom_lua', constructor: 'make.webhookbatch.log_hook', batch_size: 100 });
    const before = receiver.requests.length;
    const conn = await LuaConnection.open(vm, 'make.webhookbatch.log_hook', 'webhookbatch.log_hook');
    const records = Array.from({ length: 100 }, (_, i) => ({ type: 'Delivery', id: `m${i}`, timestamp: 1_700_000_000 + i, event_ms: 1_700_000_000_000 + i }));
    expect(await conn.sendBatch(records.map(logMessage))).toBe('200 OK: ok');
    expect(JSON.parse(receiver.requests[before]?.body ?? '')).toEqual(records);
    await conn.close();
  });
});
