/**
 * The data directory lock: one sluice process per directory, stale locks
 * (dead pid) taken over.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../../src/errors.js';
import { acquireDataDirLock, LOCK_FILE, type DataDirLock } from '../../../src/queue/data-dir-lock.js';

const dirs: string[] = [];
const locks: DataDirLock[] = [];
const children: ChildProcess[] = [];

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-lock-'));
  dirs.push(d);
  return d;
}

function acquire(dir: string): DataDirLock {
  const l = acquireDataDirLock(dir);
  locks.push(l);
  return l;
}

/** A live process that is not us, and a way to make it dead. */
async function otherProcess(): Promise<{ pid: number; kill(): Promise<void> }> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid!,
    async kill() {
      child.kill('SIGKILL');
      await exited; // reaped: kill(pid, 0) now fails
    },
  };
}

function thrown(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    return err as SluiceError;
  }
  throw new Error('expected an error');
}

afterEach(() => {
  for (const l of locks.splice(0)) l.release();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('acquireDataDirLock', () => {
  it('creates the directory and a lock file holding our pid; release removes it', () => {
    const dir = path.join(tmpDir(), 'a', 'b');
    const lock = acquire(dir);
    expect(lock.path).toBe(path.join(dir, LOCK_FILE));
    expect(fs.readFileSync(lock.path, 'utf8').trim()).toBe(String(process.pid));
    expect(fs.readdirSync(dir)).toEqual([LOCK_FILE]); // no temporary file left behind
    lock.release();
    expect(fs.existsSync(lock.path)).toBe(false);
    lock.release(); // idempotent
  });

  it('refuses a second acquire in the same process until released', () => {
    const dir = tmpDir();
    const lock = acquire(dir);
    const err = thrown(() => acquireDataDirLock(dir));
    expect(err.code).toBe('SLUICE_ERR_SPOOL_LOCKED');
    expect(err.message).toContain(dir);
    lock.release();
    acquire(dir);
  });

  it('refuses a directory locked by a live process, naming it, and takes the lock over once it died', async () => {
    const dir = tmpDir();
    const other = await otherProcess();
    const lockPath = path.join(dir, LOCK_FILE);
    fs.writeFileSync(lockPath, `${other.pid}\n`);

    const err = thrown(() => acquireDataDirLock(dir));
    expect(err.code).toBe('SLUICE_ERR_SPOOL_LOCKED');
    expect(err.message).toContain(`pid ${other.pid}`);
    expect(err.message).toContain(dir);
    expect(err.message).toContain(lockPath); // what to delete if that pid is not sluice
    expect(fs.readFileSync(lockPath, 'utf8')).toBe(`${other.pid}\n`); // untouched

    await other.kill();
    const lock = acquire(dir);
    expect(fs.readFileSync(lock.path, 'utf8').trim()).toBe(String(process.pid));
    expect(fs.readdirSync(dir)).toEqual([LOCK_FILE]);
  });

  it('takes over a lock file with no valid pid, or with our own pid that we do not hold', () => {
    for (const content of ['', 'garbage\n', '0\n', `${process.pid}\n`]) {
      const dir = tmpDir();
      fs.writeFileSync(path.join(dir, LOCK_FILE), content);
      const lock = acquire(dir);
      expect(fs.readFileSync(lock.path, 'utf8').trim(), JSON.stringify(content)).toBe(String(process.pid));
      lock.release();
    }
  });

  it('release leaves alone a lock file that is no longer ours', () => {
    const dir = tmpDir();
    const lock = acquire(dir);
    fs.writeFileSync(lock.path, '1\n');
    lock.release();
    expect(fs.readFileSync(lock.path, 'utf8')).toBe('1\n');
  });
});
