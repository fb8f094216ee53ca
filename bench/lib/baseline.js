/**
 * The raw-HTTP baseline: undici (the same undici the Lua http module uses)
 * posting a prepared body to the same receiver, no Lua involved. One Pool
 * with one connection per worker, pipelining 1, as in
 * node-stack-facts.md §4.
 */
import { Pool } from 'undici';

const TIMEOUT_MS = 10_000;

/**
 * @param {string} origin  http://127.0.0.1:PORT
 * @param {number} concurrency
 * @returns {{ post: (path: string, body: string) => Promise<number>, close: () => Promise<void> }}
 */
export function baselineClient(origin, concurrency) {
  const pool = new Pool(origin, {
    connections: concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: TIMEOUT_MS,
    bodyTimeout: TIMEOUT_MS,
  });
  return {
    async post(path, body) {
      const res = await pool.request({
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: '*/*' },
        body,
      });
      // Read the reply body, as the Lua path does (resp:text()).
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`baseline: status ${res.statusCode}`);
      return res.statusCode;
    },
    close: () => pool.close(),
  };
}
