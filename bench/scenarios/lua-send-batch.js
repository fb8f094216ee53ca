/**
 * lua-send-batch: records/s of seed-002's new-send-batch.lua `send_batch`,
 * 100 messages per call (each record crosses into Lua as a table through
 * msg:get_meta 'log_record' and is json_encoded as one array), concurrency 4
 * (4 LuaConnections), against undici posting the equivalent 100-record JSON
 * array body at concurrency 4.
 */
import { baselineClient } from '../lib/baseline.js';
import { makePoint, measure } from '../lib/measure.js';
import { messageRing } from '../lib/records.js';
import { closeConnections, expectOk, loadSeed, openConnections } from '../lib/seed.js';

const BATCH = 100;
const BATCHES = 8; // distinct batches, cycled
const CONCURRENCY = 4;

export default {
  name: 'lua-send-batch',
  description: `seed new-send-batch.lua send_batch (${BATCH} records/call) vs undici Pool POST of the ${BATCH}-record JSON array`,
  async run(ctx) {
    const messages = messageRing(BATCH * BATCHES, 'webhookbatch');
    const batches = Array.from({ length: BATCHES }, (_, b) => messages.slice(b * BATCH, (b + 1) * BATCH));
    const bodies = batches.map((batch) => JSON.stringify(batch.map((m) => m.meta.log_record)));
    const seed = await loadSeed('new-send-batch.lua', ctx.receiver.url('/log'));
    try {
      let baseline = null;
      if (ctx.baseline) {
        const client = baselineClient(ctx.receiver.origin, CONCURRENCY);
        try {
          baseline = await measure(ctx, {
            label: `undici Pool POST ${BATCH}-array c${CONCURRENCY}`,
            concurrency: CONCURRENCY,
            unitsPerOp: BATCH,
            unit: 'records',
            warmupOps: 500,
            op: (_w, n) => client.post('/log', bodies[n % BATCHES]),
            verify: { records: BATCH },
          });
        } finally {
          await client.close();
        }
      }
      const conns = await openConnections(seed.vm, 'webhookbatch', CONCURRENCY);
      let subject;
      try {
        subject = await measure(ctx, {
          label: `lua send_batch(${BATCH}) c${CONCURRENCY}`,
          concurrency: CONCURRENCY,
          unitsPerOp: BATCH,
          unit: 'records',
          warmupOps: 150,
          op: (w, n) => conns[w].sendBatch(batches[n % BATCHES]),
          verify: { records: BATCH, check: expectOk },
        });
      } finally {
        await closeConnections(conns);
      }
      return [makePoint({ scenario: 'lua-send-batch', point: `c${CONCURRENCY} x${BATCH}`, unit: 'records/s', subject, baseline })];
    } finally {
      await seed.close();
    }
  },
};
