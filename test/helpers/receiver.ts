/**
 * A webhook receiver on 127.0.0.1, port 0: records every request, answers
 * with a status the test chooses, and lets tests wait for a number of
 * requests or records (never a sleep).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Receiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  /** Decide the reply per request; default 200 with body "ok". */
  respond: (req: ReceivedRequest, index: number) => { status: number; body?: string; delayMs?: number };
  waitForRequests(n: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  /** Every JSON record received so far: bodies parsed, arrays flattened, newline-delimited bodies split. */
  records(): Record<string, unknown>[];
  waitForRecords(n: number, timeoutMs?: number): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const waiters = new Set<() => void>();
  const requests: ReceivedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: ReceivedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      const index = requests.length;
      requests.push(r);
      const reply = receiver.respond(r, index);
      const send = () => {
        res.writeHead(reply.status, { 'content-type': 'text/plain' });
        res.end(reply.body ?? 'ok');
        for (const w of waiters) w();
      };
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const waitFor = <T>(ready: () => T | null, what: () => string, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const v = ready();
        if (v !== null) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });

  const records = () =>
    requests.flatMap((r) => {
      const text = r.body.trim();
      if (text === '') return [];
      try {
        const v = JSON.parse(text) as unknown;
        return (Array.isArray(v) ? v : [v]) as Record<string, unknown>[];
      } catch {
        return text.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      }
    });

  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    respond: () => ({ status: 200, body: 'ok' }),
    waitForRequests: (n, timeoutMs = 10_000) =>
      waitFor(() => (requests.length >= n ? requests : null), () => `${n} requests (have ${requests.length})`, timeoutMs),
    records,
    waitForRecords: (n, timeoutMs = 10_000) =>
      waitFor(() => {
        const all = records();
        return all.length >= n ? all : null;
      }, () => `${n} records (have ${records().length})`, timeoutMs),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return receiver;
}
