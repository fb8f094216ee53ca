/**
 * The measuring loop shared by all scenarios.
 *
 * `runLoop` starts `concurrency` workers that each call `op(worker, n)` in a
 * loop. Every loop is bounded twice: by time (no new op starts after the
 * deadline) and by count (no more than `maxOps` ops in total), and it stops
 * after `maxErrors` failures. A guard timer rejects if the workers have not
 * all returned `graceMs` after the deadline (an op that hangs), so a run can
 * never wait forever.
 *
 * `measure` wraps it for one side of a benchmark point: optional
 * verification (one op with the receiver parsing bodies and counting
 * records), a warm-up (a minimum time and a minimum op count), a reset of the
 * receiver's counters, the timed run, and the figures: rate, latency
 * percentiles, CPU use of this process (also per op) and of the receiver
 * process, and the load that other processes put on the machine meanwhile.
 * This machine is shared: with ctx.waitQuietMs it waits for a quiet machine
 * before a timed run, and with ctx.retries it repeats a run that other load
 * disturbed, keeping the cleanest.
 */

import os from 'node:os';

/** Busy and total CPU time over all cores, in ms (os.cpus(), 10 ms ticks). */
function cpuTicks() {
  let busy = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    const all = t.user + t.nice + t.sys + t.idle + t.irq;
    total += all;
    busy += all - t.idle;
  }
  return { busy, total };
}

/** No op rate on this machine comes close: this only makes the count bound explicit. */
export const MAX_OPS_PER_SECOND = 250_000;
const MAX_LATENCY_SAMPLES = 1_000_000;
const DEFAULT_GRACE_MS = 15_000;
const DEFAULT_MAX_ERRORS = 100;
/** Longest warm-up, whatever spec.warmupOps asks for. */
export const WARMUP_MAX_MS = 15_000;
/** Other load (in % of one core) above which a measurement is flagged. */
export const OTHER_LOAD_WARN_PCT = 15;

/**
 * @param {object} o
 * @param {number} o.concurrency
 * @param {number} o.durationMs
 * @param {number} [o.minOps]         keep going past durationMs until this many ops have started...
 * @param {number} [o.maxDurationMs]  ...but never past this (warm-up of slow ops)
 * @param {number} [o.maxOps]         count bound (default: MAX_OPS_PER_SECOND x the longest duration)
 * @param {(worker: number, n: number) => Promise<unknown>} o.op
 * @param {boolean} [o.latencies]
 * @param {number} [o.graceMs]
 * @param {number} [o.maxErrors]
 */
export async function runLoop({ concurrency, durationMs, minOps = 0, maxDurationMs = durationMs, maxOps, op, latencies = false, graceMs = DEFAULT_GRACE_MS, maxErrors = DEFAULT_MAX_ERRORS }) {
  const hardMs = Math.max(durationMs, maxDurationMs);
  const limit = maxOps ?? Math.ceil((hardMs / 1000) * MAX_OPS_PER_SECOND) + concurrency;
  const samples = latencies ? new Float64Array(Math.min(limit, MAX_LATENCY_SAMPLES)) : null;
  let started = 0;
  let completed = 0;
  let errors = 0;
  let firstError = null;
  let stop = false;
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  const hardDeadline = t0 + hardMs;
  const more = () => {
    const now = performance.now();
    return now < deadline || (started < minOps && now < hardDeadline);
  };

  async function worker(w) {
    while (!stop && started < limit && more()) {
      const n = started++;
      const s = performance.now();
      try {
        await op(w, n);
        if (samples !== null && completed < samples.length) samples[completed] = performance.now() - s;
        completed++;
      } catch (err) {
        errors++;
        firstError ??= err;
        if (errors >= maxErrors) stop = true;
      }
    }
  }

  let guardTimer;
  const guard = new Promise((_, reject) => {
    guardTimer = setTimeout(() => {
      stop = true;
      reject(new Error(`loop did not stop within ${graceMs} ms after its deadline (${started - completed - errors} ops still in flight)`));
    }, hardMs + graceMs);
  });
  try {
    await Promise.race([Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w))), guard]);
  } finally {
    clearTimeout(guardTimer);
  }
  const elapsedMs = performance.now() - t0;

  let p50Ms = null;
  let p99Ms = null;
  if (samples !== null && completed > 0) {
    const sorted = samples.slice(0, Math.min(completed, samples.length)).sort();
    p50Ms = sorted[Math.floor(sorted.length * 0.5)];
    p99Ms = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))];
  }
  return { completed, errors, firstError, elapsedMs, p50Ms, p99Ms, hitCountLimit: started >= limit };
}

/**
 * Measure one side of a point (the subject or its baseline).
 *
 * @param {object} ctx  the context run.js hands to scenarios
 * @param {object} spec
 * @param {string} spec.label          e.g. "lua connection:send"
 * @param {number} spec.concurrency
 * @param {number} [spec.unitsPerOp]   records per op (1 for single sends, 100 for a batch)
 * @param {number} [spec.warmupOps]    minimum ops in the warm-up (bounded by WARMUP_MAX_MS)
 * @param {string} [spec.unit]         what the rate counts, for the log line ("calls", "records")
 * @param {(worker: number, n: number) => Promise<unknown>} spec.op
 * @param {{records: number, check?: (result: unknown) => void}} [spec.verify]
 *   run one op with the receiver counting records and require exactly `records`
 */
export async function measure(ctx, spec) {
  const { receiver } = ctx;
  const unitsPerOp = spec.unitsPerOp ?? 1;
  ctx.log(`  ${spec.label} (concurrency ${spec.concurrency}) ...`);

  if (spec.verify) {
    await receiver.setParse(true);
    await receiver.reset();
    const result = await spec.op(0, 0);
    spec.verify.check?.(result);
    const st = await receiver.setParse(false);
    if (st.requests !== 1 || st.records !== spec.verify.records || st.parseErrors !== 0) {
      throw new Error(`${spec.label}: verification failed: the receiver saw ${st.requests} request(s), ${st.records} record(s), ${st.parseErrors} parse error(s); expected 1 request with ${spec.verify.records} record(s)`);
    }
  }

  if (ctx.warmupMs > 0) {
    // At least warmupMs and spec.warmupOps ops (the JIT needs ops, not
    // seconds: a slow op gets few in a short warm-up), at most WARMUP_MAX_MS.
    const w = await runLoop({
      concurrency: spec.concurrency,
      durationMs: ctx.warmupMs,
      minOps: spec.warmupOps ?? 0,
      maxDurationMs: Math.max(ctx.warmupMs, WARMUP_MAX_MS),
      op: spec.op,
    });
    ctx.log(`    warm-up: ${w.completed} ops in ${(w.elapsedMs / 1000).toFixed(2)} s`);
    if (w.errors > 0) throw new Error(`${spec.label}: ${w.errors} error(s) during warm-up; first: ${w.firstError?.stack ?? w.firstError}`);
  }

  // The timed run; repeated (up to ctx.retries more times, each after
  // waiting for a quiet machine) while other processes loaded the machine.
  // The cleanest attempt is kept.
  let best = null;
  const maxAttempts = 1 + (ctx.retries ?? 0);
  let made = 0;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    if (ctx.waitQuietMs > 0) await waitQuiet(ctx);
    const m = await timedRun(ctx, spec, unitsPerOp);
    made = attempt;
    m.keptAttempt = attempt;
    const dirty = m.otherCpuPct > OTHER_LOAD_WARN_PCT;
    ctx.log(`    ${fmtRate(m.rate)} ${spec.unit ?? 'ops'}/s  (${m.ops} ops in ${(m.elapsedMs / 1000).toFixed(2)} s, p50 ${fmtMs(m.p50Ms)} p99 ${fmtMs(m.p99Ms)} ms, cpu ${m.clientCpuPct.toFixed(0)}% + receiver ${m.receiverCpuPct.toFixed(0)}% + other ${m.otherCpuPct.toFixed(0)}%)${dirty ? ' NOT CLEAN: other processes were busy' : ''}`);
    if (best === null || m.otherCpuPct < best.otherCpuPct) best = m;
    if (!dirty) break;
  }
  best.attempts = made;
  return best;
}

async function timedRun(ctx, spec, unitsPerOp) {
  const { receiver } = ctx;
  const rs0 = await receiver.reset();
  const sys0 = cpuTicks();
  const cpu0 = process.cpuUsage();
  const r = await runLoop({ concurrency: spec.concurrency, durationMs: ctx.durationMs, op: spec.op, latencies: true });
  const cpu = process.cpuUsage(cpu0);
  const sys1 = cpuTicks();
  const rs = await receiver.stats();

  if (r.errors > 0) ctx.log(`    ${r.errors} error(s); first: ${r.firstError?.stack ?? r.firstError}`);
  const clientCpuPct = ((cpu.user + cpu.system) / 1000 / r.elapsedMs) * 100;
  const receiverCpuPct = ((rs.cpuUserUs + rs.cpuSystemUs - rs0.cpuUserUs - rs0.cpuSystemUs) / 1000 / rs.sinceMs) * 100;
  // All cores' busy time over the run, in % of one core; what neither the
  // bench nor the receiver used is other load on the machine.
  const machineBusyPct = ((sys1.busy - sys0.busy) / r.elapsedMs) * 100;
  return {
    label: spec.label,
    concurrency: spec.concurrency,
    unitsPerOp,
    rate: (r.completed * unitsPerOp) / (r.elapsedMs / 1000),
    opsPerSecond: r.completed / (r.elapsedMs / 1000),
    ops: r.completed,
    errors: r.errors,
    firstError: r.firstError ? String(r.firstError.message ?? r.firstError) : null,
    elapsedMs: r.elapsedMs,
    hitCountLimit: r.hitCountLimit,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    clientCpuPct,
    // CPU time of this process per op: less sensitive to other load than the rate.
    cpuUsPerOp: r.completed > 0 ? (cpu.user + cpu.system) / r.completed : null,
    receiverCpuPct,
    machineBusyPct,
    otherCpuPct: Math.max(0, machineBusyPct - clientCpuPct - receiverCpuPct),
    receiverRequests: rs.requests,
    receiverBytesPerRequest: rs.requests > 0 ? rs.bytes / rs.requests : 0,
    attempts: 1,
    keptAttempt: 1,
  };
}

/**
 * Wait (at most ctx.waitQuietMs) for a 1 s window in which the whole machine
 * was busy less than OTHER_LOAD_WARN_PCT of one core; the benchmark is idle
 * meanwhile, so all of that is other load.
 */
async function waitQuiet(ctx) {
  const t0 = performance.now();
  let waited = false;
  const maxChecks = Math.ceil(ctx.waitQuietMs / 1000);
  for (let check = 0; check < maxChecks && performance.now() - t0 < ctx.waitQuietMs; check++) {
    const a = cpuTicks();
    const w0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const busyPct = ((cpuTicks().busy - a.busy) / (performance.now() - w0)) * 100;
    if (busyPct < OTHER_LOAD_WARN_PCT) {
      if (waited) ctx.log(`    machine quiet after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      return true;
    }
    if (!waited) ctx.log(`    waiting up to ${(ctx.waitQuietMs / 1000).toFixed(0)} s for other load (${busyPct.toFixed(0)}% of a core) to stop ...`);
    waited = true;
  }
  ctx.log('    the machine did not become quiet; measuring anyway');
  return false;
}

export function fmtRate(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '-';
  return Math.round(x).toLocaleString('en-US');
}

export function fmtMs(x) {
  return x === null || x === undefined ? '-' : x < 10 ? x.toFixed(2) : x.toFixed(1);
}

/**
 * One row of the results: the subject measured against its baseline.
 * `ratio` is subject rate / baseline rate (null without a baseline).
 */
export function makePoint({ scenario, point, unit, subject, baseline }) {
  return {
    scenario,
    point,
    unit,
    rate: subject.rate,
    baselineLabel: baseline ? baseline.label : null,
    baselineRate: baseline ? baseline.rate : null,
    ratio: baseline && baseline.rate > 0 ? subject.rate / baseline.rate : null,
    subject,
    baseline,
  };
}
