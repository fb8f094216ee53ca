/**
 * daemon-latency (issue 7 c): a real `sluice serve` running the quickstart
 * policy (one new_json hook, unbatched), fed 1,000 records/s, one record per
 * POST /api/log-records/v1 at a steady pace, for 30 s (10 s under --quick)
 * after 5 s at the same pace that are not counted (a cold daemon needs about
 * 3 s of JIT warm-up before it keeps up). Each record's id is
 * `lat-<seq>`; the publisher notes when it sent each request and when the
 * 200 came back (accept), and a receiver of our own in a worker thread
 * (lib/stamp-receiver.js; WEBHOOK_URL points at it) notes when each record
 * arrived, all on CLOCK_MONOTONIC. Reported: p50/p99/max from accept to
 * receipt (a record that arrived before the publisher saw its 200 counts as
 * 0; how many did is reported), send to receipt, and send to accept.
 * Acceptance waits for the spool's fsync: an fsync probe on the daemon's
 * file system runs alongside and its p50/p99/max are reported, so a slow
 * disk during the run shows as such.
 * Baseline: undici POSTing the same records at the same pace straight to the
 * same receiver (send to receipt), for at most 10 s.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { makePoint } from '../lib/measure.js';
import { logRecord } from '../lib/records.js';
import { withDaemon, tempDir, removeDir } from '../lib/daemon.js';
import { figure, quantile, sleep, snapshot, between, waitQuiet, waitUntil } from '../lib/daemon-measure.js';
import { startStampReceiver } from '../lib/stamp-receiver.js';
import { startFsyncProbe } from '../lib/fsync-probe.js';

const POLICY = fs.readFileSync(fileURLToPath(new URL('../../examples/quickstart/init.lua', import.meta.url)), 'utf8');
const RATE = 1_000;
const WARMUP_S = 5;
const MAX_IN_FLIGHT = 2_000;

const nowNs = () => Number(process.hrtime.bigint());

function body(seq) {
  const r = logRecord(seq);
  r.id = `lat-${seq}`;
  return JSON.stringify(r);
}

/**
 * Send `total` requests at RATE/s; `post(seq, body)` resolves on the 200.
 * Returns send and reply times (ns) per seq.
 */
async function paced(total, post) {
  const sendNs = new Float64Array(total);
  const replyNs = new Float64Array(total);
  let next = 0;
  let inFlight = 0;
  let errors = 0;
  let firstError = null;
  let skippedTicks = 0;
  const t0 = performance.now();
  const hardDeadline = t0 + (total / RATE) * 1000 + 30_000;
  while (next < total && performance.now() < hardDeadline) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * RATE) / 1000) + 1);
    while (next < due) {
      if (inFlight >= MAX_IN_FLIGHT) {
        skippedTicks++;
        break;
      }
      const seq = next++;
      inFlight++;
      sendNs[seq] = nowNs();
      post(seq, body(seq)).then(
        () => {
          replyNs[seq] = nowNs();
          inFlight--;
        },
        (err) => {
          errors++;
          firstError ??= err;
          inFlight--;
        },
      );
    }
    await sleep(1);
  }
  await waitUntil(() => inFlight === 0, { timeoutMs: 30_000, intervalMs: 5 });
  return { sendNs, replyNs, sent: next, errors, firstError, skippedTicks, elapsedMs: performance.now() - t0 };
}

function stats(values) {
  const sorted = Float64Array.from(values).sort();
  return { n: sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.length ? sorted[sorted.length - 1] : null };
}

/** Latencies (ms) of seqs >= from: arrival - start[seq] (clamped at 0, counting the negatives). */
function latencies(arr, startNs, from, total) {
  const out = [];
  let negative = 0;
  const seen = new Uint8Array(total);
  let duplicates = 0;
  for (let i = 0; i < arr.seqs.length; i++) {
    const seq = arr.seqs[i];
    if (seq >= total) continue;
    if (seen[seq]) {
      duplicates++;
      continue;
    }
    seen[seq] = 1;
    if (seq < from || startNs[seq] === 0) continue;
    const ms = (arr.times[i] - startNs[seq]) / 1e6;
    if (ms < 0) negative++;
    out.push(Math.max(0, ms));
  }
  let missing = 0;
  for (let s = from; s < total; s++) if (!seen[s]) missing++;
  return { ...stats(out), negative, missing, duplicates };
}

const fmt = (s) => `p50 ${s.p50?.toFixed(2)} p99 ${s.p99?.toFixed(2)} max ${s.max?.toFixed(1)} ms (n ${s.n})`;

export default {
  name: 'daemon-latency',
  description: `sluice serve, quickstart new_json hook: ${RATE} records/s one per request for 30 s (10 s --quick); p50/p99/max from accept (200) to receipt`,
  async run(ctx) {
    const seconds = ctx.quick ? 10 : 30;
    const total = RATE * (WARMUP_S + seconds);
    const from = RATE * WARMUP_S;
    const recv = await startStampReceiver();
    try {
      // Baseline: undici straight to the stamp receiver, same pace, at most 10 s.
      let base = null;
      if (ctx.baseline) {
        const bTotal = RATE * (WARMUP_S + Math.min(seconds, 10));
        ctx.log(`  baseline: undici POST 1 record at ${RATE}/s to the stamp receiver for ${bTotal / RATE - WARMUP_S} s ...`);
        const pool = new Pool(recv.origin, { connections: 64, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 10_000, bodyTimeout: 10_000 });
        try {
          await recv.arrivals(true);
          const r = await paced(bTotal, async (_seq, b) => {
            const res = await pool.request({ path: '/log', method: 'POST', headers: { 'content-type': 'application/json' }, body: b });
            await res.body.text();
            if (res.statusCode !== 200) throw new Error(`baseline: status ${res.statusCode}`);
          });
          const arr = await recv.arrivals(true);
          const lat = latencies(arr, r.sendNs, from, bTotal);
          const rt = stats(Array.from({ length: bTotal - from }, (_, i) => (r.replyNs[from + i] - r.sendNs[from + i]) / 1e6));
          ctx.log(`    send->receipt ${fmt(lat)}; send->reply ${fmt(rt)}; ${r.errors} errors, ${lat.missing} missing`);
          base = { lat, rt, rate: (bTotal - from - lat.missing) / ((r.elapsedMs / 1000) * ((bTotal - from) / bTotal)) };
        } finally {
          await pool.close();
        }
      }

      const maildir = tempDir('bench-daemon-maildir-');
      await waitQuiet(ctx);
      try {
        return await withDaemon({ policy: POLICY, env: { WEBHOOK_URL: recv.url('/log'), MAILDIR: maildir }, log: ctx.log }, async (daemon) => {
          ctx.log(`  sluice new_json at ${RATE}/s for ${seconds} s after ${WARMUP_S} s warm-up: daemon pid ${daemon.pid} ready in ${daemon.startMs.toFixed(0)} ms`);
          await recv.arrivals(true);
          const s0 = await snapshot(ctx, daemon);
          const probe = await startFsyncProbe(daemon.dataDir);
          let warmSnap = null;
          const r = await paced(total, (seq, b) => {
            if (seq === from && warmSnap === null) warmSnap = snapshot(ctx, daemon);
            return daemon.post('/api/log-records/v1', b);
          });
          const accepted = total - r.errors;
          const disk = await probe.stop();
          const drained = await waitUntil(async () => (await recv.arrivals(false)).seqs.length >= accepted, { timeoutMs: 30_000, intervalMs: 100 });
          const s1 = await snapshot(ctx, daemon);
          const arr = await recv.arrivals(true);
          if (r.errors > 0) ctx.log(`    ${r.errors} publish error(s); first: ${r.firstError?.stack ?? r.firstError}`);
          const acc = latencies(arr, r.replyNs, from, total);
          const snd = latencies(arr, r.sendNs, from, total);
          const rt = stats(Array.from({ length: total - from }, (_, i) => (r.replyNs[from + i] - r.sendNs[from + i]) / 1e6).filter((x) => x >= 0));
          ctx.log(`    accept->receipt ${fmt(acc)}; ${acc.negative} arrived before their 200 was read (counted as 0)`);
          ctx.log(`    send->receipt ${fmt(snd)}; send->accept ${fmt(rt)}`);
          ctx.log(`    disk: a 4 KiB write + fsync every 50 ms beside the spool took ${fmt(disk)}; ${disk.over100} over 100 ms`);
          ctx.log(`    ${acc.missing} missing${drained === null ? ' (not all arrived within 30 s)' : ''}, ${acc.duplicates} duplicates, ${r.skippedTicks} pacing ticks skipped (in-flight cap), published ${r.sent} in ${(r.elapsedMs / 1000).toFixed(1)} s`);
          const w = between(await (warmSnap ?? s0), s1, {
            label: `sluice new_json, ${RATE}/s x1 publish`,
            units: total - from - acc.missing,
            ops: total - from,
            errors: r.errors,
            p50Ms: acc.p50,
            p99Ms: acc.p99,
            more: { maxMs: acc.max, acceptToReceipt: acc, sendToReceipt: snd, sendToAccept: rt, skippedTicks: r.skippedTicks, fsyncProbe: disk },
          });
          // The window runs to the end of the drain: the rate is records delivered over it.
          ctx.log(`    cpu over the run: daemon ${w.daemonCpuPct.toFixed(0)}% (${w.daemonCpuUsPerUnit?.toFixed(0)} us/record), bench ${w.clientCpuPct.toFixed(0)}%, other ${w.otherCpuPct.toFixed(0)}%`);
          const bl = (label, rate, p50, p99) => (base ? figure(label, rate, { p50Ms: p50, p99Ms: p99 }) : null);
          const subjectFig = (label, v) => figure(label, v, { p50Ms: acc.p50, p99Ms: acc.p99, daemonCpuPct: w.daemonCpuPct });
          const points = [
            makePoint({ scenario: 'daemon-latency', point: `${RATE}/s delivered`, unit: 'records/s', subject: w, baseline: base ? bl(`undici POST ${RATE}/s to receiver`, base.rate, base.lat.p50, base.lat.p99) : null }),
          ];
          for (const [q, key] of [['p50', 'p50'], ['p99', 'p99'], ['max', 'max']]) {
            points.push(makePoint({
              scenario: 'daemon-latency',
              point: `accept->receipt ${q}`,
              unit: 'us',
              subject: subjectFig(`accept->receipt ${q}`, acc[key] * 1000),
              baseline: base ? bl(`undici send->receipt ${q}`, base.lat[key] * 1000, base.lat.p50, base.lat.p99) : null,
            }));
          }
          for (const [q, key] of [['p50', 'p50'], ['p99', 'p99'], ['max', 'max']]) {
            points.push(makePoint({
              scenario: 'daemon-latency',
              point: `send->accept ${q}`,
              unit: 'us',
              subject: figure(`send->accept ${q} (the 200 waits for the spool's fsync)`, rt[key] * 1000),
              baseline: base ? bl(`undici send->reply ${q}`, base.rt[key] * 1000, base.rt.p50, base.rt.p99) : null,
            }));
          }
          points.push(makePoint({
            scenario: 'daemon-latency',
            point: 'disk fsync p99',
            unit: 'us',
            subject: figure(`4 KiB write + fsync beside the spool, p99 (max ${disk.max?.toFixed(0)} ms, ${disk.over100} over 100 ms)`, disk.p99 * 1000),
            baseline: null,
          }));
          return points;
        });
      } finally {
        removeDir(maildir);
      }
    } finally {
      await recv.stop();
    }
  },
};
