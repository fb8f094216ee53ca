/**
 * `sluice receive` in a subprocess: it verifies signed webhook requests,
 * prints accepted messages as `klev receive` does, rejects bad ones with a
 * 4xx and a `rejected:` line, and keeps serving. Waits on output lines,
 * never sleeps.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { CLI, runCli } from '../helpers/cli.js';
import { KLEV_SIGNATURE_HEADER, klevSignatureHeader, newSecret, standardWebhookHeaders } from '../../src/egress/signature.js';

const SECRET = 'ewhsec_4WWS5n4YcVrX8FhtxTKG3ctFHud3amGsr';
const OLD_TIME_US = 1695490927247960; // 2023-09-23 17:42:07.24796 UTC

/** Lines of a stream, with waiting for the next line that matches. */
class Lines {
  readonly all: string[] = [];
  #read = 0;
  #partial = '';
  #waiters = new Set<() => void>();

  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (c: Buffer) => {
      this.#partial += c.toString();
      const parts = this.#partial.split('\n');
      this.#partial = parts.pop() ?? '';
      this.all.push(...parts);
      for (const w of this.#waiters) w();
    });
  }

  /** The next `n` lines not yet consumed. */
  next(n: number, timeoutMs = 10_000): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.all.length - this.#read < n) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        const lines = this.all.slice(this.#read, this.#read + n);
        this.#read += n;
        resolve(lines);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`waited ${timeoutMs} ms for ${n} line(s); have: ${JSON.stringify(this.all.slice(this.#read))}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  unread(): string[] {
    return this.all.slice(this.#read);
  }
}

interface Running {
  child: ChildProcessWithoutNullStreams;
  out: Lines;
  err: Lines;
  url: string;
  exited: Promise<number | null>;
}

async function startReceive(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Running> {
  const child = spawn(process.execPath, [CLI, 'receive', ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const out = new Lines(child.stdout);
  const err = new Lines(child.stderr);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const [first] = await out.next(1).catch((e: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\nstderr: ${err.all.join('\n')}`);
  });
  const m = /^running server at (http:\/\/127\.0\.0\.1:(\d+))$/.exec(first ?? '');
  if (!m) throw new Error(`unexpected first line: ${first}`);
  expect(Number(m[2])).toBeGreaterThan(0);
  return { child, out, err, url: m[1]!, exited };
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function messageBody(offset: number, value: string, key?: string): string {
  const o: Record<string, unknown> = { encoding: 'base64', offset, time: OLD_TIME_US };
  if (key !== undefined) o.key = Buffer.from(key).toString('base64');
  o.value = Buffer.from(value).toString('base64');
  return JSON.stringify(o);
}

async function post(url: string, body: string | Buffer, headers: Record<string, string>) {
  const res = await request(url, { method: 'POST', headers, body });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: text ? (JSON.parse(text) as { code: string; message: string }) : null };
}

const klevHeaders = (body: string | Buffer, opts: { secret?: string; t?: number; contentType?: string } = {}) => ({
  'content-type': opts.contentType ?? 'application/json',
  [KLEV_SIGNATURE_HEADER]: klevSignatureHeader([opts.secret ?? SECRET], opts.t ?? nowSeconds(), body),
});

describe('sluice receive', () => {
  let r: Running;
  beforeAll(async () => {
    r = await startReceive(['--secret', SECRET, '--listen', '127.0.0.1:0']);
  });
  afterAll(async () => {
    if (r.child.exitCode === null) {
      r.child.kill('SIGKILL');
      await r.exited;
    }
  });

  it('prints a klev-signed message as klev receive does and answers 200 with no body', async () => {
    const body = messageBody(0, 'hello world');
    const res = await post(r.url, body, klevHeaders(body));
    expect(res).toMatchObject({ status: 200, text: '' });
    expect(await r.out.next(4)).toEqual(['Offset: 0', ' Time: 2023-09-23 17:42:07.24796 +0000 UTC', ' Key: ', ' Value: hello world']);
  });

  it('rejects a tampered body, a wrong secret, a replayed timestamp and a future one, and keeps serving', async () => {
    const body = messageBody(1, 'pay 10');
    const tampered = await post(r.url, body.replace('offset":1', 'offset":2'), klevHeaders(body));
    expect(tampered.status).toBe(401);
    expect(tampered.json?.code).toBe('klev-signature-mismatch');
    expect(await r.err.next(1)).toEqual([expect.stringMatching(/^rejected: klev-signature-mismatch: /)]);

    const wrong = await post(r.url, body, klevHeaders(body, { secret: newSecret() }));
    expect(wrong.status).toBe(401);
    expect(await r.err.next(1)).toEqual([expect.stringMatching(/^rejected: klev-signature-mismatch: /)]);

    const replayed = await post(r.url, body, klevHeaders(body, { t: nowSeconds() - 600 }));
    expect(replayed.status).toBe(401);
    expect(replayed.json?.code).toBe('klev-timestamp-expired');
    expect(await r.err.next(1)).toEqual([expect.stringMatching(/^rejected: klev-timestamp-expired: .*old/)]);

    const future = await post(r.url, body, klevHeaders(body, { t: nowSeconds() + 600 }));
    expect(future.status).toBe(401);
    expect(await r.err.next(1)).toEqual([expect.stringMatching(/^rejected: klev-timestamp-future: /)]);

    const unsigned = await post(r.url, body, { 'content-type': 'application/json' });
    expect(unsigned.status).toBe(401);
    expect(unsigned.json?.code).toBe('klev-not-signed');
    expect(await r.err.next(1)).toEqual([expect.stringMatching(/^rejected: klev-not-signed: /)]);

    const good = await post(r.url, body, klevHeaders(body));
    expect(good.status).toBe(200);
    expect(await r.out.next(4)).toEqual(['Offset: 1', ' Time: 2023-09-23 17:42:07.24796 +0000 UTC', ' Key: ', ' Value: pay 10']);
    expect(r.child.exitCode).toBeNull();
  });

  it('verifies both schemes when a request carries both, as sluice sends them', async () => {
    const body = messageBody(2, 'both', 'k1');
    const t = nowSeconds();
    const both = { ...klevHeaders(body, { t }), ...standardWebhookHeaders('ewh_test_2', [SECRET], t, body) };
    expect((await post(r.url, body, both)).status).toBe(200);
    expect(await r.out.next(4)).toEqual(['Offset: 2', ' Time: 2023-09-23 17:42:07.24796 +0000 UTC', ' Key: k1', ' Value: both']);

    // a good klev signature does not excuse a bad Standard Webhooks one, nor the other way round
    const badStandard = { ...both, ...standardWebhookHeaders('ewh_test_2', [newSecret()], t, body) };
    expect((await post(r.url, body, badStandard)).json?.code).toBe('webhook-signature-mismatch');
    expect(await r.err.next(1)).toEqual([expect.stringMatching(/^rejected: webhook-signature-mismatch: /)]);
    const badKlev = { ...both, ...klevHeaders(body, { t, secret: newSecret() }) };
    expect((await post(r.url, body, badKlev)).json?.code).toBe('klev-signature-mismatch');
    expect(await r.err.next(1)).toEqual([expect.stringMatching(/^rejected: klev-signature-mismatch: /)]);
  });

  it('accepts Standard Webhooks alone, with the ±5 min tolerance', async () => {
    const body = JSON.stringify({ encoding: 'string', offset: 3, time: 1695490927000000, key: 'user', value: 'plain text' });
    const headers = { 'content-type': 'application/json', ...standardWebhookHeaders('ewh_test_3', [SECRET], nowSeconds(), body) };
    expect((await post(r.url, body, headers)).status).toBe(200);
    expect(await r.out.next(4)).toEqual(['Offset: 3', ' Time: 2023-09-23 17:42:07 +0000 UTC', ' Key: user', ' Value: plain text']);

    const stale = { 'content-type': 'application/json', ...standardWebhookHeaders('ewh_test_3', [SECRET], nowSeconds() - 600, body) };
    const res = await post(r.url, body, stale);
    expect(res.status).toBe(401);
    expect(res.json?.code).toBe('webhook-timestamp-expired');
    expect(await r.err.next(1)).toEqual([expect.stringMatching(/^rejected: webhook-timestamp-expired: /)]);
  });

  it('prints raw octet-stream payloads with the webhook id', async () => {
    const body = Buffer.from('raw value');
    const t = nowSeconds();
    const headers = { ...klevHeaders(body, { t, contentType: 'application/octet-stream' }), ...standardWebhookHeaders('ewh_test_4', [SECRET], t, body) };
    expect((await post(r.url, body, headers)).status).toBe(200);
    expect(await r.out.next(2)).toEqual(['Payload: raw value', ' Webhook-Id: ewh_test_4']);
  });

  it('rejects malformed bodies with 400, other content types with 415 and oversized bodies with 413', async () => {
    const cases: [string | Buffer, Record<string, string>, number, string][] = [];
    const signed = (body: string, contentType = 'application/json') => [body, klevHeaders(body, { contentType })] as const;
    cases.push([...signed('{not json'), 400, 'message-json-invalid']);
    cases.push([...signed('[1,2]'), 400, 'message-json-invalid']);
    cases.push([...signed('{"encoding":"hex","offset":0,"time":1}'), 400, 'message-encoding-invalid']);
    cases.push([...signed('{"encoding":"string","offset":1.5,"time":1}'), 400, 'message-offset-invalid']);
    cases.push([...signed('{"encoding":"string","offset":"1","time":1}'), 400, 'message-offset-invalid']);
    cases.push([...signed('{"encoding":"string","offset":1}'), 400, 'message-time-invalid']);
    cases.push([...signed('{"encoding":"base64","offset":1,"time":1,"value":"not base64!"}'), 400, 'message-value-invalid']);
    cases.push([...signed('{}', 'text/plain'), 415, 'content-type-unsupported']);
    // klev's validator wants the content type exactly
    cases.push([...signed('{}', 'application/json; charset=utf-8'), 415, 'klev-content-type-json-invalid']);
    const big = Buffer.alloc(1024 * 1024 + 1, 'a');
    cases.push([big, klevHeaders(big, { contentType: 'application/octet-stream' }), 413, 'body-too-large']);

    for (const [body, headers, status, code] of cases) {
      const res = await post(r.url, body, headers);
      expect({ status: res.status, code: res.json?.code }).toEqual({ status, code });
      expect(await r.err.next(1)).toEqual([expect.stringMatching(new RegExp(`^rejected: ${code}: .+`))]);
    }

    const body = messageBody(9, 'still here');
    expect((await post(r.url, body, klevHeaders(body))).status).toBe(200);
    expect(await r.out.next(4)).toEqual(['Offset: 9', ' Time: 2023-09-23 17:42:07.24796 +0000 UTC', ' Key: ', ' Value: still here']);
  });

  it('stops with exit 0 on SIGTERM', async () => {
    expect(r.out.unread()).toEqual([]);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });
});

describe('sluice receive options', () => {
  it('takes the secret from SLUICE_WEBHOOK_SECRET and stops with exit 0 on SIGINT', async () => {
    const secret = newSecret();
    const r = await startReceive(['--listen', '127.0.0.1:0'], { SLUICE_WEBHOOK_SECRET: secret });
    const body = messageBody(0, 'from env');
    expect((await post(r.url, body, klevHeaders(body, { secret }))).status).toBe(200);
    expect(await r.out.next(4)).toEqual(['Offset: 0', ' Time: 2023-09-23 17:42:07.24796 +0000 UTC', ' Key: ', ' Value: from env']);
    r.child.kill('SIGINT');
    expect(await r.exited).toBe(0);
  });

  it('requires a secret', async () => {
    const res = await runCli(['receive', '--listen', '127.0.0.1:0'], { env: { SLUICE_WEBHOOK_SECRET: '' } });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--secret is required (or set SLUICE_WEBHOOK_SECRET)');
  });

  it('validates --listen', async () => {
    const bad = ['9000', '127.0.0.1', ':9000', '127.0.0.1:99999', '127.0.0.1:http', 'bad host:9000', '[nope]:9000'];
    const results = await Promise.all(bad.map((listen) => runCli(['receive', '--secret', SECRET, '--listen', listen])));
    results.forEach((res, i) => {
      expect({ listen: bad[i], code: res.code }).toEqual({ listen: bad[i], code: 2 });
      expect(res.stderr).toContain(`--listen must be HOST:PORT`);
      expect(res.stderr).toContain(`got ${JSON.stringify(bad[i])}`);
    });
  });

  it('reports a port already in use', async () => {
    const a = await startReceive(['--secret', SECRET, '--listen', '127.0.0.1:0']);
    const port = new URL(a.url).port;
    const res = await runCli(['receive', '--secret', SECRET, '--listen', `127.0.0.1:${port}`]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  });
});
