/**
 * Noticing that the policy changed. chokidar watches the policy's folder
 * (the folder, not the file: an editor that deletes and recreates the file
 * would kill a watch on the file itself) and only wakes this module, which
 * hashes the contents of the policy's Lua files (sha256) and reports a change
 * only when the hash really moved, so touching a file or saving it unchanged
 * does nothing.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'chokidar';

const WATCHED = /\.(lua|json|toml|yaml)$/;
const MAX_DEPTH = 4;

/** sha256 over the paths and contents of the Lua (and data) files under `dir`. */
export async function hashPolicyFiles(dir: string): Promise<string> {
  const files: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    const entries = await fs.readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (e.name.startsWith('.') || e.name === 'node_modules') continue;
      const p = path.join(d, e.name);
      if (e.isDirectory() && depth < MAX_DEPTH) await walk(p, depth + 1);
      else if (e.isFile() && WATCHED.test(e.name)) files.push(p);
    }
  };
  await walk(dir, 0);
  files.sort();
  const h = createHash('sha256');
  for (const f of files) {
    h.update(path.relative(dir, f)).update('\0');
    h.update(await fs.readFile(f).catch(() => Buffer.alloc(0))).update('\0');
  }
  return h.digest('hex');
}

export class PolicyWatcher {
  #watcher: FSWatcher | null = null;
  #hash = '';
  #timer: NodeJS.Timeout | null = null;

  constructor(
    readonly dir: string,
    private readonly onChange: () => void,
    private readonly debounceMs = 100,
  ) {}

  async start(): Promise<void> {
    this.#hash = await hashPolicyFiles(this.dir);
    this.#watcher = watch(this.dir, {
      ignoreInitial: true,
      depth: MAX_DEPTH,
      ignored: (p: string) => /(^|[/\\])(\.[^/\\]+|node_modules)([/\\]|$)/.test(path.relative(this.dir, p)),
    });
    this.#watcher.on('all', (_event: string, p: string) => {
      if (!WATCHED.test(p)) return;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.#check(), this.debounceMs);
    });
    await new Promise<void>((resolve) => this.#watcher?.once('ready', () => resolve()));
  }

  async #check(): Promise<void> {
    const h = await hashPolicyFiles(this.dir);
    if (h === this.#hash) return;
    this.#hash = h;
    this.onChange();
  }

  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    await this.#watcher?.close();
    this.#watcher = null;
  }
}
