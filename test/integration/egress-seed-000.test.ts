/**
 * Seed 000 (klev's "Egress Webhooks" post) end to end on one machine, with
 * sluice's CLI against a real `sluice serve`:
 *
 *   sluice logs create --metadata "egress webhook test"
 *   sluice egress-webhooks create --log-id L --metadata ... --destination http://127.0.0.1:9/parked
 *   sluice receive --secret S --listen 127.0.0.1:0          → running server at http://127.0.0.1:PORT
 *   sluice egress-webhooks update W --destination http://127.0.0.1:PORT
 *   sluice publish L --value "hello world"                  → {"next_offset": 1}
 *   … the receiver prints Offset / Time / Key / Value
 *   sluice egress-webhooks status W                         → the delivery
 *   sluice consume L                                        → the message
 *
 * Ordering: the receiver needs the webhook's secret, which exists only once
 * the webhook is created, and the webhook's destination is the receiver's
 * port, known only once it listens on port 0. So the webhook is created
 * first (with a parked destination; nothing is published yet, so nothing is
 * sent), then `sluice receive` starts on port 0 with the generated secret,
 * then `sluice egress-webhooks update --destination` points the webhook at
 * it — race-free, unlike reserving a port and hoping it stays free.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { CLI, runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/fake-clock.js';

let daemon: Daemon;
let receiver: ChildProcessWithoutNullStreams | null = null;
let receiverOut = '';
let receiverErr = '';

beforeAll(async () => {
  daemon = await startDaemon({ policy: '-- no mail policy needed for event logs\n', noWatch: true });
});

afterAll(async () => {
  if (receiver && receiver.exitCode === null && receiver.signalCode === null) {
    const gone = new Promise((r) => receiver!.once('close', r));
    receiver.kill('SIGTERM');
    await gone;
  }
  expect(await daemon.stop()).toBe(0);
});

async function sluice(...args: string[]): Promise<any> {
  const r = await runCli([...args, '--server', daemon.url]);
  if (r.code !== 0) throw new Error(`sluice ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout);
}

/** Start `sluice receive` and wait for `running server at …`; returns its URL. */
async function startReceive(secret: string, listen: string): Promise<string> {
  receiverOut = '';
  receiverErr = '';
  const child = spawn(process.execPath, [CLI, 'receive', '--secret', secret, '--listen', listen], { stdio: ['pipe', 'pipe', 'pipe'] });
  receiver = child;
  child.stdout.on('data', (c: Buffer) => (receiverOut += c.toString()));
  child.stderr.on('data', (c: Buffer) => (receiverErr += c.toString()));
  const m = await waitFor(() => /running server at (http:\/\/\S+)/.exec(receiverOut) ?? (child.exitCode !== null ? Promise.reject(new Error(`sluice receive exited: ${receiverErr}`)) : null), 'sluice receive to listen', 15_000);
  return m[1] as string;
}

describe('seed 000: egress webhooks walkthrough with sluice commands', () => {
  it('logs create → egress-webhooks create → receive → publish → status → consume', async () => {
    // 1. the log
    const log = await sluice('logs', 'create', '--metadata', 'egress webhook test');
    expect(log).toEqual({ log_id: expect.stringMatching(/^log_[0-9A-Za-z]{27}$/), metadata: 'egress webhook test', compacting: false });
    const logId = log.log_id as string;

    // 2. the webhook (parked destination until the receiver listens)
    const parked = 'http://127.0.0.1:9/parked';
    const hook = await sluice('egress-webhooks', 'create', '--log-id', logId, '--metadata', 'egress webhook test', '--destination', parked);
    expect(hook).toEqual({
      webhook_id: expect.stringMatching(/^ewh_[0-9A-Za-z]{27}$/),
      metadata: 'egress webhook test',
      log_id: logId,
      destination: parked,
      payload: 'message',
      secret: expect.stringMatching(/^ewhsec_[0-9A-Za-z]{33}$/),
    });
    expect(Object.keys(hook)).toEqual(['webhook_id', 'metadata', 'log_id', 'destination', 'payload', 'secret']);
    const hookId = hook.webhook_id as string;
    const secret = hook.secret as string;
    // The secret is shown on create only, and never logged.
    expect(await sluice('egress-webhooks', 'get', hookId)).not.toHaveProperty('secret');
    expect(daemon.logs.some((l) => l.line.includes(secret))).toBe(false);

    // 3. the receiver, on a free port, and the webhook pointed at it
    const destination = await startReceive(secret, '127.0.0.1:0');
    expect(destination).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(destination).not.toBe('http://127.0.0.1:0');
    expect(receiverOut).toBe(`running server at ${destination}\n`);
    expect(await sluice('egress-webhooks', 'update', hookId, '--destination', destination)).toEqual({
      webhook_id: hookId, metadata: 'egress webhook test', log_id: logId, destination, payload: 'message',
    });
    // nothing was sent to the parked destination
    expect(await sluice('egress-webhooks', 'status', hookId)).toEqual({ webhook_id: hookId, active: true, available_offset: 0, next_deliver_offset: 0, next_offset: 0 });

    // 4. publish
    const before = Date.now();
    expect(await sluice('publish', logId, '--value', 'hello world')).toEqual({ next_offset: 1 });

    // 5. the receiver prints it
    await waitFor(() => receiverOut.includes(' Value: hello world\n') || (receiverErr !== '' ? Promise.reject(new Error(`receiver rejected: ${receiverErr}`)) : false), 'the receiver to print the message', 15_000);
    const lines = receiverOut.split('\n');
    expect(lines.slice(1, 5)).toEqual(['Offset: 0', expect.stringMatching(/^ Time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})? \+0000 UTC$/), ' Key: ', ' Value: hello world']);
    const shown = /^ Time: (\S+ \S+) /.exec(lines[2]!)![1]!;
    const shownMs = Date.parse(`${shown.replace(' ', 'T')}Z`);
    expect(shownMs).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 1000);
    expect(shownMs).toBeLessThanOrEqual(Date.now() + 1000);
    expect(receiverErr).toBe('');

    // 6. status
    // (poll over HTTP — cheaper than a CLI process per poll — then show it with the CLI)
    await waitFor(async () => {
      const s = (await (await fetch(`${daemon.url}/egress_webhook/${hookId}/status`)).json()) as { next_deliver_offset: number; deliver_resp?: string };
      return s.next_deliver_offset === 1 && s.deliver_resp !== undefined;
    }, 'the status to show the delivery');
    const status = await sluice('egress-webhooks', 'status', hookId);
    expect(status).toEqual({
      webhook_id: hookId,
      active: true,
      available_offset: 0,
      next_deliver_offset: 1,
      next_offset: 1,
      deliver_offset: 0,
      deliver_time: expect.any(Number),
      deliver_resp: expect.stringMatching(/^HTTP\/1\.1 200 OK\r\n/),
      next_deliver_time: expect.any(Number),
    });
    expect(status.deliver_resp).toMatch(/\r\nContent-Length: 0\r\n/);
    expect(status.deliver_resp).toMatch(/\r\n\r\n$/);
    const nowS = Math.floor(Date.now() / 1000);
    expect(status.deliver_time).toBeGreaterThanOrEqual(Math.floor(before / 1000));
    expect(status.deliver_time).toBeLessThanOrEqual(nowS);
    expect(status.next_deliver_time).toBe(status.deliver_time);

    // 7. consume
    const consumed = await sluice('consume', logId);
    expect(consumed).toEqual({ next_offset: 1, encoding: 'string', messages: [{ offset: 0, time: expect.any(Number), value: 'hello world' }] });
    expect(Math.floor(consumed.messages[0].time / 1e6)).toBe(Math.floor(shownMs / 1000));

    // lists
    expect((await sluice('logs', 'list')).logs).toEqual([log]);
    expect((await sluice('egress-webhooks', 'list')).egress_webhooks).toEqual([{ webhook_id: hookId, metadata: 'egress webhook test', log_id: logId, destination, payload: 'message' }]);
  });
});
