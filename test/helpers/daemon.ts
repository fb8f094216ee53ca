/**
 * The real `sluice serve` in a subprocess, on 127.0.0.1 port 0.
 *
 * `startDaemon` spawns `node dist/cli/main.js serve --policy P --data-dir D
 * --listen 127.0.0.1:0`, reads its JSON log lines (pino, stderr) and resolves
 * once it has logged `listening on http://HOST:PORT` and then
 * `initialization complete`. Tests wait on log lines or HTTP conditions,
 * never on a sleep. Every daemon still running when the test file ends is
 * killed (SIGKILL) by an `afterAll` guard.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll } from 'vitest';
import { CLI } from './cli.js';
import { tempDir, writePolicy } from './policy.js';

export interface LogLine {
  level?: number;
  msg: string;
  /** The line as printed (JSON unless `raw`). */
  line: string;
  /** True when the line was not JSON (plain text on stderr). */
  raw?: boolean;
  [k: string]: unknown;
}

export interface StartDaemonOptions {
  /** init.lua source, written into a fresh folder. */
  policy?: string;
  /** An existing policy file (instead of `policy`). */
  policyPath?: string;
  /** Extra files next to init.lua when `policy` is given (name → content). */
  files?: Record<string, string>;
  env?: NodeJS.ProcessEnv;
  /** @defaultValue a fresh temporary folder */
  dataDir?: string;
  /** Extra `serve` arguments (e.g. `['--admin-token', 'T']`). */
  args?: string[];
  /** Add `--no-watch`. @defaultValue false */
  noWatch?: boolean;
  /** How long to wait for `initialization complete`. @defaultValue 15 s */
  startTimeoutMs?: number;
}

export interface Daemon {
  url: string;
  port: number;
  proc: ChildProcess;
  policyPath: string;
  dataDir: string;
  /** Every log line so far (parsed JSON), growing while the process runs. */
  logs: LogLine[];
  /** Everything written to stdout. */
  stdout(): string;
  /** Resolves with the first line at index ≥ `from` whose msg matches. */
  waitForLog(re: RegExp, timeoutMs?: number, from?: number): Promise<LogLine>;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Send `signal` and wait for the exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  /** SIGKILL and wait for the process to be gone. */
  kill9(): Promise<void>;
}

const live = new Set<ChildProcess>();

afterAll(async () => {
  const left = [...live];
  for (const p of left) p.kill('SIGKILL');
  await Promise.all(left.map((p) => (p.exitCode !== null || p.signalCode !== null ? undefined : new Promise((r) => p.once('exit', r)))));
  live.clear();
});
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export async function startDaemon(opts: StartDaemonOptions): Promise<Daemon> {
  const policyPath = opts.policyPath ?? writePolicy(opts.policy ?? '', opts.files);
  const dataDir = opts.dataDir ?? path.join(tempDir('sluice-data-'), 'data');
  const args = ['serve', '--policy', policyPath, '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...(opts.noWatch ? ['--no-watch'] : []), ...(opts.args ?? [])];
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env, SLUICE_LOG_LEVEL: opts.env?.SLUICE_LOG_LEVEL ?? 'info' };
  delete env.SLUICE_LOG_PRETTY;
  const proc = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);

  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  let stdout = '';
  let partial = '';
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => {
    partial += c.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        const v = JSON.parse(line) as Record<string, unknown>;
        logs.push({ ...v, msg: String(v.msg ?? ''), line });
      } catch {
        logs.push({ msg: line, line, raw: true });
      }
    }
    wake();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('close', (code, signal) => {
      live.delete(proc);
      if (partial.trim() !== '') logs.push({ msg: partial, line: partial, raw: true });
      partial = '';
      exitInfo = { code, signal };
      resolve(exitInfo);
      wake();
    });
  });

  const describe = () => `\n--- sluice serve log (${logs.length} lines) ---\n${logs.map((l) => l.line).join('\n')}`;

  const waitForLog = (re: RegExp, timeoutMs = 10_000, from = 0): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = () => {
        for (let i = from; i < logs.length; i++) {
          const l = logs[i] as LogLine;
          if (re.test(l.msg)) {
            done();
            resolve(l);
            return;
          }
        }
        if (exitInfo) {
          done();
          reject(new Error(`sluice serve exited (${JSON.stringify(exitInfo)}) before logging ${re}${describe()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for a log line ${re}${describe()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const waitExit = (timeoutMs: number) =>
    Promise.race([
      exited,
      new Promise<never>((_, reject) => {
        const t = setTimeout(() => reject(new Error(`sluice serve did not exit within ${timeoutMs} ms${describe()}`)), timeoutMs);
        void exited.then(() => clearTimeout(t));
      }),
    ]);

  try {
    const listening = await waitForLog(/^listening on http:\/\/\S+:\d+$/, opts.startTimeoutMs ?? 15_000);
    const m = /^listening on (http:\/\/(\S+):(\d+))$/.exec(listening.msg) as RegExpExecArray;
    await waitForLog(/^initialization complete$/, opts.startTimeoutMs ?? 15_000);
    return {
      url: m[1] as string,
      port: Number(m[3]),
      proc,
      policyPath,
      dataDir,
      logs,
      stdout: () => stdout,
      waitForLog,
      exited,
      async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000) {
        if (!exitInfo) proc.kill(signal);
        return (await waitExit(timeoutMs)).code;
      },
      async kill9() {
        if (!exitInfo) proc.kill('SIGKILL');
        await waitExit(10_000);
      },
    };
  } catch (err) {
    proc.kill('SIGKILL');
    await exited;
    throw err;
  }
}

/** POST JSON to the daemon; returns the status and the parsed reply. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json };
}

let seq = 0;

/** A minimal log record as another node's new_json hook would post it, with a unique id. */
export function record(tag: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  seq++;
  return {
    type: 'Delivery',
    id: `${tag}-${process.pid}-${seq}`,
    sender: 'sender@example.com',
    recipient: `r${seq}@example.com`,
    queue: 'example.com',
    response: { code: 250, content: 'ok' },
    ...over,
  };
}
