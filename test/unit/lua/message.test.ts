/**
 * The Message object as Lua sees it (kumomta-facts §4), through a real VM,
 * plus the host pieces it stands on: queue names (§5.5), durations and the
 * retry schedule (§5.3).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { LuaError } from '../../../src/errors.js';
import { LuaVM, chunkPath } from '../../../src/lua/vm.js';
import { MessageHandle } from '../../../src/lua/modules/message.js';
import {
  Message, composeQueueName, createdFromId, domainOf, newMessageId, parseQueueName, userOf, type MessageInit, type QueueNameParts,
} from '../../../src/queue/message.js';
import { DurationError, formatDuration, parseDuration } from '../../../src/config/duration.js';
import { delayForAttempt, parseQueueConfig } from '../../../src/queue/config.js';
import { call, loadPolicy } from '../../helpers/policy.js';

const BODY = [
  'Subject: Spring sale',
  '  starts today',
  'X-Campaign: spring',
  'From: Shop <news@shop.example>',
  'x-campaign: second',
  '',
  'Hello there.',
  'X-Not-A-Header: body text',
  '',
].join('\r\n');

/** `eval(msg, code, ...)` runs `code` with `msg` and the extra values as `...`. */
const POLICY = `
kumo.on('eval', function(msg, code, ...)
  local f = assert(load('local msg = ...; return (function(...) ' .. code .. ' end)(select(2, ...))', '=eval'))
  return f(msg, ...)
end)
kumo.on('dot_call', function(msg)
  return msg.get_meta('queue')
end)
kumo.on('dot_call_no_args', function(msg)
  return msg.id()
end)
kumo.on('set_meta_function', function(msg)
  msg:set_meta('callback', function() end)
end)
kumo.on('set_meta_recursive', function(msg)
  local t = {}
  t.self = t
  msg:set_meta('loop', t)
end)
`;

let vm: LuaVM;
let policyPath: string;

beforeAll(async () => {
  ({ vm, policyPath } = await loadPolicy(POLICY));
});

function message(init: Partial<MessageInit> = {}): { m: Message; h: MessageHandle } {
  const m = new Message({ sender: 'news@shop.example', recipients: ['alice@mail.example'], data: BODY, ...init });
  return { m, h: new MessageHandle(vm, m) };
}

/** Run `code` (a Lua function body) with `msg` bound to the handle of `m`. */
function run(h: MessageHandle, code: string, ...args: unknown[]): Promise<unknown[]> {
  return call(vm, 'eval', h, code, ...args);
}

async function fireError(event: string, h: MessageHandle): Promise<LuaError> {
  const err = await vm.fire(event, [h]).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LuaError);
  return err as LuaError;
}

function lineOf(marker: string): number {
  return POLICY.split('\n').findIndex((l) => l.includes(marker)) + 1;
}

describe('Message handle: identity and data', () => {
  it('is a userdata with the host id', async () => {
    const { m, h } = message();
    expect(m.id).toMatch(/^[0-9a-f]{32}$/);
    expect(await run(h, 'return msg:id(), type(msg), tostring(msg)')).toEqual([m.id, 'userdata', `Message(${m.id})`]);
  });

  it('get_data returns the body; set_data replaces it', async () => {
    const { m, h } = message();
    expect(await run(h, 'return msg:get_data()')).toEqual([BODY]);
    expect(await run(h, "msg:set_data('{\"type\":\"Delivery\"}\\n'); return msg:get_data(), #msg:get_data()")).toEqual([
      '{"type":"Delivery"}\n', 20,
    ]);
    expect(m.text()).toBe('{"type":"Delivery"}\n');
    expect(m.size()).toBe(20);
  });

  it('keeps binary data byte for byte', async () => {
    const { m, h } = message();
    expect(await run(h, "msg:set_data('\\0\\255\\1'); local d = msg:get_data(); return #d, d:byte(1), d:byte(2), d:byte(3)")).toEqual([3, 0, 255, 1]);
    expect([...(m.data as Uint8Array)]).toEqual([0, 255, 1]);
    const binary = message({ data: new Uint8Array([0xc3, 0x28, 0x0a]) });
    expect(await run(binary.h, 'local d = msg:get_data(); return #d, d:byte(1), d:byte(2)')).toEqual([3, 0xc3, 0x28]);
  });

  it('set_data refuses a non-string', async () => {
    const { h } = message();
    await expect(run(h, 'msg:set_data({})')).rejects.toThrow(/set_data: expected a string/);
  });
});

describe('Message handle: meta', () => {
  it('reads meta set by the host, nested tables included', async () => {
    const { h } = message({ meta: { tenant: 'acme', log_record: { type: 'Delivery', recipient: ['a@x', 'b@x'], response: { code: 250 } } } });
    expect(await run(h, `
      local r = msg:get_meta('log_record')
      return msg:get_meta('tenant'), r.type, r.recipient[2], #r.recipient, r.response.code, msg:get_meta('missing') == nil
    `)).toEqual(['acme', 'Delivery', 'b@x', 2, 250, true]);
  });

  it('set_meta stores strings, numbers, booleans and nested tables as JSON-like values', async () => {
    const { m, h } = message();
    await run(h, `
      msg:set_meta('queue', 'W.log_hook')
      msg:set_meta('count', 3)
      msg:set_meta('ratio', 0.25)
      msg:set_meta('flag', false)
      msg:set_meta('nested', { a = { b = { 1, 2, 3 } }, s = 't' })
      msg:set_meta('empty', {})
    `);
    expect(m.meta).toEqual({ queue: 'W.log_hook', count: 3, ratio: 0.25, flag: false, nested: { a: { b: [1, 2, 3] }, s: 't' }, empty: {} });
    expect(await run(h, "local n = msg:get_meta('nested'); return n.a.b[3], n.s, msg:get_meta('flag')")).toEqual([3, 't', false]);
  });

  it('keeps large integers exact both ways', async () => {
    const { m, h } = message({ meta: { created_ms: 1_700_000_000_123 } });
    expect(await run(h, `
      local ts = msg:get_meta('created_ms')
      msg:set_meta('next_ms', ts + 1)
      msg:set_meta('in_table', { ts = ts })
      return ts, tostring(ts), ts == 1700000000123
    `)).toEqual([1_700_000_000_123, '1700000000123', true]);
    expect(m.meta.next_ms).toBe(1_700_000_000_124);
    expect(m.meta.in_table).toEqual({ ts: 1_700_000_000_123 });
    expect(await run(h, 'msg:set_meta("literal", 1700000000123); return msg:get_meta("literal")')).toEqual([1_700_000_000_123]);
    expect(m.meta.literal).toBe(1_700_000_000_123);
  });

  it('set_meta(key, nil) deletes the key', async () => {
    const { m, h } = message({ meta: { queue: 'W.log_hook', tenant: 'acme' } });
    expect(await run(h, "msg:set_meta('queue', nil); return msg:get_meta('queue') == nil, msg:get_meta('tenant')")).toEqual([true, 'acme']);
    expect('queue' in m.meta).toBe(false);
    expect(m.meta).toEqual({ tenant: 'acme' });
  });

  it('set_meta of a function or a recursive table is an error at the caller line', async () => {
    const { m, h } = message();
    const fn = await fireError('set_meta_function', h);
    expect(fn.message).toBe(`${chunkPath(policyPath)}:${lineOf("set_meta('callback'")}: set_meta 'callback': cannot serialize <function>`);
    const loop = await fireError('set_meta_recursive', h);
    expect(loop.message).toBe(`${chunkPath(policyPath)}:${lineOf("set_meta('loop'")}: set_meta 'loop': cannot serialize a recursive table`);
    expect(m.meta).toEqual({});
  });

  it('get_meta and set_meta need a key', async () => {
    const { h } = message();
    await expect(run(h, 'return msg:get_meta()')).rejects.toThrow(/get_meta key: expected a string, got no value/);
    await expect(run(h, 'msg:set_meta({}, 1)')).rejects.toThrow(/set_meta key: expected a string, got table/);
  });
});

describe('Message handle: envelope', () => {
  it('sender() is an EnvelopeAddress with user, domain, email and tostring', async () => {
    const { h } = message();
    expect(await run(h, `
      local s = msg:sender()
      return type(s), s.user, s.domain, s.email, tostring(s), s.other == nil, s == msg:sender()
    `)).toEqual(['userdata', 'news', 'shop.example', 'news@shop.example', 'news@shop.example', true, true]);
  });

  it('handles the null sender', async () => {
    const { h } = message({ sender: '' });
    expect(await run(h, 'local s = msg:sender(); return s.user, s.domain, s.email, tostring(s)')).toEqual(['', '', '', '']);
  });

  it('recipient() is one address for one recipient', async () => {
    const { h } = message();
    expect(await run(h, 'local r = msg:recipient(); return type(r), r.user, r.domain, r.email, tostring(r)')).toEqual([
      'userdata', 'alice', 'mail.example', 'alice@mail.example', 'alice@mail.example',
    ]);
  });

  it('recipient() is an array for two recipients and nil for none', async () => {
    const two = message({ recipients: ['alice@mail.example', 'bob@other.example'] });
    expect(await run(two.h, 'local r = msg:recipient(); return type(r), #r, r[1].email, r[2].user, r[2].domain, tostring(r[2])')).toEqual([
      'table', 2, 'alice@mail.example', 'bob', 'other.example', 'bob@other.example',
    ]);
    const none = message({ recipients: [] });
    expect(await run(none.h, 'return msg:recipient() == nil, #msg:recipient_list()')).toEqual([true, 0]);
  });

  it('recipient_list() is always an array', async () => {
    const one = message();
    expect(await run(one.h, 'local l = msg:recipient_list(); return type(l), #l, l[1].email')).toEqual(['table', 1, 'alice@mail.example']);
    const two = message({ recipients: ['a@x.example', 'b@y.example'] });
    expect(await run(two.h, 'local l = msg:recipient_list(); return #l, l[1].domain, l[2].domain')).toEqual([2, 'x.example', 'y.example']);
  });

  it('set_sender and set_recipient take strings, addresses and lists', async () => {
    const { m, h } = message({ recipients: ['alice@mail.example', 'bob@other.example'] });
    await run(h, "msg:set_sender(msg:recipient()[2]); msg:set_recipient('carol@third.example')");
    expect(m.sender).toBe('bob@other.example');
    expect(m.recipients).toEqual(['carol@third.example']);
    await run(h, "msg:set_recipient({ 'x@one.example', msg:sender() })");
    expect(m.recipients).toEqual(['x@one.example', 'bob@other.example']);
    expect(await run(h, 'return #msg:recipient()')).toEqual([2]);
  });
});

describe('Message handle: queue_name', () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{}, 'mail.example'],
    [{ queue: 'W.log_hook', tenant: 'acme' }, 'W.log_hook'],
    [{ tenant: 'acme' }, 'acme@mail.example'],
    [{ campaign: 'spring' }, 'spring:@mail.example'],
    [{ campaign: 'spring', tenant: 'acme' }, 'spring:acme@mail.example'],
    [{ routing_domain: 'relay.example' }, 'mail.example!relay.example'],
    [{ campaign: 'spring', tenant: 'acme', routing_domain: 'relay.example' }, 'spring:acme@mail.example!relay.example'],
    [{ queue: '' , tenant: 'acme' }, 'acme@mail.example'],
  ];
  for (const [meta, expected] of cases) {
    it(`${JSON.stringify(meta)} → ${expected}`, async () => {
      const { m, h } = message({ meta: { ...meta } });
      expect(await run(h, 'return msg:queue_name()')).toEqual([expected]);
      expect(m.queueName()).toBe(expected);
    });
  }

  it('follows meta changed from Lua', async () => {
    const { h } = message();
    expect(await run(h, `
      local before = msg:queue_name()
      msg:set_meta('tenant', 't1')
      msg:set_meta('campaign', 'c1')
      msg:set_meta('routing_domain', 'rd.example')
      local derived = msg:queue_name()
      msg:set_meta('queue', 'W.log_hook')
      return before, derived, msg:queue_name()
    `)).toEqual(['mail.example', 'c1:t1@mail.example!rd.example', 'W.log_hook']);
  });
});

describe('Message handle: attempts', () => {
  it('num_attempts and increment_num_attempts', async () => {
    const { m, h } = message({ numAttempts: 2 });
    expect(await run(h, 'local a = msg:num_attempts(); msg:increment_num_attempts(); msg:increment_num_attempts(); return a, msg:num_attempts()')).toEqual([2, 4]);
    expect(m.numAttempts).toBe(4);
    expect(await run(message().h, 'return msg:num_attempts(), math.type(msg:num_attempts())')).toEqual([0, 'integer']);
  });
});

describe('Message handle: headers', () => {
  it('get_first_named_header_value is case-insensitive and unfolds', async () => {
    const { h } = message();
    expect(await run(h, `
      return msg:get_first_named_header_value('subject'), msg:get_first_named_header_value('X-CAMPAIGN'),
        msg:get_first_named_header_value('From'), msg:get_first_named_header_value('X-Not-A-Header') == nil,
        msg:get_first_named_header_value('Missing') == nil
    `)).toEqual(['Spring sale starts today', 'spring', 'Shop <news@shop.example>', true, true]);
  });

  it('get_all_named_header_values returns every occurrence in order', async () => {
    const { h } = message();
    expect(await run(h, "return msg:get_all_named_header_values('x-campaign'), #msg:get_all_named_header_values('Missing')")).toEqual([
      ['spring', 'second'], 0,
    ]);
  });

  it('get_all_headers returns {name, value} pairs in order, names in original case', async () => {
    const { h } = message();
    expect(await run(h, 'return msg:get_all_headers()')).toEqual([[
      ['Subject', 'Spring sale starts today'],
      ['X-Campaign', 'spring'],
      ['From', 'Shop <news@shop.example>'],
      ['x-campaign', 'second'],
    ]]);
  });

  it('reads LF-only messages and messages without a body', async () => {
    const lf = message({ data: 'Subject: a\n b\nX-A: 1\n\nbody\n' });
    expect(await run(lf.h, "return msg:get_first_named_header_value('subject'), msg:get_first_named_header_value('x-a')")).toEqual(['a b', '1']);
    const headersOnly = message({ data: 'Subject: only\r\n' });
    expect(await run(headersOnly.h, "return msg:get_first_named_header_value('Subject')")).toEqual(['only']);
    const prose = message({ data: 'just some text\nand more\n' });
    expect(await run(prose.h, 'return #msg:get_all_headers(), msg:get_first_named_header_value("just") == nil')).toEqual([0, true]);
  });

  it('sees headers of data replaced by set_data', async () => {
    const { h } = message();
    expect(await run(h, "msg:set_data('Subject: new\\r\\n\\r\\nx'); return msg:get_first_named_header_value('Subject')")).toEqual(['new']);
  });
});

describe("Message handle: calling a method with '.' instead of ':'", () => {
  it('is a clear error at the caller line', async () => {
    const { h } = message();
    const err = await fireError('dot_call', h);
    expect(err.message).toBe(
      `${chunkPath(policyPath)}:${lineOf("msg.get_meta('queue')")}: Message:get_meta: expected Message, got string (call it with ':' not '.')`,
    );
    const noArgs = await fireError('dot_call_no_args', h);
    expect(noArgs.message).toBe(
      `${chunkPath(policyPath)}:${lineOf('msg.id()')}: Message:id: expected Message, got no value (call it with ':' not '.')`,
    );
  });

  it('also for EnvelopeAddress-taking calls with the wrong self', async () => {
    const { h } = message();
    await expect(run(h, 'return msg.sender(msg:sender())')).rejects.toThrow(
      "Message:sender: expected Message, got userdata (call it with ':' not '.')",
    );
  });
});

describe('queue names (§5.5)', () => {
  const cases: Array<[QueueNameParts, string]> = [
    [{ domain: 'mail.example' }, 'mail.example'],
    [{ tenant: 'acme', domain: 'mail.example' }, 'acme@mail.example'],
    [{ campaign: 'spring', domain: 'mail.example' }, 'spring:@mail.example'],
    [{ campaign: 'spring', tenant: 'acme', domain: 'mail.example' }, 'spring:acme@mail.example'],
    [{ domain: 'mail.example', routingDomain: 'relay.example' }, 'mail.example!relay.example'],
    [{ tenant: 'acme', domain: 'mail.example', routingDomain: 'relay.example' }, 'acme@mail.example!relay.example'],
    [{ campaign: 'spring', tenant: 'acme', domain: 'mail.example', routingDomain: 'relay.example' }, 'spring:acme@mail.example!relay.example'],
    [{ domain: 'W.log_hook' }, 'W.log_hook'],
  ];

  for (const [parts, name] of cases) {
    it(`${name} composes and parses back`, () => {
      expect(composeQueueName(parts)).toBe(name);
      const parsed = parseQueueName(name);
      expect(parsed).toEqual(parts);
      expect(composeQueueName(parsed)).toBe(name);
    });
  }

  it('drops empty routing domains and keeps the first @ and ! as separators', () => {
    expect(composeQueueName({ domain: 'd.example', routingDomain: '' })).toBe('d.example');
    expect(parseQueueName('t@d.example!rd!x')).toEqual({ tenant: 't', domain: 'd.example', routingDomain: 'rd!x' });
    expect(parseQueueName('c:t:x@d.example')).toEqual({ campaign: 'c', tenant: 't:x', domain: 'd.example' });
    expect(parseQueueName('a@b@c')).toEqual({ tenant: 'a', domain: 'b@c' });
  });

  it('domainOf and userOf split at the last @', () => {
    expect(domainOf('alice@mail.example')).toBe('mail.example');
    expect(userOf('alice@mail.example')).toBe('alice');
    expect(domainOf('"a@b"@mail.example')).toBe('mail.example');
    expect(userOf('"a@b"@mail.example')).toBe('"a@b"');
    expect(domainOf('postmaster')).toBe('');
    expect(userOf('postmaster')).toBe('postmaster');
  });

  it('message ids are 32 hex digits that carry the creation time', () => {
    const id = newMessageId(1_700_000_000_123);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(createdFromId(id)).toBe(1_700_000_000_123);
    expect(newMessageId(1_700_000_000_123)).not.toBe(id);
    const m = new Message({ sender: '', recipients: ['a@b.example'], data: '', created: 1_700_000_000_999 });
    expect(createdFromId(m.id)).toBe(1_700_000_000_999);
  });
});

describe('durations', () => {
  it('parseDuration accepts humantime strings and seconds, giving milliseconds', () => {
    const cases: Array<[unknown, number]> = [
      ['1m', 60_000], ['20 minutes', 1_200_000], ['1h 30m', 5_400_000], ['1h30m', 5_400_000], ['90s', 90_000],
      ['500ms', 500], ['7 days', 604_800_000], ['1week', 604_800_000], ['2 hours', 7_200_000], ['  15s  ', 15_000],
      ['1s 500ms', 1500], ['250us', 0.25], ['1.5h', 5_400_000], ['1H', 3_600_000], ['1M', 2_630_016_000], ['1y', 31_557_600_000],
      [90, 90_000], [1.5, 1500], [0, 0],
    ];
    for (const [input, ms] of cases) expect(parseDuration(input), String(input)).toBe(ms);
  });

  it('parseDuration rejects bad input with a clear DurationError', () => {
    const cases: Array<[unknown, string]> = [
      ['', 'invalid duration "": expected a value such as "1m"'],
      ['   ', 'invalid duration "": expected a value such as "1m"'],
      ['10', 'invalid duration "10": the number needs a unit, as in "10s"'],
      ['1m 30', 'invalid duration "1m 30": the number needs a unit, as in "30s"'],
      ['5 parsecs', 'invalid duration "5 parsecs": unknown unit "parsecs"'],
      ['soon', 'invalid duration "soon": expected a number and a unit, as in "1m" or "1h 30m"'],
      ['-5s', 'invalid duration "-5s": expected a number and a unit'],
      [-1, 'invalid duration -1: expected a non-negative number of seconds'],
      [Number.NaN, 'invalid duration NaN: expected a non-negative number of seconds'],
      [Number.POSITIVE_INFINITY, 'invalid duration Infinity'],
      [true, 'invalid type: boolean `true`, expected a duration such as "1m" or a number of seconds'],
      [null, 'invalid type: nil, expected a duration'],
      [{}, 'invalid type: map, expected a duration'],
    ];
    for (const [input, message] of cases) {
      let err: unknown;
      try {
        parseDuration(input);
      } catch (e) {
        err = e;
      }
      expect(err, String(input)).toBeInstanceOf(DurationError);
      expect((err as Error).message).toContain(message);
    }
  });

  it('formatDuration writes humantime forms', () => {
    const cases: Array<[number, string]> = [
      [0, '0s'], [500, '500ms'], [1000, '1s'], [1500, '1s 500ms'], [60_000, '1m'], [90_000, '1m 30s'],
      [1_200_000, '20m'], [5_400_000, '1h 30m'], [86_400_000, '1day'], [604_800_000, '7days'],
      [90_000_000, '1day 1h'], [2_630_016_000, '1month'], [31_557_600_000, '1year'], [2 * 31_557_600_000, '2years'],
      [0.25, '250us'], [0.0015, '1us 500ns'], [1000.5, '1s 500us'],
    ];
    for (const [ms, text] of cases) expect(formatDuration(ms), String(ms)).toBe(text);
  });

  it('format and parse round-trip', () => {
    for (const ms of [0, 1, 999, 1000, 61_000, 3_723_000, 5_400_000, 86_400_000 + 1, 604_800_000, 31_557_600_000 + 60_000, 0.5]) {
      expect(parseDuration(formatDuration(ms)), String(ms)).toBe(ms);
    }
  });
});

describe('retry schedule: delayForAttempt (§5.3)', () => {
  const seconds = (cfg: Parameters<typeof delayForAttempt>[0], n: number) => Array.from({ length: n }, (_, i) => delayForAttempt(cfg, i) / 1000);

  it('log_hooks defaults 1m / 20m: 60, 120, 240, 480, 960, 1200, 1200 s', () => {
    const cfg = parseQueueConfig({ retry_interval: '1m', max_retry_interval: '20m' });
    expect(seconds(cfg, 8)).toEqual([60, 120, 240, 480, 960, 1200, 1200, 1200]);
  });

  it('KumoMTA defaults 20m and no cap: 1200, 2400, 4800, ... s', () => {
    const cfg = parseQueueConfig({});
    expect(cfg.max_retry_interval).toBeUndefined();
    expect(seconds(cfg, 6)).toEqual([1200, 2400, 4800, 9600, 19_200, 38_400]);
  });

  it('works in whole seconds', () => {
    expect(seconds({ retry_interval: 1500 }, 3)).toEqual([1, 2, 4]);
    expect(seconds({ retry_interval: 500 }, 3)).toEqual([0, 0, 0]);
    expect(delayForAttempt({ retry_interval: 500 }, 2000)).toBe(0);
    expect(seconds({ retry_interval: 60_000, max_retry_interval: 90_500 }, 3)).toEqual([60, 90, 90]);
  });

  it('saturates instead of overflowing', () => {
    const huge = delayForAttempt({ retry_interval: 60_000 }, 5000);
    expect(Number.isFinite(huge)).toBe(true);
    expect(huge).toBeGreaterThan(1e18);
    expect(delayForAttempt({ retry_interval: 60_000, max_retry_interval: 1_200_000 }, 5000)).toBe(1_200_000);
    expect(delayForAttempt({ retry_interval: 60_000, max_retry_interval: 1_200_000 }, 65_535)).toBe(1_200_000);
  });
});
