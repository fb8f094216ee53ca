/** Start an Engine on a policy, with a fake clock and its own data directory. */
import path from 'node:path';
import { Engine } from '../../src/engine.js';
import { WorkerSpool } from '../../src/queue/worker-spool.js';
import { captureLogger, tempDir, writePolicy } from './policy.js';
import { FakeClock } from './fake-clock.js';

export async function startEngine(source: string, opts: { clock?: FakeClock; rand?: () => number; dataDir?: string; policyPath?: string } = {}) {
  const clock = opts.clock ?? new FakeClock();
  const policyPath = opts.policyPath ?? writePolicy(source);
  const dataDir = opts.dataDir ?? path.join(tempDir('sluice-data-'), 'data');
  const { logger, entries } = captureLogger();
  const engine = await Engine.start({ policyPath, dataDir, clock, logger, rand: opts.rand });
  // The spool answers from its own thread, in real time: let the clock wait for it.
  const spool = engine.spool;
  if (spool instanceof WorkerSpool) clock.busy = () => spool.pendingCalls > 0;
  return { engine, clock, logs: entries, dataDir, policyPath };
}

/** A message as `POST /api/inject/v1` would make it. */
export function mail(subject = 'Hello', recipients = ['recip@example.com']) {
  return {
    sender: 'sender@example.com',
    recipients,
    data: `Subject: ${subject}\r\nX-Test1: Test1\r\nFrom: sender@example.com\r\n\r\nHi there\r\n`,
  };
}
