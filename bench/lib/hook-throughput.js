/**
 * End-to-end log-hook throughput of a real `sluice serve`: records published
 * over HTTP (POST /api/log-records/v1, `batch` records per request, several
 * publishers) and delivered by a log hook to the bench receiver, with the
 * daemon's queue kept at most `maxBacklog` records deep (publishers wait
 * when it is deeper), so the run is a steady state of accept + deliver.
 *
 * Steps: verify (one batch, with the receiver parsing bodies, must arrive as
 * `batch` records), warm-up (ctx.warmupMs and at least `warmupUnits`
 * delivered, at most 15 s), then the timed window (ctx.durationMs), measured
 * between two snapshots. Delivered records are counted at the receiver
 * (`count: 'requests'`, one record per request) or by the daemon's
 * delivered counter (`count: 'daemon'`, for batched hooks whose requests
 * carry many records; the receiver's request count is reported alongside).
 */
import { logRecord } from './records.js';
import { withDaemon, tempDir, removeDir } from './daemon.js';
import { between, describeWindow, feeder, poller, sleep, snapshot, waitQuiet, waitUntil } from './daemon-measure.js';

const WARMUP_MAX_MS = 15_000;
const RING = 40; // distinct request bodies, cycled

/** `n` bodies of `batch` Delivery records each (distinct ids), JSON arrays. */
export function recordBodies(batch, n = RING, offset = 0) {
  return Array.from({ length: n }, (_, b) => JSON.stringify(Array.from({ length: batch }, (_, i) => logRecord(offset + b * batch + i))));
}

/**
 * @param {object} ctx
 * @param {object} o
 * @param {string} o.label
 * @param {string} o.policy              init.lua source
 * @param {string} [o.webhookPath]       path on the receiver for WEBHOOK_URL
 * @param {number} o.batch               records per publish request
 * @param {number} o.publishers          concurrent publish requests
 * @param {number} o.maxBacklog          queued + in-flight records at most
 * @param {'requests'|'daemon'} o.count  how delivered records are counted
 * @param {number} o.warmupUnits
 * @param {(name: string) => boolean} [o.queueMatch]  which daemon queues are the hook's
 */
export async function hookThroughput(ctx, o) {
  const bodies = recordBodies(o.batch);
  const maildir = tempDir('bench-daemon-maildir-');
  await waitQuiet(ctx);
  try {
    return await withDaemon({
      policy: o.policy,
      env: { WEBHOOK_URL: ctx.receiver.url(o.webhookPath ?? '/log'), MAILDIR: maildir },
      log: ctx.log,
    }, async (daemon) => {
      ctx.log(`  ${o.label}: daemon pid ${daemon.pid} ready in ${daemon.startMs.toFixed(0)} ms`);
      const match = o.queueMatch ?? ((name) => name.endsWith('.log_hook'));
      const totals = () => daemon.queueTotals(match);
      const publish = (_w, n) => daemon.post('/api/log-records/v1', bodies[n % bodies.length]).then((r) => {
        if (r.accepted !== o.batch || r.queued !== o.batch) throw new Error(`publish: expected ${o.batch} accepted and queued, got ${JSON.stringify(r)}`);
      });

      // Verify: one batch arrives as `batch` records at the receiver.
      await ctx.receiver.setParse(true);
      await ctx.receiver.reset();
      await publish(0, 0);
      const ok = await waitUntil(async () => (await ctx.receiver.stats()).records >= o.batch, { timeoutMs: 15_000 });
      const vst = await ctx.receiver.setParse(false);
      if (ok === null || vst.records !== o.batch || vst.parseErrors !== 0) {
        throw new Error(`${o.label}: verification failed: the receiver saw ${vst.requests} request(s), ${vst.records} record(s), ${vst.parseErrors} parse error(s); expected ${o.batch} records. daemon stderr:\n${daemon.stderrTail()}`);
      }
      ctx.log(`    verified: ${vst.records} records in ${vst.requests} request(s), ${ok.toFixed(0)} ms after the reply`);
      await ctx.receiver.reset();

      // Queue depth, polled; the feeder keeps it bounded.
      const depth = poller(async () => {
        const t = await totals();
        return t.scheduled + t.ready + t.in_flight;
      }, { intervalMs: 50, initial: 0 });
      const depthSamples = [];
      const f = feeder({
        concurrency: o.publishers,
        unitsPerOp: o.batch,
        publish,
        backlog: () => depth.value ?? 0,
        maxBacklog: o.maxBacklog,
        maxOps: Math.ceil((WARMUP_MAX_MS + ctx.durationMs + 30_000) / 1000 * 200_000 / o.batch),
        maxMs: WARMUP_MAX_MS + ctx.durationMs + 30_000,
      });
      try {
        // Warm-up.
        const delivered = async () => (o.count === 'daemon' ? (await totals()).delivered : (await ctx.receiver.stats()).requests);
        const w0 = performance.now();
        await sleep(ctx.warmupMs);
        await waitUntil(async () => (await delivered()) >= o.warmupUnits, { timeoutMs: Math.max(0, WARMUP_MAX_MS - (performance.now() - w0)), intervalMs: 50 });
        if (f.errors > 0) throw new Error(`${o.label}: ${f.errors} publish error(s) in the warm-up; first: ${f.firstError?.stack ?? f.firstError}`);
        ctx.log(`    warm-up: ${await delivered()} records delivered, ${f.acceptedUnits} accepted in ${((performance.now() - w0) / 1000).toFixed(2)} s`);

        // Timed window.
        const a = await snapshot(ctx, daemon, totals);
        const accepted0 = f.acceptedUnits;
        const tEnd = performance.now() + ctx.durationMs;
        while (performance.now() < tEnd) {
          depthSamples.push(depth.value ?? 0);
          await sleep(Math.min(100, Math.max(0, tEnd - performance.now())));
        }
        const b = await snapshot(ctx, daemon, totals);
        const accepted = f.acceptedUnits - accepted0;
        const requests = b.rs.requests - a.rs.requests;
        const units = o.count === 'daemon' ? b.extra.delivered - a.extra.delivered : requests;
        const meanDepth = depthSamples.reduce((s, x) => s + x, 0) / Math.max(1, depthSamples.length);
        const m = between(a, b, {
          label: o.label,
          units,
          ops: requests,
          errors: f.errors,
          firstError: f.firstError ? String(f.firstError.message ?? f.firstError) : null,
          concurrency: o.publishers,
          more: {
            acceptedRecords: accepted,
            acceptedRate: accepted / ((b.t - a.t) / 1000),
            meanQueueDepth: meanDepth,
            recordsPerRequest: requests > 0 ? units / requests : null,
            publisherWaits: f.waits,
            daemonTransientFailures: b.extra.transient_failures - a.extra.transient_failures,
            daemonFailed: b.extra.failed - a.extra.failed,
          },
        });
        ctx.log(`    ${describeWindow(m, 'records')}`);
        ctx.log(`    accepted ${Math.round(m.acceptedRate).toLocaleString('en-US')} records/s; ${requests} receiver requests (${m.recordsPerRequest?.toFixed(1)} records each); mean queue depth ${Math.round(meanDepth)} (bound ${o.maxBacklog}); ${m.daemonTransientFailures} transient failures; ${f.errors} publish errors`);
        if (f.errors > 0) ctx.log(`    first publish error: ${f.firstError?.stack ?? f.firstError}`);
        return m;
      } finally {
        await f.stop();
        await depth.stop();
      }
    });
  } finally {
    removeDir(maildir);
  }
}
