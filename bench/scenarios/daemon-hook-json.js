/**
 * daemon-hook-json (issue 7 a): a real `sluice serve` running the quickstart
 * policy (examples/quickstart/init.lua: one `new_json` log hook, unbatched,
 * to WEBHOOK_URL = the bench receiver). Records are published over HTTP in
 * batches of 100 (POST /api/log-records/v1, 8 concurrent publishers), and
 * then one per request (16 publishers) (queue
 * kept at most 5,000 records deep) and counted where they arrive: records/s
 * delivered end to end, one record per webhook request. With 8 publishers
 * of 100 the queue sits at its bound, so the figure is the daemon's delivery
 * rate; with 4 it was the publishers' own request latency (each reply waits
 * for the spool commit), and the queue stayed nearly empty. Baseline: undici
 * posting the same ~620-byte records one per request at concurrency 16 (the
 * machine's single-request limit).
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { baselineClient } from '../lib/baseline.js';
import { makePoint, measure } from '../lib/measure.js';
import { recordBodies, hookThroughput } from '../lib/hook-throughput.js';

const POLICY = fs.readFileSync(fileURLToPath(new URL('../../examples/quickstart/init.lua', import.meta.url)), 'utf8');
const BATCH = 100;
const PUBLISHERS = 8;
const MAX_BACKLOG = 5_000;
const BASELINE_CONCURRENCY = 16;

export default {
  name: 'daemon-hook-json',
  description: `sluice serve, quickstart new_json hook (unbatched): records published in ${BATCH}-record POSTs x${PUBLISHERS}, delivered records/s at the receiver vs undici single-record POST c${BASELINE_CONCURRENCY}`,
  async run(ctx) {
    let baseline = null;
    if (ctx.baseline) {
      const bodies = recordBodies(1, 64, 1_000_000).map((b) => JSON.stringify(JSON.parse(b)[0]));
      const client = baselineClient(ctx.receiver.origin, BASELINE_CONCURRENCY);
      try {
        baseline = await measure(ctx, {
          label: `undici Pool POST 1 record c${BASELINE_CONCURRENCY}`,
          concurrency: BASELINE_CONCURRENCY,
          unit: 'records',
          warmupOps: 5_000,
          op: (_w, n) => client.post('/log', bodies[n % bodies.length]),
          verify: { records: 1 },
        });
      } finally {
        await client.close();
      }
    }
    const points = [];
    // Records published 100 per request, then one per request (16 publishers).
    for (const [batch, publishers] of [[BATCH, PUBLISHERS], [1, 16]]) {
      const subject = await hookThroughput(ctx, {
        label: `sluice new_json, ${batch}-record POSTs x${publishers}`,
        policy: POLICY,
        batch,
        publishers,
        maxBacklog: MAX_BACKLOG,
        count: 'requests',
        warmupUnits: 2_000,
      });
      points.push(makePoint({ scenario: 'daemon-hook-json', point: `x${batch} publish, unbatched hook`, unit: 'records/s', subject, baseline }));
    }
    return points;
  },
};
