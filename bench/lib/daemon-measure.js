/**
 * Measuring a running `sluice serve` from outside: CPU and counter
 * snapshots, measurements over a window between two snapshots (in the shape
 * lib/measure.js gives, so run.js prints them), a feeder that publishes
 * with a bounded backlog, and bounded waits.
 *
 * CPU: this process (process.cpuUsage), the receiver (its stats), the daemon
 * (/proc/<pid>/stat, 10 ms ticks) and the whole machine (os.cpus()); what
 * none of the three used is other load ('other cpu' in the table).
 */
import os from 'node:os';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function cpuTicks() {
  let busy = 0;
  for (const c of os.cpus()) busy += c.times.user + c.times.nice + c.times.sys + c.times.irq;
  return busy;
}

/** A point in time: CPU of everyone, the receiver's counters, and `extra()` (e.g. the daemon's counters). */
export async function snapshot(ctx, daemon, extra) {
  const rs = await ctx.receiver.stats();
  const ex = extra ? await extra() : undefined;
  return {
    t: performance.now(),
    cpu: process.cpuUsage(),
    busy: cpuTicks(),
    rs,
    daemonUs: daemon ? (daemon.cpuUs() ?? 0) : 0,
    extra: ex,
  };
}

/**
 * A measurement between snapshots `a` and `b`, shaped like lib/measure.js's
 * (so run.js's table prints it), plus daemon CPU fields.
 *
 * @param {object} o
 * @param {string} o.label
 * @param {number} o.units        what the rate counts (records, messages) in the window
 * @param {number} [o.ops]        client ops in the window (default: units)
 * @param {number} [o.errors]
 * @param {number|null} [o.p50Ms]
 * @param {number|null} [o.p99Ms]
 * @param {object} [o.more]       extra fields for the JSON results
 */
export function between(a, b, o) {
  const elapsedMs = b.t - a.t;
  const benchUs = b.cpu.user + b.cpu.system - a.cpu.user - a.cpu.system;
  const recvUs = b.rs.cpuUserUs + b.rs.cpuSystemUs - a.rs.cpuUserUs - a.rs.cpuSystemUs;
  const daemonUs = b.daemonUs - a.daemonUs;
  const pct = (us) => (us / 1000 / elapsedMs) * 100;
  const machineBusyPct = ((b.busy - a.busy) / elapsedMs) * 100;
  const requests = b.rs.requests - a.rs.requests;
  const ops = o.ops ?? o.units;
  return {
    label: o.label,
    concurrency: o.concurrency ?? null,
    unitsPerOp: ops > 0 ? o.units / ops : 1,
    rate: o.units / (elapsedMs / 1000),
    opsPerSecond: ops / (elapsedMs / 1000),
    ops,
    units: o.units,
    errors: o.errors ?? 0,
    firstError: o.firstError ?? null,
    elapsedMs,
    p50Ms: o.p50Ms ?? null,
    p99Ms: o.p99Ms ?? null,
    clientCpuPct: pct(benchUs),
    cpuUsPerOp: ops > 0 ? benchUs / ops : null,
    receiverCpuPct: pct(recvUs),
    daemonCpuPct: pct(daemonUs),
    daemonCpuUsPerUnit: o.units > 0 ? daemonUs / o.units : null,
    machineBusyPct,
    otherCpuPct: Math.max(0, machineBusyPct - pct(benchUs) - pct(recvUs) - pct(daemonUs)),
    receiverRequests: requests,
    receiverBytesPerRequest: requests > 0 ? (b.rs.bytes - a.rs.bytes) / requests : 0,
    attempts: 1,
    keptAttempt: 1,
    ...(o.more ?? {}),
  };
}

/** A measurement for a figure that is not a rate (a time, a size): `value` goes in `rate`. */
export function figure(label, value, more = {}) {
  return {
    label,
    rate: value,
    opsPerSecond: value,
    ops: 0,
    errors: 0,
    elapsedMs: 0,
    p50Ms: null,
    p99Ms: null,
    clientCpuPct: 0,
    cpuUsPerOp: null,
    receiverCpuPct: 0,
    otherCpuPct: 0,
    receiverRequests: 0,
    receiverBytesPerRequest: 0,
    attempts: 1,
    keptAttempt: 1,
    ...more,
  };
}

export function describeWindow(m, unit) {
  return `${Math.round(m.rate).toLocaleString('en-US')} ${unit}/s over ${(m.elapsedMs / 1000).toFixed(1)} s; cpu: daemon ${m.daemonCpuPct.toFixed(0)}% (${m.daemonCpuUsPerUnit === null ? '-' : m.daemonCpuUsPerUnit.toFixed(0)} us/${unit.replace(/s$/, '')}), bench ${m.clientCpuPct.toFixed(0)}%, receiver ${m.receiverCpuPct.toFixed(0)}%, other ${m.otherCpuPct.toFixed(0)}%`;
}

/**
 * Poll `probe()` every `intervalMs` in the background; `value` is the latest
 * result. Bounded: it stops at `stop()` or after `maxMs`.
 */
export function poller(probe, { intervalMs = 50, maxMs = 15 * 60_000, initial = null } = {}) {
  const state = { value: initial, errors: 0, lastError: null, stopped: false };
  const t0 = performance.now();
  const done = (async () => {
    while (!state.stopped && performance.now() - t0 < maxMs) {
      try {
        state.value = await probe();
      } catch (err) {
        state.errors++;
        state.lastError = err;
      }
      await sleep(intervalMs);
    }
  })();
  state.stop = async () => {
    state.stopped = true;
    await done;
  };
  return state;
}

/**
 * Wait until `cond()` is true, polling every `intervalMs`, at most `timeoutMs`.
 * Resolves with the elapsed ms, or null on timeout.
 */
export async function waitUntil(cond, { timeoutMs, intervalMs = 20 }) {
  const t0 = performance.now();
  for (;;) {
    if (await cond()) return performance.now() - t0;
    if (performance.now() - t0 >= timeoutMs) return null;
    await sleep(intervalMs);
  }
}

/**
 * Publish with `concurrency` workers, each calling `publish(worker, n)`
 * (which resolves once the daemon accepted `unitsPerOp` units), while
 * `backlog()` (units accepted but not yet delivered) plus the units in
 * flight stays under `maxBacklog`. Bounded by `maxOps` and by `maxMs`;
 * `stop()` ends it (workers finish the op in hand).
 */
export function feeder({ concurrency, unitsPerOp, publish, backlog, maxBacklog, maxOps, maxMs, maxErrors = 20 }) {
  const st = {
    started: 0,
    acceptedOps: 0,
    errors: 0,
    firstError: null,
    inFlightUnits: 0,
    waits: 0,
    stopped: false,
    get acceptedUnits() {
      return st.acceptedOps * unitsPerOp;
    },
  };
  const t0 = performance.now();
  async function worker(w) {
    while (!st.stopped && st.started < maxOps && performance.now() - t0 < maxMs && st.errors < maxErrors) {
      if (backlog && backlog() + st.inFlightUnits >= maxBacklog) {
        st.waits++;
        await sleep(2);
        continue;
      }
      const n = st.started++;
      st.inFlightUnits += unitsPerOp;
      try {
        await publish(w, n);
        st.acceptedOps++;
      } catch (err) {
        st.errors++;
        st.firstError ??= err;
      } finally {
        st.inFlightUnits -= unitsPerOp;
      }
    }
  }
  const done = Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  st.done = done;
  st.stop = async () => {
    st.stopped = true;
    await done;
  };
  return st;
}

/** p-th quantile (0..1) of a sorted numeric array. */
export function quantile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/**
 * With ctx.waitQuietMs (run.js --wait-quiet S), wait up to that long for a
 * 1 s window in which the whole machine was busy under 15 % of one core
 * (call it while the benchmark itself is idle, before starting a daemon).
 */
export async function waitQuiet(ctx) {
  if (!(ctx.waitQuietMs > 0)) return true;
  const t0 = performance.now();
  let waited = false;
  for (let check = 0; check < Math.ceil(ctx.waitQuietMs / 1000) && performance.now() - t0 < ctx.waitQuietMs; check++) {
    const a = cpuTicks();
    const w0 = performance.now();
    await sleep(1_000);
    const busyPct = ((cpuTicks() - a) / (performance.now() - w0)) * 100;
    if (busyPct < 15) {
      if (waited) ctx.log(`    machine quiet after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      return true;
    }
    if (!waited) ctx.log(`    waiting up to ${(ctx.waitQuietMs / 1000).toFixed(0)} s for other load (${busyPct.toFixed(0)}% of a core) to stop ...`);
    waited = true;
  }
  ctx.log('    the machine did not become quiet; measuring anyway');
  return false;
}
