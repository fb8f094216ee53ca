/**
 * The seed's three webhook snippets, verbatim (test/fixtures/seed-002), each
 * run by the real `sluice serve`: records published with
 * `POST /api/log-records/v1` arrive at the receiver named by WEBHOOK_URL.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startDaemon, postJson, record, type Daemon } from '../helpers/daemon.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

const SEEDS = path.join(import.meta.dirname, '../fixtures/seed-002');

let receiver: Receiver;
let daemon: Daemon | null = null;
beforeEach(async () => {
  receiver = await startReceiver();
});
afterEach(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  daemon = null;
  await receiver.close();
});

async function serve(file: string): Promise<Daemon> {
  daemon = await startDaemon({ policyPath: path.join(SEEDS, file), env: { WEBHOOK_URL: `${receiver.url}/log` } });
  return daemon;
}

describe('sluice serve runs the seed snippets verbatim', () => {
  it('new-json.lua: each record is POSTed as one JSON object', async () => {
    const d = await serve('new-json.lua');
    const sent = [record('json', { headers: { Subject: 'hi', 'X-Customer-ID': 'c1' } }), record('json'), record('json')];
    const one = await postJson(`${d.url}/api/log-records/v1`, sent[0]);
    expect(one).toEqual({ status: 200, json: { accepted: 1, queued: 1 } });
    const two = await postJson(`${d.url}/api/log-records/v1`, sent.slice(1));
    expect(two).toEqual({ status: 200, json: { accepted: 2, queued: 2 } });

    await receiver.waitForRecords(3);
    expect(receiver.requests).toHaveLength(3);
    for (const r of receiver.requests) {
      expect(r.method).toBe('POST');
      expect(r.url).toBe('/log');
      expect(r.headers['content-type']).toBe('application/json');
      expect(Array.isArray(JSON.parse(r.body))).toBe(false);
    }
    const got = receiver.records();
    expect(got.map((r) => r.id).sort()).toEqual(sent.map((r) => r.id).sort());
    const first = got.find((r) => r.id === sent[0]!.id)!;
    expect(first).toMatchObject({ type: 'Delivery', sender: 'sender@example.com', recipient: sent[0]!.recipient, headers: { Subject: 'hi', 'X-Customer-ID': 'c1' } });
  });

  it('new-send.lua: a custom connection POSTs each record', async () => {
    const d = await serve('new-send.lua');
    const sent = [record('send'), record('send', { type: 'Bounce', response: { code: 550, content: 'no such user' } })];
    expect(await postJson(`${d.url}/api/log-records/v1`, sent)).toEqual({ status: 200, json: { accepted: 2, queued: 2 } });
    const got = await receiver.waitForRecords(2);
    expect(receiver.requests).toHaveLength(2);
    expect(got.map((r) => r.id).sort()).toEqual(sent.map((r) => r.id).sort());
    const bounce = got.find((r) => r.id === sent[1]!.id)!;
    expect(bounce).toMatchObject({ type: 'Bounce', response: { code: 550, content: 'no such user' } });
  });

  it('new-send-batch.lua: records arrive as a JSON array', async () => {
    const d = await serve('new-send-batch.lua');
    const sent = Array.from({ length: 5 }, () => record('batch'));
    expect(await postJson(`${d.url}/api/log-records/v1`, sent)).toEqual({ status: 200, json: { accepted: 5, queued: 5 } });
    const got = await receiver.waitForRecords(5);
    expect(receiver.requests.length).toBeGreaterThanOrEqual(1);
    expect(receiver.requests.length).toBeLessThanOrEqual(5);
    for (const r of receiver.requests) {
      expect(r.headers['content-type']).toBe('application/json');
      const body = JSON.parse(r.body) as unknown;
      expect(Array.isArray(body)).toBe(true);
      expect((body as unknown[]).length).toBeGreaterThanOrEqual(1);
    }
    expect(got.map((r) => r.id).sort()).toEqual(sent.map((r) => r.id).sort());
    for (const r of got) expect(r).toMatchObject({ type: 'Delivery', sender: 'sender@example.com' });
  });
});
