/**
 * Load one of the seed-002 policies (test/fixtures/seed-002/*.lua, used
 * verbatim: the URL comes from WEBHOOK_URL) in a real LuaVM from dist/, as
 * test/lua/seed-002.test.ts does, and open LuaConnections on it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LuaVM } from '../../dist/lua/vm.js';
import { LuaConnection } from '../../dist/delivery/lua-connection.js';
import { closeHttpClients } from '../../dist/lua/modules/kumo-http.js';
import { createLogger } from '../../dist/logging/logger.js';

export const SEED_DIR = fileURLToPath(new URL('../../test/fixtures/seed-002/', import.meta.url));

/**
 * Copy the seed file to a fresh temporary folder as init.lua (like the test's
 * writePolicy), point WEBHOOK_URL at `webhookUrl`, load and start the VM.
 */
export async function loadSeed(name, webhookUrl) {
  const source = fs.readFileSync(path.join(SEED_DIR, name), 'utf8');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  const policyPath = path.join(dir, 'init.lua');
  fs.writeFileSync(policyPath, source);
  process.env.WEBHOOK_URL = webhookUrl;
  const vm = await LuaVM.load({ policyPath, logger: createLogger({ level: 'warn' }) });
  await vm.startup();
  return {
    vm,
    async close() {
      await closeHttpClients(vm);
      vm.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `n` LuaConnections from constructor event `make.<hook>.log_hook`. */
export async function openConnections(vm, hook, n) {
  const conns = [];
  for (let i = 0; i < n; i++) conns.push(await LuaConnection.open(vm, `make.${hook}.log_hook`, `${hook}.log_hook`));
  return conns;
}

export async function closeConnections(conns) {
  for (const c of conns) {
    const err = await c.close();
    if (err) throw err;
  }
}

/** A seed policy's send returns `<code> <reason>: <body>`; the receiver's body is empty. */
export function expectOk(disposition) {
  if (disposition !== '200 OK: ') throw new Error(`unexpected disposition ${JSON.stringify(disposition)}`);
}
