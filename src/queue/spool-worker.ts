/**
 * The spool thread (see worker-spool.ts): opens the data directory's
 * SqliteSpool without taking the lock (the main thread holds it), runs the
 * calls it receives in order, and answers each once its SqliteSpool settled
 * it. Writes of calls that arrive together share one group commit.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SluiceError } from '../errors.js';
import { SqliteSpool, type SpoolStats, type SqliteSpoolOptions } from './sqlite-spool.js';

export interface WorkerData {
  dataDir: string;
  opts: SqliteSpoolOptions;
}

export type SpoolMethod =
  | 'ready' | 'insertRow' | 'reschedule' | 'updateMetaJson' | 'remove'
  | 'claimDueRows' | 'nextDue' | 'counts' | 'releaseAll' | 'size' | 'close';

export interface SpoolCall {
  id: number;
  method: SpoolMethod;
  args: unknown[];
}

export type SpoolReply =
  | { id: number; ok: true; value: unknown; stats?: SpoolStats }
  | { id: number; ok: false; error: { code: string; message: string }; stats?: SpoolStats };

if (parentPort) {
  const port = parentPort;
  const data = workerData as WorkerData;
  let spool: SqliteSpool | undefined;
  let openFailure: unknown;
  try {
    spool = SqliteSpool.openUnlocked(data.dataDir, data.opts);
  } catch (err) {
    openFailure = err;
  }

  let outbox: SpoolReply[] = [];
  let timer: NodeJS.Immediate | undefined;
  const reply = (r: SpoolReply) => {
    outbox.push(r);
    timer ??= setImmediate(() => {
      timer = undefined;
      const batch = outbox;
      outbox = [];
      if (spool) batch[batch.length - 1]!.stats = { ...spool.stats };
      port.postMessage(batch);
    });
  };

  port.on('message', (calls: SpoolCall[]) => {
    for (const call of calls) {
      let result: Promise<unknown>;
      if (!spool) result = Promise.reject(openFailure);
      else if (call.method === 'ready') result = Promise.resolve(true);
      else result = invoke(spool, call);
      result.then(
        (value) => reply({ id: call.id, ok: true, value }),
        (err: unknown) => reply({ id: call.id, ok: false, error: errorOf(err) }),
      );
    }
  });
}

function invoke(spool: SqliteSpool, call: SpoolCall): Promise<unknown> {
  // The arguments are the Spool method's own, as WorkerSpool passed them.
  const a = call.args as [never, never, never, never, never];
  switch (call.method) {
    case 'insertRow': return spool.insertRow(a[0]);
    case 'reschedule': return spool.reschedule(a[0], a[1], a[2], a[3], a[4]);
    case 'updateMetaJson': return spool.updateMetaJson(a[0], a[1]);
    case 'remove': return spool.remove(a[0]);
    case 'claimDueRows': return spool.claimDueRows(a[0], a[1], a[2]);
    case 'nextDue': return spool.nextDue(a[0]);
    case 'counts': return spool.counts();
    case 'releaseAll': return spool.releaseAll();
    case 'size': return spool.size();
    case 'close': return spool.close();
    default: return Promise.reject(new SluiceError('SLUICE_ERR_SPOOL', `unknown spool call ${String(call.method)}`));
  }
}

function errorOf(err: unknown): { code: string; message: string } {
  if (err instanceof SluiceError) return { code: err.code, message: err.message };
  return { code: 'SLUICE_ERR_SPOOL', message: err instanceof Error ? err.message : String(err) };
}
