import { chmod, chown, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { runTool } from '../../core/exec.js';
import { gzipDeterministic } from '../../images/compress.js';
import { entriesFromDirectory, writeCpio, type CpioEntry } from '../../images/cpio.js';

const MTIME = 1_700_000_000;
const isRoot = process.getuid?.() === 0;

let folder: string;
let counter = 0;

beforeAll(async () => {
  folder = await mkdtemp(path.join(tmpdir(), 'qwamos-cpio-test-'));
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

/** Extracts `archive` with GNU cpio into a new folder and returns the folder. */
async function extract(archive: Buffer, name: string): Promise<string> {
  const target = await newFolder(name);
  await runTool('cpio', ['-idm', '--no-absolute-filenames', '--quiet'], { cwd: target, input: archive });
  return target;
}

interface ListedEntry {
  mode: string;
  nlink: number;
  uid: number;
  gid: number;
  sizeOrDevice: string;
  name: string;
}

/** Lists `archive` with `cpio -itvn` (numeric owners) and parses each line. */
async function list(archive: Buffer): Promise<ListedEntry[]> {
  const { stdout } = await runTool('cpio', ['-itvn', '--quiet'], { input: archive, env: { LC_ALL: 'C', TZ: 'UTC' } });
  return stdout.split('\n').map((line) => {
    const match = /^(\S{10})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+,\s+\d+|\d+)\s+\w{3}\s+\d+\s+[\d:]+\s+(.*)$/.exec(line);
    if (match === null) throw new Error(`unexpected cpio -itvn line: ${line}`);
    return {
      mode: match[1] as string,
      nlink: Number(match[2]),
      uid: Number(match[3]),
      gid: Number(match[4]),
      sizeOrDevice: (match[5] as string).replace(/\s+/g, ''),
      name: match[6] as string,
    };
  });
}

/** Reads the newc headers of `archive` directly: name, inode number and nlink of every entry, trailer included. */
function readHeaders(archive: Buffer): Array<{ name: string; ino: number; nlink: number; offset: number }> {
  const headers: Array<{ name: string; ino: number; nlink: number; offset: number }> = [];
  let offset = 0;
  for (;;) {
    const field = (index: number): number => Number.parseInt(archive.toString('ascii', offset + 6 + index * 8, offset + 14 + index * 8), 16);
    expect(archive.toString('ascii', offset, offset + 6)).toBe('070701');
    const nameSize = field(11);
    const fileSize = field(6);
    const name = archive.toString('utf8', offset + 110, offset + 110 + nameSize - 1);
    headers.push({ name, ino: field(0), nlink: field(4), offset });
    if (name === 'TRAILER!!!') break;
    const dataStart = Math.ceil((offset + 110 + nameSize) / 4) * 4;
    offset = Math.ceil((dataStart + fileSize) / 4) * 4;
  }
  return headers;
}

function initramfsEntries(): CpioEntry[] {
  return [
    { path: 'init', type: 'file', mode: 0o755, data: '#!/bin/sh\nexec /bin/sh\n' },
    { path: 'etc/motd', type: 'file', mode: 0o644, data: Buffer.from('QWAMOS\n') },
    { path: 'etc/secret', type: 'file', mode: 0o600, data: 'x' },
    { path: 'empty', type: 'file', mode: 0o644 },
    { path: 'bin/sh', type: 'symlink', mode: 0o777, target: 'busybox' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: Buffer.alloc(4097, 0x5a) },
    { path: 'root', type: 'dir', mode: 0o700 },
    { path: 'dev/console', type: 'chardev', mode: 0o600, major: 5, minor: 1 },
    { path: 'dev/vda', type: 'blockdev', mode: 0o660, major: 254, minor: 0 },
    { path: 'usr/lib/modules/6.1.0/modules.dep', type: 'file', mode: 0o644, data: '' },
  ];
}

function cpioError(entries: CpioEntry[], mtime = MTIME): QwamosError {
  try {
    writeCpio(entries, { mtime });
  } catch (error) {
    expect(error).toBeInstanceOf(QwamosError);
    return error as QwamosError;
  }
  throw new Error('writeCpio accepted the entries');
}

describe('writeCpio read by GNU cpio', () => {
  it('lists entries sorted, parents first', async () => {
    const listed = await list(writeCpio(initramfsEntries(), { mtime: MTIME }));

    expect(listed.map((entry) => entry.name)).toEqual([
      'bin', 'bin/busybox', 'bin/sh -> busybox',
      'dev', 'dev/console', 'dev/vda',
      'empty',
      'etc', 'etc/motd', 'etc/secret',
      'init',
      'root',
      'usr', 'usr/lib', 'usr/lib/modules', 'usr/lib/modules/6.1.0', 'usr/lib/modules/6.1.0/modules.dep',
    ]);
  });

  it('lists modes, owners, links and devices', async () => {
    const listed = await list(writeCpio(initramfsEntries(), { mtime: MTIME }));
    const byName = new Map(listed.map((entry) => [entry.name, entry]));

    for (const entry of listed) {
      expect(entry.uid, entry.name).toBe(0);
      expect(entry.gid, entry.name).toBe(0);
    }
    expect(byName.get('dev/console')).toMatchObject({ mode: 'crw-------', nlink: 1, sizeOrDevice: '5,1' });
    expect(byName.get('dev/vda')).toMatchObject({ mode: 'brw-rw----', nlink: 1, sizeOrDevice: '254,0' });
    expect(byName.get('bin/sh -> busybox')).toMatchObject({ mode: 'lrwxrwxrwx', nlink: 1, sizeOrDevice: '7' });
    expect(byName.get('init')).toMatchObject({ mode: '-rwxr-xr-x', nlink: 1 });
    expect(byName.get('etc/secret')).toMatchObject({ mode: '-rw-------', nlink: 1, sizeOrDevice: '1' });
    expect(byName.get('bin/busybox')).toMatchObject({ sizeOrDevice: '4097' });
    expect(byName.get('root')).toMatchObject({ mode: 'drwx------', nlink: 2 });
    expect(byName.get('usr/lib')).toMatchObject({ mode: 'drwxr-xr-x', nlink: 2 });
  });

  it('extracts contents, modes and mtime', async () => {
    const entries = initramfsEntries().filter((entry) => isRoot || (entry.type !== 'chardev' && entry.type !== 'blockdev'));
    const target = await extract(writeCpio(entries, { mtime: MTIME }), 'extract');

    expect(await readFile(path.join(target, 'init'), 'utf8')).toBe('#!/bin/sh\nexec /bin/sh\n');
    expect((await readFile(path.join(target, 'bin/busybox'))).equals(Buffer.alloc(4097, 0x5a))).toBe(true);
    expect((await readFile(path.join(target, 'empty'))).length).toBe(0);
    expect(await readlink(path.join(target, 'bin/sh'))).toBe('busybox');
    expect((await lstat(path.join(target, 'init'))).mode & 0o7777).toBe(0o755);
    expect((await lstat(path.join(target, 'etc/secret'))).mode & 0o7777).toBe(0o600);
    expect((await lstat(path.join(target, 'root'))).mode & 0o7777).toBe(0o700);
    expect((await lstat(path.join(target, 'usr/lib/modules'))).mode & 0o7777).toBe(0o755);
    expect((await lstat(path.join(target, 'etc/motd'))).mtimeMs).toBe(MTIME * 1000);
  });

  it.skipIf(!isRoot)('extracts device nodes as root', async () => {
    const target = await extract(writeCpio(initramfsEntries(), { mtime: MTIME }), 'devices');

    const consoleStats = await lstat(path.join(target, 'dev/console'));
    expect(consoleStats.isCharacterDevice()).toBe(true);
    expect(consoleStats.rdev).toBe((5 << 8) | 1);
    const diskStats = await lstat(path.join(target, 'dev/vda'));
    expect(diskStats.isBlockDevice()).toBe(true);
    expect(diskStats.rdev).toBe(254 << 8);
  });
});

describe('writeCpio layout', () => {
  it('repeats byte for byte in any input order', () => {
    const first = writeCpio(initramfsEntries(), { mtime: MTIME });
    const second = writeCpio(initramfsEntries(), { mtime: MTIME });
    const reversed = writeCpio([...initramfsEntries()].reverse(), { mtime: MTIME });

    expect(second.equals(first)).toBe(true);
    expect(reversed.equals(first)).toBe(true);
  });

  it('changes with mtime', () => {
    const first = writeCpio(initramfsEntries(), { mtime: MTIME });
    const other = writeCpio(initramfsEntries(), { mtime: MTIME + 1 });
    expect(other.equals(first)).toBe(false);
  });

  it('numbers inodes from 1 and ends with the trailer', () => {
    const archive = writeCpio(initramfsEntries(), { mtime: MTIME });
    const headers = readHeaders(archive);

    const members = headers.slice(0, -1);
    expect(members.map((header) => header.ino)).toEqual(members.map((_, index) => index + 1));
    expect(headers.at(-1)).toMatchObject({ name: 'TRAILER!!!', ino: 0, nlink: 1 });
    for (const header of headers) expect(header.offset % 4, header.name).toBe(0);
    expect(archive.length % 4).toBe(0);
  });

  it('sorts by path component, not by string', async () => {
    const listed = await list(writeCpio([
      { path: 'a-b', type: 'file', mode: 0o644 },
      { path: 'a/b', type: 'file', mode: 0o644 },
      { path: 'a.c', type: 'file', mode: 0o644 },
    ], { mtime: MTIME }));

    expect(listed.map((entry) => entry.name)).toEqual(['a', 'a/b', 'a-b', 'a.c']);
  });
});

describe('writeCpio input checks', () => {
  const file = (entryPath: string): CpioEntry => ({ path: entryPath, type: 'file', mode: 0o644 });

  it('rejects an absolute path', () => {
    const error = cpioError([file('/etc/passwd')]);
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('"/etc/passwd" is absolute');
  });

  it('rejects a .. component', () => {
    expect(cpioError([file('etc/../../escape')]).message).toContain(`"etc/../../escape" contains an empty, '.' or '..' component`);
  });

  it('rejects an empty component', () => {
    expect(cpioError([file('etc//motd')]).message).toContain('"etc//motd" contains an empty');
  });

  it('rejects an empty path', () => {
    expect(cpioError([file('')]).message).toContain('cpio entry path "" is invalid');
  });

  it('rejects a duplicate path', () => {
    expect(cpioError([file('init'), file('init')]).message).toContain('"init" is listed twice');
  });

  it('rejects a duplicate of an implied folder', () => {
    expect(cpioError([file('etc/motd'), { path: 'etc', type: 'file', mode: 0o644 }]).message).toContain('"etc/motd" is below "etc", which is a file');
  });

  it('rejects a path over 4095 bytes', () => {
    const long = `${'d/'.repeat(2000)}${'f'.repeat(96)}`;
    const error = cpioError([file(long)]);
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('is 4096 bytes long');
  });

  it('accepts a path of 4095 bytes', async () => {
    const longest = `${'d/'.repeat(2000)}${'f'.repeat(95)}`;
    const listed = await list(writeCpio([file(longest)], { mtime: MTIME }));
    expect(listed.at(-1)?.name).toBe(longest);
  });

  it('rejects the trailer name', () => {
    expect(cpioError([file('TRAILER!!!')]).message).toContain('"TRAILER!!!" is the end-of-archive marker name');
  });

  it('rejects file type bits in mode', () => {
    expect(cpioError([{ path: 'init', type: 'file', mode: 0o100755 }]).message).toContain('"init" has mode 33261');
  });

  it('rejects an unknown type', () => {
    expect(cpioError([{ path: 'fifo', type: 'fifo' as CpioEntry['type'], mode: 0o644 }]).message).toContain('"fifo" has type "fifo"');
  });

  it('rejects data on a folder', () => {
    expect(cpioError([{ path: 'etc', type: 'dir', mode: 0o755, data: 'x' }]).message).toContain('"etc" of type dir has data');
  });

  it('rejects a symlink without target', () => {
    expect(cpioError([{ path: 'bin/sh', type: 'symlink', mode: 0o777 }]).message).toContain('symlink "bin/sh" has no valid target');
  });

  it('rejects a device without minor', () => {
    expect(cpioError([{ path: 'dev/console', type: 'chardev', mode: 0o600, major: 5 }]).message).toContain('"dev/console" has minor number undefined');
  });

  it('rejects a major over 4095', () => {
    expect(cpioError([{ path: 'dev/x', type: 'blockdev', mode: 0o600, major: 4096, minor: 0 }]).message).toContain('"dev/x" has major number 4096');
  });

  it('rejects a device number on a file', () => {
    expect(cpioError([{ path: 'init', type: 'file', mode: 0o755, major: 1, minor: 1 }]).message).toContain('"init" of type file has a device number');
  });

  it('rejects a negative mtime', () => {
    expect(cpioError([file('init')], -1).message).toContain('cpio mtime -1 is invalid');
  });
});

describe('entriesFromDirectory', () => {
  it('copies contents and exec bits only', async () => {
    const source = await newFolder('host-tree');
    await mkdir(path.join(source, 'bin'));
    await mkdir(path.join(source, 'private'), { mode: 0o700 });
    await writeFile(path.join(source, 'bin/tool'), 'tool', { mode: 0o750 });
    await writeFile(path.join(source, 'private/data'), 'data', { mode: 0o600 });
    await symlink('tool', path.join(source, 'bin/alias'));
    await chmod(path.join(source, 'private'), 0o700);
    await utimes(path.join(source, 'bin/tool'), 12345, 12345);

    const entries = await entriesFromDirectory(source, 'opt');
    const listed = await list(writeCpio(entries, { mtime: MTIME }));

    expect(listed.map((entry) => `${entry.mode} ${entry.uid} ${entry.gid} ${entry.name}`)).toEqual([
      'drwxr-xr-x 0 0 opt',
      'drwxr-xr-x 0 0 opt/bin',
      'lrwxrwxrwx 0 0 opt/bin/alias -> tool',
      '-rwxr-xr-x 0 0 opt/bin/tool',
      'drwxr-xr-x 0 0 opt/private',
      '-rw-r--r-- 0 0 opt/private/data',
    ]);
    const target = await extract(writeCpio(entries, { mtime: MTIME }), 'host-tree-out');
    expect(await readFile(path.join(target, 'opt/private/data'), 'utf8')).toBe('data');
    expect((await lstat(path.join(target, 'opt/bin/tool'))).mtimeMs).toBe(MTIME * 1000);
  });

  it('ignores host owners', async () => {
    const source = await newFolder('owners');
    await writeFile(path.join(source, 'file'), 'x');
    if (isRoot) await chown(path.join(source, 'file'), 1234, 5678);

    const listed = await list(writeCpio(await entriesFromDirectory(source), { mtime: MTIME }));

    expect(listed).toMatchObject([{ name: 'file', uid: 0, gid: 0 }]);
  });

  it('rejects a socket', async () => {
    const source = await newFolder('socket');
    const socketPath = path.join(source, 'control.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));

    try {
      const error = await entriesFromDirectory(source).then(() => undefined, (caught: unknown) => caught) as QwamosError;

      expect(error).toBeInstanceOf(QwamosError);
      expect(error.code).toBe('INPUT_INVALID');
      expect(error.message).toContain(`${socketPath} is a FIFO, socket or device node`);
    } finally {
      server.close();
    }
  });

  it('rejects a missing folder', async () => {
    const missing = path.join(folder, 'no-such-folder');
    const error = await entriesFromDirectory(missing).then(() => undefined, (caught: unknown) => caught) as QwamosError;
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain(missing);
  });
});

describe('gzipDeterministic', () => {
  const archive = writeCpio(initramfsEntries(), { mtime: MTIME });

  it('repeats byte for byte', () => {
    expect(gzipDeterministic(archive).equals(gzipDeterministic(Buffer.from(archive)))).toBe(true);
  });

  it('writes a fixed header', () => {
    const header = gzipDeterministic(archive).subarray(0, 10);
    // magic, deflate, no flags, MTIME 0, XFL 2 (level 9), OS 3 (Unix)
    expect(header.toString('hex')).toBe('1f8b0800000000000203');
  });

  it('round-trips through gunzip', async () => {
    const compressedPath = path.join(await newFolder('gzip'), 'initramfs.cpio.gz');
    await writeFile(compressedPath, gzipDeterministic(archive));

    await runTool('gunzip', ['--keep', compressedPath]);

    expect((await readFile(compressedPath.replace(/\.gz$/, ''))).equals(archive)).toBe(true);
    await runTool('gzip', ['--test', compressedPath]);
  });
});
