/**
 * daemon-inject (issue 7 f): a real `sluice serve` whose policy has two
 * new_json log hooks (both to the bench receiver, WEBHOOK_URL /hook1 and
 * /hook2) and a maildir catch-all get_queue_config (a temp dir). POST
 * /api/inject/v1 with one message (one recipient, ~600-byte content) per
 * request, 16 concurrent clients: messages/s accepted (the 200 comes once
 * the message is durable). Each accepted message then makes a Reception
 * record and, once written to the maildir, a Delivery record, each queued for
 * both hooks (4 webhook deliveries per message); the receiver's deliveries
 * and the daemon's queue depth over the window are reported alongside.
 * Baseline: undici single ~600-byte POST c16 to the receiver.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Pool } from 'undici';
import { baselineClient } from '../lib/baseline.js';
import { makePoint, measure, runLoop } from '../lib/measure.js';
import { logRecord } from '../lib/records.js';
import { withDaemon, tempDir, removeDir } from '../lib/daemon.js';
import { between, describeWindow, snapshot, waitQuiet } from '../lib/daemon-measure.js';

const POLICY = `local log_hooks = require 'policy-extras.log_hooks'
local base = os.getenv 'WEBHOOK_BASE'
log_hooks:new_json { name = 'hook1', url = base .. '/hook1' }
log_hooks:new_json { name = 'hook2', url = base .. '/hook2' }
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { maildir_path = os.getenv 'MAILDIR' } }
end)
`;
const CONCURRENCY = 16;
const WARMUP_MIN_OPS = 2_000;

function injectBodies(n) {
  const text = 'Hello,\r\n\r\nThis is the weekly summary you asked for. '.repeat(8);
  return Array.from({ length: n }, (_, i) => JSON.stringify({
    envelope_sender: 'bounce@example.com',
    recipients: [{ email: `user${i}@example.net` }],
    content: `From: news@example.com\r\nTo: user${i}@example.net\r\nSubject: Your weekly summary\r\nX-Customer-ID: cust-${10_000 + i}\r\n\r\n${text}\r\n`,
  }));
}

export default {
  name: 'daemon-inject',
  description: `sluice serve, POST /api/inject/v1 one message per request c${CONCURRENCY}, two new_json hooks + maildir: messages/s accepted vs undici single POST c${CONCURRENCY}`,
  async run(ctx) {
    let baseline = null;
    if (ctx.baseline) {
      const bodies = Array.from({ length: 64 }, (_, i) => JSON.stringify(logRecord(4_000_000 + i)));
      const client = baselineClient(ctx.receiver.origin, CONCURRENCY);
      try {
        baseline = await measure(ctx, {
          label: `undici Pool POST 1 record c${CONCURRENCY}`,
          concurrency: CONCURRENCY,
          unit: 'requests',
          warmupOps: 5_000,
          op: (_w, n) => client.post('/log', bodies[n % bodies.length]),
          verify: { records: 1 },
        });
      } finally {
        await client.close();
      }
    }

    const maildir = tempDir('bench-daemon-maildir-');
    const bodies = injectBodies(256);
    await waitQuiet(ctx);
    try {
      const subject = await withDaemon({ policy: POLICY, env: { WEBHOOK_BASE: ctx.receiver.origin, MAILDIR: maildir }, log: ctx.log }, async (daemon) => {
        ctx.log(`  sluice inject c${CONCURRENCY}: daemon pid ${daemon.pid} ready in ${daemon.startMs.toFixed(0)} ms`);
        const pool = new Pool(daemon.origin, { connections: CONCURRENCY, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 30_000, bodyTimeout: 30_000 });
        const op = async (_w, n) => {
          const res = await pool.request({ path: '/api/inject/v1', method: 'POST', headers: { 'content-type': 'application/json' }, body: bodies[n % bodies.length] });
          const text = await res.body.text();
          if (res.statusCode !== 200) throw new Error(`inject: ${res.statusCode} ${text.slice(0, 200)}`);
          if (!text.includes('"success_count":1')) throw new Error(`inject: ${text.slice(0, 200)}`);
        };
        try {
          // Verify: one message ends up in the maildir and makes 2 records x 2 hooks at the receiver.
          await ctx.receiver.setParse(true);
          await ctx.receiver.reset();
          await op(0, 0);
          const t0 = performance.now();
          let st;
          while (performance.now() - t0 < 15_000) {
            st = await ctx.receiver.stats();
            if (st.records >= 4) break;
            await new Promise((r) => setTimeout(r, 20));
          }
          await ctx.receiver.setParse(false);
          const files = fs.readdirSync(path.join(maildir, 'new')).length;
          if (st.records !== 4 || files !== 1) throw new Error(`inject verification failed: ${st.records} hook deliveries (expected 4), ${files} maildir files (expected 1); stderr:\n${daemon.stderrTail()}`);
          ctx.log(`    verified: 1 maildir file, 4 hook deliveries in ${(performance.now() - t0).toFixed(0)} ms`);

          const w = await runLoop({ concurrency: CONCURRENCY, durationMs: ctx.warmupMs, minOps: WARMUP_MIN_OPS, maxDurationMs: 15_000, op });
          if (w.errors > 0) throw new Error(`inject warm-up: ${w.errors} errors; first: ${w.firstError?.stack ?? w.firstError}`);
          ctx.log(`    warm-up: ${w.completed} ops in ${(w.elapsedMs / 1000).toFixed(2)} s`);
          const qa = await daemon.queueTotals();
          const a = await snapshot(ctx, daemon);
          const r = await runLoop({ concurrency: CONCURRENCY, durationMs: ctx.durationMs, op, latencies: true });
          const b = await snapshot(ctx, daemon);
          const qb = await daemon.queueTotals();
          const depth = (q) => q.scheduled + q.ready + q.in_flight;
          const m = between(a, b, {
            label: `sluice inject, 2 hooks + maildir, c${CONCURRENCY}`,
            units: r.completed,
            ops: r.completed,
            errors: r.errors,
            firstError: r.firstError ? String(r.firstError.message ?? r.firstError) : null,
            p50Ms: r.p50Ms,
            p99Ms: r.p99Ms,
            concurrency: CONCURRENCY,
            more: {
              hookDeliveries: b.rs.requests - a.rs.requests,
              queueDepthBefore: depth(qa),
              queueDepthAfter: depth(qb),
              deliveredInWindow: qb.delivered - qa.delivered,
            },
          });
          // The rate is accepted messages; receiver requests are hook deliveries (not this loop's ops).
          ctx.log(`    ${describeWindow(m, 'messages')}`);
          ctx.log(`    accept p50 ${r.p50Ms?.toFixed(2)} p99 ${r.p99Ms?.toFixed(2)} ms; ${r.errors} errors; in the window: ${m.hookDeliveries} hook deliveries, ${m.deliveredInWindow} deliveries (maildir + hooks); queue depth ${m.queueDepthBefore} -> ${m.queueDepthAfter}`);
          if (r.errors > 0) ctx.log(`    first error: ${r.firstError?.stack ?? r.firstError}`);
          return m;
        } finally {
          await pool.close();
        }
      });
      return [makePoint({ scenario: 'daemon-inject', point: `c${CONCURRENCY}, 1 msg/request`, unit: 'messages/s', subject, baseline })];
    } finally {
      removeDir(maildir);
    }
  },
};
