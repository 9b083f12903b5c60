/**
 * An exclusive lock file for read-modify-write updates in the key folder
 * (key generation and the rollback ledger), so two builds that run at the
 * same time cannot interleave their updates.
 */
import { open, readFile, rm } from 'node:fs/promises';
import { QwamosError } from '../core/errors.js';

const RETRY_INTERVAL_MS = 100;

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates `lockPath` exclusively; removes it first when the process named in it has exited. */
async function tryLock(lockPath: string): Promise<boolean> {
  try {
    const handle = await open(lockPath, 'wx', 0o600);
    await handle.writeFile(`${process.pid}\n`);
    await handle.close();
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }

  const owner = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
  if (Number.isInteger(owner) && owner > 0 && !isRunning(owner)) await rm(lockPath, { force: true });
  return false;
}

/** Runs `action` while holding the lock file `lockPath`; waits up to `timeoutMs` for another holder. */
export async function withLockFile<T>(lockPath: string, action: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (!(await tryLock(lockPath))) {
    if (Date.now() > deadline) {
      const owner = (await readFile(lockPath, 'utf8').catch(() => '')).trim() || 'unknown';
      throw new QwamosError('COMMAND_FAILED', `timed out after ${timeoutMs} ms waiting for the lock ${lockPath} (held by process ${owner}); wait for that build to finish, or remove the file if no qwamos-build is running`);
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_INTERVAL_MS));
  }

  try {
    return await action();
  } finally {
    await rm(lockPath, { force: true });
  }
}
