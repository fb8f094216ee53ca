/**
 * Checking a policy: what `sluice check` and the daemon's reload validation
 * share. Loads the policy in a fresh VM, runs the startup events, and
 * collects problems as `file:line: message` lines instead of throwing.
 */
import { LuaError, SluiceError } from '../errors.js';
import { createLogger } from '../logging/logger.js';
import { LuaVM } from './vm.js';
import { Writable } from 'node:stream';

export interface CheckResult {
  vm: LuaVM | null;
  problems: string[];
  warnings: string[];
}

export async function checkPolicy(policyPath: string, opts: { instructionLimit?: number } = {}): Promise<CheckResult> {
  const warnings: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      try {
        const entry = JSON.parse(String(chunk)) as { level: number; msg: string };
        if (entry.level >= 40) warnings.push(entry.msg);
      } catch {
        // not JSON: ignore
      }
      done();
    },
  });
  const logger = createLogger({ destination: sink });
  let vm: LuaVM | null = null;
  try {
    vm = await LuaVM.load({ policyPath, instructionLimit: opts.instructionLimit, logger });
    await vm.startup({ validate: true });
    if (vm.validationFailed) return { vm, problems: ['validation failed: a validate_config handler called kumo.validation_failed()'], warnings };
    return { vm, problems: [], warnings };
  } catch (err) {
    return { vm, problems: [describeError(err)], warnings };
  }
}

/** One readable block for an error: the message, and the Lua traceback when there is one. */
export function describeError(err: unknown): string {
  if (err instanceof LuaError && err.traceback) return `${err.message}\n${err.traceback}`;
  if (err instanceof SluiceError) return err.message;
  return err instanceof Error ? err.message : String(err);
}
