/**
 * Bad input to the real `sluice serve`, none of which disturbs queued work:
 * malformed JSON, unknown fields, wrong types (400 naming the field), a body
 * over request_body_limit (413), unknown routes (404), wrong methods (405),
 * clients outside trusted_hosts (403), admin routes without the token
 * (401), bad `serve` flags (exit 2), a policy that fails in init (exit 1).
 * Also the metrics and the admin client commands.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, postJson, record, type Daemon } from '../helpers/daemon.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { runCli } from '../helpers/cli.js';
import { writePolicy } from '../helpers/policy.js';
import { waitFor } from '../helpers/fake-clock.js';

const TOKEN = 'sekret-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const QUEUE = 'webhook.log_hook';

let receiver: Receiver;
let daemon: Daemon;

beforeAll(async () => {
  receiver = await startReceiver();
  daemon = await startDaemon({
    policy: `local log_hooks = require 'policy-extras.log_hooks'
-- Due messages of a suspended queue are retried (451 4.4.4): keep the retries short.
log_hooks:new_json { name = 'webhook', url = '${receiver.url}/log', queue_config = { retry_interval = '200ms', max_retry_interval = '200ms' } }
kumo.on('init', function()
  kumo.start_http_listener { listen = '127.0.0.1:8000', request_body_limit = 1024 }
end)
`,
    args: ['--admin-token', TOKEN],
  });
});
afterAll(async () => {
  expect(await daemon.stop()).toBe(0);
  await receiver.close();
});

async function call(method: string, path: string, body?: string | object, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(`${daemon.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json };
}

const cli = (...args: string[]) => runCli([...args, '--server', daemon.url, '--token', TOKEN]);

async function queueStats(): Promise<Record<string, any> | undefined> {
  const r = await call('GET', '/api/admin/queues/v1', undefined, AUTH);
  expect(r.status).toBe(200);
  return (r.json.queues as Record<string, any>[]).find((q) => q.name === QUEUE);
}

const queued: string[] = [];
let suspension = '';

describe('bad input to sluice serve', () => {
  it('queued work first: suspend the hook queue (sluice suspend) and queue three records', async () => {
    const s = await cli('suspend', '--queue', QUEUE, '--reason', 'hold for the bad-input test');
    expect(s.stderr).toBe('');
    expect(s.code).toBe(0);
    suspension = (JSON.parse(s.stdout) as { id: string }).id;
    expect(suspension).toMatch(/^[0-9a-f-]{36}$/);
    const recs = [record('held'), record('held'), record('held')];
    queued.push(...recs.map((r) => r.id as string));
    expect(await postJson(`${daemon.url}/api/log-records/v1`, recs)).toEqual({ status: 200, json: { accepted: 3, queued: 3 } });
    await waitFor(async () => (await queueStats())?.scheduled === 3, 'three records at rest in the suspended queue');
    expect(await queueStats()).toMatchObject({ name: QUEUE, ready: 0, in_flight: 0, delivered: 0, failed: 0, suspended: 'hold for the bad-input test' });
    const list = await cli('queues');
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as { queues: unknown[] }).queues).toEqual([expect.objectContaining({ name: QUEUE, delivered: 0, failed: 0, suspended: 'hold for the bad-input test', ready_queue: expect.any(String) })]);
    expect(receiver.requests).toHaveLength(0);
  });

  it('malformed JSON → 400 invalid-json', async () => {
    const r = await call('POST', '/api/log-records/v1', '{"type": "Delivery",');
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: 'invalid-json' });
    expect(r.json.message).toMatch(/^the body is not valid JSON: /);
    const inj = await call('POST', '/api/inject/v1', 'not json at all');
    expect(inj).toMatchObject({ status: 400, json: { code: 'invalid-json' } });
  });

  it('an unknown field → 400 naming it', async () => {
    const r = await call('POST', '/api/inject/v1', { envelope_sender: 'a@example.com', recipients: [{ emial: 'b@example.com' }], content: 'Subject: x\r\n\r\nhi' });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: 'invalid-field', field: 'recipients[0].emial' });
    expect(r.json.message).toBe('recipients[0].emial: unknown field; expected one of email, name, substitutions, metadata');
    const top = await call('POST', '/api/inject/v1', { envelope_sender: 'a@example.com', recipients: [{ email: 'b@example.com' }], content: 'x', colour: 'red' });
    expect(top).toMatchObject({ status: 400, json: { code: 'invalid-field', field: 'colour' } });
    const rec = await call('POST', '/api/log-records/v1', [record('bad'), { ...record('bad'), sendr: 'x' }]);
    expect(rec).toMatchObject({ status: 400, json: { code: 'invalid-field', field: '[1].sendr' } });
  });

  it('wrong types → 400 naming the field', async () => {
    const sender = await call('POST', '/api/inject/v1', { envelope_sender: 5, recipients: [{ email: 'b@example.com' }], content: 'x' });
    expect(sender).toMatchObject({ status: 400, json: { code: 'invalid-field', field: 'envelope_sender', message: 'envelope_sender: expected a string, got a number' } });
    const recips = await call('POST', '/api/inject/v1', { envelope_sender: 'a@example.com', recipients: 'b@example.com', content: 'x' });
    expect(recips).toMatchObject({ status: 400, json: { field: 'recipients', message: 'recipients: expected an array, got a string' } });
    const size = await call('POST', '/api/log-records/v1', { ...record('bad'), size: 'big' });
    expect(size).toMatchObject({ status: 400, json: { field: 'size', message: 'size: expected an integer, got a string' } });
    const recipient = await call('POST', '/api/log-records/v1', [record('bad'), { ...record('bad'), recipient: 7 }]);
    expect(recipient).toMatchObject({ status: 400, json: { field: '[1].recipient' } });
    const type = await call('POST', '/api/log-records/v1', { ...record('bad'), type: 'Delivered' });
    expect(type).toMatchObject({ status: 400, json: { field: 'type' } });
    expect(type.json.message).toContain('got "Delivered"');
    const reason = await call('POST', '/api/admin/suspend/v1', { queue_names: QUEUE, reason: 'x' }, AUTH);
    expect(reason).toMatchObject({ status: 400, json: { field: 'queue_names' } });
  });

  it('a body over request_body_limit (1024 from start_http_listener; --listen does not lift it) → 413', async () => {
    const big = [record('big', { meta: { pad: 'x'.repeat(1100) } })];
    const r = await call('POST', '/api/log-records/v1', big);
    expect(r.status).toBe(413);
    expect(r.json).toEqual({ code: 'body-too-large', message: expect.stringMatching(/the limit is 1024$/) });
    // Without a Content-Length (chunked), the limit holds while reading.
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${daemon.url}/api/log-records/v1`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.write(JSON.stringify(big).slice(0, 700));
      req.end(JSON.stringify(big).slice(700));
    });
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body)).toMatchObject({ code: 'body-too-large' });
    // Just under the limit is fine.
    const small = [record('small')];
    expect(JSON.stringify(small).length).toBeLessThan(1024);
    expect(await call('POST', '/api/log-records/v1', small)).toEqual({ status: 200, json: { accepted: 1, queued: 1 } });
    queued.push(small[0]!.id as string);
  });

  it('unknown route → 404, wrong method → 405', async () => {
    expect(await call('GET', '/api/nothing/v1')).toMatchObject({ status: 404, json: { code: 'not-found', message: 'no route for GET /api/nothing/v1' } });
    expect(await call('POST', '/api/log-records/v2', record('x'))).toMatchObject({ status: 404, json: { code: 'not-found' } });
    expect(await call('GET', '/api/log-records/v1')).toMatchObject({ status: 405, json: { code: 'method-not-allowed', message: 'GET is not allowed on /api/log-records/v1' } });
    expect(await call('DELETE', '/api/inject/v1')).toMatchObject({ status: 405, json: { code: 'method-not-allowed' } });
  });

  it('admin routes need the bearer token: 401 without, 200 with', async () => {
    expect(await call('GET', '/api/admin/queues/v1')).toMatchObject({ status: 401, json: { code: 'unauthorized' } });
    expect(await call('GET', '/api/admin/queues/v1', undefined, { authorization: 'Bearer wrong-token!' })).toMatchObject({ status: 401 });
    expect(await call('POST', '/api/admin/bump-config-epoch', '')).toMatchObject({ status: 401 });
    expect((await call('GET', '/api/admin/queues/v1', undefined, AUTH)).status).toBe(200);
    const noToken = await runCli(['queues', '--server', daemon.url], { env: { SLUICE_ADMIN_TOKEN: '' } });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/^sluice: 401: admin routes need the bearer token/);
    // Non-admin routes do not need it.
    expect((await call('GET', '/api/check-liveness/v1')).status).toBe(200);
  });

  it('none of it disturbed the queued work: sluice resume delivers all of it, and a good record still goes through', async () => {
    await waitFor(async () => (await queueStats())?.scheduled === 4, 'four records at rest in the suspended queue');
    expect(await queueStats()).toMatchObject({ delivered: 0, failed: 0 });
    expect(receiver.requests).toHaveLength(0);
    const r = await cli('resume', suspension);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ id: suspension });
    const good = record('good');
    expect(await postJson(`${daemon.url}/api/log-records/v1`, good)).toEqual({ status: 200, json: { accepted: 1, queued: 1 } });
    queued.push(good.id as string);
    const got = await receiver.waitForRecords(5);
    expect(got.map((x) => x.id).sort()).toEqual([...queued].sort());
    expect(receiver.records().some((x) => String(x.id).startsWith('bad-') || String(x.id).startsWith('big-'))).toBe(false);
    await waitFor(async () => (await queueStats())?.delivered === 5, 'delivered 5 in the queue stats');
    expect(await queueStats()).toMatchObject({ name: QUEUE, scheduled: 0, ready: 0, in_flight: 0, delivered: 5, failed: 0, suspended: null });
    // Resuming again: that suspension is gone.
    const again = await cli('resume', suspension);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`404: no suspension with id ${suspension}`);
  });

  it('sluice bounce removes what is queued', async () => {
    const s = await cli('suspend', '--queue', QUEUE, '--reason', 'hold');
    const id = (JSON.parse(s.stdout) as { id: string }).id;
    expect(await postJson(`${daemon.url}/api/log-records/v1`, [record('doomed'), record('doomed')])).toEqual({ status: 200, json: { accepted: 2, queued: 2 } });
    await waitFor(async () => (await queueStats())?.scheduled === 2, 'two records at rest in the suspended queue');
    const b = await cli('bounce', '--queue', QUEUE, '--reason', 'clean up');
    expect(b.code).toBe(0);
    const bounce = JSON.parse(b.stdout) as { id: string; total_bounced: number };
    expect(bounce.total_bounced).toBeGreaterThanOrEqual(1);
    // One may have been between retries when the rule came; it is bounced at its next promotion.
    await waitFor(async () => {
      const list = (await call('GET', '/api/admin/bounce/v1', undefined, AUTH)).json as { id: string; total_bounced: number }[];
      return list.find((x) => x.id === bounce.id)?.total_bounced === 2;
    }, 'both records bounced');
    expect(await queueStats()).toMatchObject({ scheduled: 0, ready: 0, in_flight: 0, delivered: 5 });
    // End the bounce rule and the suspension; new records flow again.
    expect(await call('DELETE', '/api/admin/bounce/v1', { id: bounce.id }, AUTH)).toEqual({ status: 200, json: { id: bounce.id } });
    expect((await cli('resume', id)).code).toBe(0);
    const after = record('after-bounce');
    expect(await postJson(`${daemon.url}/api/log-records/v1`, after)).toEqual({ status: 200, json: { accepted: 1, queued: 1 } });
    const got = await receiver.waitForRecords(6);
    expect(got.map((x) => x.id)).toContain(after.id);
    expect(got.some((x) => String(x.id).startsWith('doomed-'))).toBe(false);
  });

  it('GET /metrics and /metrics.json', async () => {
    const res = await fetch(`${daemon.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    const value = (series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    expect(value(`scheduled_count{queue="${QUEUE}"}`)).toBe(0);
    expect(text).toMatch(/^ready_count\{service="lua:[^"]+"\} 0$/m);
    expect(value(`total_messages_delivered{service="lua:${(await queueStats())!.ready_queue}"}`)).toBe(6);
    expect(value('total_messages_admin_bounced')).toBe(2);
    expect(value('policy_reload_total{result="ok"}')).toBe(0);
    expect(value('policy_reload_total{result="error"}')).toBe(0);
    expect(text).toContain('# TYPE policy_reload_total counter');
    // Every accepted record was inserted and removed: at least two writes each, in at least one commit.
    const commits = value('spool_commits_total')!;
    expect(commits).toBeGreaterThan(0);
    expect(value('spool_commit_writes_total')).toBeGreaterThanOrEqual(Math.max(commits, 2 * 6));
    expect(value('spool_commit_failures_total')).toBe(0);

    const j = await fetch(`${daemon.url}/metrics.json`);
    expect(j.status).toBe(200);
    expect(j.headers.get('content-type')).toBe('application/json');
    const metrics = (await j.json()) as { name: string; values: { value: number; labels: Record<string, string> }[] }[];
    expect(Array.isArray(metrics)).toBe(true);
    const delivered = metrics.find((m) => m.name === 'total_messages_delivered');
    expect(delivered?.values.reduce((n, v) => n + v.value, 0)).toBe(6);
    expect(metrics.map((m) => m.name)).toEqual(expect.arrayContaining(['scheduled_count', 'ready_count', 'policy_reload_total']));
  });
});

describe('trusted_hosts', () => {
  let guarded: Daemon;
  let r: Receiver;
  beforeAll(async () => {
    r = await startReceiver();
    guarded = await startDaemon({
      policy: `local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json { name = 'webhook', url = '${r.url}/log' }
kumo.on('init', function()
  kumo.start_http_listener { listen = '127.0.0.1:8000', trusted_hosts = { '10.9.9.9' } }
end)
`,
      args: ['--admin-token', TOKEN],
    });
  });
  afterAll(async () => {
    expect(await guarded.stop()).toBe(0);
    await r.close();
  });

  it('a client outside trusted_hosts gets 403; the same request with the admin token passes', async () => {
    const rec = record('trusted');
    const denied = await postJson(`${guarded.url}/api/log-records/v1`, rec);
    expect(denied).toEqual({ status: 403, json: { code: 'forbidden', message: 'client 127.0.0.1 is not in trusted_hosts' } });
    const metrics = await fetch(`${guarded.url}/metrics`);
    expect(metrics.status).toBe(403);
    const ok = await postJson(`${guarded.url}/api/log-records/v1`, rec, AUTH);
    expect(ok).toEqual({ status: 200, json: { accepted: 1, queued: 1 } });
    expect((await r.waitForRecords(1)).map((x) => x.id)).toEqual([rec.id]);
    const records = await runCli(['records', '--server', guarded.url], { input: JSON.stringify(record('trusted')), env: { SLUICE_ADMIN_TOKEN: '' } });
    expect(records.code).toBe(1);
    expect(records.stderr).toContain('403: client 127.0.0.1 is not in trusted_hosts');
  });
});

describe('sluice serve refuses bad arguments and bad policies', () => {
  it('--listen nonsense: exit 2 with a clear message', async () => {
    const r = await runCli(['serve', '--policy', writePolicy(''), '--listen', 'nonsense']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("sluice: invalid listen address 'nonsense': expected HOST:PORT, such as 127.0.0.1:8000 or [::1]:0");
    const noPolicy = await runCli(['serve', '--listen', '127.0.0.1:0']);
    expect(noPolicy.code).toBe(2);
    expect(noPolicy.stderr).toContain('Missing required argument: policy');
    const unknown = await runCli(['serve', '--policy', writePolicy(''), '--lissten', '127.0.0.1:0']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown argument: lissten/);
  });

  it('an error in init: exit 1 naming the file and line', async () => {
    const policy = writePolicy(`kumo.on('init', function()\n  local cfg = nil\n  return cfg.listen\nend)\n`);
    const r = await runCli(['serve', '--policy', policy, '--listen', '127.0.0.1:0', '--data-dir', `${policy}.data`], { env: { SLUICE_LOG_PRETTY: '' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/init\.lua:3: attempt to index a nil value \(local 'cfg'\)/);
    expect(r.stderr).toContain(`sluice: ${policy.replace(/init\.lua$/, '')}`);
    expect(r.stderr).not.toContain('listening on');
  });
});
