/**
 * Egress webhook delivery through the real `sluice serve`, its HTTP API and
 * test receivers on 127.0.0.1: order under retries, both signature schemes,
 * secret rotation, key/value payloads, where a new webhook starts, going
 * inactive (failures, deleted log) and re-activation, API errors, a restart
 * on the same data directory, the --records-log bridge and sluice.publish
 * from Lua.
 *
 * Everything waits on conditions (receiver requests, status polls with a
 * bound), never on a sleep.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { startReceiver, type Receiver, type ReceivedRequest } from '../helpers/receiver.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/policy.js';
import { waitFor } from '../helpers/fake-clock.js';
import { KLEV_SIGNATURE_HEADER, verifyKlev, verifyStandard } from '../../src/egress/signature.js';

interface Reply {
  status: number;
  json: any;
}

async function api(d: Daemon, method: string, p: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${d.url}${p}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    /* keep text */
  }
  return { status: res.status, json };
}

async function ok(d: Daemon, method: string, p: string, body?: unknown): Promise<any> {
  const r = await api(d, method, p, body);
  if (r.status !== 200) throw new Error(`${method} ${p} → ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

const createLog = (d: Daemon, metadata = 'test') => ok(d, 'POST', '/logs', { metadata }).then((l) => l.log_id as string);
const createHook = (d: Daemon, logId: string, destination: string, payload?: string) =>
  ok(d, 'POST', '/egress_webhooks', { log_id: logId, destination, ...(payload ? { payload } : {}), metadata: 'test' }) as Promise<{ webhook_id: string; secret: string; [k: string]: unknown }>;
const publish = (d: Daemon, logId: string, messages: Array<{ key?: string; value?: string }>) =>
  ok(d, 'POST', `/messages/${logId}`, { encoding: 'string', messages }).then((r) => r.next_offset as number);
const status = (d: Daemon, id: string) => ok(d, 'GET', `/egress_webhook/${id}/status`);
const waitStatus = (d: Daemon, id: string, pred: (s: any) => boolean, what: string, timeoutMs = 15_000) =>
  waitFor(async () => {
    const s = await status(d, id);
    return pred(s) ? s : null;
  }, what, timeoutMs);

/** The GetOut body of a `message` delivery. */
const bodyOf = (r: ReceivedRequest) => JSON.parse(r.body) as { encoding: string; offset: number; time: number; key?: string; value?: string };
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const raw = (r: ReceivedRequest) => Buffer.from(r.body, 'utf8');
const klevOk = (secret: string, r: ReceivedRequest, payload: 'message' | 'key' | 'value' = 'message') =>
  verifyKlev(secret, r.headers[KLEV_SIGNATURE_HEADER] as string | undefined, raw(r), { contentType: r.headers['content-type'], payload }).ok;
const standardOk = (secret: string, r: ReceivedRequest) => verifyStandard(secret, r.headers, raw(r)).ok;
const v1Count = (r: ReceivedRequest) => ({
  klev: String(r.headers[KLEV_SIGNATURE_HEADER]).split(';').filter((p) => p.startsWith('v1=')).length,
  standard: String(r.headers['webhook-signature']).split(' ').filter((p) => p.startsWith('v1,')).length,
});

/** Requests to one path of the receiver. */
const at = (rcv: Receiver, p: string) => rcv.requests.filter((r) => r.url === p);
const waitAt = (rcv: Receiver, p: string, n: number, timeoutMs = 15_000) =>
  waitFor(() => (at(rcv, p).length >= n ? at(rcv, p) : null), `${n} request(s) at ${p} (have ${at(rcv, p).length})`, timeoutMs);

// ---------------------------------------------------------------------------

describe('egress webhooks on one daemon', () => {
  let daemon: Daemon;
  let rcv: Receiver;

  beforeAll(async () => {
    daemon = await startDaemon({ policy: '-- event logs only\n', noWatch: true });
  });
  afterAll(async () => {
    expect(await daemon.stop()).toBe(0);
  });
  beforeAll(async () => {
    rcv = await startReceiver();
  });
  afterAll(async () => {
    await rcv.close();
  });
  afterEach(() => {
    rcv.respond = () => ({ status: 200, body: 'ok' });
  });

  it('delivers in offset order under retries: offset 3 fails twice, 0..4 each succeed once, same webhook-id on retries', async () => {
    const logId = await createLog(daemon);
    const hook = await createHook(daemon, logId, `${rcv.url}/ordered`);
    const statuses: number[] = [];
    let fails = 0;
    rcv.respond = (req) => {
      if (req.url !== '/ordered') return { status: 200 };
      const s = bodyOf(req).offset === 3 && fails < 2 ? (fails++, 500) : 200;
      statuses.push(s);
      return { status: s, body: s === 200 ? '' : 'try again' };
    };
    expect(await publish(daemon, logId, ['a', 'b', 'c', 'd', 'e'].map((v) => ({ key: `k${v}`, value: v })))).toBe(5);

    // While offset 3 is failing, status shows the failed attempt and a later retry.
    const failing = await waitStatus(daemon, hook.webhook_id, (s) => s.deliver_offset === 3 && s.deliver_error !== undefined, 'a failed attempt of offset 3');
    expect(failing).toMatchObject({ active: true, next_deliver_offset: 3, deliver_error: expect.stringContaining('500') });
    expect(failing.deliver_resp).toMatch(/^HTTP\/1\.1 500 Internal Server Error\r\n/);
    expect(failing.next_deliver_time).toBeGreaterThanOrEqual(failing.deliver_time);

    const reqs = await waitAt(rcv, '/ordered', 7, 20_000);
    expect(reqs.map((r) => bodyOf(r).offset)).toEqual([0, 1, 2, 3, 3, 3, 4]);
    expect(statuses).toEqual([200, 200, 200, 500, 500, 200, 200]);
    expect(reqs.map((r) => bodyOf(r).value)).toEqual(['a', 'b', 'c', 'd', 'd', 'd', 'e'].map(b64));
    expect(reqs.map((r) => bodyOf(r).key)).toEqual(['a', 'b', 'c', 'd', 'd', 'd', 'e'].map((v) => b64(`k${v}`)));
    for (const r of reqs) {
      expect(r.method).toBe('POST');
      expect(r.headers['content-type']).toBe('application/json');
      expect(bodyOf(r).encoding).toBe('base64');
      expect(klevOk(hook.secret, r)).toBe(true);
      expect(standardOk(hook.secret, r)).toBe(true);
    }
    const ids = reqs.map((r) => r.headers['webhook-id']);
    expect(ids).toEqual([0, 1, 2, 3, 3, 3, 4].map((o) => `${hook.webhook_id}_${o}`));
    expect(new Set(ids).size).toBe(5);

    const done = await waitStatus(daemon, hook.webhook_id, (s) => s.next_deliver_offset === 5, 'the cursor at 5');
    expect(done).toMatchObject({ webhook_id: hook.webhook_id, active: true, available_offset: 4, next_deliver_offset: 5, next_offset: 5, deliver_offset: 4 });
    expect(done).not.toHaveProperty('deliver_error');
    expect(done).not.toHaveProperty('inactive_reason');
    expect(done.deliver_resp).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(done.next_deliver_time).toBe(done.deliver_time);
    // nothing more arrives for this webhook once the log is drained
    expect(at(rcv, '/ordered')).toHaveLength(7);
  });

  it('signs with both schemes; the wrong secret, a tampered body or another id do not verify', async () => {
    const logId = await createLog(daemon);
    const hook = await createHook(daemon, logId, `${rcv.url}/signed`);
    const other = await createHook(daemon, logId, `${rcv.url}/other`);
    await publish(daemon, logId, [{ value: 'hello world' }]);
    const [r] = await waitAt(rcv, '/signed', 1);
    await waitAt(rcv, '/other', 1);
    expect(v1Count(r!)).toEqual({ klev: 1, standard: 1 });
    expect(String(r!.headers[KLEV_SIGNATURE_HEADER])).toMatch(/^t=\d+;v1=[0-9a-f]{64}$/);
    expect(r!.headers['webhook-timestamp']).toBe(/^t=(\d+);/.exec(String(r!.headers[KLEV_SIGNATURE_HEADER]))![1]);
    expect(Math.abs(Number(r!.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(60);
    expect(klevOk(hook.secret, r!)).toBe(true);
    expect(standardOk(hook.secret, r!)).toBe(true);
    expect(klevOk(other.secret, r!)).toBe(false);
    expect(standardOk(other.secret, r!)).toBe(false);
    const tampered = { ...r!, body: r!.body.replace('"offset":0', '"offset":1') };
    expect(tampered.body).not.toBe(r!.body);
    expect(klevOk(hook.secret, tampered)).toBe(false);
    expect(standardOk(hook.secret, tampered)).toBe(false);
    expect(standardOk(hook.secret, { ...r!, headers: { ...r!.headers, 'webhook-id': `${hook.webhook_id}_9` } })).toBe(false);
    expect(bodyOf(r!)).toEqual({ encoding: 'base64', offset: 0, time: expect.any(Number), value: b64('hello world') });
    expect(r!.body).toBe(`{"encoding":"base64","offset":0,"time":${bodyOf(r!).time},"value":"${b64('hello world')}"}`);
  });

  it('rotation: during the grace period both secrets sign (two v1 in each header); after a rotation with 0 only the new one', async () => {
    const logId = await createLog(daemon);
    const hook = await createHook(daemon, logId, `${rcv.url}/rotate`);
    const s1 = hook.secret;
    await publish(daemon, logId, [{ value: 'one' }]);
    const [first] = await waitAt(rcv, '/rotate', 1);
    expect(v1Count(first!)).toEqual({ klev: 1, standard: 1 });
    expect(klevOk(s1, first!) && standardOk(s1, first!)).toBe(true);

    const rotated = await ok(daemon, 'PATCH', `/egress_webhook/${hook.webhook_id}/secret`, { expire_seconds: 60 });
    const s2 = rotated.secret as string;
    expect(s2).toMatch(/^ewhsec_[0-9A-Za-z]{33}$/);
    expect(s2).not.toBe(s1);
    expect(rotated).toMatchObject({ webhook_id: hook.webhook_id, log_id: logId, destination: `${rcv.url}/rotate`, payload: 'message' });
    expect(await ok(daemon, 'GET', `/egress_webhook/${hook.webhook_id}`)).not.toHaveProperty('secret');

    await publish(daemon, logId, [{ value: 'two' }]);
    const second = (await waitAt(rcv, '/rotate', 2))[1]!;
    expect(bodyOf(second).offset).toBe(1);
    expect(v1Count(second)).toEqual({ klev: 2, standard: 2 });
    for (const s of [s1, s2]) {
      expect(klevOk(s, second)).toBe(true);
      expect(standardOk(s, second)).toBe(true);
    }

    const again = await ok(daemon, 'PATCH', `/egress_webhook/${hook.webhook_id}/secret`, { expire_seconds: 0 });
    const s3 = again.secret as string;
    expect(new Set([s1, s2, s3]).size).toBe(3);
    await publish(daemon, logId, [{ value: 'three' }]);
    const third = (await waitAt(rcv, '/rotate', 3))[2]!;
    expect(bodyOf(third).offset).toBe(2);
    expect(v1Count(third)).toEqual({ klev: 1, standard: 1 });
    expect(klevOk(s3, third)).toBe(true);
    expect(standardOk(s3, third)).toBe(true);
    for (const s of [s1, s2]) {
      expect(klevOk(s, third)).toBe(false);
      expect(standardOk(s, third)).toBe(false);
    }
  });

  it('key and value payloads are the raw bytes as application/octet-stream', async () => {
    const logId = await createLog(daemon);
    const kHook = await createHook(daemon, logId, `${rcv.url}/key`, 'key');
    const vHook = await createHook(daemon, logId, `${rcv.url}/value`, 'value');
    expect(kHook.payload).toBe('key');
    expect(vHook.payload).toBe('value');
    await publish(daemon, logId, [{ key: 'clé-1', value: 'valeur ✓ {"json": true}' }]);
    // base64 publish of the second message, and a third with no key
    await ok(daemon, 'POST', `/message/${logId}`, { encoding: 'base64', key: b64('key-2'), value: b64('value-2') });
    await publish(daemon, logId, [{ value: 'keyless' }]);

    const keys = await waitAt(rcv, '/key', 3);
    const values = await waitAt(rcv, '/value', 3);
    expect(keys.map((r) => r.body)).toEqual(['clé-1', 'key-2', '']);
    expect(values.map((r) => r.body)).toEqual(['valeur ✓ {"json": true}', 'value-2', 'keyless']);
    for (const [r, i] of keys.map((x, j) => [x, j] as const)) {
      expect(r.headers['content-type']).toBe('application/octet-stream');
      expect(r.headers['webhook-id']).toBe(`${kHook.webhook_id}_${i}`);
      expect(klevOk(kHook.secret, r, 'key')).toBe(true);
      expect(standardOk(kHook.secret, r)).toBe(true);
      expect(klevOk(kHook.secret, r, 'message')).toBe(false); // wrong content type for a message payload
    }
    for (const r of values) {
      expect(r.headers['content-type']).toBe('application/octet-stream');
      expect(klevOk(vHook.secret, r, 'value')).toBe(true);
      expect(standardOk(vHook.secret, r)).toBe(true);
    }
  });

  it('GET /message/{log_id}: the last message by default or with -1, the oldest with -2, one by offset', async () => {
    const logId = await createLog(daemon);
    expect(await publish(daemon, logId, [{ value: 'm0' }, { value: 'm1' }, { value: 'm2' }])).toBe(3);
    const get = async (q: string) => (await api(daemon, 'GET', `/message/${logId}${q}`)).json as { offset: number; value: string };
    expect(await get('')).toMatchObject({ offset: 2, value: 'm2' });
    expect(await get('?offset=-1')).toMatchObject({ offset: 2, value: 'm2' });
    expect(await get('?offset=-2')).toMatchObject({ offset: 0, value: 'm0' });
    expect(await get('?offset=1')).toMatchObject({ offset: 1, value: 'm1' });
  });

  it('a webhook created after some publishes starts at the next offset', async () => {
    const logId = await createLog(daemon);
    expect(await publish(daemon, logId, [{ value: 'p0' }, { value: 'p1' }, { value: 'p2' }])).toBe(3);
    const hook = await createHook(daemon, logId, `${rcv.url}/late`);
    expect(await status(daemon, hook.webhook_id)).toEqual({ webhook_id: hook.webhook_id, active: true, available_offset: 2, next_deliver_offset: 3, next_offset: 3 });
    expect(await publish(daemon, logId, [{ value: 'p3' }])).toBe(4);
    const [r] = await waitAt(rcv, '/late', 1);
    expect(bodyOf(r!)).toMatchObject({ offset: 3, value: b64('p3') });
    await waitStatus(daemon, hook.webhook_id, (s) => s.next_deliver_offset === 4, 'the cursor at 4');
    expect(at(rcv, '/late')).toHaveLength(1);
  });

  it('changing the metadata while a delivery is in flight neither aborts nor repeats it', async () => {
    const logId = await createLog(daemon);
    const hook = await createHook(daemon, logId, `${rcv.url}/slow`);
    rcv.respond = (req) => (req.url === '/slow' && at(rcv, '/slow').length === 1 ? { status: 200, delayMs: 1500 } : { status: 200 });
    await publish(daemon, logId, [{ value: 'slow' }, { value: 'next' }]);
    await waitAt(rcv, '/slow', 1);
    expect(await ok(daemon, 'PATCH', `/egress_webhook/${hook.webhook_id}`, { metadata: 'renamed' })).toMatchObject({ metadata: 'renamed', destination: `${rcv.url}/slow` });
    const s = await waitStatus(daemon, hook.webhook_id, (x) => x.next_deliver_offset === 2, 'both delivered', 20_000);
    expect(s).not.toHaveProperty('deliver_error');
    expect(at(rcv, '/slow').map((r) => bodyOf(r).offset)).toEqual([0, 1]);
  });

  it('deleting the log makes its webhook inactive, naming the deleted log; it cannot be re-activated', async () => {
    const logId = await createLog(daemon);
    const hook = await createHook(daemon, logId, `${rcv.url}/deleted`);
    await publish(daemon, logId, [{ value: 'before' }]);
    await waitAt(rcv, '/deleted', 1);
    await waitStatus(daemon, hook.webhook_id, (s) => s.next_deliver_offset === 1, 'the first delivery');
    expect(await ok(daemon, 'DELETE', `/log/${logId}`)).toMatchObject({ log_id: logId });
    const s = await waitStatus(daemon, hook.webhook_id, (x) => x.active === false, 'the webhook to go inactive');
    expect(s.inactive_reason).toContain(logId);
    expect(s.inactive_reason).toMatch(/deleted/);
    const again = await api(daemon, 'PATCH', `/egress_webhook/${hook.webhook_id}`, { active: true });
    expect(again.status).toBe(400);
    expect(again.json.code).toBe('egress-webhook-log-id-field-invalid');
    expect((await status(daemon, hook.webhook_id)).active).toBe(false);
    // the webhook itself is still there and can be deleted
    expect(await ok(daemon, 'DELETE', `/egress_webhook/${hook.webhook_id}`)).toMatchObject({ webhook_id: hook.webhook_id });
    expect((await api(daemon, 'GET', `/egress_webhook/${hook.webhook_id}`)).status).toBe(404);
  });

  it('errors: unknown log and webhook are 404s, bad payload, encoding and fields are 400s, all {code, message}', async () => {
    const logId = await createLog(daemon);
    const hook = await createHook(daemon, logId, `${rcv.url}/errors`);
    const missingLog = 'log_2VnvpTOoNFQRf0G9peK1zKlfhlf';
    const missingHook = 'ewh_2VnwJdcym3NLEaA6MUkrPWzKWkQ';
    const expectError = (r: Reply, status: number, code: string) => {
      expect(r.status, JSON.stringify(r.json)).toBe(status);
      expect(r.json).toMatchObject({ code, message: expect.any(String) });
      expect(r.json.message).not.toBe('');
    };

    for (const [m, p, b] of [
      ['GET', `/log/${missingLog}`, undefined],
      ['GET', `/log/${missingLog}/stats`, undefined],
      ['PATCH', `/log/${missingLog}`, { metadata: 'x' }],
      ['DELETE', `/log/${missingLog}`, undefined],
      ['POST', `/message/${missingLog}`, { value: 'x' }],
      ['POST', `/messages/${missingLog}`, { messages: [{ value: 'x' }] }],
      ['GET', `/messages/${missingLog}`, undefined],
      ['GET', `/message/${missingLog}`, undefined],
    ] as const) {
      expectError(await api(daemon, m, p, b), 404, 'log-not-found');
    }
    for (const [m, p, b] of [
      ['GET', `/egress_webhook/${missingHook}`, undefined],
      ['GET', `/egress_webhook/${missingHook}/status`, undefined],
      ['PATCH', `/egress_webhook/${missingHook}`, { metadata: 'x' }],
      ['PATCH', `/egress_webhook/${missingHook}/secret`, { expire_seconds: 0 }],
      ['DELETE', `/egress_webhook/${missingHook}`, undefined],
    ] as const) {
      expectError(await api(daemon, m, p, b), 404, 'egress-webhook-not-found');
    }
    expectError(await api(daemon, 'GET', `/message/${logId}`), 404, 'message-not-found');
    expectError(await api(daemon, 'POST', '/egress_webhooks', { log_id: logId, destination: rcv.url, payload: 'everything' }), 400, 'egress-webhook-payload-invalid');
    expectError(await api(daemon, 'POST', '/egress_webhooks', { log_id: missingLog, destination: rcv.url }), 400, 'egress-webhook-log-id-field-invalid');
    expectError(await api(daemon, 'POST', '/egress_webhooks', { log_id: logId, destination: 'ftp://127.0.0.1/x' }), 400, 'egress-webhook-destination-invalid');
    expectError(await api(daemon, 'POST', `/message/${logId}`, { encoding: 'hex', value: '00' }), 400, 'message-encoding-invalid');
    expectError(await api(daemon, 'POST', `/messages/${logId}`, { encoding: 'utf8', messages: [{ value: 'x' }] }), 400, 'message-encoding-invalid');
    expectError(await api(daemon, 'POST', `/message/${logId}`, { encoding: 'base64', value: 'not base64!' }), 400, 'message-encoding-invalid');
    expectError(await api(daemon, 'GET', `/messages/${logId}?encoding=hex`), 400, 'message-encoding-invalid');
    // unknown fields
    expect((await api(daemon, 'POST', '/logs', { metadata: 'x', colour: 'blue' })).status).toBe(400);
    expect((await api(daemon, 'POST', '/egress_webhooks', { log_id: logId, destination: rcv.url, secret: 'ewhsec_mine' })).status).toBe(400);
    expect((await api(daemon, 'POST', `/message/${logId}`, { value: 'x', offset: 3 })).status).toBe(400);
    expect((await api(daemon, 'POST', `/messages/${logId}`, { messages: [{ value: 'x', colour: 'blue' }] })).status).toBe(400);
    expect((await api(daemon, 'PATCH', `/egress_webhook/${hook.webhook_id}`, { payload: 'key' })).status).toBe(400);
    expect((await api(daemon, 'PATCH', `/egress_webhook/${hook.webhook_id}/secret`, { expire_seconds: -1 })).status).toBe(400);
    const unknown = await api(daemon, 'POST', '/logs', { metadata: 'x', colour: 'blue' });
    expect(unknown.json).toMatchObject({ code: expect.stringMatching(/^[a-z]+(-[a-z]+)*$/), message: expect.stringContaining('colour') });
    // nothing was published by the failed requests
    expect((await ok(daemon, 'GET', `/messages/${logId}`)).messages).toEqual([]);
    expect((await ok(daemon, 'GET', '/logs')).logs.filter((l: { metadata: string }) => l.metadata === 'x')).toEqual([]);
  });
});

// ---------------------------------------------------------------------------

describe('a webhook that keeps failing goes inactive, and resumes from its cursor when activated', () => {
  let daemon: Daemon;
  let rcv: Receiver;

  beforeAll(async () => {
    rcv = await startReceiver();
    daemon = await startDaemon({ policy: '-- event logs only\n', noWatch: true, args: ['--webhook-max-failure-age', '1s'] });
  });
  afterAll(async () => {
    expect(await daemon.stop()).toBe(0);
    await rcv.close();
  });

  it('--webhook-max-failure-age 1s → inactive with a reason; sluice egress-webhooks activate → same cursor', async () => {
    rcv.respond = () => ({ status: 500, body: 'down' });
    const logId = await createLog(daemon);
    const hook = await createHook(daemon, logId, `${rcv.url}/flaky`);
    await publish(daemon, logId, [{ value: 'm0' }, { value: 'm1' }]);

    const s = await waitStatus(daemon, hook.webhook_id, (x) => x.active === false, 'the webhook to go inactive', 20_000);
    expect(s).toMatchObject({ active: false, next_deliver_offset: 0, deliver_offset: 0, deliver_error: expect.stringContaining('500') });
    expect(s.inactive_reason).toMatch(/fail/);
    expect(s.inactive_reason).toContain('500');
    await daemon.waitForLog(/egress webhook made inactive/);
    const failed = at(rcv, '/flaky');
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(failed.every((r) => bodyOf(r).offset === 0)).toBe(true);

    rcv.respond = () => ({ status: 204 });
    const r = await runCli(['egress-webhooks', 'activate', hook.webhook_id, '--server', daemon.url]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ webhook_id: hook.webhook_id, log_id: logId });

    const all = await waitAt(rcv, '/flaky', failed.length + 2);
    expect(all.slice(failed.length).map((x) => bodyOf(x).offset)).toEqual([0, 1]);
    const after = await waitStatus(daemon, hook.webhook_id, (x) => x.next_deliver_offset === 2, 'the cursor at 2');
    expect(after).toMatchObject({ active: true, next_deliver_offset: 2, deliver_offset: 1 });
    expect(after).not.toHaveProperty('inactive_reason');
    expect(after).not.toHaveProperty('deliver_error');
    expect(after.deliver_resp).toMatch(/^HTTP\/1\.1 204 No Content\r\n/);
  });
});

// ---------------------------------------------------------------------------

describe('restart, the records bridge and sluice.publish from Lua', () => {
  let rcv: Receiver;
  let maildir: string;
  let policy: string;

  beforeAll(async () => {
    rcv = await startReceiver();
    maildir = path.join(tempDir('sluice-egress-maildir-'), 'maildir');
    policy = `
local log_hooks = require 'policy-extras.log_hooks'
local sluice = require 'sluice'
log_hooks:new {
  name = 'to_event_log',
  constructor = function(domain, tenant, campaign)
    return {
      send = function(self, message)
        return tostring(sluice.publish(os.getenv 'LUA_LOG_ID', { key = 'k', value = message:get_data() }))
      end,
    }
  end,
}
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { maildir_path = '${maildir}' } }
end)
`;
  });
  afterAll(async () => {
    await rcv.close();
  });

  it('logs, messages, webhooks (secret still valid) and cursors survive a restart; records and Lua publishes land in event logs', async () => {
    const first = await startDaemon({ policy, noWatch: true, env: { LUA_LOG_ID: 'log_notyet' } });
    const logId = await createLog(first, 'durable');
    const recordsLog = await createLog(first, 'records');
    const luaLog = await createLog(first, 'lua');
    const hook = await createHook(first, logId, `${rcv.url}/durable`);
    await publish(first, logId, [{ key: 'a', value: 'zero' }, { value: 'one' }]);
    await waitAt(rcv, '/durable', 2);
    await waitStatus(first, hook.webhook_id, (s) => s.next_deliver_offset === 2, 'the cursor at 2');
    // A third message that cannot be delivered yet: the receiver refuses it, so the cursor stays at 2.
    rcv.respond = (req) => (req.url === '/durable' ? { status: 503 } : { status: 200 });
    await publish(first, logId, [{ value: 'two' }]);
    await waitAt(rcv, '/durable', 3);
    expect(await first.stop()).toBe(0);

    rcv.respond = () => ({ status: 200 });
    const before = at(rcv, '/durable').length;
    const second = await startDaemon({
      policyPath: first.policyPath,
      dataDir: first.dataDir,
      noWatch: true,
      args: ['--records-log', recordsLog],
      env: { LUA_LOG_ID: luaLog },
    });
    try {
      // logs and messages
      expect((await ok(second, 'GET', '/logs')).logs.map((l: { log_id: string }) => l.log_id)).toEqual([logId, recordsLog, luaLog]);
      const consumed = await ok(second, 'GET', `/messages/${logId}?offset=0`);
      expect(consumed).toMatchObject({ next_offset: 3, encoding: 'string' });
      expect(consumed.messages.map((m: { offset: number; key?: string; value: string }) => [m.offset, m.key, m.value])).toEqual([[0, 'a', 'zero'], [1, undefined, 'one'], [2, undefined, 'two']]);
      // the webhook, its cursor and its secret
      expect(await ok(second, 'GET', `/egress_webhook/${hook.webhook_id}`)).toEqual({ webhook_id: hook.webhook_id, metadata: 'test', log_id: logId, destination: `${rcv.url}/durable`, payload: 'message' });
      const redelivered = (await waitAt(rcv, '/durable', before + 1))[before]!;
      expect(bodyOf(redelivered)).toMatchObject({ offset: 2, value: b64('two') });
      expect(klevOk(hook.secret, redelivered)).toBe(true);
      expect(standardOk(hook.secret, redelivered)).toBe(true);
      expect(await publish(second, logId, [{ value: 'three' }])).toBe(4);
      const next = (await waitAt(rcv, '/durable', before + 2))[before + 1]!;
      expect(bodyOf(next)).toMatchObject({ offset: 3, value: b64('three') });
      expect(klevOk(hook.secret, next)).toBe(true);
      expect(at(rcv, '/durable').slice(before).map((r) => bodyOf(r).offset)).toEqual([2, 3]);
      await waitStatus(second, hook.webhook_id, (s) => s.next_deliver_offset === 4 && s.active === true, 'the cursor at 4');

      // the records bridge and sluice.publish: inject one message
      const inj = await ok(second, 'POST', '/api/inject/v1', {
        envelope_sender: 'sender@example.com',
        recipients: [{ email: 'recip@example.com' }],
        content: { subject: 'Bridged', text_body: 'Hello' },
      });
      expect(inj).toMatchObject({ success_count: 1, fail_count: 0 });

      const records = await waitFor(async () => {
        const r = await ok(second, 'GET', `/messages/${recordsLog}?offset=0`);
        const types = r.messages.map((m: { value: string }) => JSON.parse(m.value).type);
        return types.includes('Reception') && types.includes('Delivery') ? r.messages : null;
      }, 'Reception and Delivery records in the records log');
      const parsed = records.map((m: { key: string; value: string }) => ({ key: m.key, rec: JSON.parse(m.value) }));
      const reception = parsed.find((x: any) => x.rec.type === 'Reception');
      const delivery = parsed.find((x: any) => x.rec.type === 'Delivery');
      expect(reception.rec).toMatchObject({ sender: 'sender@example.com', recipient: 'recip@example.com' });
      expect(delivery.rec).toMatchObject({ sender: 'sender@example.com', recipient: 'recip@example.com', delivery_protocol: 'Maildir' });
      expect(reception.key).toBe(reception.rec.id);
      expect(delivery.rec.id).toBe(reception.rec.id);
      // records about the log hook's own messages are not bridged
      expect(parsed.every((x: any) => x.rec.reception_protocol !== 'LogRecord')).toBe(true);

      const published = await waitFor(async () => {
        const r = await ok(second, 'GET', `/messages/${luaLog}?offset=0`);
        const types = r.messages.map((m: { value: string }) => JSON.parse(m.value).type);
        return types.includes('Reception') && types.includes('Delivery') ? r.messages : null;
      }, 'the Lua log hook to publish both records');
      for (const m of published) expect(m.key).toBe('k');
      expect(published.map((m: { offset: number }) => m.offset)).toEqual(published.map((_: unknown, i: number) => i));
      expect(published.map((m: { value: string }) => JSON.parse(m.value).id)).toContain(reception.rec.id);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });

  it('a webhook deleted while a delivery is reading its reply stays deleted after a restart', async () => {
    // A destination that sends the status line and headers, then holds the body.
    const held: http.ServerResponse[] = [];
    let arrived = 0;
    const hold = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        arrived++;
        res.writeHead(200, { 'content-length': 10 });
        res.write('part');
        held.push(res);
      });
    });
    await new Promise<void>((r) => hold.listen(0, '127.0.0.1', r));
    const holdUrl = `http://127.0.0.1:${(hold.address() as AddressInfo).port}`;
    try {
      const first = await startDaemon({ policy: '-- event logs only\n', noWatch: true });
      const logId = await createLog(first);
      const hook = await createHook(first, logId, `${holdUrl}/held`);
      await publish(first, logId, [{ value: 'in flight' }]);
      await waitFor(() => held.length === 1, 'the delivery to get its reply headers');
      expect(await ok(first, 'DELETE', `/egress_webhook/${hook.webhook_id}`)).toMatchObject({ webhook_id: hook.webhook_id });
      expect((await api(first, 'GET', `/egress_webhook/${hook.webhook_id}`)).status).toBe(404);
      for (const res of held) res.end('rest!');
      expect(await first.stop()).toBe(0);

      const second = await startDaemon({ policyPath: first.policyPath, dataDir: first.dataDir, noWatch: true });
      try {
        expect((await ok(second, 'GET', '/egress_webhooks')).egress_webhooks).toEqual([]);
        expect((await api(second, 'GET', `/egress_webhook/${hook.webhook_id}`)).status).toBe(404);
        expect(arrived).toBe(1);
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      hold.closeAllConnections();
      await new Promise((r) => hold.close(r));
    }
  });

  it('--records-log with a log that does not exist: sluice serve refuses to start, naming it', async () => {
    const missing = 'log_2VnvpTOoNFQRf0G9peK1zKlfhlf';
    const err = await startDaemon({ policy: '-- nothing\n', noWatch: true, args: ['--records-log', missing] }).then(() => null, (e: Error) => e);
    expect(err?.message).toContain(missing);
  });
});
