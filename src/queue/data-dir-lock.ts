/**
 * One sluice process per data directory.
 *
 * The lock is a file `sluice.lock` in the data directory holding the owner's
 * pid. It is created atomically and never seen empty: the pid is written to a
 * private temporary file first, which is then hard-linked to the lock name
 * (link(2) fails with EEXIST like open(O_CREAT|O_EXCL), but the file already
 * has its content when it appears).
 *
 * If the lock exists and its pid is alive, the directory is refused. If the
 * pid is dead (the owner was killed with SIGKILL or the machine crashed), the
 * lock is stale and is taken over. A lock naming our own pid that this process
 * does not hold is stale too (a container restarted with the same pid).
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.js';

export const LOCK_FILE = 'sluice.lock';

export interface DataDirLock {
  /** Absolute path of the lock file. */
  readonly path: string;
  /** Remove the lock file (only if it is still ours). Idempotent. */
  release(): void;
}

/** Lock files held by this process, so that a second open in the same process is refused too. */
const heldHere = new Set<string>();

export function acquireDataDirLock(dataDir: string): DataDirLock {
  const dir = path.resolve(dataDir);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new SluiceError('SLUICE_ERR_SPOOL', `cannot create the data directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const lockPath = path.join(dir, LOCK_FILE);
  if (heldHere.has(lockPath)) {
    throw new SluiceError(
      'SLUICE_ERR_SPOOL_LOCKED',
      `data directory ${dir} is already open in this process (pid ${process.pid}); close the spool before opening it again`,
    );
  }

  const content = `${process.pid}\n`;
  const tmp = path.join(dir, `${LOCK_FILE}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, content, { mode: 0o644 });
  } catch (err) {
    throw new SluiceError('SLUICE_ERR_SPOOL', `cannot write a lock file in the data directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        fs.linkSync(tmp, lockPath);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new SluiceError('SLUICE_ERR_SPOOL', `cannot create the lock file ${lockPath}: ${(err as Error).message}`, { cause: err });
        }
      }
      // The lock exists: who holds it?
      const seen = readLock(lockPath);
      if (seen === undefined) continue; // vanished meanwhile: try again
      if (seen.pid !== undefined && seen.pid !== process.pid && isAlive(seen.pid)) {
        throw new SluiceError(
          'SLUICE_ERR_SPOOL_LOCKED',
          `data directory ${dir} is in use by another sluice process (pid ${seen.pid}). ` +
            `Stop that process or use another data directory. If no sluice process with pid ${seen.pid} is running, delete ${lockPath}.`,
        );
      }
      if (attempt >= 5) {
        throw new SluiceError('SLUICE_ERR_SPOOL_LOCKED', `could not take over the stale lock file ${lockPath} (it keeps changing); another sluice process may be starting on ${dir}`);
      }
      takeOverStale(lockPath, seen);
    }
  } finally {
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* already gone */
    }
  }

  heldHere.add(lockPath);
  let released = false;
  return {
    path: lockPath,
    release(): void {
      if (released) return;
      released = true;
      heldHere.delete(lockPath);
      try {
        // Only remove it if it is still ours (someone may have deleted a lock they took for stale).
        if (fs.readFileSync(lockPath, 'utf8') === content) fs.unlinkSync(lockPath);
      } catch {
        /* already gone */
      }
    },
  };
}

interface SeenLock {
  pid: number | undefined;
  ino: number;
  text: string;
}

function readLock(lockPath: string): SeenLock | undefined {
  try {
    const fd = fs.openSync(lockPath, 'r');
    try {
      const ino = fs.fstatSync(fd).ino;
      const text = fs.readFileSync(fd, 'utf8');
      const m = /^\s*(\d+)\s*$/.exec(text);
      const pid = m ? Number(m[1]) : undefined;
      return { pid: pid !== undefined && pid > 0 && Number.isSafeInteger(pid) ? pid : undefined, ino, text };
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SluiceError('SLUICE_ERR_SPOOL', `cannot read the lock file ${lockPath}: ${(err as Error).message}`, { cause: err });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Move the stale lock aside (rename is atomic), check that what we moved is
 * the stale file we judged and not a fresh lock another starting process just
 * took, and put it back if it is not.
 */
function takeOverStale(lockPath: string, stale: SeenLock): void {
  const aside = `${lockPath}.stale.${process.pid}`;
  try {
    fs.renameSync(lockPath, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else moved it: look again
    throw new SluiceError('SLUICE_ERR_SPOOL', `cannot remove the stale lock file ${lockPath}: ${(err as Error).message}`, { cause: err });
  }
  const moved = readLock(aside);
  if (moved && (moved.ino !== stale.ino || moved.text !== stale.text)) {
    // We moved a live lock: restore it (no clobber) and let the caller look again.
    try {
      fs.linkSync(aside, lockPath);
    } catch {
      /* a third process got in; the caller looks again */
    }
  }
  try {
    fs.unlinkSync(aside);
  } catch {
    /* gone */
  }
}
