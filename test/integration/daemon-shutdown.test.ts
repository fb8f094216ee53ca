/**
 * SIGTERM under load loses nothing: in-flight deliveries finish, the rest
 * stay in the spool, `shutdown complete`, exit 0, and a restart on the same
 * data directory delivers every acknowledged record. A second signal forces
 * the exit (code 1) even while a delivery hangs, and the record it was
 * delivering is delivered after a restart.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, postJson, record, type Daemon } from '../helpers/daemon.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { waitFor } from '../helpers/fake-clock.js';

// Two connections to a webhook that takes 20 ms (100 records/s): deliveries are still going on when SIGTERM comes.
const POLICY = `local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json { name = 'webhook', url = os.getenv 'WEBHOOK_URL' }
kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path { connection_limit = 2 }
end)
`;

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('graceful shutdown', () => {
  it('SIGTERM under load loses nothing', async () => {
    const receiver = await startReceiver();
    cleanup.push(() => receiver.close());
    receiver.respond = () => ({ status: 200, body: 'ok', delayMs: 20 });
    const env = { WEBHOOK_URL: `${receiver.url}/log` };
    const d1 = await startDaemon({ policy: POLICY, env });

    const sent: string[] = [];
    const acked: string[] = [];
    const publish = async (n: number): Promise<{ status: number; json: unknown }> => {
      const records = Array.from({ length: n }, () => record('term'));
      sent.push(...records.map((r) => r.id as string));
      const res = await postJson(`${d1.url}/api/log-records/v1`, records).catch((err: Error) => ({ status: 0, json: err.message }));
      if (res.status === 200) {
        expect(res.json).toEqual({ accepted: n, queued: n });
        acked.push(...records.map((r) => r.id as string));
      }
      return res;
    };
    // 300 records in batches of 10, all accepted.
    for (let batch = 0; batch < 30; batch++) expect((await publish(10)).status).toBe(200);
    // SIGTERM once deliveries are under way, and keep publishing through the shutdown until refused.
    await receiver.waitForRequests(20, 20_000);
    const stopped = d1.stop('SIGTERM');
    let refused: { status: number; json: unknown } | null = null;
    for (let i = 0; i < 200 && !refused; i++) {
      const res = await publish(2);
      if (res.status !== 200) refused = res;
    }
    // Refused only because of the shutdown: 503 shutting-down, or the listener already gone.
    expect(refused).not.toBeNull();
    if (refused!.status !== 0) expect(refused).toMatchObject({ status: 503, json: { code: 'shutting-down' } });
    expect(await stopped).toBe(0);
    expect(d1.logs.some((l) => l.msg === 'shutdown complete')).toBe(true);
    expect(d1.logs.filter((l) => (l.level as number) >= 50)).toEqual([]);
    expect(acked.length).toBeGreaterThanOrEqual(300);
    const beforeRestart = new Set(receiver.records().map((r) => r.id as string));
    // The shutdown happened under load: some acknowledged records were still queued.
    expect(acked.filter((id) => !beforeRestart.has(id)).length).toBeGreaterThan(0);

    // Restart on the same data dir with a fast receiver.
    receiver.respond = () => ({ status: 200, body: 'ok' });
    const d2 = await startDaemon({ policyPath: d1.policyPath, dataDir: d1.dataDir, env });
    cleanup.push(() => d2.stop());
    const restored = await d2.waitForLog(/^restored queued messages from the spool$/, 5_000);
    const ackedWaiting = acked.filter((id) => !beforeRestart.has(id)).length;
    const sentWaiting = sent.filter((id) => !beforeRestart.has(id)).length;
    expect(restored.messages).toBeGreaterThanOrEqual(ackedWaiting);
    expect(restored.messages).toBeLessThanOrEqual(sentWaiting);
    await waitFor(() => {
      const got = new Set(receiver.records().map((r) => r.id as string));
      return acked.every((id) => got.has(id));
    }, `all ${acked.length} acknowledged records delivered`, 20_000);
    const received = receiver.records().map((r) => r.id as string);
    const sentSet = new Set(sent);
    expect(received.filter((id) => !sentSet.has(id))).toEqual([]);
    await waitFor(() => receiver.records().length === beforeRestart.size + (restored.messages as number), 'the restored records delivered');
    // A graceful shutdown finishes what it started: nothing is delivered twice.
    const all = receiver.records().map((r) => r.id as string);
    expect(all.length).toBe(new Set(all).size);
  });

  it('a second SIGTERM exits at once (code 1) while a delivery hangs; the record is delivered after restart', async () => {
    // A webhook that takes the request and never answers.
    const sockets = new Set<Socket>();
    const hung: string[] = [];
    const hang = http.createServer((req) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => hung.push(Buffer.concat(chunks).toString('utf8')));
    });
    hang.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      hang.close(() => resolve());
    }));
    const hangUrl = `http://127.0.0.1:${(hang.address() as AddressInfo).port}/log`;

    const d1 = await startDaemon({ policy: POLICY, env: { WEBHOOK_URL: hangUrl } });
    const rec = record('hang');
    expect(await postJson(`${d1.url}/api/log-records/v1`, rec)).toEqual({ status: 200, json: { accepted: 1, queued: 1 } });
    await waitFor(() => hung.length === 1, 'the hanging webhook to get the request');
    expect(JSON.parse(hung[0] as string)).toMatchObject({ id: rec.id });

    const mark = d1.logs.length;
    d1.proc.kill('SIGTERM');
    await d1.waitForLog(/^shutting down: no new work; waiting for deliveries in flight$/, 5_000, mark);
    // The delivery hangs, so the first signal alone does not end the process.
    expect(d1.proc.exitCode).toBeNull();
    expect(d1.logs.slice(mark).some((l) => l.msg === 'shutdown complete')).toBe(false);

    const t0 = Date.now();
    const code = await d1.stop('SIGTERM', 5_000);
    expect(code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(d1.logs.slice(mark).map((l) => l.msg)).toContain('second signal: exiting now');
    expect(d1.logs.slice(mark).some((l) => l.msg === 'shutdown complete')).toBe(false);

    // The record was never acknowledged by the webhook: a restart delivers it.
    const receiver = await startReceiver();
    cleanup.push(() => receiver.close());
    const d2 = await startDaemon({ policyPath: d1.policyPath, dataDir: d1.dataDir, env: { WEBHOOK_URL: `${receiver.url}/log` } });
    cleanup.push(() => d2.stop());
    const got = await receiver.waitForRecords(1, 15_000);
    expect(got.map((r) => r.id)).toEqual([rec.id]);
  });
});
