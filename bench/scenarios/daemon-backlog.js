/**
 * daemon-backlog (issue 7 d): a backlog of 1,000,000 records (100,000 under
 * --quick) accepted while the webhook receiver is down; the daemon's RSS
 * then; a restart on the same data dir with the receiver reachable: time to
 * the first delivery and time to drain.
 *
 * Policy: policy-extras.log_hooks new_json (unbatched) to WEBHOOK_URL, with
 * queue_config retry_interval = max_retry_interval = '1s'.
 *
 * "Receiver down" (SLUICE_BENCH_BACKLOG_MODE, default `closed`):
 *  - `closed`: WEBHOOK_URL points at a closed port on 127.0.0.1. Records are
 *    attempted as sessions pick them up (at most max_ready 1,024 are ready
 *    and connection_limit 32 in flight); each attempt fails with
 *    ECONNREFUSED, a transient error, and the record is retried after the
 *    short retry_interval of 1 s instead of log_hooks' default 1 min. The
 *    records a restart finds are therefore due at most about 1 s after they
 *    were accepted or last tried, so the restart measures the spool, not a
 *    retry timer. (Measured under --quick: about 1,400 failed attempts while
 *    100,000 records were accepted in 13 s.)
 *  - `stalled`: WEBHOOK_URL points at a port where this process accepts TCP
 *    connections and never answers (a hung receiver): each session holds one
 *    request open (kumo.http's 60 s timeout) and nothing else is attempted.
 *  Not used: an admin suspension (POST /api/admin/suspend/v1) does not hold
 *  records untouched: the suspended scheduled queue still claims due records
 *  and fails each with a 451 TransientFailure and a retry
 *  (QueueManager.suspendedAtPromotion), so every record is rewritten with a
 *  due time one retry interval later, and with log_hooks' default of 1 min a
 *  restart would wait for that.
 *
 * Steps: accept in batches of 1,000 (POST /api/log-records/v1, 4 publishers),
 * bounded to 240 s (60 s --quick); VmRSS/VmHWM from /proc; SIGTERM (with
 * --shutdown-timeout 2, so requests held by a stalled receiver do not delay it); start again
 * on the same data dir with WEBHOOK_URL = the bench receiver; time from the
 * spawn to the liveness route, to the first request at the receiver, and to
 * the last record delivered (bounded to 300 s, 120 s --quick; a drain not
 * finished in time is reported with its rate and a projection).
 * Baseline: undici single-record POST c16 to the receiver, against the drain rate.
 */
import net from 'node:net';
import { baselineClient } from '../lib/baseline.js';
import { makePoint, measure } from '../lib/measure.js';
import { recordBodies } from '../lib/hook-throughput.js';
import { startDaemon, freePort, removeDir } from '../lib/daemon.js';
import { between, feeder, figure, poller, snapshot, waitQuiet, waitUntil } from '../lib/daemon-measure.js';

const POLICY = `local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json {
  name = 'webhook',
  url = os.getenv 'WEBHOOK_URL',
  queue_config = { retry_interval = '1s', max_retry_interval = '1s' },
}
`;
const BATCH = 1_000;
const PUBLISHERS = 4;
const BASELINE_CONCURRENCY = 16;
const MB = 1024;

/** A TCP server that accepts connections and never answers (a hung receiver). */
async function stalledServer() {
  const sockets = new Set();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.resume(); // read and drop what is sent
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    get connections() {
      return sockets.size;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

export default {
  name: 'daemon-backlog',
  description: 'sluice serve, new_json hook: 1M records (100k --quick) accepted while the receiver is down (closed port, 1 s retries; see the file), RSS; restart: time to first delivery, time to drain',
  async run(ctx) {
    const mode = process.env.SLUICE_BENCH_BACKLOG_MODE ?? 'closed';
    if (mode !== 'stalled' && mode !== 'closed') throw new Error(`SLUICE_BENCH_BACKLOG_MODE must be stalled or closed, got '${mode}'`);
    const N = ctx.quick ? 100_000 : 1_000_000;
    const acceptMaxMs = ctx.quick ? 60_000 : 240_000;
    const drainMaxMs = ctx.quick ? 120_000 : 300_000;

    let baseline = null;
    if (ctx.baseline) {
      const bodies = recordBodies(1, 64, 2_000_000).map((b) => JSON.stringify(JSON.parse(b)[0]));
      const client = baselineClient(ctx.receiver.origin, BASELINE_CONCURRENCY);
      try {
        baseline = await measure(ctx, {
          label: `undici Pool POST 1 record c${BASELINE_CONCURRENCY}`,
          concurrency: BASELINE_CONCURRENCY,
          unit: 'records',
          warmupOps: 5_000,
          op: (_w, n) => client.post('/log', bodies[n % bodies.length]),
          verify: { records: 1 },
        });
      } finally {
        await client.close();
      }
    }

    const bodies = recordBodies(BATCH, 8);
    const down = mode === 'stalled' ? await stalledServer() : null;
    const downUrl = down ? `http://127.0.0.1:${down.port}/log` : `http://127.0.0.1:${await freePort()}/log`;
    let dataDir = null;
    const points = [];
    try {
      // 1. Accept N records with the receiver down.
      await waitQuiet(ctx);
      const d1 = await startDaemon({ policy: POLICY, env: { WEBHOOK_URL: downUrl }, args: ['--shutdown-timeout', '2'], log: ctx.log });
      dataDir = d1.dataDir;
      let accepted;
      let mem;
      try {
        ctx.log(`  accept ${N.toLocaleString('en-US')} records, receiver ${mode} (${downUrl}): daemon pid ${d1.pid} ready in ${d1.startMs.toFixed(0)} ms`);
        const a = await snapshot(ctx, d1);
        const f = feeder({
          concurrency: PUBLISHERS,
          unitsPerOp: BATCH,
          publish: async (_w, n) => {
            const r = await d1.post('/api/log-records/v1', bodies[n % bodies.length]);
            if (r.accepted !== BATCH || r.queued !== BATCH) throw new Error(`publish: ${JSON.stringify(r)}`);
          },
          maxOps: N / BATCH,
          maxMs: acceptMaxMs,
        });
        const progress = setInterval(() => {
          const m = d1.mem();
          ctx.log(`    ... ${f.acceptedUnits.toLocaleString('en-US')} accepted, RSS ${m ? (m.rssKb / MB).toFixed(0) : '?'} MB`);
        }, 10_000);
        try {
          await f.done;
        } finally {
          clearInterval(progress);
        }
        const b = await snapshot(ctx, d1);
        accepted = f.acceptedUnits;
        mem = d1.mem();
        const t = await d1.queueTotals();
        const acc = between(a, b, {
          label: `accept ${BATCH}-record POSTs x${PUBLISHERS}, receiver ${mode}`,
          units: accepted,
          ops: f.acceptedOps,
          errors: f.errors,
          firstError: f.firstError ? String(f.firstError.message ?? f.firstError) : null,
          more: { queue: t, mode, target: N },
        });
        ctx.log(`    accepted ${accepted.toLocaleString('en-US')} of ${N.toLocaleString('en-US')} in ${(acc.elapsedMs / 1000).toFixed(1)} s: ${Math.round(acc.rate).toLocaleString('en-US')} records/s; daemon cpu ${acc.daemonCpuPct.toFixed(0)}% (${acc.daemonCpuUsPerUnit?.toFixed(0)} us/record); ${f.errors} errors`);
        ctx.log(`    queue: scheduled ${t.scheduled}, ready ${t.ready}, in flight ${t.in_flight}, delivered ${t.delivered}, transient failures ${t.transient_failures}; held connections at the stalled receiver: ${down ? down.connections : '-'}`);
        ctx.log(`    daemon RSS ${(mem.rssKb / MB).toFixed(0)} MB (peak ${(mem.hwmKb / MB).toFixed(0)} MB)`);
        if (f.errors > 0) ctx.log(`    first error: ${f.firstError?.stack ?? f.firstError}`);
        points.push(makePoint({ scenario: 'daemon-backlog', point: `accept ${accepted.toLocaleString('en-US')}`, unit: 'records/s', subject: acc, baseline: null }));
        points.push(makePoint({
          scenario: 'daemon-backlog',
          point: `RSS, ${accepted.toLocaleString('en-US')} queued`,
          unit: 'MB',
          subject: figure(`VmRSS after acceptance (peak ${(mem.hwmKb / MB).toFixed(0)} MB)`, mem.rssKb / MB, { rssKb: mem.rssKb, hwmKb: mem.hwmKb, queued: t.scheduled + t.ready + t.in_flight }),
          baseline: null,
        }));
      } finally {
        const s = await d1.stop();
        ctx.log(`    stopped in ${s.ms.toFixed(0)} ms (code ${s.code}${s.killed ? ', SIGKILL' : ''})`);
        d1.cleanup({ keepData: true });
      }
      await down?.close();

      // 2. Restart on the same data dir, receiver reachable.
      await ctx.receiver.reset();
      let firstAt = null;
      const watch = poller(async () => {
        const st = await ctx.receiver.stats();
        if (firstAt === null && st.requests > 0) firstAt = performance.now();
        return st.requests;
      }, { intervalMs: 10, initial: 0, maxMs: drainMaxMs + 60_000 });
      const d2 = await startDaemon({ policy: POLICY, dataDir, env: { WEBHOOK_URL: ctx.receiver.url('/log') }, log: ctx.log });
      try {
        ctx.log(`  restart on the same spool, receiver up: daemon pid ${d2.pid} ready in ${d2.startMs.toFixed(0)} ms`);
        const s0 = await snapshot(ctx, d2);
        await waitUntil(() => firstAt !== null, { timeoutMs: 60_000, intervalMs: 5 });
        const firstMs = firstAt === null ? null : firstAt - d2.spawnedAt;
        ctx.log(`    first delivery ${firstMs === null ? 'not within 60 s' : `${firstMs.toFixed(0)} ms after the spawn`}`);
        let last = 0;
        const progress = setInterval(() => {
          const v = watch.value ?? 0;
          const m = d2.mem();
          ctx.log(`    ... ${v.toLocaleString('en-US')} delivered (${Math.round((v - last) / 10).toLocaleString('en-US')}/s), RSS ${m ? (m.rssKb / MB).toFixed(0) : '?'} MB`);
          last = v;
        }, 10_000);
        let drainedMs;
        try {
          drainedMs = await waitUntil(() => (watch.value ?? 0) >= accepted, { timeoutMs: Math.max(0, drainMaxMs - (performance.now() - d2.spawnedAt)), intervalMs: 10 });
        } finally {
          clearInterval(progress);
        }
        const s1 = await snapshot(ctx, d2);
        const delivered = s1.rs.requests; // the receiver was reset before the restart
        const t = await d2.queueTotals();
        const mem2 = d2.mem();
        const sinceSpawn = s1.t - d2.spawnedAt;
        const dr = between(s0, s1, {
          label: `drain after restart (new_json, unbatched)`,
          units: s1.rs.requests - s0.rs.requests,
          more: { delivered, accepted, queueAfter: t, drained: drainedMs !== null, rssPeakKb: mem2?.hwmKb },
        });
        const fromFirst = firstAt === null ? null : s1.t - firstAt;
        const projected = drainedMs !== null ? sinceSpawn : (firstMs ?? 0) + (accepted / Math.max(1, delivered / Math.max(1, (fromFirst ?? sinceSpawn) / 1000))) * 1000;
        ctx.log(`    ${drainedMs !== null ? 'drained' : 'NOT drained'}: ${delivered.toLocaleString('en-US')} of ${accepted.toLocaleString('en-US')} delivered ${(sinceSpawn / 1000).toFixed(1)} s after the spawn (${Math.round(delivered / ((fromFirst ?? sinceSpawn) / 1000)).toLocaleString('en-US')} records/s from the first delivery)${drainedMs === null ? `; projected drain ${(projected / 1000).toFixed(0)} s` : ''}`);
        ctx.log(`    queue after: scheduled ${t.scheduled}, ready ${t.ready}, in flight ${t.in_flight}, delivered ${t.delivered}, transient failures ${t.transient_failures}; daemon cpu ${dr.daemonCpuPct.toFixed(0)}% (${dr.daemonCpuUsPerUnit?.toFixed(0)} us/record); RSS ${mem2 ? (mem2.rssKb / MB).toFixed(0) : '?'} MB (peak ${mem2 ? (mem2.hwmKb / MB).toFixed(0) : '?'} MB)`);
        points.push(makePoint({ scenario: 'daemon-backlog', point: 'restart: spawn to API up', unit: 'ms', subject: figure('spawn to /api/check-liveness/v1 200', d2.startMs), baseline: null }));
        points.push(makePoint({ scenario: 'daemon-backlog', point: 'restart: first delivery', unit: 'ms', subject: figure('spawn to first request at the receiver', firstMs ?? NaN), baseline: null }));
        points.push(makePoint({
          scenario: 'daemon-backlog',
          point: drainedMs !== null ? 'restart: drained' : 'restart: drain (projected)',
          unit: 'ms',
          subject: figure(drainedMs !== null ? 'spawn to last record delivered' : `projected; ${delivered} of ${accepted} in ${(sinceSpawn / 1000).toFixed(0)} s`, projected, { delivered, accepted, drained: drainedMs !== null }),
          baseline: null,
        }));
        points.push(makePoint({ scenario: 'daemon-backlog', point: 'drain rate', unit: 'records/s', subject: dr, baseline }));
      } finally {
        await watch.stop();
        const s = await d2.stop();
        if (s.killed) ctx.log(`    restarted daemon needed SIGKILL; stderr:\n${d2.stderrTail()}`);
        d2.cleanup();
      }
    } finally {
      await down?.close().catch(() => undefined);
      if (dataDir) removeDir(dataDir);
    }
    return points;
  },
};
