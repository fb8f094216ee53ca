/**
 * Run a real `sluice serve` (node dist/cli/main.js serve) in a child process
 * for the daemon scenarios, and talk to its HTTP API.
 *
 * - The policy source is written to a fresh temp folder as init.lua; the data
 *   dir is a fresh temp folder unless one is given (a restart on the same
 *   spool). Both are under os.tmpdir() and are removed by `cleanup()` (and,
 *   as a last resort, when this process exits).
 * - The daemon runs with --no-watch, SLUICE_LOG_LEVEL=warn and --listen on
 *   127.0.0.1. At `warn` the daemon does not log its `listening on` line, so
 *   the port is picked here (bind 127.0.0.1:0, close, pass it with --listen)
 *   and readiness is GET /api/check-liveness/v1 answering; a start that loses
 *   the port to another process (EADDRINUSE) is retried with a new port.
 * - `stop()` sends SIGTERM and waits for the exit; SIGKILL after a bounded
 *   wait. Any daemon still running when this process exits gets SIGKILL.
 * - SLUICE_BENCH_DAEMON_PROF=DIR runs the daemon under
 *   `node --cpu-prof --cpu-prof-dir=DIR` (the profile is written when it
 *   exits after SIGTERM; summarise it with bench/profile-summary.js).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

export const SLUICE_MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 60_000;
const STDERR_TAIL_LINES = 40;

/** Children still running, killed (SIGKILL) if this process exits first. */
const live = new Set();
/** Temp folders to remove at exit, if the scenario did not. */
const tempDirs = new Set();
process.once('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of tempDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
});

export function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function removeDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** CLK_TCK: Linux reports /proc/<pid>/stat times in 1/100 s. */
const TICK_US = 10_000;

/** utime + stime of `pid` in µs (all threads), or null when it is gone. */
export function procCpuUs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return null;
  }
}

/** { rssKb, hwmKb } from /proc/<pid>/status, or null when it is gone. */
export function procMemKb(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssKb: get('VmRSS'), hwmKb: get('VmHWM') };
  } catch {
    return null;
  }
}

/**
 * @param {object} o
 * @param {string} o.policy          init.lua source
 * @param {string} [o.dataDir]       reuse this spool (default: a fresh temp dir)
 * @param {Record<string,string>} [o.env]  extra environment (WEBHOOK_URL, ...)
 * @param {string[]} [o.args]        extra `serve` arguments
 * @param {string} [o.label]         for log lines
 * @param {(msg: string) => void} [o.log]
 */
export async function startDaemon(o) {
  const policyDir = tempDir('bench-daemon-policy-');
  const policyPath = path.join(policyDir, 'init.lua');
  fs.writeFileSync(policyPath, o.policy);
  const ownData = o.dataDir === undefined;
  const dataDir = o.dataDir ?? tempDir('bench-daemon-data-');
  let lastErr;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      const d = await spawnOnce({ ...o, policyDir, policyPath, dataDir, ownData });
      return d;
    } catch (err) {
      lastErr = err;
      if (!/EADDRINUSE|another process uses that port/.test(String(err.message))) break;
    }
  }
  removeDir(policyDir);
  if (ownData) removeDir(dataDir);
  throw lastErr;
}

async function spawnOnce(o) {
  const port = await freePort();
  const profDir = process.env.SLUICE_BENCH_DAEMON_PROF;
  const execArgv = profDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profDir)}`] : [];
  const args = [
    ...execArgv, SLUICE_MAIN, 'serve',
    '--policy', o.policyPath,
    '--data-dir', o.dataDir,
    '--listen', `127.0.0.1:${port}`,
    '--no-watch',
    ...(o.args ?? []),
  ];
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SLUICE_LOG_LEVEL: 'warn', ...(o.env ?? {}) },
  });
  live.add(child);
  const tail = [];
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
    }
  });
  let exitInfo = null;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    exitInfo = { code, signal };
    live.delete(child);
    resolve(exitInfo);
  }));

  const origin = `http://127.0.0.1:${port}`;
  const pool = new Pool(origin, { connections: 64, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS });

  async function request(method, urlPath, body) {
    const res = await pool.request({
      path: urlPath,
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    let json;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, json, text };
  }

  // Ready: the liveness route answers (or the child exits, or the time runs out).
  const deadline = performance.now() + START_TIMEOUT_MS;
  let readyAt = null;
  while (performance.now() < deadline) {
    if (exitInfo) break;
    try {
      const r = await request('GET', '/api/check-liveness/v1');
      if (r.status === 200) {
        readyAt = performance.now();
        break;
      }
    } catch {
      // not listening yet
    }
    await sleep(20);
  }
  if (readyAt === null) {
    if (!exitInfo) child.kill('SIGKILL');
    await exited;
    await pool.destroy().catch(() => undefined);
    throw new Error(`sluice serve did not become ready (exit ${JSON.stringify(exitInfo)}); stderr:\n${tail.join('\n')}`);
  }

  let stopped = null;
  const daemon = {
    pid: child.pid,
    port,
    origin,
    dataDir: o.dataDir,
    policyDir: o.policyDir,
    spawnedAt,
    readyAt,
    /** ms from spawn to the liveness route answering. */
    startMs: readyAt - spawnedAt,
    request,
    /** POST JSON and require a 200; resolves with the parsed reply. */
    async post(urlPath, body) {
      const r = await request('POST', urlPath, body);
      if (r.status !== 200) throw new Error(`POST ${urlPath}: ${r.status} ${r.text.slice(0, 300)}`);
      return r.json;
    },
    async get(urlPath) {
      const r = await request('GET', urlPath);
      if (r.status !== 200) throw new Error(`GET ${urlPath}: ${r.status} ${r.text.slice(0, 300)}`);
      return r.json;
    },
    /** Sum of the admin queue counters (scheduled, ready, in_flight, delivered, ...) over queues matching `match`. */
    async queueTotals(match = () => true) {
      const { queues } = await daemon.get('/api/admin/queues/v1');
      const t = { scheduled: 0, ready: 0, in_flight: 0, delivered: 0, failed: 0, transient_failures: 0 };
      for (const q of queues) {
        if (!match(q.name)) continue;
        for (const k of Object.keys(t)) t[k] += q[k] ?? 0;
      }
      return t;
    },
    cpuUs: () => procCpuUs(child.pid),
    mem: () => procMemKb(child.pid),
    stderrTail: () => tail.join('\n'),
    get running() {
      return exitInfo === null;
    },
    /** SIGTERM, wait up to `timeoutMs` for the exit, then SIGKILL. Idempotent. */
    stop(timeoutMs = STOP_TIMEOUT_MS) {
      stopped ??= (async () => {
        await pool.close().catch(() => pool.destroy().catch(() => undefined));
        if (exitInfo) return { ...exitInfo, killed: false, ms: 0 };
        const t0 = performance.now();
        child.kill('SIGTERM');
        let timer;
        const timedOut = new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
        const r = await Promise.race([exited, timedOut]);
        clearTimeout(timer);
        let killed = false;
        if (r === 'timeout') {
          killed = true;
          child.kill('SIGKILL');
          await exited;
        }
        return { ...exitInfo, killed, ms: performance.now() - t0 };
      })();
      return stopped;
    },
    /** Remove the policy folder, and the data dir unless it was given by the caller or `keepData`. */
    cleanup({ keepData = false } = {}) {
      removeDir(o.policyDir);
      if (o.ownData && !keepData) removeDir(o.dataDir);
    },
  };
  return daemon;
}

/**
 * Start a daemon, run `fn(daemon)`, then stop it (SIGTERM, bounded) and
 * remove its folders, whatever happened.
 */
export async function withDaemon(o, fn) {
  const d = await startDaemon(o);
  try {
    return await fn(d);
  } finally {
    const s = await d.stop();
    if (s.killed || (s.code !== 0 && s.code !== null)) o.log?.(`    daemon ${d.pid} exit: code ${s.code} signal ${s.signal}${s.killed ? ' (SIGKILL after timeout)' : ''}; stderr tail:\n${d.stderrTail()}`);
    d.cleanup();
  }
}
