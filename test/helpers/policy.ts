/**
 * Test helpers: write a policy into a fresh temporary folder and load it in
 * a real VM. Each call gets its own folder.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { LuaVM, type LuaVMOptions } from '../../src/lua/vm.js';
import { createLogger } from '../../src/logging/logger.js';

const made: string[] = [];
let cleanupRegistered = false;

/** A new temporary folder, removed when the test process exits. */
export function tempDir(prefix = 'sluice-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.once('exit', () => {
      for (const d of made) fs.rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}

/** Write `files` (name → content) into a new folder; returns the path of `init.lua` there. */
export function writePolicy(source: string, files: Record<string, string> = {}): string {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'init.lua'), source);
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return path.join(dir, 'init.lua');
}

export interface CapturedLog {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A logger whose entries land in `entries`. */
export function captureLogger(): { logger: ReturnType<typeof createLogger>; entries: CapturedLog[] } {
  const entries: CapturedLog[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) entries.push(JSON.parse(line) as CapturedLog);
      done();
    },
  });
  return { logger: createLogger({ destination: sink, level: 'debug' }), entries };
}

/** Load `source` as init.lua in a new VM, with a captured logger. */
export async function loadPolicy(source: string, opts: Partial<LuaVMOptions> & { files?: Record<string, string> } = {}) {
  const policyPath = writePolicy(source, opts.files);
  const { logger, entries } = captureLogger();
  const vm = await LuaVM.load({ logger, ...opts, policyPath });
  return { vm, policyPath, logs: entries };
}

/** Fire a Single test event and return its values. */
export async function call(vm: LuaVM, event: string, ...args: unknown[]): Promise<unknown[]> {
  const r = await vm.fire(event, args);
  return r.values;
}
