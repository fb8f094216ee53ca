/**
 * `GET /metrics` (Prometheus text) and `GET /metrics.json`, with KumoMTA's
 * metric names where they exist (kumomta-facts §11). Values are read from
 * the engine at scrape time; nothing is counted twice.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Engine } from '../../engine.js';
import type { Route } from '../server.js';

export interface DaemonCounters {
  reloadsOk: number;
  reloadsFailed: number;
  epoch: number;
}

export function buildRegistry(engine: () => Engine, daemon: DaemonCounters): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sluice_process_' });
  const service = (name: string) => `lua:${name}`;

  const gauge = (name: string, help: string, labelNames: string[], read: (g: Gauge) => void) =>
    new Gauge({ name, help, labelNames, registers: [registry], collect() { this.reset(); read(this); } });
  const counter = (name: string, help: string, labelNames: string[], read: (c: Counter) => void) =>
    new Counter({ name, help, labelNames, registers: [registry], collect() { this.reset(); read(this); } });

  gauge('scheduled_count', 'messages waiting in a scheduled queue', ['queue'], (g) => {
    for (const sq of engine().manager.scheduledQueues()) g.set({ queue: sq.name }, sq.waiting);
  });
  gauge('scheduled_queue_count', 'number of scheduled queues', [], (g) => g.set(engine().manager.scheduledQueues().length));
  gauge('ready_count', 'messages in a ready queue', ['service'], (g) => {
    for (const rq of engine().manager.readyQueues()) g.set({ service: service(rq.name) }, rq.size);
  });
  gauge('connection_count', 'active delivery sessions', ['service'], (g) => {
    for (const rq of engine().manager.readyQueues()) g.set({ service: service(rq.name) }, rq.sessionCount);
  });
  gauge('in_flight_count', 'messages being delivered right now', ['service'], (g) => {
    for (const rq of engine().manager.readyQueues()) g.set({ service: service(rq.name) }, rq.inFlight);
  });
  counter('total_connection_count', 'delivery sessions started', ['service'], (c) => {
    for (const rq of engine().manager.readyQueues()) c.inc({ service: service(rq.name) }, rq.totalSessions);
  });
  counter('ready_full', 'times a message found its ready queue full', ['service'], (c) => {
    for (const rq of engine().manager.readyQueues()) c.inc({ service: service(rq.name) }, rq.fullCount);
  });
  const perQueue = (name: string, help: string, pick: (sq: ReturnType<Engine['manager']['scheduledQueues']>[number]) => number) =>
    counter(name, help, ['service'], (c) => {
      for (const sq of engine().manager.scheduledQueues()) c.inc({ service: service(sq.readyQueue.name) }, pick(sq));
    });
  perQueue('total_messages_delivered', 'messages delivered', (sq) => sq.delivered);
  perQueue('total_messages_transfail', 'transient delivery failures', (sq) => sq.transientFailures);
  perQueue('total_messages_fail', 'permanent delivery failures', (sq) => sq.failed);
  counter('log_hook_backlog_count', 'records that waited for a back_pressure permit', ['logger'], (c) => {
    for (const h of engine().hub.hookStats()) c.inc({ logger: h.name }, h.backlog);
  });
  counter('log_hook_enqueued_count', 'records a log hook queued', ['logger'], (c) => {
    for (const h of engine().hub.hookStats()) c.inc({ logger: h.name }, h.enqueued);
  });
  counter('log_hook_dropped_count', 'records a log hook did not queue (filtered, declined or failed)', ['logger'], (c) => {
    for (const h of engine().hub.hookStats()) c.inc({ logger: h.name }, h.dropped);
  });
  counter('total_messages_expired', 'messages that reached max_age', [], (c) => c.inc(engine().manager.totals.expired));
  counter('total_messages_admin_bounced', 'messages removed by an admin bounce', [], (c) => c.inc(engine().manager.totals.admin_bounced));
  counter('spool_commits_total', 'spool group commits (each one fsync)', [], (c) => c.inc(engine().spool.stats?.commits ?? 0));
  counter('spool_commit_writes_total', 'spool writes committed by those group commits', [], (c) => c.inc(engine().spool.stats?.writes ?? 0));
  counter('spool_commit_failures_total', 'spool group commits that failed (their writes were rejected)', [], (c) => c.inc(engine().spool.stats?.failedCommits ?? 0));
  counter('policy_reload_total', 'policy reloads by result', ['result'], (c) => {
    c.inc({ result: 'ok' }, daemon.reloadsOk);
    c.inc({ result: 'error' }, daemon.reloadsFailed);
  });
  gauge('policy_epoch', 'the policy version in use (starts at 1)', [], (g) => g.set(daemon.epoch));
  return registry;
}

export function metricsRoutes(registry: Registry): Route[] {
  return [
    { method: 'GET', path: '/metrics', handler: async () => ({ text: await registry.metrics(), contentType: registry.contentType }) },
    { method: 'GET', path: '/metrics.json', handler: async () => ({ json: await registry.getMetricsAsJSON() }) },
  ];
}
