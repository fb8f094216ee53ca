/**
 * Durability across restarts: records queued behind a dead endpoint survive
 * a clean close and an abrupt SIGKILL, and a new engine on the same data
 * directory delivers each of them, keeping attempts and due times. One
 * engine per data directory: a second is refused (SLUICE_ERR_SPOOL_LOCKED).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine.js';
import { readLocalLogs } from '../../src/logging/local-logs.js';
import { buildRecord, response, type JsonLogRecord } from '../../src/logging/record.js';
import { Message } from '../../src/queue/message.js';
import { SluiceError } from '../../src/errors.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { startEngine } from '../helpers/engine.js';
import { captureLogger, tempDir, writePolicy } from '../helpers/policy.js';
import { FakeClock, waitFor } from '../helpers/fake-clock.js';

let receiver: Receiver;
const engines: Engine[] = [];
const children: ChildProcess[] = [];

beforeEach(async () => {
  receiver = await startReceiver();
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const e of engines.splice(0)) await e.close();
  await receiver.close();
});

const T0 = Date.UTC(2026, 0, 1);

function record(i: number, created = T0): JsonLogRecord {
  const m = new Message({ id: `${'c'.repeat(28)}${String(i).padStart(4, '0')}`, sender: 's@shop.example', recipients: [`r${i}@mail.example`], data: 'x', meta: { reception_protocol: 'ESMTP' }, created });
  return buildRecord(m, { type: 'Delivery', response: response(250, 'ok'), when: created }, { meta: [], headers: [] });
}

/** Hook W posts to `url`; a non-2xx answer is a transient failure (400). */
function hookPolicy(url: string, logDir: string): string {
  return `
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new {
  name = 'W',
  constructor = function(domain)
    local client = kumo.http.build_client {}
    return {
      send = function(self, msg)
        local r = client:post('${url}'):header('Content-Type', 'application/json'):body(msg:get_data()):send()
        if r:status_is_success() then return 'posted' end
        kumo.reject(400, 'endpoint answered ' .. r:status_code())
      end,
      close = function() client:close() end,
    }
  end,
}
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '${logDir}' }
end)
`;
}

async function localLogsWhen(e: Engine, logDir: string, pred: (recs: JsonLogRecord[]) => boolean, what: string): Promise<JsonLogRecord[]> {
  let last: JsonLogRecord[] = [];
  await waitFor(async () => {
    await e.hub.flush();
    last = await readLocalLogs(logDir).catch(() => []);
    return pred(last);
  }, what);
  return last;
}

const hookStats = (e: Engine) => e.manager.stats().find((q) => q.name === 'W.log_hook');

describe('restart recovery', () => {
  it('records waiting behind a dead endpoint are delivered exactly once by the next engine, attempts and due times kept', async () => {
    receiver.respond = () => ({ status: 400, body: 'down' });
    const dir = tempDir('sluice-restart-');
    const logDir1 = path.join(dir, 'logs1');
    const logDir2 = path.join(dir, 'logs2');
    const dataDir = path.join(dir, 'data');
    const clock1 = new FakeClock(T0);
    const first = await startEngine(hookPolicy(`${receiver.url}/log`, logDir1), { clock: clock1, dataDir, rand: () => 0.5 });
    engines.push(first.engine);
    const records = [1, 2, 3].map((i) => record(i));
    expect(await first.engine.publishRecords(records)).toBe(3);
    await waitFor(() => hookStats(first.engine)?.scheduled === 3, 'three records waiting for their retry');
    await first.engine.publishRecords([record(4)]);
    await waitFor(() => hookStats(first.engine)?.scheduled === 4, 'the fourth record waiting');
    await clock1.advance(60_000); // every record retries at T0+60 s and fails again: attempts 2, next due 2 minutes later
    const failures1 = await localLogsWhen(first.engine, logDir1, (r) => r.filter((x) => x.type === 'TransientFailure').length === 8, 'eight failures');
    await waitFor(() => hookStats(first.engine)?.scheduled === 4, 'all four waiting again');
    expect(receiver.requests).toHaveLength(8);
    expect(failures1.map((r) => r.num_attempts)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    await first.engine.close();
    engines.splice(engines.indexOf(first.engine), 1);

    // Next due: T0 + 60 s + 120 s for every record.
    receiver.respond = () => ({ status: 200 });
    const clock2 = new FakeClock(clock1.now());
    const second = await startEngine(hookPolicy(`${receiver.url}/log`, logDir2), { clock: clock2, dataDir, rand: () => 0.5 });
    engines.push(second.engine);
    expect(hookStats(second.engine)).toMatchObject({ scheduled: 4, ready: 0, in_flight: 0 });
    expect(await second.engine.spool.size()).toBe(4);
    expect(clock2.pending()[0]).toBe(T0 + 180_000);
    await clock2.advance(119_000);
    expect(hookStats(second.engine)).toMatchObject({ scheduled: 4, ready: 0, in_flight: 0 });
    expect(receiver.requests).toHaveLength(8);

    await clock2.advance(1_000);
    const got = await receiver.waitForRequests(12);
    const delivered = got.slice(8).map((r) => (JSON.parse(r.body) as JsonLogRecord).id).sort();
    expect(delivered).toEqual([1, 2, 3, 4].map((i) => record(i).id));
    const local = await localLogsWhen(second.engine, logDir2, (r) => r.filter((x) => x.type === 'Delivery').length === 4, 'four deliveries');
    const deliveries = local.filter((r) => r.type === 'Delivery');
    // The same hook messages (ids) as in the first run, with their attempts.
    expect(deliveries.map((r) => r.id).sort()).toEqual([...new Set(failures1.map((r) => r.id))].sort());
    expect(deliveries.map((r) => r.num_attempts)).toEqual([2, 2, 2, 2]);
    expect(deliveries.every((r) => r.timestamp === (T0 + 180_000) / 1000)).toBe(true);
    await waitFor(async () => (await second.engine.spool.size()) === 0, 'the spool to empty');
    // Nothing more is sent later.
    await clock2.advance(3_600_000);
    expect(receiver.requests).toHaveLength(12);
  });

  it('a restart whose policy cannot resolve a stored queue fails cleanly, and a fixed policy then recovers everything', async () => {
    receiver.respond = () => ({ status: 400 });
    const dir = tempDir('sluice-restart-bad-');
    const dataDir = path.join(dir, 'data');
    const clock = new FakeClock(T0);
    const first = await startEngine(hookPolicy(`${receiver.url}/log`, path.join(dir, 'logs1')), { clock, dataDir, rand: () => 0.5 });
    engines.push(first.engine);
    await first.engine.publishRecords([record(1), record(2)]);
    await waitFor(() => hookStats(first.engine)?.scheduled === 2, 'two records waiting for their retry');
    await first.engine.close();
    engines.splice(0);

    // The hook is gone from the policy: W.log_hook now resolves to the SMTP protocol, which sluice cannot deliver.
    const err = await startEngine(`kumo.on('init', function() end)`, { clock: new FakeClock(clock.now()), dataDir }).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain('W.log_hook');
    // The failed start released the data directory: the fixed policy can open it, in this same process.
    receiver.respond = () => ({ status: 200 });
    const clock3 = new FakeClock(clock.now());
    const third = await startEngine(hookPolicy(`${receiver.url}/log`, path.join(dir, 'logs3')), { clock: clock3, dataDir, rand: () => 0.5 });
    engines.push(third.engine);
    expect(await third.engine.spool.size()).toBe(2);
    await clock3.advance(60_000);
    const got = await receiver.waitForRecords(4);
    expect(got.slice(2).map((r) => r.id).sort()).toEqual([record(1).id, record(2).id]);
  });

  it('a second engine on a data directory in use is refused with SLUICE_ERR_SPOOL_LOCKED', async () => {
    const dir = tempDir('sluice-lock-');
    const dataDir = path.join(dir, 'data');
    const first = await startEngine(hookPolicy(`${receiver.url}/log`, path.join(dir, 'logs')), { dataDir });
    engines.push(first.engine);
    const err = await startEngine(hookPolicy(`${receiver.url}/log`, path.join(dir, 'logs2')), { dataDir }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('SLUICE_ERR_SPOOL_LOCKED');
    // The first engine is unaffected.
    expect(await first.engine.publishRecords([record(1)])).toBe(1);
    await receiver.waitForRecords(1);
    await first.engine.close();
    engines.splice(0);
    // Once closed, the directory can be opened again.
    const again = await startEngine(hookPolicy(`${receiver.url}/log`, path.join(dir, 'logs3')), { dataDir });
    engines.push(again.engine);
    expect(await again.engine.spool.size()).toBe(0);
  });
});

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const CHILD_SCRIPT = (distUrl: string) => `
import { Engine } from ${JSON.stringify(new URL('engine.js', distUrl).href)};
import { buildRecord, response } from ${JSON.stringify(new URL('logging/record.js', distUrl).href)};
import { Message } from ${JSON.stringify(new URL('queue/message.js', distUrl).href)};
import { createLogger } from ${JSON.stringify(new URL('logging/logger.js', distUrl).href)};

const [policyPath, dataDir, count] = process.argv.slice(2);
const engine = await Engine.start({ policyPath, dataDir, logger: createLogger({ level: 'error' }) });
process.stdout.write('started\\n');
// Wait for the parent's go (a line on stdin) before loading.
await new Promise((resolve) => process.stdin.once('data', resolve));
for (let i = 0; i < Number(count); i++) {
  const created = Date.now();
  const m = new Message({ id: 'c'.repeat(28) + String(i).padStart(4, '0'), sender: 's@shop.example', recipients: ['r' + i + '@mail.example'], data: 'x', meta: { reception_protocol: 'ESMTP' }, created });
  const n = await engine.publishRecords([buildRecord(m, { type: 'Delivery', response: response(250, 'ok'), when: created }, { meta: [], headers: [] })]);
  if (n !== 1) throw new Error('publishRecords returned ' + n);
  process.stdout.write('ok ' + i + '\\n');
}
process.stdout.write('all\\n');
await new Promise(() => {});
`;

describe('abrupt stop', () => {
  it('every record acknowledged before a SIGKILL is delivered after the restart, and nothing unknown', async () => {
    const dir = tempDir('sluice-kill-');
    const dataDir = path.join(dir, 'data');
    const script = path.join(dir, 'child.mjs');
    fs.writeFileSync(script, CHILD_SCRIPT(new URL('../../dist/', import.meta.url).href));
    const deadUrl = `http://127.0.0.1:${await closedPort()}/log`;
    const childPolicy = writePolicy(hookPolicy(deadUrl, path.join(dir, 'child-logs')));
    const N = 400;
    const KILL_AFTER = 25;

    const child = spawn(process.execPath, [script, childPolicy, dataDir, String(N)], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const acked = new Set<number>();
    let started = false;
    let buffer = '';
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    child.stdout!.on('data', (c: Buffer) => {
      buffer += c.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line === 'started') started = true;
        const m = /^ok (\d+)$/.exec(line);
        if (m) acked.add(Number(m[1]));
        if (acked.size >= KILL_AFTER && child.signalCode === null && !child.killed) child.kill('SIGKILL');
      }
    });
    await waitFor(() => started || child.exitCode !== null, 'the child to start', 20_000).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${stderr}`);
    });
    expect(child.exitCode, stderr).toBeNull();

    // While the child runs, its data directory is refused to anyone else.
    const { logger } = captureLogger();
    const refused = await Engine.start({ policyPath: childPolicy, dataDir, logger, clock: new FakeClock() }).then(
      async (e) => {
        await e.close();
        return null;
      },
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(SluiceError);
    expect((refused as SluiceError).code).toBe('SLUICE_ERR_SPOOL_LOCKED');
    expect((refused as SluiceError).message).toContain(`pid ${child.pid}`);
    child.stdin!.write('go\n');

    await waitFor(() => child.signalCode !== null || child.exitCode !== null, 'the child to be killed', 20_000);
    await exited;
    expect(child.signalCode, stderr).toBe('SIGKILL');
    expect(acked.size).toBeGreaterThanOrEqual(KILL_AFTER);
    expect(acked.size).toBeLessThan(N);
    // The acks are in order: records 0 .. n-1.
    expect([...acked].sort((a, b) => a - b)).toEqual([...acked.keys()].map((_, i) => i));

    // Restart with the endpoint up: the stale lock is taken over.
    const logDir = path.join(dir, 'logs');
    const clock = new FakeClock(Date.now());
    const next = await startEngine(hookPolicy(`${receiver.url}/log`, logDir), { clock, dataDir });
    engines.push(next.engine);
    const stored = await next.engine.spool.size();
    expect(stored).toBeGreaterThanOrEqual(acked.size);
    // Retries of records that failed in the child are due at most ~61 s after they failed.
    await waitFor(async () => {
      await clock.advance(10_000);
      const s = hookStats(next.engine);
      return (await next.engine.spool.size()) === 0 && s !== undefined && s.in_flight === 0 && s.ready === 0;
    }, 'every stored record delivered', 20_000);

    const ids = receiver.records().map((r) => r.id as string);
    const index = (id: string) => Number(id.slice(28));
    const known = new Set([...Array(N).keys()].map((i) => `${'c'.repeat(28)}${String(i).padStart(4, '0')}`));
    for (const id of ids) expect(known.has(id), `unknown record ${id}`).toBe(true);
    // Nothing was delivered before the kill, so each stored record arrives exactly once.
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(stored);
    const got = new Set(ids.map(index));
    for (const i of acked) expect(got.has(i), `acked record ${i}`).toBe(true);
    // Anything beyond the acks is the record (at most one) whose publish was in progress.
    expect(ids.length - acked.size).toBeLessThanOrEqual(1);
    const local = await localLogsWhen(next.engine, logDir, (r) => r.filter((x) => x.type === 'Delivery').length === stored, 'the deliveries');
    expect(local.filter((r) => r.type === 'Delivery').every((r) => r.queue === 'W.log_hook')).toBe(true);
  });
});
