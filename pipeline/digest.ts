/** SHA-256 helpers for cache keys and build records. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readlink, stat } from 'node:fs/promises';
import path from 'node:path';

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Orders strings by UTF-16 code units, independent of the locale. */
function compareKeys(a: string, b: string): number {
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}

/**
 * Serializes a JSON value with object keys sorted at every level, so that
 * equal values always give the same bytes and so the same cache key.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, entry]) => entry !== undefined)
    .sort(([a], [b]) => compareKeys(a, b));
  return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonicalJson(entry)}`).join(',')}}`;
}

/**
 * Digests a folder tree: relative paths, file modes' executable bit,
 * symlink targets and file contents, in sorted order. Timestamps and
 * ownership are left out because the image writers ignore them too.
 */
export async function sha256Tree(root: string): Promise<string> {
  const hash = createHash('sha256');

  async function visit(relative: string): Promise<void> {
    const absolute = path.join(root, relative);
    const entries = (await readdir(absolute, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const child = path.join(relative, entry.name);
      const childPath = path.join(root, child);
      if (entry.isDirectory()) {
        hash.update(`d ${child}\n`);
        await visit(child);
      } else if (entry.isSymbolicLink()) {
        hash.update(`l ${child} ${await readlink(childPath)}\n`);
      } else if (entry.isFile()) {
        const executable = ((await stat(childPath)).mode & 0o111) !== 0;
        hash.update(`f ${child} ${executable ? 'x' : '-'} ${await sha256File(childPath)}\n`);
      }
    }
  }

  await visit('');
  return hash.digest('hex');
}
