/**
 * Hot reload of the real `sluice serve`: a hook URL changed on disk takes
 * effect without losing a record; a broken edit keeps the old policy serving
 * (logged with file:line, counted in the metrics); SIGHUP and
 * `POST /api/admin/bump-config-epoch` reload too.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, postJson, record, type Daemon } from '../helpers/daemon.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/fake-clock.js';

const receivers: Receiver[] = [];
let daemon: Daemon | null = null;
afterEach(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  daemon = null;
  for (const r of receivers.splice(0)) await r.close();
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

/**
 * One session at a time that closes after 5 deliveries or 200 ms idle, so
 * sessions opened on the old policy end quickly after a reload.
 */
function policy(url: string): string {
  return `local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json { name = 'webhook', url = '${url}/hook' }
kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path { connection_limit = 1, max_deliveries_per_connection = 5, idle_timeout = '200ms' }
end)
`;
}

/** Replace init.lua as an editor does: write a temporary file, rename it over. */
function edit(d: Daemon, source: string): void {
  const tmp = path.join(path.dirname(d.policyPath), 'init.lua.new');
  fs.writeFileSync(tmp, source);
  fs.renameSync(tmp, d.policyPath);
}

async function publish(d: Daemon, tag: string): Promise<string | null> {
  const r = record(tag);
  const res = await postJson(`${d.url}/api/log-records/v1`, r);
  if (res.status !== 200) return null;
  expect(res.json).toEqual({ accepted: 1, queued: 1 });
  return r.id as string;
}

const idsAt = (r: Receiver) => r.records().map((x) => x.id as string);

/** Publish one record at a time (waiting for each to arrive anywhere) until one lands at `target`. */
async function publishUntilArrivesAt(d: Daemon, target: Receiver, all: Receiver[], acked: string[], tag: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const id = await publish(d, tag);
    expect(id).not.toBeNull();
    acked.push(id as string);
    const total = acked.length;
    await waitUntil(() => all.reduce((n, r) => n + r.records().length, 0) >= total, `${total} records delivered`);
    if (idsAt(target).includes(id as string)) return;
  }
  throw new Error(`no record reached ${target.url} after 200 tries`);
}

async function waitUntil(check: () => boolean, what: string): Promise<void> {
  await waitFor(check, what);
}

async function metric(d: Daemon, name: string): Promise<string> {
  const res = await fetch(`${d.url}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics:\n${text}`);
  return line.slice(name.length + 1);
}

function expectEachOnce(acked: string[], rs: Receiver[]): void {
  const got = rs.flatMap(idsAt);
  expect(got.length).toBe(new Set(got).size);
  expect([...got].sort()).toEqual([...acked].sort());
}

describe('policy reload', () => {
  it('a hook URL changed on disk takes effect without losing a record', async () => {
    const r1 = await receiver();
    const r2 = await receiver();
    daemon = await startDaemon({ policy: policy(r1.url) });
    const d = daemon;
    const acked: string[] = [];

    // Before the edit: everything goes to r1.
    for (let i = 0; i < 5; i++) acked.push((await publish(d, 'before')) as string);
    await r1.waitForRecords(5);
    expect(idsAt(r1).sort()).toEqual([...acked].sort());

    // Edit while publishing; keep publishing until the reload is logged.
    const mark = d.logs.length;
    const reloaded = d.waitForLog(/^policy reloaded$/, 15_000, mark);
    let seen = false;
    void reloaded.then(() => (seen = true), () => undefined);
    edit(d, policy(r2.url));
    for (let i = 0; i < 5000 && !seen; i++) {
      const id = await publish(d, 'during');
      expect(id).not.toBeNull();
      acked.push(id as string);
    }
    const line = await reloaded;
    expect(line).toMatchObject({ reason: 'policy file changed', epoch: 2 });
    expect(d.logs.slice(mark).filter((l) => /policy reload failed/.test(l.msg))).toEqual([]);

    // After the reload: new sessions use the new URL.
    await publishUntilArrivesAt(d, r2, [r1, r2], acked, 'after');
    const tail: string[] = [];
    for (let i = 0; i < 10; i++) tail.push((await publish(d, 'tail')) as string);
    acked.push(...tail);
    await waitUntil(() => r1.records().length + r2.records().length >= acked.length, `${acked.length} records delivered`);
    expect(tail.filter((id) => !idsAt(r2).includes(id))).toEqual([]);

    // Nothing lost, nothing twice.
    expectEachOnce(acked, [r1, r2]);
    expect(await metric(d, 'policy_reload_total{result="ok"}')).toBe('1');
    expect(await metric(d, 'policy_reload_total{result="error"}')).toBe('0');
    expect(await metric(d, 'policy_epoch')).toBe('2');
  });

  it('a broken edit keeps the old policy serving, logged with file and line and counted', async () => {
    const r1 = await receiver();
    const r2 = await receiver();
    daemon = await startDaemon({ policy: policy(r1.url) });
    const d = daemon;
    const acked: string[] = [];
    acked.push((await publish(d, 'ok')) as string);
    await r1.waitForRecords(1);

    const mark = d.logs.length;
    // Line 3 lacks a comma between two fields: a syntax error there.
    edit(d, `local log_hooks = require 'policy-extras.log_hooks'\nlog_hooks:new_json {\n  name = 'webhook'\n  url = '${r2.url}/hook',\n}\n`);
    const failed = await d.waitForLog(/^policy reload failed/, 15_000, mark);
    expect(failed.msg).toMatch(/init\.lua:4: '}' expected \(to close '{' at line 2\) near 'url'/);
    expect(failed.level).toBe(50);
    expect(String(failed.error)).toContain('init.lua:4:');
    expect(await metric(d, 'policy_reload_total{result="error"}')).toBe('1');
    expect(await metric(d, 'policy_reload_total{result="ok"}')).toBe('0');
    expect(await metric(d, 'policy_epoch')).toBe('1');

    // Still serving on the old policy.
    for (let i = 0; i < 5; i++) acked.push((await publish(d, 'still')) as string);
    await r1.waitForRecords(6);
    expect(idsAt(r1).sort()).toEqual([...acked].sort());
    expect(r2.requests).toHaveLength(0);

    // Fixing the file reloads it.
    const mark2 = d.logs.length;
    edit(d, policy(r2.url));
    await d.waitForLog(/^policy reloaded$/, 15_000, mark2);
    await publishUntilArrivesAt(d, r2, [r1, r2], acked, 'fixed');
    expectEachOnce(acked, [r1, r2]);
    expect(await metric(d, 'policy_reload_total{result="ok"}')).toBe('1');
    expect(await metric(d, 'policy_reload_total{result="error"}')).toBe('1');
  });

  it('SIGHUP and POST /api/admin/bump-config-epoch reload the policy', async () => {
    const r1 = await receiver();
    const r2 = await receiver();
    const r3 = await receiver();
    daemon = await startDaemon({ policy: policy(r1.url), noWatch: true });
    const d = daemon;
    const acked: string[] = [];
    acked.push((await publish(d, 'one')) as string);
    await r1.waitForRecords(1);

    // Not watching: an edit alone changes nothing until SIGHUP.
    edit(d, policy(r2.url));
    let mark = d.logs.length;
    d.proc.kill('SIGHUP');
    expect(await d.waitForLog(/^policy reloaded$/, 15_000, mark)).toMatchObject({ reason: 'SIGHUP', epoch: 2 });
    await publishUntilArrivesAt(d, r2, [r1, r2, r3], acked, 'hup');

    edit(d, policy(r3.url));
    mark = d.logs.length;
    const res = await postJson(`${d.url}/api/admin/bump-config-epoch`, '');
    expect(res).toEqual({ status: 200, json: { ok: true, epoch: 3 } });
    expect(await d.waitForLog(/^policy reloaded$/, 5_000, mark)).toMatchObject({ reason: 'bump-config-epoch', epoch: 3 });
    await publishUntilArrivesAt(d, r3, [r1, r2, r3], acked, 'bump');

    // `sluice reload` is the same call.
    const cli = await runCli(['reload', '--server', d.url]);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toEqual({ ok: true, epoch: 4 });

    expectEachOnce(acked, [r1, r2, r3]);
    expect(await metric(d, 'policy_reload_total{result="ok"}')).toBe('3');
    expect(await metric(d, 'policy_epoch')).toBe('4');
  });
});
