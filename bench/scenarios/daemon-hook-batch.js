/**
 * daemon-hook-batch (issue 7 b): a real `sluice serve` running seed-002's
 * new-send-batch.lua verbatim (log_hooks:new with batch_size 100 and a
 * send_batch that json_encodes the records as one array to WEBHOOK_URL = the
 * bench receiver). Records are published in batches of 100 (POST
 * /api/log-records/v1, 4 concurrent publishers, queue kept at most 20,000
 * records deep); records/s delivered, counted by the daemon's delivered
 * counter for the hook queue (the receiver sees one request per batch; its
 * request count is reported alongside). Baseline: undici posting 100-record
 * JSON arrays at concurrency 4 (records/s).
 */
import fs from 'node:fs';
import path from 'node:path';
import { baselineClient } from '../lib/baseline.js';
import { makePoint, measure } from '../lib/measure.js';
import { SEED_DIR } from '../lib/seed.js';
import { recordBodies, hookThroughput } from '../lib/hook-throughput.js';

const POLICY = fs.readFileSync(path.join(SEED_DIR, 'new-send-batch.lua'), 'utf8');
const BATCH = 100;
const PUBLISHERS = 4;
const MAX_BACKLOG = 20_000;
const BASELINE_CONCURRENCY = 4;

export default {
  name: 'daemon-hook-batch',
  description: `sluice serve, seed new-send-batch.lua (batch_size ${BATCH}): records published in ${BATCH}-record POSTs x${PUBLISHERS}, delivered records/s vs undici POST of ${BATCH}-record arrays c${BASELINE_CONCURRENCY}`,
  async run(ctx) {
    let baseline = null;
    if (ctx.baseline) {
      const bodies = recordBodies(BATCH, 8, 1_000_000);
      const client = baselineClient(ctx.receiver.origin, BASELINE_CONCURRENCY);
      try {
        baseline = await measure(ctx, {
          label: `undici Pool POST ${BATCH}-array c${BASELINE_CONCURRENCY}`,
          concurrency: BASELINE_CONCURRENCY,
          unitsPerOp: BATCH,
          unit: 'records',
          warmupOps: 500,
          op: (_w, n) => client.post('/log', bodies[n % bodies.length]),
          verify: { records: BATCH },
        });
      } finally {
        await client.close();
      }
    }
    const subject = await hookThroughput(ctx, {
      label: `sluice send_batch(${BATCH}), ${BATCH}-record POSTs x${PUBLISHERS}`,
      policy: POLICY,
      batch: BATCH,
      publishers: PUBLISHERS,
      maxBacklog: MAX_BACKLOG,
      count: 'daemon',
      warmupUnits: 5_000,
    });
    return [makePoint({ scenario: 'daemon-hook-batch', point: `x${BATCH} publish, batch_size ${BATCH}`, unit: 'records/s', subject, baseline })];
  },
};
