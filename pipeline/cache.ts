/**
 * The step cache: one folder per (step id, cache key) under
 * CACHE/steps/ID/KEY, holding the step's outputs, its log and meta.json.
 * An entry is built in a temporary folder and renamed into place when
 * complete, so a killed build never leaves a partial entry behind.
 */
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sha256File } from './digest.js';
import type { OutputRecord } from './step.js';

/** Format version of meta.json; bump when its fields change. */
const META_VERSION = 1;

export interface CacheEntryMeta {
  metaVersion: number;
  step: string;
  key: string;
  keyMaterial: unknown;
  outputs: OutputRecord[];
  durationMs: number;
  createdAt: string;
}

export function stepEntryDir(cacheDir: string, stepId: string, key: string): string {
  return path.join(cacheDir, 'steps', stepId, key);
}

/** Returns the entry's metadata when a complete entry exists, else undefined. */
export async function readCacheEntry(entryDir: string): Promise<CacheEntryMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(path.join(entryDir, 'meta.json'), 'utf8')) as CacheEntryMeta;
    return meta.metaVersion === META_VERSION ? meta : undefined;
  } catch {
    return undefined;
  }
}

/** Lists every regular file below `outputsDir` with its size and SHA-256. */
export async function recordOutputs(outputsDir: string): Promise<OutputRecord[]> {
  const records: OutputRecord[] = [];

  async function visit(relative: string): Promise<void> {
    const entries = await readdir(path.join(outputsDir, relative), { withFileTypes: true });
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const child = path.join(relative, entry.name);
      if (entry.isDirectory()) {
        await visit(child);
      } else if (entry.isFile()) {
        const absolute = path.join(outputsDir, child);
        records.push({ name: child, size: (await stat(absolute)).size, sha256: await sha256File(absolute) });
      }
    }
  }

  await visit('');
  return records;
}

export async function writeCacheMeta(entryDir: string, meta: Omit<CacheEntryMeta, 'metaVersion' | 'createdAt'>): Promise<void> {
  const full: CacheEntryMeta = { metaVersion: META_VERSION, createdAt: new Date().toISOString(), ...meta };
  await writeFile(path.join(entryDir, 'meta.json'), `${JSON.stringify(full, null, 2)}\n`);
}

/**
 * Removes temporary folders left by killed builds for one step. Only
 * folders whose owning process is gone are removed, so a concurrent build
 * keeps its own.
 */
export async function removeStaleTemporaries(cacheDir: string, stepId: string): Promise<void> {
  const stepDir = path.join(cacheDir, 'steps', stepId);
  const names = await readdir(stepDir).catch(() => [] as string[]);

  for (const name of names) {
    const match = /\.tmp-(\d+)-/.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid !== process.pid && !isProcessAlive(pid)) {
      await rm(path.join(stepDir, name), { recursive: true, force: true });
    }
  }
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
