/**
 * The content-addressed download cache. A verified file is stored as
 * `downloads/sha256/<hex>` under the cache folder, so its name is its
 * digest. Downloads land in `downloads/tmp/` on the same file system, are
 * hashed, and are renamed into place only when the digest matches the
 * lockfile. Every cache hit is hashed again before use.
 */
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sha256File } from './digest.js';
import { rethrowWriteError } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';

/** Environment variable that overrides the cache folder. */
export const CACHE_DIR_ENV = 'QWAMOS_CACHE_DIR';

/** Temporary download folders older than this are left over from killed runs and are removed. */
const STALE_TEMPORARY_MS = 24 * 60 * 60 * 1000;

/**
 * Returns the cache folder: `explicit` (a --cache-dir option) if given, else
 * $QWAMOS_CACHE_DIR, else $XDG_CACHE_HOME/qwamos-build, else
 * ~/.cache/qwamos-build. A relative XDG_CACHE_HOME is ignored, as the XDG
 * Base Directory specification prescribes.
 */
export function resolveCacheDir(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return path.resolve(explicit);

  const override = env[CACHE_DIR_ENV];
  if (override) return path.resolve(override);

  const xdgCacheHome = env.XDG_CACHE_HOME;
  if (xdgCacheHome && path.isAbsolute(xdgCacheHome)) return path.join(xdgCacheHome, 'qwamos-build');

  return path.join(os.homedir(), '.cache', 'qwamos-build');
}

/** Returns the cache path of the file whose SHA-256 is `sha256`. */
export function cachedFilePath(cacheDir: string, sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) {
    throw new QwamosError('INPUT_INVALID', `'${sha256}' is not a SHA-256 digest; expected 64 lowercase hex digits`);
  }
  return path.join(cacheDir, 'downloads', 'sha256', sha256);
}

export { sha256File };

/** Input name and expected digest of a file, for digest checks and their error messages. */
export interface DigestSubject {
  /** Lockfile input name. */
  input: string;
  /** Expected SHA-256 from the lockfile. */
  sha256: string;
}

/**
 * Returns the cache path of `subject` if the cache has it with the expected
 * digest, or undefined if the cache does not have it. A cache entry whose
 * content does not match its name is deleted and reported as
 * CHECKSUM_MISMATCH rather than silently downloaded again, because it
 * means disk corruption or a modified cache. The next run downloads it.
 */
export async function findCachedFile(cacheDir: string, subject: DigestSubject): Promise<string | undefined> {
  const cachedPath = cachedFilePath(cacheDir, subject.sha256);
  try {
    await stat(cachedPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }

  const actual = await sha256File(cachedPath);
  if (actual !== subject.sha256) {
    await rm(cachedPath, { force: true });
    throw new QwamosError('CHECKSUM_MISMATCH', `cache entry ${cachedPath} for input ${subject.input} is corrupt: expected sha256 ${subject.sha256}, actual sha256 ${actual}; the entry was deleted, run the command again to download it again`, {
      data: { input: subject.input, path: cachedPath, expected: subject.sha256, actual },
    });
  }
  return cachedPath;
}

/**
 * Hashes `downloadedPath` and, if it matches `subject.sha256`, renames it
 * into the cache and returns the cache path. On a mismatch the file is
 * deleted and a CHECKSUM_MISMATCH error names the input and both digests.
 * `downloadedPath` must be on the cache's file system, such as a folder from
 * `createDownloadFolder`.
 */
export async function storeVerifiedFile(cacheDir: string, subject: DigestSubject, downloadedPath: string): Promise<string> {
  const actual = await sha256File(downloadedPath);
  if (actual !== subject.sha256) {
    await rm(downloadedPath, { force: true });
    throw new QwamosError('CHECKSUM_MISMATCH', `input ${subject.input}: downloaded file ${path.basename(downloadedPath)} has sha256 ${actual}, but the lockfile expects sha256 ${subject.sha256}; if the archive changed on purpose, review it and run 'qwamos-build lock update --input ${subject.input}'`, {
      data: { input: subject.input, expected: subject.sha256, actual },
    });
  }

  const cachedPath = cachedFilePath(cacheDir, subject.sha256);
  try {
    await mkdir(path.dirname(cachedPath), { recursive: true });
    await rename(downloadedPath, cachedPath);
  } catch (error) {
    rethrowWriteError(error, cachedPath);
  }
  return cachedPath;
}

/**
 * Creates an empty folder under `downloads/tmp/` in the cache for one
 * download, and first removes folders there that a killed run left behind.
 */
export async function createDownloadFolder(cacheDir: string): Promise<string> {
  const temporaryRoot = path.join(cacheDir, 'downloads', 'tmp');
  await mkdir(temporaryRoot, { recursive: true });
  await removeStaleDownloadFolders(temporaryRoot);
  return mkdtemp(path.join(temporaryRoot, `${process.pid}-`));
}

async function removeStaleDownloadFolders(temporaryRoot: string): Promise<void> {
  const now = Date.now();
  for (const entry of await readdir(temporaryRoot)) {
    const entryPath = path.join(temporaryRoot, entry);
    const info = await stat(entryPath).catch(() => undefined);
    if (info && now - info.mtimeMs > STALE_TEMPORARY_MS) {
      await rm(entryPath, { recursive: true, force: true });
    }
  }
}
