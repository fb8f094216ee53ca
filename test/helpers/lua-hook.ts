/**
 * Helpers for tests that drive a custom `log_hooks:new{ name = 'W', ... }`
 * hook: a policy whose connection counts its calls in Lua globals (read
 * back through the `stats` event), ready-made log records to publish, and
 * local-log reading on the fake clock.
 */
import path from 'node:path';
import type { Engine } from '../../src/engine.js';
import type { RecordType } from '../../src/logging/hook-config.js';
import { readLocalLogs } from '../../src/logging/local-logs.js';
import { response, type JsonLogRecord } from '../../src/logging/record.js';
import type { FakeClock } from './fake-clock.js';
import { settle, waitFor } from './fake-clock.js';
import { tempDir } from './policy.js';

export interface HookPolicyOptions {
  /** Extra `log_hooks:new` options, Lua source (e.g. `batch_size = 5,`). */
  hookOptions?: string;
  /** Body of `connection:send(msg)`; `calls` and `conn` are in scope. @defaultValue return 'OK' */
  send?: string;
  /** Body of `connection:send_batch(msgs)`. @defaultValue return 'OK batch' */
  sendBatch?: string;
  /** Lua run at the start of the constructor (may raise). */
  constructorPrelude?: string;
  /** `kumo.make_egress_path{...}` fields, Lua source. @defaultValue connection_limit = 1 */
  egress?: string;
  /** More Lua at the end of the policy (e.g. a catch-all get_queue_config, which must come after log_hooks:new). */
  extra?: string;
}

/** A policy with hook W, local logs in `logDir`, and a `stats` event. */
export function hookPolicy(logDir: string, o: HookPolicyOptions = {}): string {
  return `
local log_hooks = require 'policy-extras.log_hooks'
calls = { ctor = 0, close = 0, send = 0, batch = 0, sizes = {}, conns = {}, extra = {} }
kumo.on('stats', function()
  return {
    ctor = calls.ctor, close = calls.close, send = calls.send, batch = calls.batch,
    sizes = table.concat(calls.sizes, ','), conns = table.concat(calls.conns, ','),
    extra = kumo.json_encode(calls.extra),
  }
end)
log_hooks:new {
  name = 'W',
  ${o.hookOptions ?? ''}
  constructor = function(domain, tenant, campaign)
    ${o.constructorPrelude ?? ''}
    calls.ctor = calls.ctor + 1
    local conn = { n = calls.ctor, domain = domain }
    function conn:send(msg)
      calls.send = calls.send + 1
      table.insert(calls.conns, self.n)
      ${o.send ?? "return 'OK'"}
    end
    function conn:send_batch(msgs)
      calls.batch = calls.batch + 1
      table.insert(calls.sizes, #msgs)
      table.insert(calls.conns, self.n)
      ${o.sendBatch ?? "return 'OK batch'"}
    end
    function conn:close()
      calls.close = calls.close + 1
    end
    return conn
  end,
}
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = ${JSON.stringify(logDir)} }
end)
kumo.on('get_egress_path_config', function(domain)
  return kumo.make_egress_path { ${o.egress ?? 'connection_limit = 1'} }
end)
${o.extra ?? ''}
`;
}

export interface HookStats {
  ctor: number;
  close: number;
  send: number;
  batch: number;
  /** send_batch array sizes, in call order */
  sizes: number[];
  /** the constructor call number of the connection used by each send/send_batch */
  conns: number[];
  /** whatever the policy put in `calls.extra` */
  extra: Record<string, unknown>;
}

export async function hookStats(engine: Engine): Promise<HookStats> {
  const r = await engine.policy.fire('stats', []);
  const v = r.values[0] as Record<string, number | string>;
  const list = (s: unknown) => (typeof s === 'string' && s !== '' ? s.split(',').map(Number) : []);
  return {
    ctor: v.ctor as number,
    close: v.close as number,
    send: v.send as number,
    batch: v.batch as number,
    sizes: list(v.sizes),
    conns: list(v.conns),
    extra: JSON.parse(v.extra as string) as Record<string, unknown>,
  };
}

/** Wait (real time) until the Lua stats satisfy `check`; returns them. */
export async function waitForStats(engine: Engine, check: (s: HookStats) => boolean, what: string): Promise<HookStats> {
  return waitFor(async () => {
    const s = await hookStats(engine);
    return check(s) ? s : null;
  }, `${what} (stats: ${JSON.stringify(await hookStats(engine))})`);
}

export function logDirs(): { dir: string; logDir: string } {
  const dir = tempDir();
  return { dir, logDir: path.join(dir, 'logs') };
}

/** Every local-log record written so far. */
export async function localRecords(engine: Engine, logDir: string): Promise<JsonLogRecord[]> {
  await engine.hub.flush();
  try {
    return await readLocalLogs(logDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Local-log records about hook messages (queue W.log_hook) of `type`. */
export async function hookRecords(engine: Engine, logDir: string, type: RecordType): Promise<JsonLogRecord[]> {
  return (await localRecords(engine, logDir)).filter((r) => r.reception_protocol === 'LogRecord' && r.type === type);
}

/** Wait until there are at least `n` hook records of `type`; returns them. */
export async function waitForHookRecords(engine: Engine, logDir: string, type: RecordType, n: number): Promise<JsonLogRecord[]> {
  let last: JsonLogRecord[] = [];
  return waitFor(async () => {
    last = await hookRecords(engine, logDir, type);
    return last.length >= n ? last : null;
  }, `${n} ${type} hook records`);
}

/** The record's event time, unix ms. */
export function eventMs(r: JsonLogRecord): number {
  return Date.parse(r.event_time.replace(/\.(\d{3})\d*Z$/, '.$1Z'));
}

let seq = 0;

/** A ready-made record, as another node's hook would post it. */
export function logRecord(clock: FakeClock, over: Partial<JsonLogRecord> = {}): JsonLogRecord {
  const n = ++seq;
  const now = clock.now();
  const t = new Date(now).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
  return {
    type: 'Delivery',
    id: `${now.toString(16).padStart(12, '0')}${n.toString(16).padStart(20, '0')}`,
    sender: 'sender@example.com',
    recipient: `r${n}@example.com`,
    queue: 'example.com',
    site: 'unspecified->maildir:/tmp/x',
    size: 100,
    response: response(250, 'ok'),
    peer_address: null,
    timestamp: Math.floor(now / 1000),
    event_time: t,
    created: Math.floor(now / 1000),
    created_time: t,
    num_attempts: 0,
    bounce_classification: 'Uncategorized',
    egress_pool: null,
    egress_source: null,
    source_address: null,
    feedback_report: null,
    meta: {},
    headers: {},
    delivery_protocol: 'Maildir',
    reception_protocol: 'HTTP',
    nodeid: '00000000-0000-0000-0000-000000000000',
    ...over,
  };
}

export function logRecords(clock: FakeClock, n: number): JsonLogRecord[] {
  return Array.from({ length: n }, () => logRecord(clock));
}

/**
 * Move the fake clock to `at` (unix ms), firing timers on the way, and let
 * the work they start settle.
 */
export async function advanceTo(clock: FakeClock, at: number): Promise<void> {
  if (at > clock.now()) await clock.advance(at - clock.now());
  await clock.quiet();
}

/** The earliest pending timer at or after `from`, waiting (real time) for one to be set. */
export async function timerAtOrAfter(clock: FakeClock, from: number, what: string): Promise<number> {
  return waitFor(() => clock.pending().find((t) => t >= from), what);
}
