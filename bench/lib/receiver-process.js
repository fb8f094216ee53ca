/**
 * Start bench/receiver.js as a child process and talk to it over its
 * stdin/stdout control protocol (see that file).
 */
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const RECEIVER = fileURLToPath(new URL('../receiver.js', import.meta.url));
const START_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 5_000;

/**
 * @returns {Promise<{
 *   port: number, pid: number, origin: string, url: (path?: string) => string,
 *   stats: () => Promise<object>, reset: () => Promise<object>, setParse: (on: boolean) => Promise<object>,
 *   stop: () => Promise<void>,
 * }>}
 */
export async function startReceiverProcess({ maxSeconds = 3600 } = {}) {
  const child = spawn(process.execPath, [RECEIVER, '--max-seconds', String(maxSeconds)], {
    stdio: ['pipe', 'pipe', 'inherit'],
    // The receiver must not inherit --cpu-prof and the like from a profiled parent.
    execArgv: [],
  });
  const pending = new Map();
  let nextId = 1;
  let onPort;
  let exited = false;
  const exitPromise = new Promise((resolve) => child.once('exit', (code, signal) => {
    exited = true;
    for (const p of pending.values()) p.reject(new Error(`receiver exited (code ${code}, signal ${signal})`));
    pending.clear();
    resolve();
  }));

  const lines = readline.createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      process.stderr.write(`receiver said: ${line}\n`);
      return;
    }
    if (msg.port !== undefined && onPort) {
      onPort(msg);
      onPort = undefined;
      return;
    }
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.error) p.reject(new Error(`receiver: ${msg.error}`));
    else p.resolve(msg);
  });

  const hello = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`receiver did not report its port within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    onPort = (msg) => {
      clearTimeout(timer);
      resolve(msg);
    };
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    exitPromise.then(() => {
      clearTimeout(timer);
      reject(new Error('receiver exited before listening'));
    });
  });

  function command(cmd, extra = {}) {
    if (exited) return Promise.reject(new Error('receiver is not running'));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`receiver did not answer '${cmd}' within ${COMMAND_TIMEOUT_MS} ms`));
      }, COMMAND_TIMEOUT_MS);
      pending.set(id, { resolve, reject, timer });
      child.stdin.write(`${JSON.stringify({ id, cmd, ...extra })}\n`);
    });
  }

  const origin = `http://127.0.0.1:${hello.port}`;
  return {
    port: hello.port,
    pid: child.pid,
    origin,
    url: (path = '/log') => `${origin}${path}`,
    stats: () => command('stats'),
    reset: () => command('reset'),
    setParse: (on) => command('parse', { on }),
    /** End stdin (the receiver exits on it); SIGTERM this child if it has not gone after 3 s. */
    async stop() {
      if (exited) return;
      child.stdin.end();
      const timer = setTimeout(() => {
        if (!exited) child.kill('SIGTERM');
      }, 3_000);
      await exitPromise;
      clearTimeout(timer);
      lines.close();
    },
    /** Synchronous last resort for exit handlers. */
    killNow() {
      if (!exited) child.kill('SIGTERM');
    },
  };
}
