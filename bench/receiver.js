#!/usr/bin/env node
/**
 * Benchmark webhook receiver, meant to run in its own child process so that
 * its CPU time is not charged to the process being measured.
 *
 *   node bench/receiver.js [--max-seconds N]
 *
 * - node:http on 127.0.0.1, port 0; every request gets an empty 200
 *   (Content-Length: 0) on a keep-alive connection.
 * - Once listening it prints one JSON line on stdout: {"port": N}.
 * - It counts requests and body bytes. Record counting (parsing each body as
 *   JSON: an array counts its elements, otherwise each non-empty line is one
 *   record) costs CPU, so it is off until the parent turns it on for a
 *   verification step.
 * - Control: one JSON command per line on stdin, one JSON reply per line on
 *   stdout, echoing `id`:
 *     {"id":1,"cmd":"stats"}                 -> counters and process.cpuUsage()
 *     {"id":2,"cmd":"reset"}                 -> zero the counters, then the stats
 *     {"id":3,"cmd":"parse","on":true}       -> turn record counting on/off
 * - It exits when stdin ends (the parent went away or is done), on SIGTERM or
 *   SIGINT, and in any case after --max-seconds (default 3600).
 */
import http from 'node:http';
import readline from 'node:readline';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { 'max-seconds': { type: 'string', default: '3600' } } });
const maxSeconds = Number(args['max-seconds']);

let requests = 0;
let bytes = 0;
let records = 0;
let parseErrors = 0;
let parse = false;
let since = performance.now();

const EMPTY_REPLY_HEADERS = { 'content-length': '0' };

function countRecords(body) {
  const text = body.toString('utf8').trim();
  if (text === '') return 0;
  try {
    const v = JSON.parse(text);
    return Array.isArray(v) ? v.length : 1;
  } catch {
    let n = 0;
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      JSON.parse(line); // throws (caught below) if this is not newline-delimited JSON either
      n++;
    }
    return n;
  }
}

const server = http.createServer((req, res) => {
  if (parse) {
    const chunks = [];
    req.on('data', (c) => {
      bytes += c.length;
      chunks.push(c);
    });
    req.on('end', () => {
      requests++;
      try {
        records += countRecords(Buffer.concat(chunks));
      } catch {
        parseErrors++;
      }
      res.writeHead(200, EMPTY_REPLY_HEADERS);
      res.end();
    });
  } else {
    req.on('data', (c) => {
      bytes += c.length;
    });
    req.on('end', () => {
      requests++;
      res.writeHead(200, EMPTY_REPLY_HEADERS);
      res.end();
    });
  }
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.requestTimeout = 0;

function stats() {
  const cpu = process.cpuUsage();
  return { requests, bytes, records, parseErrors, parse, cpuUserUs: cpu.user, cpuSystemUs: cpu.system, sinceMs: performance.now() - since };
}

function reply(msg) {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

let stopping = false;
function shutdown(code = 0) {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeAllConnections();
  // Give stdout a moment to flush, but never hang.
  setTimeout(() => process.exit(code), 50).unref();
  setImmediate(() => process.exit(code));
}

const lifetime = setTimeout(() => {
  process.stderr.write(`receiver: --max-seconds ${maxSeconds} reached, exiting\n`);
  shutdown(0);
}, maxSeconds * 1000);
lifetime.unref();

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line.trim() === '') return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    reply({ error: `bad command line: ${line.slice(0, 80)}` });
    return;
  }
  switch (cmd.cmd) {
    case 'stats':
      reply({ id: cmd.id, ...stats() });
      break;
    case 'reset':
      requests = 0;
      bytes = 0;
      records = 0;
      parseErrors = 0;
      since = performance.now();
      reply({ id: cmd.id, ...stats() });
      break;
    case 'parse':
      parse = Boolean(cmd.on);
      reply({ id: cmd.id, ...stats() });
      break;
    default:
      reply({ id: cmd.id, error: `unknown command '${cmd.cmd}'` });
  }
});
rl.on('close', () => shutdown(0));

server.listen(0, '127.0.0.1', () => {
  reply({ port: server.address().port, pid: process.pid });
});
