import { link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { runTool } from '../../core/exec.js';
import { gzipDeterministic } from '../../images/compress.js';
import { findCpioEntry, normalizeCpioPath, readCpio, type CpioArchiveEntry } from '../../images/cpio-read.js';
import { writeCpio, type CpioEntry } from '../../images/cpio.js';

const MTIME = 1_700_000_000;

let folder: string;
let counter = 0;

beforeAll(async () => {
  folder = await mkdtemp(path.join(tmpdir(), 'qwamos-cpio-read-'));
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

function sampleEntries(): CpioEntry[] {
  return [
    { path: 'init', type: 'file', mode: 0o755, data: '#!/bin/sh\nexec /bin/sh\n' },
    { path: 'etc/qwamos/keys/system-stage.pub', type: 'file', mode: 0o644, data: Buffer.alloc(2592, 0xa5) },
    { path: 'empty', type: 'file', mode: 0o644 },
    { path: 'bin/sh', type: 'symlink', mode: 0o777, target: 'busybox' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: Buffer.alloc(4097, 0x5a) },
    { path: 'root', type: 'dir', mode: 0o700 },
    { path: 'dev/console', type: 'chardev', mode: 0o600, major: 5, minor: 1 },
    { path: 'dev/vda', type: 'blockdev', mode: 0o660, major: 254, minor: 0 },
  ];
}

/** Lists names with GNU cpio, one per line, as `cpio -it` prints them. */
async function gnuNames(archive: Buffer): Promise<string[]> {
  const { stdout } = await runTool('cpio', ['-it', '--quiet'], { input: archive, env: { LC_ALL: 'C' } });
  return stdout.split('\n').filter((line) => line !== '');
}

/** Returns the INPUT_INVALID or LIMIT_EXCEEDED error that readCpio throws for `bytes`. */
function readError(bytes: Uint8Array, options: Parameters<typeof readCpio>[1] = {}): QwamosError {
  try {
    readCpio(bytes, { source: 'test.cpio', ...options });
  } catch (error) {
    if (error instanceof QwamosError) return error;
    throw error;
  }
  throw new Error('readCpio accepted the archive');
}

/** Returns the offset of the first header whose name is `name`. */
function headerOffset(archive: Buffer, name: string): number {
  const offset = archive.indexOf(Buffer.from(`${name}\0`));
  expect(offset).toBeGreaterThan(110);
  return offset - 110;
}

/** Builds a gzip member by hand: header with `flags` and `extra` bytes after it, deflate data, CRC32 and ISIZE. */
function handMadeGzip(data: Buffer, flags: number, extra: Buffer): Buffer {
  const header = Buffer.from([0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data), 0);
  trailer.writeUInt32LE(data.length, 4);
  return Buffer.concat([header, extra, deflateRawSync(data), trailer]);
}

/** XORs the byte at `offset` with `mask`, in place. */
function flipBits(bytes: Buffer, offset: number, mask: number): void {
  bytes[offset] = bytes[offset]! ^ mask;
}

/** Appends NUL bytes up to a multiple of 4 bytes. */
function padTo4(bytes: Buffer): Buffer {
  return Buffer.concat([bytes, Buffer.alloc((4 - (bytes.length % 4)) % 4)]);
}

function summary(entries: CpioArchiveEntry[]): string[] {
  return entries.map((entry) => `${entry.type} ${entry.path}`);
}

describe('readCpio on valid archives', () => {
  it('reads writeCpio output as GNU cpio lists it', async () => {
    const archive = writeCpio(sampleEntries(), { mtime: MTIME });
    const entries = readCpio(archive);

    expect(entries.map((entry) => entry.name)).toEqual(await gnuNames(archive));
    expect(findCpioEntry(entries, 'bin/busybox')?.data).toEqual(Buffer.alloc(4097, 0x5a));
    expect(findCpioEntry(entries, 'bin/sh')?.data.toString()).toBe('busybox');
    expect(findCpioEntry(entries, 'bin/sh')?.type).toBe('symlink');
    expect(findCpioEntry(entries, 'dev/vda')).toMatchObject({ type: 'blockdev', rdevMajor: 254, rdevMinor: 0, mode: 0o660 });
    expect(findCpioEntry(entries, 'root')).toMatchObject({ type: 'dir', mode: 0o700 });
    expect(findCpioEntry(entries, 'init')).toMatchObject({ mtime: MTIME, uid: 0, gid: 0, nlink: 1 });
  });

  it('reads the gzip-compressed archive the same', () => {
    const archive = writeCpio(sampleEntries(), { mtime: MTIME });

    expect(readCpio(gzipDeterministic(archive))).toEqual(readCpio(archive));
  });

  it('reads a GNU cpio newc archive of a host folder', async () => {
    const source = await newFolder('host');
    await mkdir(path.join(source, 'etc', 'qwamos'), { recursive: true });
    await writeFile(path.join(source, 'etc', 'qwamos', 'key.pub'), Buffer.alloc(2592, 7));
    await writeFile(path.join(source, 'init'), 'echo hi\n');
    await link(path.join(source, 'init'), path.join(source, 'init-link'));
    await symlink('init', path.join(source, 'start'));
    const { stdout: list } = await runTool('sh', ['-c', 'find . | LC_ALL=C sort'], { cwd: source });
    const archivePath = path.join(source, '..', 'host.cpio');
    await runTool('sh', ['-c', `cpio -o -H newc --quiet > "${archivePath}"`], { cwd: source, input: `${list}\n` });
    const archive = await readFile(archivePath);

    const entries = readCpio(archive);

    expect(entries.map((entry) => entry.name)).toEqual(await gnuNames(archive));
    expect(entries[0]).toMatchObject({ name: '.', path: '', type: 'dir' });
    expect(findCpioEntry(entries, '/etc/qwamos/key.pub')?.data).toEqual(Buffer.alloc(2592, 7));
    expect(findCpioEntry(entries, 'start')?.data.toString()).toBe('init');
    // GNU cpio stores the contents of a hard-linked file once, with the last link.
    const links = [findCpioEntry(entries, 'init'), findCpioEntry(entries, 'init-link')];
    expect(links.map((entry) => entry?.nlink)).toEqual([2, 2]);
    expect(links[0]?.ino).toBe(links[1]?.ino);
    expect(links.map((entry) => entry?.data.toString()).join('')).toBe('echo hi\n');
  });

  it('checks the checksums of a GNU cpio crc archive', async () => {
    const source = await newFolder('crc');
    await writeFile(path.join(source, 'data'), Buffer.from('checksummed contents\n'));
    const archivePath = path.join(source, '..', 'crc.cpio');
    await runTool('sh', ['-c', `cpio -o -H crc --quiet > "${archivePath}"`], { cwd: source, input: 'data\n' });
    const archive = await readFile(archivePath);
    expect(archive.toString('latin1', 0, 6)).toBe('070702');

    expect(findCpioEntry(readCpio(archive), 'data')?.data.toString()).toBe('checksummed contents\n');

    const damaged = Buffer.from(archive);
    flipBits(damaged, archive.indexOf('checksummed'), 0x01);
    expect(readError(damaged).message).toContain("cpio checksum of entry 'data'");
  });

  it('reads a gzip file name written by gzip', async () => {
    const archivePath = path.join(await newFolder('named'), 'initramfs.cpio');
    await writeFile(archivePath, writeCpio(sampleEntries(), { mtime: MTIME }));
    await runTool('gzip', ['-9', '--name', archivePath]);
    const compressed = await readFile(`${archivePath}.gz`);
    expect(compressed[3]! & 0x08).toBe(0x08);

    expect(summary(readCpio(compressed))).toEqual(summary(readCpio(writeCpio(sampleEntries(), { mtime: MTIME }))));
  });

  it('reads every archive the kernel unpacks', () => {
    const first = writeCpio([{ path: 'init', type: 'file', mode: 0o755, data: 'one' }], { mtime: MTIME });
    const second = writeCpio([{ path: 'etc/extra', type: 'file', mode: 0o644, data: 'two' }], { mtime: MTIME });
    const third = writeCpio([{ path: 'usr/late', type: 'file', mode: 0o644, data: 'three' }], { mtime: MTIME });
    // A raw archive must start at a multiple of 4, so NUL bytes pad the gzip members to one.
    const image = Buffer.concat([padTo4(Buffer.concat([gzipSync(first), Buffer.alloc(4), gzipSync(second)])), Buffer.alloc(8), third]);

    expect(readCpio(image).map((entry) => entry.path)).toEqual(['init', 'etc', 'etc/extra', 'usr', 'usr/late']);
  });

  it('reads NUL-separated archives inside one gzip member', () => {
    const first = writeCpio([{ path: 'a', type: 'file', mode: 0o644, data: '1' }], { mtime: MTIME });
    const second = writeCpio([{ path: 'b', type: 'file', mode: 0o644, data: '2' }], { mtime: MTIME });

    const entries = readCpio(gzipSync(Buffer.concat([first, Buffer.alloc(512), second, Buffer.alloc(16)])));

    expect(entries.map((entry) => entry.path)).toEqual(['a', 'b']);
  });
});

describe('normalizeCpioPath', () => {
  it('resolves names from the root folder', () => {
    expect(normalizeCpioPath('./etc//qwamos/./x')).toBe('etc/qwamos/x');
    expect(normalizeCpioPath('/etc/x')).toBe('etc/x');
    expect(normalizeCpioPath('.')).toBe('');
    expect(normalizeCpioPath('etc/../x')).toBeUndefined();
  });
});

describe('readCpio rejects', () => {
  const archive = (): Buffer => writeCpio([{ path: 'init', type: 'file', mode: 0o755, data: 'abcde' }], { mtime: MTIME });

  it('odc archives', async () => {
    const source = await newFolder('odc');
    await writeFile(path.join(source, 'x'), 'x');
    const { stdout } = await runTool('sh', ['-c', 'echo x | cpio -o -H odc --quiet | od -An -c | head -1'], { cwd: source });
    expect(stdout).toContain('0   7   0   7   0   7');
    const odcPath = path.join(source, '..', 'odc.cpio');
    await runTool('sh', ['-c', `echo x | cpio -o -H odc --quiet > "${odcPath}"`], { cwd: source });

    expect(readError(await readFile(odcPath)).message).toContain('bad cpio magic "070707" (odc format; this reader reads newc only) at byte 0');
  });

  it('xz-compressed images', async () => {
    const { stdout } = await runTool('sh', ['-c', 'printf abc | xz -c | base64 -w0']);

    expect(readError(Buffer.from(stdout, 'base64')).message).toContain('xz compressed data is not supported (only gzip) at byte 0');
  });

  it('a header field that is not hexadecimal', () => {
    const bad = archive();
    bad.write('0000000g', 6 + 6 * 8, 'latin1');

    expect(readError(bad).message).toContain('cpio header field fileSize "0000000g" is not 8 hexadecimal digits at byte 54');
  });

  it('a truncated archive', () => {
    const whole = archive();

    expect(readError(whole.subarray(0, 120)).message).toContain("truncated data of cpio entry 'init'");
    expect(readError(whole.subarray(0, headerOffset(whole, 'TRAILER!!!'))).message).toContain('truncated cpio header (or missing trailer)');
  });

  it('non-NUL padding', () => {
    const bad = archive();
    // 'init' data ends at 110 + 5 (name) + 3 (padding) + 5; padding follows.
    bad[110 + 8 + 5] = 0x20;

    expect(readError(bad).message).toContain("padding after the data of cpio entry 'init' is not NUL at byte 123");
  });

  it('a non-zero check field in a 070701 header', () => {
    const bad = archive();
    bad.write('00000001', 6 + 12 * 8, 'latin1');

    expect(readError(bad).message).toContain('cpio header field check is 1, but a 070701 archive has 0');
  });

  it('a name without its NUL', () => {
    const bad = archive();
    bad[110 + 4] = 0x41;

    expect(readError(bad).message).toContain('cpio name is not a NUL-terminated string of its name size at byte 110');
  });

  it('a folder with data', () => {
    const bad = writeCpio([{ path: 'x', type: 'file', mode: 0o644, data: 'abc' }], { mtime: MTIME });
    bad.write('000041ed', 6 + 1 * 8, 'latin1');

    expect(readError(bad).message).toContain("cpio entry 'x' is a dir with 3 bytes of data");
  });

  it('an unknown file type', () => {
    const bad = archive();
    bad.write('0000f1ed', 6 + 1 * 8, 'latin1');

    expect(readError(bad).message).toContain("cpio entry 'init' has mode 0o170755, which is no known file type");
  });

  it('a name with a .. component', () => {
    const bad = writeCpio([{ path: 'a/xx/b', type: 'file', mode: 0o644 }], { mtime: MTIME });
    const offset = bad.indexOf('a/xx/b');
    bad.write('a/../b', offset, 'latin1');

    expect(readError(bad).message).toContain("cpio entry name 'a/../b' contains a '..' component");
  });

  it('junk after a gzip member', () => {
    const error = readError(Buffer.concat([gzipSync(archive()), Buffer.from('junk')]));

    expect(error.message).toContain('invalid data 0x6a, neither a cpio header, NUL padding nor gzip');
  });

  it('junk after the trailer inside a gzip member', () => {
    const error = readError(gzipSync(Buffer.concat([archive(), Buffer.from('junk')])));

    expect(error.message).toMatch(/invalid data after a cpio trailer, neither NUL padding nor another cpio header at byte \d+ of the data decompressed from the gzip member at byte 0/);
  });

  it('an archive at an unaligned offset', () => {
    const error = readError(Buffer.concat([archive(), Buffer.alloc(2), archive()]));

    expect(error.message).toContain(`cpio archive starts at an offset that is not a multiple of 4 at byte ${archive().length + 2}`);
  });

  it('a path that a later archive replaces', () => {
    const later = writeCpio([{ path: 'init', type: 'file', mode: 0o755, data: 'evil' }], { mtime: MTIME });
    const error = readError(Buffer.concat([padTo4(gzipSync(archive())), later]));

    expect(error.message).toContain("path 'init' occurs twice; the kernel keeps the last one");
    expect(error.data.reason).toBe('duplicate path');
  });

  it('a gzip FEXTRA field that gzip accepts', async () => {
    const extra = Buffer.from([2, 0, 0x41, 0x42]);
    const member = handMadeGzip(archive(), 0x04, extra);
    const file = path.join(await newFolder('fextra'), 'extra.gz');
    await writeFile(file, member);
    await runTool('gzip', ['-t', file]);

    expect(readError(member).message).toContain("gzip flags 0x04 set FHCRC, FEXTRA, FCOMMENT or reserved bits, which the kernel's gunzip does not parse at byte 3");
  });

  it('a gzip CRC32 mismatch that gzip reports too', async () => {
    const member = gzipSync(archive());
    flipBits(member, member.length - 8, 0x01);
    const file = path.join(await newFolder('crc32'), 'bad.gz');
    await writeFile(file, member);
    await expect(runTool('gzip', ['-t', file])).rejects.toThrow(/gzip exited/);

    expect(readError(member).message).toContain(`gzip CRC32 does not match the decompressed data at byte ${member.length - 8}`);
  });

  it('a gzip ISIZE mismatch', () => {
    const member = gzipSync(archive());
    flipBits(member, member.length - 1, 0x01);

    expect(readError(member).message).toContain(`gzip ISIZE does not match the decompressed size at byte ${member.length - 4}`);
  });

  it('damaged deflate data', () => {
    const member = gzipSync(Buffer.alloc(10_000, 0x61));
    flipBits(member, 12, 0xff);

    expect(readError(member).message).toMatch(/invalid deflate data \(.+\) at byte 10/);
  });

  it('a gzip trailer cut short', () => {
    const member = gzipSync(archive());

    expect(readError(member.subarray(0, member.length - 3)).message).toContain(`truncated gzip trailer at byte ${member.length - 8}`);
  });

  it('decompressed data over the limit', () => {
    const error = readError(gzipSync(Buffer.alloc(100_000)), { maxDecompressedSize: 50_000 });

    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('decompresses to more than the limit of 50000 bytes');
  });
});
