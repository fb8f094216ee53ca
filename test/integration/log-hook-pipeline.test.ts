/**
 * The log hook pipeline through the engine (kumomta-facts §3, §17.16–17,
 * §17.26–32): which records reach which hook, what the hook message looks
 * like (body, meta, captured headers and meta, recipients), and
 * engine.publishRecords for records made elsewhere.
 *
 * Lua-side observations go through globals the policy exposes with a custom
 * `stats` event; deliveries of the original messages go to a maildir.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readLocalLogs } from '../../src/logging/local-logs.js';
import { buildRecord, response, type JsonLogRecord } from '../../src/logging/record.js';
import { Message } from '../../src/queue/message.js';
import type { Engine } from '../../src/engine.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { startEngine, mail } from '../helpers/engine.js';
import { tempDir } from '../helpers/policy.js';
import { waitFor } from '../helpers/fake-clock.js';

let receiver: Receiver;
let engine: Engine | null = null;
let logDir: string;
let maildir: string;

beforeEach(async () => {
  receiver = await startReceiver();
  const dir = tempDir('sluice-pipeline-');
  logDir = path.join(dir, 'logs');
  maildir = path.join(dir, 'maildir');
});

afterEach(async () => {
  await engine?.close();
  engine = null;
  await receiver.close();
});

/** A policy: `hooks` (Lua, at top level), local logs, a maildir for every other queue. */
function policy(hooks: string): string {
  return `
local log_hooks = require 'policy-extras.log_hooks'
${hooks}
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '${logDir}' }
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { protocol = { maildir_path = '${maildir}' } }
end)
`;
}

/** A custom constructor for hook `name` that appends what `send` sees to the global SEEN. */
function recordingHook(name: string, extra = ''): string {
  return `
log_hooks:new {
  name = '${name}',
  ${extra}
  constructor = function(domain, tenant, campaign)
    DOMAINS = DOMAINS or {}
    table.insert(DOMAINS, '${name}=' .. domain)
    return {
      send = function(self, msg)
        local rec = msg:get_meta('log_record')
        table.insert(SEEN, { hook = '${name}', domain = domain, type = rec.type, id = rec.id, data = msg:get_data(),
          queue = msg:get_meta('queue'), rp = msg:get_meta('reception_protocol') })
        return 'ok'
      end,
    }
  end,
}
`;
}

async function stats<T = Record<string, unknown>>(e: Engine): Promise<T> {
  return (await e.policy.fire('stats', [])).values[0] as T;
}

/** Local log records once `pred` holds for them. */
async function localLogsWhen(e: Engine, pred: (recs: JsonLogRecord[]) => boolean, what: string): Promise<JsonLogRecord[]> {
  let last: JsonLogRecord[] = [];
  await waitFor(async () => {
    await e.hub.flush();
    last = await readLocalLogs(logDir).catch(() => []);
    return pred(last);
  }, what);
  return last;
}

const hookDeliveries = (recs: JsonLogRecord[]) => recs.filter((r) => r.type === 'Delivery' && r.reception_protocol === 'LogRecord');
const errorLogs = (logs: { level: number }[]) => logs.filter((l) => l.level >= 50);

describe('log hook pipeline', () => {
  it('a filter that drops Reception records: only the Delivery record is POSTed (§17.16)', async () => {
    let logs;
    ({ engine, logs } = await startEngine(policy(`
log_hooks:new {
  name = 'W',
  filter = function(msg, hook_name)
    FILTERED = (FILTERED or 0) + 1
    return msg:get_meta('log_record').type == 'Reception'
  end,
  constructor = function(domain)
    local client = kumo.http.build_client {}
    return {
      send = function(self, msg)
        local r = client:post('${receiver.url}/log'):header('Content-Type', 'application/json'):body(msg:get_data()):send()
        if r:status_is_success() then return 'posted' end
        kumo.reject(500, 'status ' .. r:status_code())
      end,
      close = function() client:close() end,
    }
  end,
}
kumo.on('stats', function() return { filtered = FILTERED } end)
`)));
    const msg = await engine.inject(mail('Filtered'));
    const local = await localLogsWhen(engine, (r) => hookDeliveries(r).length === 1 && r.some((x) => x.type === 'Delivery' && x.reception_protocol === 'HTTP'), 'the hook delivery');
    expect(receiver.requests).toHaveLength(1);
    const posted = receiver.records();
    expect(posted).toHaveLength(1);
    expect(posted[0]).toMatchObject({ type: 'Delivery', id: msg.id, delivery_protocol: 'Maildir', reception_protocol: 'HTTP' });
    expect(await stats(engine)).toEqual({ filtered: 2 });
    expect(engine.hub.hookStats()).toEqual([{ name: 'W', backlog: 0, enqueued: 1, dropped: 1 }]);
    // The one hook message was delivered once; no hook message about the Reception exists.
    expect(hookDeliveries(local)).toHaveLength(1);
    expect(hookDeliveries(local)[0]).toMatchObject({ queue: 'W.log_hook', response: { code: 200, content: 'posted' } });
    expect(errorLogs(logs)).toEqual([]);
  });

  it('two hooks: every record is queued once per hook, each constructor sees its own domain (§17.17)', async () => {
    ({ engine } = await startEngine(policy(`
SEEN = {}
${recordingHook('A')}
${recordingHook('B')}
kumo.on('stats', function() return { seen = SEEN, domains = DOMAINS } end)
`)));
    const msg = await engine.inject(mail('Two hooks'));
    await waitFor(async () => ((await stats<{ seen: unknown[] }>(engine!)).seen ?? []).length === 4, 'four hook sends');
    const s = await stats<{ seen: Array<Record<string, string>>; domains: string[] }>(engine);
    const seen = s.seen.map((x) => `${x.hook} ${x.domain} ${x.queue} ${x.type} ${x.id} ${x.rp}`).sort();
    expect(seen).toEqual([
      `A A.log_hook A.log_hook Delivery ${msg.id} LogRecord`,
      `A A.log_hook A.log_hook Reception ${msg.id} LogRecord`,
      `B B.log_hook B.log_hook Delivery ${msg.id} LogRecord`,
      `B B.log_hook B.log_hook Reception ${msg.id} LogRecord`,
    ]);
    // One constructor call per hook queue (one session each), each with its own domain.
    expect([...s.domains].sort()).toEqual(['A=A.log_hook', 'B=B.log_hook']);
    expect(engine.hub.hookStats().map((h) => [h.name, h.enqueued, h.dropped])).toEqual([['A', 2, 0], ['B', 2, 0]]);

    const local = await localLogsWhen(engine, (r) => hookDeliveries(r).length === 4, 'four hook deliveries');
    const byQueue = (q: string) => hookDeliveries(local).filter((r) => r.queue === q);
    expect(byQueue('A.log_hook')).toHaveLength(2);
    expect(byQueue('B.log_hook')).toHaveLength(2);
    expect(byQueue('A.log_hook')[0]).toMatchObject({ site: 'unspecified->A.log_hook@lua:make.A.log_hook', peer_address: { name: 'Lua via make.A.log_hook', addr: '0.0.0.0' } });
    expect(byQueue('B.log_hook')[0]).toMatchObject({ site: 'unspecified->B.log_hook@lua:make.B.log_hook', peer_address: { name: 'Lua via make.B.log_hook', addr: '0.0.0.0' } });
    // The four hook messages are distinct messages.
    expect(new Set(hookDeliveries(local).map((r) => r.id)).size).toBe(4);
    const queues = engine.manager.stats().map((q) => q.name).sort();
    expect(queues).toEqual(['A.log_hook', 'B.log_hook', 'example.com']);
  });

  it('configure_log_hook without any should_enqueue_log_record handler: nothing is queued, no error (§17.26)', async () => {
    let logs;
    ({ engine, logs } = await startEngine(`
kumo.on('pre_init', function()
  kumo.configure_log_hook { name = 'X' }
end)
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '${logDir}' }
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { protocol = { maildir_path = '${maildir}' } }
end)
`));
    const msg = await engine.inject(mail('No handler'));
    const local = await localLogsWhen(engine, (r) => r.some((x) => x.type === 'Delivery'), 'the delivery');
    await waitFor(() => { const h = engine!.hub.hookStats()[0]; return h !== undefined && h.dropped === 2; }, 'both records offered');
    expect(engine.hub.hookStats()).toEqual([{ name: 'X', backlog: 0, enqueued: 0, dropped: 2 }]);
    expect(engine.hub.errors).toBe(0);
    expect(errorLogs(logs)).toEqual([]);
    expect(engine.manager.stats().map((q) => q.name)).toEqual(['example.com']);
    expect(await engine.spool.size()).toBe(0);
    expect(local.map((r) => `${r.type} ${r.id}`)).toEqual([`Reception ${msg.id}`, `Delivery ${msg.id}`]);
  });

  it('a should_enqueue_log_record handler that raises: the record is dropped and logged, never retried (§17.27)', async () => {
    let logs;
    let clock;
    ({ engine, logs, clock } = await startEngine(`
CALLS = 0
kumo.on('pre_init', function()
  kumo.configure_log_hook { name = 'X' }
end)
kumo.on('should_enqueue_log_record', function(msg, hook_name)
  CALLS = CALLS + 1
  error('boom in should_enqueue')
end)
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '${logDir}' }
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { protocol = { maildir_path = '${maildir}' } }
end)
kumo.on('stats', function() return { calls = CALLS } end)
`));
    await engine.inject(mail('Raise'));
    await waitFor(() => engine!.hub.errors === 2, 'two should_enqueue errors');
    expect(engine.hub.hookStats()).toEqual([{ name: 'X', backlog: 0, enqueued: 0, dropped: 2 }]);
    const errors = errorLogs(logs);
    expect(errors).toHaveLength(2);
    for (const e of errors) {
      expect(e).toMatchObject({ msg: 'Error while calling should_enqueue_log_record' });
      expect(String((e as { err?: unknown }).err)).toContain('boom in should_enqueue');
    }
    // No retry: an hour later the handler has still been called once per record.
    await clock.advance(3_600_000);
    expect(await stats(engine)).toEqual({ calls: 2 });
    expect(engine.hub.errors).toBe(2);
    expect(engine.manager.stats().map((q) => q.name)).toEqual(['example.com']);
  });

  it("headers={'Subject','X-*'}: a repeated header becomes an array, names keep their case (§17.28)", async () => {
    ({ engine } = await startEngine(policy(`
log_hooks:new_json { name = 'W', url = '${receiver.url}/log', log_parameters = { headers = { 'Subject', 'X-*' } } }
`)));
    await engine.inject({
      sender: 'sender@example.com',
      recipients: ['recip@example.com'],
      data: 'Subject: Hi\r\nX-A: 1\r\nFrom: sender@example.com\r\nX-A: 2\r\nTo: recip@example.com\r\n\r\nbody\r\n',
    });
    const records = await receiver.waitForRecords(2);
    expect(records.map((r) => r.type).sort()).toEqual(['Delivery', 'Reception']);
    for (const r of records) expect(r.headers).toEqual({ Subject: 'Hi', 'X-A': ['1', '2'] });
  });

  it("meta={'tenant','x_*'}: only matching meta is captured, and the hook message carries it (§17.29)", async () => {
    ({ engine } = await startEngine(policy(`
TENANTS = {}
log_hooks:new {
  name = 'W',
  log_parameters = { meta = { 'tenant', 'x_*' } },
  filter = function(msg)
    table.insert(TENANTS, 'filter:' .. tostring(msg:get_meta('tenant')) .. ':' .. tostring(msg:get_meta('other')))
    return false
  end,
  constructor = function(domain)
    local client = kumo.http.build_client {}
    return {
      send = function(self, msg)
        table.insert(TENANTS, 'send:' .. tostring(msg:get_meta('tenant')) .. ':' .. tostring(msg:get_meta('x_a')))
        local r = client:post('${receiver.url}/log'):header('Content-Type', 'application/json'):body(msg:get_data()):send()
        return 'posted ' .. r:status_code()
      end,
    }
  end,
}
kumo.on('stats', function() return { tenants = TENANTS } end)
`)));
    const msg = await engine.inject({ ...mail('Meta'), meta: { tenant: 't1', x_a: 1, other: 2 } });
    const records = await receiver.waitForRecords(2);
    expect(records.map((r) => r.type).sort()).toEqual(['Delivery', 'Reception']);
    for (const r of records) {
      expect(r.meta).toEqual({ tenant: 't1', x_a: 1 });
      expect(r.id).toBe(msg.id);
      // tenant meta routes the original message to its tenant queue.
      expect(r.queue).toBe('t1@example.com');
    }
    const { tenants } = await stats<{ tenants: string[] }>(engine);
    expect([...tenants].sort()).toEqual(['filter:t1:nil', 'filter:t1:nil', 'send:t1:1', 'send:t1:1']);
  });

  it('per_record={Reception={enable=false}}: Reception records are never offered (§17.30)', async () => {
    let logs;
    ({ engine, logs } = await startEngine(policy(`
log_hooks:new_json { name = 'W', url = '${receiver.url}/log', log_parameters = { per_record = { Reception = { enable = false } } } }
`)));
    const msg = await engine.inject(mail('No reception'));
    await localLogsWhen(engine, (r) => hookDeliveries(r).length === 1, 'the hook delivery');
    expect(receiver.records().map((r) => [r.type, r.id])).toEqual([['Delivery', msg.id]]);
    // Not offered at all: neither enqueued nor dropped.
    expect(engine.hub.hookStats()).toEqual([{ name: 'W', backlog: 0, enqueued: 1, dropped: 0 }]);
    expect(errorLogs(logs)).toEqual([]);
  });

  it("per_record={Any={template='{{ type }} {{ id }}'}}: the hook message's data is the template output plus a newline (§17.31)", async () => {
    ({ engine } = await startEngine(policy(`
SEEN = {}
${recordingHook('T', "log_parameters = { per_record = { Any = { template = '{{ type }} {{ id }}' } } },")}
kumo.on('stats', function() return { seen = SEEN } end)
`)));
    const msg = await engine.inject(mail('Template'));
    await waitFor(async () => ((await stats<{ seen?: unknown[] }>(engine!)).seen ?? []).length === 2, 'two hook sends');
    const { seen } = await stats<{ seen: Array<Record<string, string>> }>(engine);
    expect(seen.map((s) => s.data).sort()).toEqual([`Delivery ${msg.id}\n`, `Reception ${msg.id}\n`]);
    // The record itself is still in the log_record meta.
    expect(seen.map((s) => s.type).sort()).toEqual(['Delivery', 'Reception']);
  });

  it('two recipients: the record recipient is an array; one recipient: a string (§17.32)', async () => {
    ({ engine } = await startEngine(policy(`
log_hooks:new_json { name = 'W', url = '${receiver.url}/log' }
`)));
    const two = await engine.inject(mail('Two', ['a@example.com', 'b@example.com']));
    const records = await receiver.waitForRecords(2);
    for (const r of records) {
      expect(r.id).toBe(two.id);
      expect(r.recipient).toEqual(['a@example.com', 'b@example.com']);
    }
    const one = await engine.inject(mail('One', ['c@example.com']));
    const all = await receiver.waitForRecords(4);
    const forOne = all.filter((r) => r.id === one.id);
    expect(forOne.map((r) => r.type).sort()).toEqual(['Delivery', 'Reception']);
    for (const r of forOne) expect(r.recipient).toBe('c@example.com');
    // The hook messages themselves have both recipients too (local log of the hook deliveries).
    const local = await localLogsWhen(engine, (r) => hookDeliveries(r).length === 4, 'four hook deliveries');
    const hookTwo = hookDeliveries(local).filter((r) => Array.isArray(r.recipient));
    expect(hookTwo).toHaveLength(2);
    for (const r of hookTwo) expect(r.recipient).toEqual(['a@example.com', 'b@example.com']);
  });
});

describe('engine.publishRecords', () => {
  function record(type: JsonLogRecord['type'], i: number, extra: Partial<JsonLogRecord> = {}): JsonLogRecord {
    const m = new Message({ id: `${'0'.repeat(31)}${i}`, sender: 'news@shop.example', recipients: [`r${i}@mail.example`], data: 'Subject: x\r\n\r\nx\r\n', meta: { reception_protocol: 'ESMTP' }, created: Date.UTC(2026, 0, 1) });
    return { ...buildRecord(m, { type, response: response(250, 'queued'), when: Date.UTC(2026, 0, 1) }, { meta: [], headers: [] }), ...extra };
  }

  it('offers records to both hooks and resolves with the count once the hook messages are durable', async () => {
    let clock;
    ({ engine, clock } = await startEngine(policy(`
SEEN = {}
DOWN = true
local function hook(name)
  log_hooks:new {
    name = name,
    log_parameters = { per_record = { Bounce = { enable = false } } },
    constructor = function(domain)
      return {
        send = function(self, msg)
          if DOWN then kumo.reject(400, 'down') end
          local rec = msg:get_meta('log_record')
          table.insert(SEEN, name .. ' ' .. domain .. ' ' .. rec.type .. ' ' .. rec.id .. ' ' .. msg:get_data())
          return 'ok'
        end,
      }
    end,
  }
end
hook('A')
hook('B')
kumo.on('stats', function() return { seen = SEEN } end)
kumo.on('set_up', function() DOWN = false end)
`), { rand: () => 0.5 }));
    const records = [
      record('Reception', 1),
      record('Delivery', 2),
      record('Delivery', 3, { reception_protocol: 'LogRecord' }), // a hook message's own record: never re-hooked
      record('Bounce', 4), // disabled by per_record in both hooks
    ];
    const queued = await engine.publishRecords(records);
    expect(queued).toBe(4);
    // Resolved means committed: all four hook messages are in the spool now.
    expect(await engine.spool.size()).toBe(4);
    expect(engine.hub.hookStats().map((h) => [h.name, h.enqueued])).toEqual([['A', 2], ['B', 2]]);

    // The endpoint was down: each failed once and waits a minute.
    await waitFor(() => engine!.manager.stats().filter((q) => q.scheduled === 2).length === 2, 'both hook queues waiting for their retry');
    await engine.policy.fire('set_up', []);
    await clock.advance(61_000);
    await waitFor(async () => ((await stats<{ seen?: unknown[] }>(engine!)).seen ?? []).length === 4, 'four deliveries after the retry');
    const { seen } = await stats<{ seen: string[] }>(engine);
    const body = (r: JsonLogRecord) => `${JSON.stringify(r)}\n`;
    expect([...seen].sort()).toEqual([
      `A A.log_hook Delivery ${records[1]!.id} ${body(records[1]!)}`,
      `A A.log_hook Reception ${records[0]!.id} ${body(records[0]!)}`,
      `B B.log_hook Delivery ${records[1]!.id} ${body(records[1]!)}`,
      `B B.log_hook Reception ${records[0]!.id} ${body(records[0]!)}`,
    ]);
    await waitFor(async () => (await engine!.spool.size()) === 0, 'the spool to empty');
    const local = await localLogsWhen(engine, (r) => hookDeliveries(r).length === 4, 'four hook deliveries');
    expect(hookDeliveries(local).map((r) => r.num_attempts)).toEqual([1, 1, 1, 1]);
    expect(local.filter((r) => r.type === 'TransientFailure').map((r) => [r.response.code, r.response.content, r.num_attempts])).toEqual([
      [400, 'down', 0], [400, 'down', 0], [400, 'down', 0], [400, 'down', 0],
    ]);
  });

  it('resolves with 0 when no hook takes the records', async () => {
    ({ engine } = await startEngine(policy(`
log_hooks:new_json { name = 'W', url = '${receiver.url}/log', log_parameters = { per_record = { Any = { enable = false } } } }
`)));
    expect(await engine.publishRecords([record('Delivery', 5), record('Reception', 6)])).toBe(0);
    expect(await engine.publishRecords([])).toBe(0);
    expect(await engine.spool.size()).toBe(0);
    expect(receiver.requests).toHaveLength(0);
  });
});
