/**
 * What the client commands share: where the daemon is (`--server`, or
 * SLUICE_SERVER, default http://127.0.0.1:8000), the admin token, and one
 * JSON request whose answer is printed as JSON on stdout. An error reply or a
 * daemon that cannot be reached is a message on stderr and exit 1.
 */
import type { Argv } from 'yargs';
import { request } from 'undici';

export interface ClientArgs {
  server: string;
  token?: string;
}

export function clientOptions<T>(y: Argv<T>): Argv<T & ClientArgs> {
  return y
    .option('server', { type: 'string', default: process.env.SLUICE_SERVER ?? 'http://127.0.0.1:8000', describe: 'the daemon\'s HTTP API [env: SLUICE_SERVER]' })
    .option('token', { type: 'string', default: process.env.SLUICE_ADMIN_TOKEN, describe: 'admin bearer token [env: SLUICE_ADMIN_TOKEN]' }) as Argv<T & ClientArgs>;
}

export async function callApi(args: ClientArgs, method: 'GET' | 'POST' | 'DELETE' | 'PATCH', path: string, body?: unknown): Promise<unknown> {
  const url = new URL(path, args.server.endsWith('/') ? args.server : `${args.server}/`);
  let res;
  try {
    res = await request(url, {
      method,
      headers: { 'content-type': 'application/json', ...(args.token ? { authorization: `Bearer ${args.token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
  } catch (err) {
    fail(`cannot reach sluice at ${args.server}: ${(err as Error).message} (is \`sluice serve\` running? see --server)`);
  }
  const text = await res.body.text();
  let json: unknown = text;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  if (res.statusCode >= 400) {
    const message = typeof json === 'object' && json && 'message' in json ? String((json as { message: unknown }).message) : text;
    fail(`${res.statusCode}: ${message}`);
  }
  return json;
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

export function fail(message: string): never {
  process.stderr.write(`sluice: ${message}\n`);
  process.exit(1);
}

/** Read all of stdin as text. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
