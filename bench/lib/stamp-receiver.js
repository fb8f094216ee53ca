/**
 * A receiver that notes when each record arrives, for latency scenarios. It
 * runs in a worker thread of the bench process (its own event loop, so a
 * busy bench loop does not delay arrivals), listens on 127.0.0.1:0 and
 * answers every request with an empty 200.
 *
 * Each request body is JSON: one record, an array of records, or lines of
 * records. A record whose `id` matches /^lat-(\d+)$/ is noted with its
 * arrival time from process.hrtime (CLOCK_MONOTONIC: the same clock in every
 * thread and process of this machine, so it compares with the publisher's
 * send and reply times). At most MAX_NOTES arrivals are kept.
 *
 *   const r = await startStampReceiver();
 *   r.url('/log');  await r.arrivals();  // -> { seq: Float64Array ns ... }
 *   await r.stop();
 */
import { Worker, isMainThread, parentPort } from 'node:worker_threads';

const MAX_NOTES = 2_000_000;

if (!isMainThread && parentPort) {
  const http = await import('node:http');
  const seqs = [];
  const times = [];
  let requests = 0;
  let parseErrors = 0;
  const note = (rec, t) => {
    const m = typeof rec?.id === 'string' ? /^lat-(\d+)$/.exec(rec.id) : null;
    if (m && seqs.length < MAX_NOTES) {
      seqs.push(Number(m[1]));
      times.push(t);
    }
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const t = Number(process.hrtime.bigint());
      requests++;
      res.writeHead(200, { 'content-length': '0' });
      res.end();
      const text = Buffer.concat(chunks).toString('utf8').trim();
      try {
        const v = JSON.parse(text);
        if (Array.isArray(v)) for (const r of v) note(r, t);
        else note(v, t);
      } catch {
        try {
          for (const line of text.split('\n')) if (line.trim() !== '') note(JSON.parse(line), t);
        } catch {
          parseErrors++;
        }
      }
    });
  });
  server.keepAliveTimeout = 120_000;
  parentPort.on('message', (msg) => {
    if (msg.cmd === 'arrivals') {
      parentPort.postMessage({ id: msg.id, seqs: Float64Array.from(seqs), times: Float64Array.from(times), requests, parseErrors });
      if (msg.clear) {
        seqs.length = 0;
        times.length = 0;
      }
    } else if (msg.cmd === 'stop') {
      server.close();
      server.closeAllConnections();
      parentPort.postMessage({ id: msg.id });
      parentPort.close();
    }
  });
  server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
}

/** Start the receiver worker; resolves once it listens. */
export async function startStampReceiver() {
  const worker = new Worker(new URL(import.meta.url));
  let nextId = 1;
  const pending = new Map();
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('stamp receiver did not start within 10 s')), 10_000);
    worker.once('error', reject);
    worker.once('message', (m) => {
      clearTimeout(timer);
      resolve(m.port);
    });
  });
  worker.on('message', (m) => {
    const p = pending.get(m.id);
    if (p) {
      pending.delete(m.id);
      p(m);
    }
  });
  const call = (cmd, extra = {}) => new Promise((resolve, reject) => {
    const id = nextId++;
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`stamp receiver did not answer '${cmd}'`));
    }, 10_000);
    pending.set(id, (m) => {
      clearTimeout(timer);
      resolve(m);
    });
    worker.postMessage({ id, cmd, ...extra });
  });
  const origin = `http://127.0.0.1:${port}`;
  return {
    port,
    origin,
    url: (p = '/log') => `${origin}${p}`,
    /** Arrivals so far: seqs[i] arrived at times[i] (hrtime ns); `clear` forgets them. */
    arrivals: (clear = false) => call('arrivals', { clear }),
    async stop() {
      await call('stop').catch(() => undefined);
      await worker.terminate();
    },
  };
}
