/**
 * msg:get_meta(k) for an object returns a lazy proxy; it must behave like
 * the fully converted table in every way a policy can observe (except raw
 * access before materialisation).
 */
import { describe, expect, it } from 'vitest';
import { MessageHandle } from '../../../src/lua/modules/message.js';
import { Message } from '../../../src/queue/message.js';
import { loadPolicy } from '../../helpers/policy.js';

const record = {
  type: 'Delivery', id: 'abc', sender: 's@x', recipient: 'r@y', size: 12, timestamp: 1_700_000_000,
  event_ms: 1_700_000_000_123, peer_address: null, headers: {}, tls_peer_subject_name: [],
  meta: { tenant: 't1', n: null }, response: { code: 250, enhanced_code: null, content: 'ok' },
};

async function run(lua: string): Promise<unknown[]> {
  const { vm } = await loadPolicy(`kumo.on('t', function(msg) ${lua} end)`);
  const msg = new Message({ sender: 's@x', recipients: ['r@y'], data: 'x', meta: { log_record: record } });
  return (await vm.fire('t', [new MessageHandle(vm, msg)])).values;
}

describe('get_meta object proxies', () => {
  it('reads scalar fields and nested tables', async () => {
    expect(await run(`local r = msg:get_meta 'log_record'; return r.type, r.size, r.event_ms, r.peer_address == nil, r.meta.tenant, r.response.code`))
      .toEqual(['Delivery', 12, 1_700_000_000_123, true, 't1', 250]);
  });

  it('json_encode of an untouched record equals the encoding of its full conversion', async () => {
    const [fast, slow] = (await run(`
      local a = msg:get_meta 'log_record'
      local b = msg:get_meta 'log_record'
      local copy = {}
      for k, v in pairs(b) do copy[k] = v end
      return kumo.serde.json_encode(a), kumo.serde.json_encode(copy)
    `)) as [string, string];
    expect(JSON.parse(fast)).toEqual(JSON.parse(slow));
    expect(JSON.parse(fast)).toEqual({
      type: 'Delivery', id: 'abc', sender: 's@x', recipient: 'r@y', size: 12, timestamp: 1_700_000_000,
      event_ms: 1_700_000_000_123, headers: {}, tls_peer_subject_name: {}, meta: { tenant: 't1' }, response: { code: 250, content: 'ok' },
    });
  });

  it('sees assignments, in reads and in json_encode', async () => {
    const [t, json] = (await run(`
      local r = msg:get_meta 'log_record'
      r.type = 'Changed'
      r.extra = 1
      return r.type, kumo.serde.json_encode(r)
    `)) as [string, string];
    expect(t).toBe('Changed');
    expect(JSON.parse(json)).toMatchObject({ type: 'Changed', extra: 1, id: 'abc' });
  });

  it('sees changes made through a nested table', async () => {
    const [json] = (await run(`
      local r = msg:get_meta 'log_record'
      r.meta.tenant = 't2'
      return kumo.serde.json_encode(r)
    `)) as [string];
    expect(JSON.parse(json).meta).toEqual({ tenant: 't2' });
  });

  it('pairs visits every non-null field once; # is 0', async () => {
    const [keys, len] = (await run(`
      local r = msg:get_meta 'log_record'
      local ks = {}
      for k in pairs(r) do table.insert(ks, k) end
      table.sort(ks)
      return table.concat(ks, ','), #r
    `)) as [string, number];
    expect(keys).toBe('event_ms,headers,id,meta,recipient,response,sender,size,timestamp,tls_peer_subject_name,type');
    expect(len).toBe(0);
  });

  it('set_meta of a proxy stores the converted value', async () => {
    const { vm } = await loadPolicy(`kumo.on('t', function(msg) msg:set_meta('copy', msg:get_meta 'log_record') end)`);
    const msg = new Message({ sender: 's@x', recipients: ['r@y'], data: 'x', meta: { log_record: record } });
    await vm.fire('t', [new MessageHandle(vm, msg)]);
    expect(msg.meta.copy).toMatchObject({ type: 'Delivery', meta: { tenant: 't1' } });
    expect(msg.meta.copy).not.toHaveProperty('peer_address');
  });
});
