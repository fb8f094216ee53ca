#!/usr/bin/env node
// A webhook receiver for trying sluice out: prints one line per record it
// gets (a JSON object, or a JSON array from a batched hook) and answers 200.
// Usage: node examples/receiver/receiver.js [port]   (default 4242, on 127.0.0.1)
import http from 'node:http';

export function startReceiver(port = 4242, print = (line) => console.log(line)) {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      let records = [];
      try {
        const v = JSON.parse(body);
        records = Array.isArray(v) ? v : [v];
      } catch {
        print(`received ${req.method} ${req.url}: ${body.trim().slice(0, 200)}`);
      }
      for (const r of records) {
        const to = Array.isArray(r.recipient) ? r.recipient.join(',') : r.recipient;
        print(`received ${r.type} record for ${to} (message ${r.id}, ${r.response?.code} ${r.response?.content ?? ''})`.trim());
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.argv[2] ?? 4242);
  await startReceiver(port);
  console.log(`receiver listening on http://127.0.0.1:${port}/log`);
}
