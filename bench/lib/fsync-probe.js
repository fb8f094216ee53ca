/**
 * How long fsync takes on a file system while a scenario runs: every
 * `intervalMs` it writes 4 KiB to a file in `dir` and fsyncs it (through
 * the thread pool, so the bench's event loop does not wait). Acceptance
 * waits for the spool's fsync, so a slow disk shows up in latency figures;
 * this says whether it was slow during the run.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { quantile } from './daemon-measure.js';

export async function startFsyncProbe(dir, intervalMs = 50) {
  const file = path.join(dir, `fsync-probe-${process.pid}`);
  const fh = await fs.open(file, 'w');
  const block = Buffer.alloc(4096, 1);
  const ms = [];
  let stopped = false;
  const loop = (async () => {
    let at = 0;
    while (!stopped) {
      const t = performance.now();
      await fh.write(block, 0, block.length, at);
      await fh.sync();
      ms.push(performance.now() - t);
      at = (at + block.length) % (1 << 20);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      await fh.close();
      await fs.rm(file, { force: true });
      const sorted = Float64Array.from(ms).sort();
      return {
        n: sorted.length,
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        max: sorted.length ? sorted[sorted.length - 1] : null,
        over100: ms.filter((x) => x > 100).length,
      };
    },
  };
}
