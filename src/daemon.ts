/**
 * The composition root of `sluice serve`.
 *
 * Start, in order: engine (policy → spool → loggers → queues restored) →
 * HTTP API (logs `listening on http://HOST:PORT`) → policy watcher → logs
 * `initialization complete`.
 * Close, in order: stop accepting HTTP requests → stop watching → engine
 * (sessions finish their batch and close; loggers flush; spool closes) →
 * HTTP server. `close()` is idempotent.
 *
 * Reload (file change, SIGHUP, bump-config-epoch, kumo.bump_config_epoch):
 * the new policy is loaded in a fresh VM and its startup events run there to
 * validate it. On success new work uses it (queue configs are resolved
 * again) while in-flight calls finish on the old one; on failure the old one
 * keeps serving and the error is logged with its file and line.
 */
import { Engine } from './engine.js';
import { LuaVM } from './lua/vm.js';
import { describeError } from './lua/check.js';
import { PolicyWatcher } from './lua/epoch.js';
import { ApiServer } from './http/server.js';
import { splitListen } from './http/listen.js';
import { injectRoutes } from './http/api/inject-v1.js';
import { logRecordRoutes } from './http/api/log-records-v1.js';
import { adminRoutes } from './http/api/admin-v1.js';
import { buildRegistry, metricsRoutes, type DaemonCounters } from './http/api/metrics.js';
import { createLogger, type Logger } from './logging/logger.js';
import { SluiceError } from './errors.js';
import type { PolicySettings } from './lua/policy-settings.js';
import { EventLogStore } from './egress/log-store.js';
import { EgressWebhooks } from './egress/webhooks.js';
import { logRoutes } from './http/api/logs-v1.js';
import { egressWebhookRoutes } from './http/api/egress-webhooks-v1.js';
import { buildRecord } from './logging/record.js';
import type { LuaServices } from './lua/modules/sluice.js';

export interface DaemonOptions {
  policyPath: string;
  dataDir: string;
  /** `HOST:PORT`; overrides the policy's start_http_listener. @defaultValue 127.0.0.1:8000 */
  listen?: string;
  instructionLimit?: number;
  /** Bearer token for admin routes (and for clients outside trusted_hosts). */
  adminToken?: string;
  /** How long shutdown waits for in-flight deliveries. @defaultValue 30 s */
  shutdownTimeoutMs?: number;
  /** Watch the policy folder for changes. @defaultValue true */
  watch?: boolean;
  logger?: Logger;
  /** Append every log record sluice makes (JSON, key = message id) to this event log. */
  recordsLog?: string;
  /** An egress webhook failing for longer than this goes inactive, ms. @defaultValue 3 days */
  webhookMaxFailureAgeMs?: number;
}

export const DEFAULT_LISTEN = '127.0.0.1:8000';

export class Daemon {
  readonly engine: Engine;
  readonly eventLogs: EventLogStore;
  readonly webhooks: EgressWebhooks;
  readonly server: ApiServer;
  readonly address: { host: string; port: number };
  /** Shared with the metrics registry. */
  readonly counters: DaemonCounters;
  readonly #o: DaemonOptions;
  readonly #logger: Logger;
  #watcher: PolicyWatcher | null = null;
  #reloading: Promise<{ ok: boolean; error?: string; epoch: number }> = Promise.resolve({ ok: true, epoch: 1 });
  #closing: Promise<void> | null = null;

  private constructor(engine: Engine, stores: { eventLogs: EventLogStore; webhooks: EgressWebhooks }, server: ApiServer, address: { host: string; port: number }, counters: DaemonCounters, opts: DaemonOptions, logger: Logger) {
    this.engine = engine;
    this.eventLogs = stores.eventLogs;
    this.webhooks = stores.webhooks;
    this.counters = counters;
    this.server = server;
    this.address = address;
    this.#o = opts;
    this.#logger = logger;
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const logger = opts.logger ?? createLogger();
    let eventLogs: EventLogStore | null = null;
    const services: LuaServices = {
      publishEvent: (logId, key, value) => (eventLogs ? eventLogs.publish(logId, [{ key, value }]) : Promise.reject(new Error('event logs are not open yet'))),
    };
    const engine = await Engine.start({ policyPath: opts.policyPath, dataDir: opts.dataDir, logger, instructionLimit: opts.instructionLimit, services });
    let webhooks: EgressWebhooks | null = null;
    try {
      eventLogs = new EventLogStore(opts.dataDir);
      eventLogs.startRetention();
      webhooks = new EgressWebhooks(eventLogs, { logger, maxFailureAgeMs: opts.webhookMaxFailureAgeMs });
      const logsRef = eventLogs;
      const hooksRef = webhooks;
      if (opts.recordsLog !== undefined) bridgeRecords(engine, logsRef, opts.recordsLog, logger);
      const settings = engine.policy.settings;
      const listener = settings.httpListeners[0];
      const listen = opts.listen ?? listener?.listen ?? DEFAULT_LISTEN;
      const { host, port } = parseListen(listen);
      let daemon: Daemon | null = null;
      const engineRef = () => engine;
      const counters: DaemonCounters = { reloadsOk: 0, reloadsFailed: 0, epoch: 1 };
      const routes = [
        ...injectRoutes(engineRef),
        ...logRecordRoutes(engineRef),
        ...adminRoutes(engineRef, { reload: () => (daemon ? daemon.reload('bump-config-epoch') : Promise.resolve({ ok: false, error: 'starting', epoch: 1 })) }),
        ...metricsRoutes(buildRegistry(engineRef, counters)),
        ...logRoutes(() => logsRef),
        ...egressWebhookRoutes(() => hooksRef),
      ];
      const server = new ApiServer({
        routes,
        trustedHosts: listener?.trusted_hosts ?? ['127.0.0.1', '::1'],
        bodyLimit: listener?.request_body_limit ?? 2 * 1024 * 1024,
        adminToken: opts.adminToken,
        logger,
      });
      const address = await server.listen(host, port).catch((err: NodeJS.ErrnoException) => {
        throw new SluiceError('SLUICE_ERR_INVALID_ARGUMENT', `cannot listen on ${listen}: ${err.code ?? err.message}${err.code === 'EADDRINUSE' ? ' (another process uses that port; pick another with --listen)' : ''}`);
      });
      daemon = new Daemon(engine, { eventLogs, webhooks }, server, address, counters, opts, logger);
      webhooks.start();
      const shown = address.host.includes(':') ? `[${address.host}]` : address.host;
      logger.info({ listen: `${address.host}:${address.port}` }, `listening on http://${shown}:${address.port}`);
      engine.policy.onBumpEpoch = () => void daemon?.reload('kumo.bump_config_epoch');
      if (opts.watch !== false) {
        daemon.#watcher = new PolicyWatcher(engine.policy.policyDir, () => void daemon?.reload('policy file changed'));
        await daemon.#watcher.start();
      }
      logger.info({ policy: opts.policyPath, data_dir: opts.dataDir }, 'initialization complete');
      return daemon;
    } catch (err) {
      await webhooks?.close().catch(() => undefined);
      eventLogs?.close();
      await engine.close().catch(() => undefined);
      throw err;
    }
  }

  /** Load the policy again; serialised, so reloads never overlap. */
  reload(reason: string): Promise<{ ok: boolean; error?: string; epoch: number }> {
    this.#reloading = this.#reloading.then(() => this.#reload(reason));
    return this.#reloading;
  }

  async #reload(reason: string): Promise<{ ok: boolean; error?: string; epoch: number }> {
    if (this.#closing) return { ok: false, error: 'shutting down', epoch: this.counters.epoch };
    const old = this.engine.policy;
    let vm: LuaVM;
    try {
      vm = await LuaVM.load({ policyPath: this.#o.policyPath, logger: this.#logger, instructionLimit: this.#o.instructionLimit, services: old.services });
      await vm.startup();
    } catch (err) {
      this.counters.reloadsFailed++;
      const error = describeError(err);
      this.#logger.error({ reason, error }, `policy reload failed; the previous policy keeps serving: ${error.split('\n')[0]}`);
      return { ok: false, error, epoch: this.counters.epoch };
    }
    for (const note of settingsNeedingRestart(old.settings, vm.settings)) this.#logger.warn({ reason }, `${note} needs a restart to take effect`);
    vm.onBumpEpoch = old.onBumpEpoch;
    this.engine.setPolicy(vm);
    this.counters.epoch++;
    this.counters.reloadsOk++;
    await this.engine.manager.refreshConfigs();
    this.#logger.info({ reason, epoch: this.counters.epoch }, 'policy reloaded');
    return { ok: true, epoch: this.counters.epoch };
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#logger.info('shutting down: no new work; waiting for deliveries in flight');
      this.server.stopAccepting();
      await this.#watcher?.close();
      const timeout = this.#o.shutdownTimeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeout)));
      await this.webhooks.close();
      const result = await Promise.race([this.engine.close().then(() => 'done' as const), timedOut]);
      this.eventLogs.close();
      clearTimeout(timer);
      if (result === 'timeout') this.#logger.warn({ timeout_ms: timeout }, 'deliveries still in flight at the shutdown timeout; they will be retried after restart');
      await this.server.close();
      this.#logger.info('shutdown complete');
    })();
    return this.#closing;
  }
}

/** Append every record sluice makes to an event log (key: the message id; value: the record JSON). */
function bridgeRecords(engine: Engine, logs: EventLogStore, logId: string, logger: Logger): void {
  if (!logs.has(logId)) throw new SluiceError('SLUICE_ERR_INVALID_ARGUMENT', `--records-log ${logId}: no such event log (create it with \`sluice logs create\` first)`);
  engine.onRecord((msg, event) => {
    if (msg.meta.reception_protocol === 'LogRecord') return;
    const record = buildRecord(msg, event, { meta: ['*'], headers: [] });
    logs.publish(logId, [{ key: Buffer.from(record.id), value: Buffer.from(JSON.stringify(record)) }]).catch((err: unknown) =>
      logger.error({ err: (err as Error).message, log_id: logId }, 'appending a record to the records log failed'));
  });
}

export function parseListen(listen: string): { host: string; port: number } {
  const r = splitListen(listen);
  if ('problem' in r) {
    const why = r.problem === 'expected HOST:PORT' ? '' : ` (${r.problem})`;
    throw new SluiceError('SLUICE_ERR_INVALID_ARGUMENT', `invalid listen address '${listen}': expected HOST:PORT, such as 127.0.0.1:8000 or [::1]:0${why}`);
  }
  return r;
}

/** What changed between two policies that only a restart applies (settings made in init). */
function settingsNeedingRestart(a: PolicySettings, b: PolicySettings): string[] {
  const notes: string[] = [];
  const key = (v: unknown) => JSON.stringify(v, (k, x) => (k === 'where' ? undefined : x));
  if (key([...a.logHooks.values()]) !== key([...b.logHooks.values()])) notes.push('a change to the log hooks (configure_log_hook)');
  if (key(a.localLogs) !== key(b.localLogs)) notes.push('a change to configure_local_logs');
  if (key(a.httpListeners) !== key(b.httpListeners)) notes.push('a change to start_http_listener');
  if (key([...a.dispositionHooks.values()]) !== key([...b.dispositionHooks.values()])) notes.push('a change to the disposition hooks');
  return notes;
}
