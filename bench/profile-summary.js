#!/usr/bin/env node
/**
 * Summarise a V8 .cpuprofile (from `node --cpu-prof`) by self time.
 *
 *   node bench/profile-summary.js FILE.cpuprofile [--top N] [--by function|file|package]
 *                                 [--inclusive] [--callers NAME [--depth D]]
 *
 * Self time of a profile node is the sum of the sample intervals
 * (timeDeltas) whose sample landed in it. Nodes are grouped by function
 * (name + file + line), by file, or by package (node_modules/<pkg>, dist/,
 * node: internals, or the (program)/(garbage collector)/(idle) pseudo-nodes).
 * --inclusive ranks functions by total time instead: the time of every
 * sample with the function anywhere on its stack (counted once per sample
 * even when it recurses).
 * --callers NAME instead splits the self time of functions named NAME by
 * their call path, D frames up (default 3).
 *
 * A daemon profiled with SLUICE_BENCH_DAEMON_PROF writes one file per
 * thread: `CPU.<date>.<pid>.0.001.cpuprofile` is the main thread and
 * `...1.002...` the spool thread.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '25' },
    by: { type: 'string', default: 'function' },
    callers: { type: 'string' },
    depth: { type: 'string', default: '3' },
    inclusive: { type: 'boolean', default: false },
  },
});
if (positionals.length !== 1) {
  process.stderr.write('usage: node bench/profile-summary.js FILE.cpuprofile [--top N] [--by function|file|package]\n');
  process.exit(2);
}
const profile = JSON.parse(fs.readFileSync(positionals[0], 'utf8'));
const top = Number(args.top);

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map();
const { samples, timeDeltas } = profile;
for (let i = 0; i < samples.length; i++) {
  // timeDeltas[i] is the time since the previous sample; charge the interval
  // that ends at sample i+1 to sample i, as Chrome DevTools does.
  const dt = timeDeltas[i + 1] ?? 0;
  selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
}

function shortUrl(url) {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  const dist = u.indexOf('/dist/');
  if (dist >= 0) return u.slice(dist + 1);
  return u.startsWith('/') ? path.relative(process.cwd(), u) : u;
}

function packageOf(cf) {
  const u = (cf.url ?? '').replace(/^file:\/\//, '');
  if (!u) return cf.functionName.startsWith('(') ? cf.functionName : '(native/builtin)';
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (u.startsWith('node:')) return 'node: internals';
  if (u.includes('/dist/')) return 'sluice dist/';
  if (u.includes('/bench/')) return 'bench/';
  return shortUrl(u);
}

if (args.callers !== undefined) {
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const depth = Number(args.depth);
  const paths = new Map();
  let sum = 0;
  for (const [id, us] of selfUs) {
    if (nodes.get(id).callFrame.functionName !== args.callers) continue;
    const frames = [];
    let p = parent.get(id);
    while (p !== undefined && frames.length < depth) {
      const cf = nodes.get(p).callFrame;
      frames.push(`${cf.functionName || '(anonymous)'} ${shortUrl(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`);
      p = parent.get(p);
    }
    const k = frames.join('  <-  ');
    paths.set(k, (paths.get(k) ?? 0) + us);
    sum += us;
  }
  console.log(`${args.callers}: ${(sum / 1000).toFixed(1)} ms self time; by caller path (${depth} frames up):`);
  for (const [k, us] of [...paths].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000).toFixed(1).padStart(9)} ${((us / Math.max(1, sum)) * 100).toFixed(1).padStart(6)}%  ${k}`);
  }
  process.exit(0);
}

function functionKey(cf) {
  return `${cf.functionName || '(anonymous)'}  ${shortUrl(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
}

if (args.inclusive) {
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const total = new Map();
  let sum = 0;
  for (const [id, us] of selfUs) {
    sum += us;
    const seen = new Set();
    for (let p = id; p !== undefined; p = parent.get(p)) {
      const cf = nodes.get(p).callFrame;
      if (cf.functionName === '(root)') continue;
      const k = functionKey(cf);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + us);
    }
  }
  console.log(`${positionals[0]}: ${(sum / 1000).toFixed(0)} ms sampled; top ${top} by total (inclusive) time`);
  console.log(`${'total ms'.padStart(9)} ${'%all'.padStart(6)}  name`);
  for (const [k, us] of [...total].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000).toFixed(1).padStart(9)} ${((us / Math.max(1, sum)) * 100).toFixed(1).padStart(6)}  ${k}`);
  }
  process.exit(0);
}

const groups = new Map();
let totalUs = 0;
for (const [id, us] of selfUs) {
  const cf = nodes.get(id).callFrame;
  let k;
  if (args.by === 'package') k = packageOf(cf);
  else if (args.by === 'file') k = shortUrl(cf.url) || cf.functionName || '(anonymous)';
  else k = functionKey(cf);
  groups.set(k, (groups.get(k) ?? 0) + us);
  totalUs += us;
}

const rows = [...groups].sort((a, b) => b[1] - a[1]).slice(0, top);
const idleUs = [...groups].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
console.log(`${positionals[0]}: ${(totalUs / 1000).toFixed(0)} ms sampled, ${((totalUs - idleUs) / 1000).toFixed(0)} ms not idle; top ${rows.length} by self time (${args.by})`);
console.log(`${'self ms'.padStart(9)} ${'%all'.padStart(6)} ${'%busy'.padStart(6)}  name`);
for (const [k, us] of rows) {
  const busy = k.startsWith('(idle)') ? '' : `${((us / Math.max(1, totalUs - idleUs)) * 100).toFixed(1)}`;
  console.log(`${(us / 1000).toFixed(1).padStart(9)} ${((us / totalUs) * 100).toFixed(1).padStart(6)} ${busy.padStart(6)}  ${k}`);
}
