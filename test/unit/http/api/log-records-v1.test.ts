/**
 * parseRecord: what `POST /api/log-records/v1` makes of a record. KumoMTA's
 * defaults for absent fields, the optional fields kept only when given, the
 * field order of sluice's own records, and 400s that name the field.
 */
import { describe, expect, it } from 'vitest';
import { parseRecord } from '../../../../src/http/api/log-records-v1.js';
import { buildRecord, NODE_ID } from '../../../../src/logging/record.js';
import { Message } from '../../../../src/queue/message.js';

describe('parseRecord', () => {
  it('fills KumoMTA defaults, in the field order of the records sluice makes itself', () => {
    const r = parseRecord({ type: 'Delivery', sender: 's@example.com', recipient: 'r@example.net', timestamp: 1_700_000_000 }, '');
    expect(r).toEqual({
      type: 'Delivery',
      id: expect.stringMatching(/^[0-9a-f]{32}$/),
      sender: 's@example.com',
      recipient: 'r@example.net',
      queue: '',
      site: '',
      size: 0,
      response: { code: 250, enhanced_code: null, content: '', command: null },
      peer_address: null,
      timestamp: 1_700_000_000,
      event_time: '2023-11-14T22:13:20.000000000Z',
      created: 1_700_000_000,
      created_time: '2023-11-14T22:13:20.000000000Z',
      num_attempts: 0,
      bounce_classification: 'Uncategorized',
      egress_pool: null,
      egress_source: null,
      source_address: null,
      feedback_report: null,
      meta: {},
      headers: {},
      delivery_protocol: null,
      reception_protocol: null,
      nodeid: NODE_ID,
    });
    const own = buildRecord(new Message({ sender: 's', recipients: ['r@x'], data: '' }), { type: 'Delivery', response: r.response }, { meta: [], headers: [] });
    expect(Object.keys(r)).toEqual(Object.keys(own));
  });

  it('keeps given values and the optional fields, only when present', () => {
    const given = {
      type: 'Bounce', id: 'abc', sender: 's@example.com', recipient: ['a@x', 'b@x'], queue: 'x', site: 'mx:25', size: 12,
      response: { code: 550, content: 'no' }, timestamp: 1, created: 0, num_attempts: 2, meta: { k: 1 }, headers: { Subject: 'hi' },
      tls_cipher: 'TLS_AES_256_GCM_SHA384', provider_name: 'prov', session_id: 'sess',
    };
    const r = parseRecord(given, '[3]');
    expect(r).toMatchObject({ ...given, response: { code: 550, enhanced_code: null, content: 'no', command: null } });
    expect(Object.keys(r).slice(-3)).toEqual(['tls_cipher', 'provider_name', 'session_id']);
    expect('tls_protocol_version' in r).toBe(false);
  });

  it('names the field of a bad record', () => {
    expect(() => parseRecord({ type: 'Delivery', sender: 's', recipient: 'r', bogus: 1 }, '[2]')).toThrow(/\[2\]\.bogus: unknown field/);
    expect(() => parseRecord({ type: 'Nope', sender: 's', recipient: 'r' }, '[0]')).toThrow(/\[0\]\.type: expected one of/);
    expect(() => parseRecord({ type: 'Delivery', sender: 's', recipient: [] }, '')).toThrow(/^recipient: expected a string or a non-empty array/);
    expect(() => parseRecord({ type: 'Delivery', sender: 's', recipient: 'r', size: 1.5 }, '')).toThrow(/size: expected an integer, got/);
    expect(() => parseRecord({ type: 'Delivery', sender: 's', recipient: 'r', response: { code: 'x' } }, '')).toThrow(/response\.code: expected an integer/);
  });
});
