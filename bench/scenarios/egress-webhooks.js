/**
 * egress-webhooks (issue 7 e): a real `sluice serve` (policy with no hooks)
 * with one event log and egress webhooks on it pointing at the bench
 * receiver. Messages (~620-byte record JSON values) are published with POST
 * /messages/{log_id} in batches of 1,000 by 2 publishers, keeping the
 * undelivered backlog bounded; messages/s delivered is counted at the
 * receiver (one request per message per webhook) over the timed window.
 * Points: 1 webhook (baseline: undici POST of the same value, concurrency 1,
 * as a webhook delivers one message at a time); 100 webhooks on the same log,
 * deliveries/s in total (baseline: undici concurrency 16).
 * A fresh daemon and data dir per point.
 */
import { baselineClient } from '../lib/baseline.js';
import { makePoint, measure } from '../lib/measure.js';
import { logRecord } from '../lib/records.js';
import { withDaemon } from '../lib/daemon.js';
import { between, describeWindow, feeder, poller, sleep, snapshot, waitQuiet, waitUntil } from '../lib/daemon-measure.js';

const POLICY = '-- bench: egress webhooks only, no log hooks\n';
const BATCH = 1_000;
const PUBLISHERS = 2;
const WARMUP_MAX_MS = 15_000;

function messageBodies(n) {
  return Array.from({ length: n }, (_, b) => JSON.stringify({
    encoding: 'string',
    messages: Array.from({ length: BATCH }, (_, i) => ({ key: `k${b * BATCH + i}`, value: JSON.stringify(logRecord(b * BATCH + i)) })),
  }));
}

async function point(ctx, { hooks, maxBacklogMessages, baselineConcurrency, bodies }) {
  let baseline = null;
  if (ctx.baseline) {
    const values = Array.from({ length: 64 }, (_, i) => JSON.stringify(logRecord(3_000_000 + i)));
    const client = baselineClient(ctx.receiver.origin, baselineConcurrency);
    try {
      baseline = await measure(ctx, {
        label: `undici Pool POST 1 message c${baselineConcurrency}`,
        concurrency: baselineConcurrency,
        unit: 'messages',
        warmupOps: 2_000,
        op: (_w, n) => client.post('/egress', values[n % values.length]),
        verify: { records: 1 },
      });
    } finally {
      await client.close();
    }
  }
  await waitQuiet(ctx);
  const subject = await withDaemon({ policy: POLICY, log: ctx.log }, async (daemon) => {
    const label = `sluice ${hooks} egress webhook${hooks > 1 ? 's' : ''} on 1 log`;
    ctx.log(`  ${label}: daemon pid ${daemon.pid} ready in ${daemon.startMs.toFixed(0)} ms`);
    const { log_id: logId } = await daemon.post('/logs', {});
    const ids = [];
    for (let i = 0; i < hooks; i++) ids.push((await daemon.post('/egress_webhooks', { log_id: logId, destination: ctx.receiver.url('/egress') })).webhook_id);
    const publish = async (_w, n) => {
      await daemon.post(`/messages/${logId}`, bodies[n % bodies.length]);
    };

    // Verify: 10 messages reach the receiver once per webhook, each a JSON message.
    await ctx.receiver.setParse(true);
    await ctx.receiver.reset();
    await daemon.post(`/messages/${logId}`, { encoding: 'string', messages: Array.from({ length: 10 }, (_, i) => ({ value: `v${i}` })) });
    const ok = await waitUntil(async () => (await ctx.receiver.stats()).records >= 10 * hooks, { timeoutMs: 20_000 });
    const vst = await ctx.receiver.setParse(false);
    if (ok === null || vst.records !== 10 * hooks || vst.parseErrors !== 0) throw new Error(`${label}: verification failed: ${vst.requests} requests, ${vst.records} records, ${vst.parseErrors} parse errors; expected ${10 * hooks}. stderr:\n${daemon.stderrTail()}`);
    ctx.log(`    verified: ${vst.records} deliveries of 10 messages in ${ok.toFixed(0)} ms`);
    await ctx.receiver.reset();

    const delivered = poller(async () => (await ctx.receiver.stats()).requests, { intervalMs: 50, initial: 0 });
    let published = 0;
    const f = feeder({
      concurrency: PUBLISHERS,
      unitsPerOp: BATCH,
      publish: async (w, n) => {
        await publish(w, n);
        published += BATCH;
      },
      // messages not yet delivered by every webhook, on average
      backlog: () => published - (delivered.value ?? 0) / hooks,
      maxBacklog: maxBacklogMessages,
      maxOps: Math.ceil(((WARMUP_MAX_MS + ctx.durationMs + 30_000) / 1000) * 50),
      maxMs: WARMUP_MAX_MS + ctx.durationMs + 30_000,
    });
    try {
      const w0 = performance.now();
      await sleep(ctx.warmupMs);
      await waitUntil(() => (delivered.value ?? 0) >= 2_000, { timeoutMs: Math.max(0, WARMUP_MAX_MS - (performance.now() - w0)), intervalMs: 50 });
      if (f.errors > 0) throw new Error(`${label}: publish errors in the warm-up; first: ${f.firstError?.stack ?? f.firstError}`);
      ctx.log(`    warm-up: ${delivered.value} deliveries, ${published} messages published in ${((performance.now() - w0) / 1000).toFixed(2)} s`);
      const st0 = daemon.get(`/egress_webhook/${ids[0]}/status`);
      const a = await snapshot(ctx, daemon);
      const pub0 = published;
      await sleep(ctx.durationMs);
      const b = await snapshot(ctx, daemon);
      const st1 = await daemon.get(`/egress_webhook/${ids[0]}/status`);
      const units = b.rs.requests - a.rs.requests;
      const m = between(a, b, {
        label,
        units,
        errors: f.errors,
        concurrency: hooks,
        more: {
          webhooks: hooks,
          publishedMessages: published - pub0,
          firstHookAdvanced: st1.next_deliver_offset - (await st0).next_deliver_offset,
          firstHookStatus: st1,
        },
      });
      ctx.log(`    ${describeWindow(m, 'messages')}`);
      ctx.log(`    published ${(published - pub0).toLocaleString('en-US')} messages in the window; webhook 1 cursor moved ${m.firstHookAdvanced} (next_deliver_offset ${st1.next_deliver_offset} of ${st1.available_offset + 1}); ${f.errors} publish errors`);
      return m;
    } finally {
      await f.stop();
      await delivered.stop();
    }
  });
  return makePoint({ scenario: 'egress-webhooks', point: `${hooks} webhook${hooks > 1 ? 's' : ''}`, unit: 'messages/s', subject, baseline });
}

export default {
  name: 'egress-webhooks',
  description: 'sluice serve, egress webhooks: 1 and 100 webhooks on one log, messages published in batches of 1,000, deliveries/s at the receiver vs undici POST c1 / c16',
  async run(ctx) {
    const bodies = messageBodies(8);
    return [
      await point(ctx, { hooks: 1, maxBacklogMessages: 20_000, baselineConcurrency: 1, bodies }),
      await point(ctx, { hooks: 100, maxBacklogMessages: 2_000, baselineConcurrency: 16, bodies }),
    ];
  },
};
