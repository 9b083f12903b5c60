import { existsSync } from 'node:fs';
import { chmod, chown, lchown, lstat, mkdir, mkdtemp, opendir, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { runTool } from '../../core/exec.js';
import { buildErofsImage, deriveErofsUuid } from '../../images/erofs.js';

const TIMESTAMP = 1_700_000_000;
const isRoot = process.getuid?.() === 0;

let folder: string;
let counter = 0;

beforeAll(async () => {
  folder = await mkdtemp(path.join(tmpdir(), 'qwamos-erofs-test-'));
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

async function newFolder(name: string): Promise<string> {
  counter += 1;
  const created = path.join(folder, `${counter}-${name}`);
  await mkdir(created, { recursive: true });
  return created;
}

interface TreeFile {
  path: string;
  data?: string;
  mode?: number;
  target?: string;
}

const SYSTEM_TREE: TreeFile[] = [
  { path: 'usr/bin/qwamos-runtime', data: '#!/bin/sh\necho runtime\n', mode: 0o755 },
  { path: 'usr/lib/qwamos/policy.json', data: '{"vms":[]}\n', mode: 0o644 },
  { path: 'etc/hostname', data: 'qwamos\n', mode: 0o644 },
  { path: 'etc/shadow', data: 'root:*:1::::::\n', mode: 0o600 },
  { path: 'big.bin', data: 'B'.repeat(3 * 4096 + 17), mode: 0o644 },
  { path: 'bin', target: 'usr/bin' },
];

/**
 * Writes `files` below a new folder in the given order and with the given
 * host mtime, so tests can vary what the image must not depend on.
 */
async function writeTree(name: string, files: TreeFile[], hostMtime: number, parent?: string): Promise<string> {
  const root = parent === undefined ? await newFolder(name) : path.join(parent, name);
  await mkdir(root, { recursive: true });
  await chmod(root, 0o755);

  for (const file of files) {
    const target = path.join(root, file.path);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    if (file.target !== undefined) {
      await symlink(file.target, target);
    } else {
      await writeFile(target, file.data ?? '');
      await chmod(target, file.mode ?? 0o644);
      await utimes(target, hostMtime, hostMtime);
    }
  }
  return root;
}

async function build(name: string, sourceDir: string, extra: { uuid?: string; label?: string; timestamp?: number } = {}) {
  const output = path.join(folder, 'images', `${name}.erofs`);
  const image = await buildErofsImage({ sourceDir, output, timestamp: extra.timestamp ?? TIMESTAMP, uuid: extra.uuid, label: extra.label });
  return { image, bytes: await readFile(output) };
}

/** Lists a folder in the order the file system returns, which fs.readdir hides by sorting. */
async function readdirUnsorted(folderPath: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of await opendir(folderPath)) names.push(entry.name);
  return names;
}

async function rejection(promise: Promise<unknown>): Promise<QwamosError> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(QwamosError);
  return error as QwamosError;
}

describe('buildErofsImage determinism', () => {
  it('builds byte-identical images twice', async () => {
    const source = await writeTree('twice', SYSTEM_TREE, 1000);

    const first = await build('twice-1', source);
    const second = await build('twice-2', source);

    expect(second.bytes.equals(first.bytes)).toBe(true);
    expect(second.image.uuid).toBe(first.image.uuid);
    expect(first.image.size).toBe(first.bytes.length);
    expect(first.bytes.length % 4096).toBe(0);
  });

  it('ignores creation order, host mtimes, owners and xattrs', async () => {
    const source = await writeTree('order-a', SYSTEM_TREE, 1000);
    const other = await writeTree('order-b', [...SYSTEM_TREE].reverse(), 2_000_000_000);
    await runTool('setfattr', ['-n', 'user.origin', '-v', 'host', path.join(other, 'etc/hostname')]);
    if (isRoot) {
      await chown(path.join(other, 'etc/shadow'), 1234, 5678);
      await lchown(path.join(other, 'bin'), 1234, 5678);
    }

    const first = await build('order-a', source);
    const second = await build('order-b', other);

    expect(second.image.uuid).toBe(first.image.uuid);
    expect(second.bytes.equals(first.bytes)).toBe(true);
  });

  // tmpfs returns directory entries newest first, so the two trees are read in opposite orders.
  it.skipIf(!existsSync('/dev/shm'))('ignores readdir order on tmpfs', async () => {
    const shm = await mkdtemp('/dev/shm/qwamos-erofs-test-');
    try {
      const source = await writeTree('a', SYSTEM_TREE, 1000, shm);
      const other = await writeTree('b', [...SYSTEM_TREE].reverse(), 1000, shm);
      expect(await readdirUnsorted(other)).not.toEqual(await readdirUnsorted(source));

      const first = await build('readdir-a', source);
      const second = await build('readdir-b', other);

      expect(second.bytes.equals(first.bytes)).toBe(true);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });

  it('changes image and UUID when a file changes', async () => {
    const source = await writeTree('changed-a', SYSTEM_TREE, 1000);
    const changedTree = SYSTEM_TREE.map((file) => (file.path === 'etc/hostname' ? { ...file, data: 'qwamoz\n' } : file));
    const changed = await writeTree('changed-b', changedTree, 1000);

    const first = await build('changed-a', source);
    const second = await build('changed-b', changed);

    expect(second.image.uuid).not.toBe(first.image.uuid);
    expect(second.bytes.equals(first.bytes)).toBe(false);
  });

  it('changes the UUID with mode, label and timestamp', async () => {
    const source = await writeTree('uuid-inputs', SYSTEM_TREE, 1000);
    const base = await deriveErofsUuid(source, TIMESTAMP, 'system');

    expect(await deriveErofsUuid(source, TIMESTAMP, 'vendor')).not.toBe(base);
    expect(await deriveErofsUuid(source, TIMESTAMP + 1, 'system')).not.toBe(base);
    await chmod(path.join(source, 'etc/hostname'), 0o640);
    expect(await deriveErofsUuid(source, TIMESTAMP, 'system')).not.toBe(base);
    expect(base).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('buildErofsImage read by erofs-utils', () => {
  it('extracts with fsck.erofs', async () => {
    const source = await writeTree('extract', SYSTEM_TREE, 1000);
    const { image } = await build('extract', source);
    const target = path.join(await newFolder('extract-out'), 'root');

    await runTool('fsck.erofs', [`--extract=${target}`, '--preserve-perms', image.path]);

    for (const file of SYSTEM_TREE) {
      const extracted = path.join(target, file.path);
      if (file.target !== undefined) {
        expect(await readlink(extracted)).toBe(file.target);
      } else {
        expect(await readFile(extracted, 'utf8'), file.path).toBe(file.data);
        expect((await lstat(extracted)).mode & 0o7777, file.path).toBe(file.mode);
      }
    }
    expect((await readdir(target)).sort()).toEqual(['big.bin', 'bin', 'etc', 'usr']);
  });

  it('stores UUID, timestamp and root owner', async () => {
    const source = await writeTree('metadata', SYSTEM_TREE, 1000);
    if (isRoot) await chown(path.join(source, 'etc/shadow'), 1234, 5678);
    const uuid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';

    const { image } = await build('metadata', source, { uuid });

    expect(image.uuid).toBe(uuid);
    const superblock = await runTool('dump.erofs', ['-s', image.path], { env: { TZ: 'UTC', LC_ALL: 'C' } });
    expect(superblock.stdout).toMatch(new RegExp(`Filesystem UUID:\\s+${uuid}`));
    expect(superblock.stdout).toMatch(/Filesystem created:\s+Tue Nov 14 22:13:20 2023/);
    const inode = await runTool('dump.erofs', ['--path=/etc/shadow', image.path], { env: { TZ: 'UTC', LC_ALL: 'C' } });
    expect(inode.stdout).toMatch(/Uid: 0\s+Gid: 0\s+Access: 0600/);
    expect(inode.stdout).toContain('Timestamp: 2023-11-14 22:13:20');
    expect(inode.stdout).toContain('Xattr size: 0');
  });

  it('replaces the output without leaving temporary files', async () => {
    const source = await writeTree('replace', SYSTEM_TREE, 1000);
    const outputFolder = await newFolder('replace-out');
    const output = path.join(outputFolder, 'system.erofs');
    await writeFile(output, 'old contents');

    await buildErofsImage({ sourceDir: source, output, timestamp: TIMESTAMP });

    expect(await readdir(outputFolder)).toEqual(['system.erofs']);
    expect((await readFile(output)).readUInt32LE(1024)).toBe(0xe0f5e1e2);
  });
});

describe('buildErofsImage input checks', () => {
  it('rejects a missing folder', async () => {
    const missing = path.join(folder, 'no-such-folder');
    const error = await rejection(buildErofsImage({ sourceDir: missing, output: path.join(folder, 'x.erofs'), timestamp: 0 }));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain(`EROFS source folder ${missing} does not exist`);
  });

  it('rejects a file as source', async () => {
    const file = path.join(folder, 'plain-file');
    await writeFile(file, 'x');
    const error = await rejection(buildErofsImage({ sourceDir: file, output: path.join(folder, 'x.erofs'), timestamp: 0 }));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain(`EROFS source ${file} is not a folder`);
  });

  it('rejects a fractional timestamp', async () => {
    const source = await newFolder('timestamp');
    const error = await rejection(buildErofsImage({ sourceDir: source, output: path.join(folder, 'x.erofs'), timestamp: 1.5 }));
    expect(error.message).toContain('EROFS timestamp 1.5 is invalid');
  });

  it('rejects a malformed UUID', async () => {
    const source = await newFolder('uuid');
    const error = await rejection(buildErofsImage({ sourceDir: source, output: path.join(folder, 'x.erofs'), timestamp: 0, uuid: 'not-a-uuid' }));
    expect(error.message).toContain('EROFS UUID "not-a-uuid" is invalid');
  });
});
