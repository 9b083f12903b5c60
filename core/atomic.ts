/**
 * Atomic file output: everything is written to a temporary path beside its
 * destination and renamed into place, so a build killed at any point leaves
 * either the old file or the complete new one, never a partial one.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from './errors.js';

/** Returns a unique temporary path in the same folder as `destination`. */
export function temporaryPathFor(destination: string): string {
  const suffix = `${process.pid}-${randomBytes(4).toString('hex')}`;
  return path.join(path.dirname(destination), `.${path.basename(destination)}.tmp-${suffix}`);
}

/** Converts ENOSPC and EDQUOT into a DISK_FULL error that names the path. */
export function rethrowWriteError(error: unknown, target: string): never {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOTDIR' || code === 'EEXIST') {
    throw new QwamosError('INPUT_INVALID', `cannot write ${target}: a part of its path exists and is not a folder; choose another path`, { cause: error });
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    throw new QwamosError('DISK_FULL', `no space left on the device while writing ${target}; free space on that file system or choose another --out or cache folder`, { cause: error });
  }
  throw error;
}

/** Writes `data` to `destination` through a temporary file, fsync and rename. */
export async function writeFileAtomic(destination: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(destination), { recursive: true }).catch((error: unknown) => rethrowWriteError(error, destination));
  const temporary = temporaryPathFor(destination);

  try {
    const handle = await open(temporary, 'w', mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, destination);
  } catch (error) {
    await rm(temporary, { force: true });
    rethrowWriteError(error, destination);
  }
}

/**
 * Runs `produce` with a temporary path beside `destination` (a file or a
 * folder, as `produce` chooses) and renames the result into place only when
 * `produce` succeeds. An existing destination is replaced.
 */
export async function produceAtomic<T>(destination: string, produce: (temporaryPath: string) => Promise<T>): Promise<T> {
  await mkdir(path.dirname(destination), { recursive: true }).catch((error: unknown) => rethrowWriteError(error, destination));
  const temporary = temporaryPathFor(destination);

  try {
    const result = await produce(temporary);
    await rm(destination, { recursive: true, force: true });
    await rename(temporary, destination);
    return result;
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    rethrowWriteError(error, destination);
  }
}
