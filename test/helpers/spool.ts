/** Records and checks shared by the spool tests (SqliteSpool and WorkerSpool). */
import { expect } from 'vitest';
import { SluiceError } from '../../src/errors.js';
import type { SpoolRecord } from '../../src/queue/spool.js';

/** A fixed unix-ms time the records are due and created at. */
export const T0 = 1_700_000_000_000;

/** A spool record of queue 'q', due and created at T0, with `over` applied. */
export function rec(id: string, over: Partial<SpoolRecord> = {}): SpoolRecord {
  return {
    id,
    queue: 'q',
    due: T0,
    attempts: 0,
    created: T0,
    sender: 'from@example.com',
    recipients: ['to@example.com'],
    meta: { hook: 'h' },
    data: `{"id":"${id}"}`,
    ...over,
  };
}

/** The SluiceError `p` rejects with (fails the test if it resolves or rejects with something else). */
export async function rejection(p: Promise<unknown>): Promise<SluiceError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    return err as SluiceError;
  }
  throw new Error('expected a rejection');
}
