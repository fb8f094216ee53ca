/**
 * `sluice check` in a subprocess: OK for a good policy, exit 1 and the file
 * and line for each kind of bad one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { writePolicy } from '../helpers/policy.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

const SEEDS = path.join(import.meta.dirname, '../fixtures/seed-002');

describe('sluice check', () => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(() => receiver.close());

  it('prints OK for each seed snippet', async () => {
    for (const name of fs.readdirSync(SEEDS)) {
      const r = await runCli(['check', path.join(SEEDS, name)], { env: { WEBHOOK_URL: `${receiver.url}/log` } });
      expect({ name, code: r.code, out: r.stdout }).toEqual({ name, code: 0, out: 'OK\n' });
    }
  });

  it('reports a syntax error with file and line', async () => {
    const file = writePolicy(`local log_hooks = require 'policy-extras.log_hooks'\nlog_hooks:new_json {\n  name = 'x'\n  url = 'y',\n}\n`);
    const r = await runCli(['check', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/init\.lua:4: '}' expected \(to close '{' at line 2\) near 'url'/);
  });

  it('reports an error raised in init, with a traceback', async () => {
    const file = writePolicy(`kumo.on('init', function()\n  local cfg = nil\n  return cfg.listen\nend)\n`);
    const r = await runCli(['check', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/init\.lua:3: attempt to index a nil value \(local 'cfg'\)/);
    expect(r.stdout).toContain('stack traceback:');
  });

  it('reports an unknown option, naming the field and the line', async () => {
    const file = writePolicy(`kumo.on('init', function()\n  kumo.configure_log_hook { name = 'h', header = { 'Subject' } }\nend)\n`);
    const r = await runCli(['check', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/init\.lua:2: configure_log_hook: deserialize error: unknown field `header`.*did you mean `headers`/);
  });

  it('reports a duplicate hook name', async () => {
    const file = writePolicy(`local log_hooks = require 'policy-extras.log_hooks'\nlog_hooks:new_json { name = 'w', url = 'http://127.0.0.1:1/' }\nlog_hooks:new_json { name = 'w', url = 'http://127.0.0.1:1/' }\n`);
    const r = await runCli(['check', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/init\.lua:3: log_hook with name 'w' has already been configured/);
  });

  it('really makes the HTTP calls the policy makes while loading', async () => {
    const before = receiver.requests.length;
    const file = writePolicy(`kumo.on('init', function()\n  local r = kumo.http.build_client({}):get('${receiver.url}/from-init'):send()\n  assert(r:status_is_success())\nend)\n`);
    const r = await runCli(['check', file]);
    expect(r.stdout).toBe('OK\n');
    expect(receiver.requests.slice(before).map((q) => q.url)).toEqual(['/from-init']);
  });

  it('warns once about MTA-only calls but still passes', async () => {
    const file = writePolicy(`kumo.on('init', function()\n  kumo.start_esmtp_listener { listen = '0:25' }\n  kumo.start_esmtp_listener { listen = '0:587' }\n  kumo.define_spool { name = 'data', path = '/tmp/x' }\nend)\n`);
    const r = await runCli(['check', file]);
    expect(r.code).toBe(0);
    expect(r.stderr.match(/start_esmtp_listener/g)).toHaveLength(1);
    expect(r.stderr).toContain('kumo.define_spool');
  });

  it('fails clearly for a missing file and for bad flags', async () => {
    const missing = await runCli(['check', '/nonexistent/init.lua']);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/cannot open .*init\.lua/);
    const flag = await runCli(['check', writePolicy(''), '--lua-instruction-limit', '-5']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--lua-instruction-limit must be a non-negative integer');
    const help = await runCli(['check', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('sluice check <policy>');
  });
});
