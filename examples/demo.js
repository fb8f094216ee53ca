#!/usr/bin/env node
// `npm run demo`: a receiver on 127.0.0.1:4242 and `sluice serve` on
// examples/quickstart/init.lua (spool in ./sluice-data, API on
// 127.0.0.1:8000), in one terminal. Ctrl-C stops both.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startReceiver } from './receiver/receiver.js';

const root = fileURLToPath(new URL('..', import.meta.url));
await startReceiver(4242, (line) => console.log(`[receiver] ${line}`));
console.log('[receiver] listening on http://127.0.0.1:4242/log');

const daemon = spawn(process.execPath, [
  'dist/cli/main.js', 'serve',
  '--policy', 'examples/quickstart/init.lua',
  '--data-dir', './sluice-data',
  '--listen', process.env.SLUICE_LISTEN ?? '127.0.0.1:8000',
], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, SLUICE_LOG_PRETTY: '1' } });

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => daemon.kill(sig));
daemon.on('exit', (code) => process.exit(code ?? 0));
