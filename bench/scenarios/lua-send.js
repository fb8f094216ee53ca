/**
 * lua-send: calls/s of seed-002's new-send.lua `connection:send`, one
 * ~620-byte log record per call, driven through LuaConnection.send as the
 * delivery code does, against a raw undici POST of the same bodies to the
 * same receiver. Concurrency 16 (16 LuaConnections, each sending in a loop;
 * each has its own kumo.http client, as the seed's constructor builds one)
 * and concurrency 1.
 */
import { baselineClient } from '../lib/baseline.js';
import { makePoint, measure } from '../lib/measure.js';
import { messageRing } from '../lib/records.js';
import { closeConnections, expectOk, loadSeed, openConnections } from '../lib/seed.js';

const RING = 1024; // distinct messages, cycled
const CONCURRENCIES = [16, 1];

export default {
  name: 'lua-send',
  description: 'seed new-send.lua connection:send (1 record/call) vs undici Pool POST of the same body',
  async run(ctx) {
    const messages = messageRing(RING, 'webhook');
    const seed = await loadSeed('new-send.lua', ctx.receiver.url('/log'));
    const points = [];
    try {
      for (const concurrency of CONCURRENCIES) {
        let baseline = null;
        if (ctx.baseline) {
          const client = baselineClient(ctx.receiver.origin, concurrency);
          try {
            baseline = await measure(ctx, {
              label: `undici Pool POST c${concurrency}`,
              concurrency,
              unit: 'calls',
              warmupOps: 5_000,
              op: (_w, n) => client.post('/log', messages[n % RING].data),
              verify: { records: 1 },
            });
          } finally {
            await client.close();
          }
        }
        const conns = await openConnections(seed.vm, 'webhook', concurrency);
        let subject;
        try {
          subject = await measure(ctx, {
            label: `lua connection:send c${concurrency}`,
            concurrency,
            unit: 'calls',
            warmupOps: 5_000,
            op: (w, n) => conns[w].send(messages[n % RING]),
            verify: { records: 1, check: expectOk },
          });
        } finally {
          await closeConnections(conns);
        }
        points.push(makePoint({ scenario: 'lua-send', point: `c${concurrency}`, unit: 'calls/s', subject, baseline }));
      }
    } finally {
      await seed.close();
    }
    return points;
  },
};
