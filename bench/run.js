#!/usr/bin/env node
/**
 * sluice benchmarks: `npm run bench` (builds dist/ first) or `node bench/run.js`.
 *
 *   node bench/run.js [--quick] [--only NAME] [--seconds N] [--no-baseline]
 *                     [--wait-quiet S] [--retries N] [--out FILE] [--list]
 *
 *   --quick        ~2 s per measured point (0.5 s warm-up); default ~10 s (1 s warm-up)
 *   --only NAME    run one scenario (repeatable); names below
 *   --seconds N    override the time per point
 *   --no-baseline  skip the baselines (e.g. under --cpu-prof, to profile only the subject)
 *   --wait-quiet S before each timed run, wait up to S seconds for other processes'
 *                  load to fall below 15% of a core (default 0: do not wait)
 *   --retries N    repeat a timed run up to N more times when other load was
 *                  above 15% of a core during it, keeping the cleanest (default 0)
 *   --out FILE     where to write the JSON results
 *                  (default: <os.tmpdir()>/bench-results/sluice-latest.json)
 *   --list         list the scenarios and exit
 *
 * It starts bench/receiver.js in a child process (HTTP on 127.0.0.1 only),
 * runs each scenario, each point with its baseline measured in the same run
 * right before it, prints a table and writes the JSON results.
 *
 * A scenario is one file in bench/scenarios/ whose default export is
 * `{ name, description, run(ctx) -> Promise<point[]> }` (points made with
 * lib/measure.js makePoint). To add one, create the file and add it to
 * SCENARIO_FILES below. `ctx` holds:
 *   receiver     { origin, url(path), port, pid, stats(), reset(), setParse(on) }
 *   durationMs   time per measured point;  warmupMs  warm-up per point
 *   baseline     false under --no-baseline
 *   quick        whether --quick was given
 *   log(msg)     progress line on stderr
 * and scenarios call `measure(ctx, spec)` from lib/measure.js for each side
 * of a point.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startReceiverProcess } from './lib/receiver-process.js';
import { fmtMs, fmtRate, OTHER_LOAD_WARN_PCT } from './lib/measure.js';

/** Run order. One file per scenario under bench/scenarios/. */
const SCENARIO_FILES = ['lua-send.js', 'lua-send-batch.js', 'daemon-hook-json.js', 'daemon-hook-batch.js', 'daemon-latency.js', 'daemon-backlog.js', 'egress-webhooks.js', 'daemon-inject.js'];

/** Hard stop for the whole run, whatever happens: this per scenario, plus waits and retries. */
const MAX_SCENARIO_MS = 10 * 60_000;
const MAX_MEASUREMENTS_PER_SCENARIO = 8;

/** Not a `sluice-*` entry of the temp dir: a clean-up of such entries by another process once removed results from there. */
const DEFAULT_OUT = path.join(os.tmpdir(), 'bench-results', 'sluice-latest.json');

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function usage(msg) {
  if (msg) process.stderr.write(`${msg}\n`);
  process.stderr.write('usage: node bench/run.js [--quick] [--only NAME] [--seconds N] [--no-baseline] [--wait-quiet S] [--retries N] [--out FILE] [--list]\n');
  process.exit(msg ? 2 : 0);
}

function machineInfo() {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? 'unknown CPU';
  return {
    cpuModel: model,
    cpuCount: cpus.length,
    totalMemBytes: os.totalmem(),
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavg: os.loadavg(),
  };
}

function machineLine(m) {
  return `machine: ${m.cpuModel} x ${m.cpuCount} CPUs, ${(m.totalMemBytes / 2 ** 30).toFixed(1)} GiB RAM, Node ${m.node}, ${m.platform}, load ${m.loadavg.map((x) => x.toFixed(2)).join(' ')}`;
}

function table(headers, rows, rightAlign) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (rightAlign[i] ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function printResults(points, failures) {
  const main = points.map((p) => [
    p.scenario,
    p.point,
    p.unit,
    fmtRate(p.rate),
    p.baselineLabel ?? '-',
    fmtRate(p.baselineRate),
    p.ratio === null ? '-' : p.ratio.toFixed(3),
  ]);
  console.log(table(['scenario', 'point', 'unit', 'rate', 'baseline', 'baseline rate', 'ratio'], main, [false, false, false, true, false, true, true]));
  console.log('');
  const details = [];
  for (const p of points) {
    for (const [side, m] of [['subject', p.subject], ['baseline', p.baseline]]) {
      if (!m) continue;
      details.push([
        `${p.scenario} ${p.point}`,
        side,
        m.label,
        fmtRate(m.opsPerSecond),
        `${fmtMs(m.p50Ms)} / ${fmtMs(m.p99Ms)}`,
        `${m.clientCpuPct.toFixed(0)}%`,
        m.cpuUsPerOp == null ? '-' : m.cpuUsPerOp.toFixed(m.cpuUsPerOp < 100 ? 1 : 0),
        `${m.receiverCpuPct.toFixed(0)}%`,
        `${m.otherCpuPct.toFixed(0)}%${m.otherCpuPct > OTHER_LOAD_WARN_PCT ? ' !' : ''}`,
        Math.round(m.receiverBytesPerRequest).toLocaleString('en-US'),
        `${m.ops}/${m.receiverRequests}`,
        m.errors,
        m.attempts > 1 ? `${m.keptAttempt} of ${m.attempts}` : '1',
      ]);
    }
  }
  console.log(table(
    ['point', 'side', 'what', 'calls/s', 'p50/p99 ms', 'bench cpu', 'cpu us/call', 'recv cpu', 'other cpu', 'B/req', 'ops/recv req', 'errors', 'kept try'],
    details,
    [false, false, false, true, true, true, true, true, true, true, true, true, true],
  ));
  console.log(`cpu columns are % of one core over the timed run; 'cpu us/call' is this process's CPU time per call; 'other cpu' is load from processes outside the benchmark (! above ${OTHER_LOAD_WARN_PCT}%: figures not clean)`);
  for (const f of failures) console.log(`FAILED ${f.scenario}: ${f.error}`);
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string', multiple: true },
      seconds: { type: 'string' },
      'no-baseline': { type: 'boolean', default: false },
      out: { type: 'string' },
      'wait-quiet': { type: 'string', default: '0' },
      retries: { type: 'string', default: '0' },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (args.help) usage();

  if (!fs.existsSync(path.join(ROOT, 'dist', 'delivery', 'lua-connection.js'))) {
    usage('dist/ is missing: run `npm run build` first (or use `npm run bench`, which builds)');
  }

  const scenarios = [];
  for (const file of SCENARIO_FILES) scenarios.push((await import(`./scenarios/${file}`)).default);
  if (args.list) {
    for (const s of scenarios) console.log(`${s.name.padEnd(18)} ${s.description}`);
    return 0;
  }
  const only = args.only ?? [];
  for (const name of only) if (!scenarios.some((s) => s.name === name)) usage(`unknown scenario '${name}'; known: ${scenarios.map((s) => s.name).join(', ')}`);
  const selected = only.length > 0 ? scenarios.filter((s) => only.includes(s.name)) : scenarios;

  let durationMs = args.quick ? 2_000 : 10_000;
  const warmupMs = args.quick ? 500 : 1_000;
  if (args.seconds !== undefined) {
    const s = Number(args.seconds);
    if (!(s > 0 && s <= 300)) usage('--seconds must be a number in (0, 300]');
    durationMs = s * 1000;
  }
  const waitQuietS = Number(args['wait-quiet']);
  if (!(waitQuietS >= 0 && waitQuietS <= 3600)) usage('--wait-quiet must be a number of seconds in [0, 3600]');
  const retries = Number(args.retries);
  if (!(Number.isInteger(retries) && retries >= 0 && retries <= 10)) usage('--retries must be an integer in [0, 10]');
  const outFile = path.resolve(args.out ?? DEFAULT_OUT);

  const machine = machineInfo();
  console.log(machineLine(machine));
  console.log(`mode: ${args.quick ? 'quick' : 'default'}, ${durationMs / 1000} s per point after ${warmupMs / 1000} s warm-up${args['no-baseline'] ? ', no baselines' : ''}; scenarios: ${selected.map((s) => s.name).join(', ')}`);

  // Whole-run limit: a fixed allowance per scenario plus, for at most
  // MAX_MEASUREMENTS_PER_SCENARIO measurements, every wait and retry allowed.
  const runLimitMs = selected.length * (MAX_SCENARIO_MS + MAX_MEASUREMENTS_PER_SCENARIO * (retries + 1) * (waitQuietS * 1000 + durationMs));
  const receiver = await startReceiverProcess({ maxSeconds: Math.ceil(runLimitMs / 1000) + 60 });
  const watchdog = setTimeout(() => {
    process.stderr.write('bench: the run exceeded its overall time limit; stopping\n');
    receiver.killNow();
    process.exit(3);
  }, runLimitMs);
  watchdog.unref();
  process.once('SIGINT', () => {
    receiver.killNow();
    process.exit(130);
  });

  const ctx = {
    receiver,
    durationMs,
    warmupMs,
    baseline: !args['no-baseline'],
    quick: args.quick,
    waitQuietMs: waitQuietS * 1000,
    retries,
    log: (msg) => process.stderr.write(`${msg}\n`),
  };

  const startedAt = new Date().toISOString();
  const points = [];
  const failures = [];
  try {
    for (const s of selected) {
      ctx.log(`scenario ${s.name}: ${s.description}`);
      try {
        points.push(...(await s.run(ctx)));
      } catch (err) {
        ctx.log(`scenario ${s.name} failed: ${err?.stack ?? err}`);
        failures.push({ scenario: s.name, error: String(err?.message ?? err) });
      }
    }
  } finally {
    await receiver.stop();
  }

  console.log('');
  printResults(points, failures);

  const results = {
    startedAt,
    finishedAt: new Date().toISOString(),
    machine,
    machineLine: machineLine(machine),
    options: { quick: args.quick, durationMs, warmupMs, baseline: ctx.baseline, only, waitQuietS, retries },
    points,
    failures,
  };
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nresults: ${outFile}`);
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
