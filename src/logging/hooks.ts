/**
 * Where log records go (kumomta-facts §3.2): local log files, disposition
 * hooks, and log hooks. A log hook turns each record into a new message
 * (body = the record as JSON, or its template; meta = captured meta plus
 * `log_record` and `reception_protocol = 'LogRecord'`), asks the policy's
 * `should_enqueue_log_record(msg, hook_name)`, and on `true` queues it like
 * any other message.
 *
 * Records about log-hook messages themselves (reception_protocol
 * 'LogRecord') never reach a hook again, or every delivery would make a new
 * record forever; local logs still get them.
 *
 * Bounds: each hook allows `back_pressure` records to be inside
 * `should_enqueue_log_record` at once. Past that, records wait for a permit
 * (and `log_hook_backlog_count` counts the waits) instead of piling up Lua
 * coroutines without limit.
 */
import type { Logger } from './logger.js';
import type { LuaVM } from '../lua/vm.js';
import type { LogHookParams, LocalLogsParams } from './hook-config.js';
import type { PolicySettings } from '../lua/policy-settings.js';
import { Message } from '../queue/message.js';
import { MessageHandle } from '../lua/modules/message.js';
import { buildRecord, isEnabled, templateFor, type JsonLogRecord, type RecordEvent } from './record.js';
import { compileTemplate, renderRecordBody } from './template.js';
import { LocalLogWriter } from './local-logs.js';

export interface LogHubOptions {
  settings: PolicySettings;
  policy: () => LuaVM;
  /** Queue a hook message; resolves once it is durable. */
  insert: (msg: Message, opts: { deferSpool?: boolean }) => Promise<void>;
  logger: Logger;
  now?: () => number;
}

class Permits {
  #free: number;
  readonly #waiters: Array<() => void> = [];
  constructor(n: number) {
    this.#free = Math.max(1, n);
  }
  /** Take a permit; `onWait` runs when none is free. */
  acquire(onWait: () => void): Promise<void> | null {
    if (this.#free > 0) {
      this.#free--;
      return null;
    }
    onWait();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }
}

interface HookState {
  params: Readonly<LogHookParams>;
  permits: Permits;
  templates: Map<string, ((vars: Record<string, unknown>) => string) | undefined>;
  backlog: number;
  enqueued: number;
  dropped: number;
}

export class LogHub {
  readonly #o: LogHubOptions;
  readonly #hooks: HookState[];
  readonly #local: Array<{ params: Readonly<LocalLogsParams>; writer: LocalLogWriter }>;
  errors = 0;

  constructor(opts: LogHubOptions) {
    this.#o = opts;
    this.#hooks = [...opts.settings.logHooks.values()].map((params) => ({
      params,
      permits: new Permits(params.back_pressure),
      templates: new Map(),
      backlog: 0,
      enqueued: 0,
      dropped: 0,
    }));
    this.#local = opts.settings.localLogs.map((params) => ({
      params,
      writer: new LocalLogWriter(params, {
        now: opts.now,
        onError: (err: Error) => opts.logger.error({ err: err.message, log_dir: params.log_dir }, 'local log write failed'),
      }),
    }));
  }

  /** Per-hook counters, for metrics. */
  hookStats(): Array<{ name: string; backlog: number; enqueued: number; dropped: number }> {
    return this.#hooks.map((h) => ({ name: h.params.name, backlog: h.backlog, enqueued: h.enqueued, dropped: h.dropped }));
  }

  /** Log an event about `msg` to every logger. Never throws; hook work continues in the background. */
  log(msg: Message, event: RecordEvent): void {
    for (const { params, writer } of this.#local) {
      if (!isEnabled(params.per_record, event.type)) continue;
      const record = buildRecord(msg, event, params);
      if (params.filter_event) void this.#filtered(params.filter_event, msg, () => writer.write(record));
      else writer.write(record);
    }
    const settings = this.#o.settings;
    for (const name of settings.dispositionHooks.keys()) {
      if (msg.meta.reception_protocol === 'LogRecord') break;
      const record = buildRecord(msg, event, { meta: [], headers: [] });
      void this.#o.policy().fire(`log_disposition_${name}`, [new MessageHandle(this.#o.policy(), msg), record]).catch((err: unknown) => this.#error(err, `log_disposition_${name}`));
    }
    if (msg.meta.reception_protocol === 'LogRecord') return;
    for (const hook of this.#hooks) {
      if (!isEnabled(hook.params.per_record, event.type)) continue;
      const record = buildRecord(msg, event, hook.params);
      this.#offer(hook, record).catch((err: unknown) => this.#error(err, `log hook '${hook.params.name}'`));
    }
  }

  /**
   * Offer records made elsewhere (a KumoMTA node's hook, `POST
   * /api/log-records/v1`) to every hook, as if sluice had made them.
   * Resolves with the number of hook messages queued, once durable.
   */
  async submit(records: readonly JsonLogRecord[]): Promise<number> {
    const work: Promise<boolean>[] = [];
    for (const record of records) {
      if (record.reception_protocol === 'LogRecord') continue;
      for (const hook of this.#hooks) {
        if (!isEnabled(hook.params.per_record, record.type)) continue;
        work.push(this.#offer(hook, record));
      }
    }
    return (await Promise.all(work)).filter(Boolean).length;
  }

  async flush(): Promise<void> {
    await Promise.all(this.#local.map((l) => l.writer.flush()));
  }

  async close(): Promise<void> {
    await Promise.all(this.#local.map((l) => l.writer.close()));
  }

  async #offer(hook: HookState, record: JsonLogRecord): Promise<boolean> {
    const wait = hook.permits.acquire(() => hook.backlog++);
    if (wait) await wait;
    let queued = false;
    try {
      const msg = this.#hookMessage(hook, record);
      if (!msg) return false;
      const vm = this.#o.policy();
      let verdict: unknown = false;
      try {
        const r = await vm.fire('should_enqueue_log_record', [new MessageHandle(vm, msg), hook.params.name]);
        verdict = r.values[0];
      } catch (err) {
        hook.dropped++;
        this.#error(err, 'Error while calling should_enqueue_log_record');
        return false;
      }
      if (verdict === null || verdict === undefined || verdict === false) {
        hook.dropped++;
        return false;
      }
      await this.#o.insert(msg, { deferSpool: hook.params.deferred_spool });
      hook.enqueued++;
      queued = true;
    } finally {
      hook.permits.release();
    }
    return queued;
  }

  #hookMessage(hook: HookState, record: JsonLogRecord): Message | null {
    const recipients = Array.isArray(record.recipient) ? record.recipient : record.recipient ? [record.recipient] : [];
    if (recipients.length === 0) {
      hook.dropped++;
      this.#error(new Error('no recips!?'), `log hook '${hook.params.name}' record ${record.id}`);
      return null;
    }
    let template = hook.templates.get(record.type);
    if (!hook.templates.has(record.type)) {
      const source = templateFor(hook.params.per_record, record.type);
      template = source === undefined ? undefined : compileTemplate(source);
      hook.templates.set(record.type, template);
    }
    const body = renderRecordBody(record, template);
    const msg = new Message({
      sender: record.sender,
      recipients,
      data: body,
      meta: { ...record.meta, log_record: record, reception_protocol: 'LogRecord' },
      created: this.#o.now?.(),
    });
    if (template === undefined) msg.recordOfData = record;
    return msg;
  }

  async #filtered(event: string, msg: Message, write: () => void): Promise<void> {
    try {
      const vm = this.#o.policy();
      const r = await vm.fire(event, [new MessageHandle(vm, msg)]);
      if (r.values[0]) write();
    } catch (err) {
      this.#error(err, `local log filter '${event}'`);
    }
  }

  #error(err: unknown, what: string): void {
    this.errors++;
    this.#o.logger.error({ err: err instanceof Error ? err.message : String(err) }, what);
  }
}
