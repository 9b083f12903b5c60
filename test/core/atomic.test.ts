import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { produceAtomic, writeFileAtomic } from '../../core/atomic.js';
import { QwamosError } from '../../core/errors.js';

/** Mounts a 256 KiB tmpfs, which needs root (CI runs as root). */
function mountSmallTmpfs(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('atomic writes', () => {
  const mounted: string[] = [];
  afterAll(() => {
    for (const dir of mounted) execFileSync('umount', [dir]);
  });

  it('replaces a file only when the new content is complete', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-atomic-'));
    const target = path.join(dir, 'artifact.bin');
    await writeFile(target, 'old');

    const failed = produceAtomic(target, async (temporary) => {
      await writeFile(temporary, 'half');
      throw new Error('interrupted');
    });
    await expect(failed).rejects.toThrow('interrupted');

    expect(await readFile(target, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['artifact.bin']);
  });

  it('names the path when the disk is full and leaves nothing behind', async (context) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-full-'));
    if (!mountSmallTmpfs(dir)) context.skip();
    mounted.push(dir);
    const target = path.join(dir, 'system.img');

    const error = await writeFileAtomic(target, Buffer.alloc(1024 * 1024)).then(() => undefined, (caught: unknown) => caught);

    expect(error).toBeInstanceOf(QwamosError);
    expect((error as QwamosError).code).toBe('DISK_FULL');
    expect((error as QwamosError).message).toContain(`no space left on the device while writing ${target}`);
    expect(await readdir(dir)).toEqual([]);
  });
});
