/**
 * `qwamos-build bootimg pack|unpack|info`: pack takes mkbootimg's own
 * argument lists and gives the bytes Debian's mkbootimg gives.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runTool } from '../../core/exec.js';
import { bootimgInfoCommand, bootimgPackCommand, bootimgUnpackCommand } from '../../cli/commands/bootimg.js';
import { QwamosError } from '../../core/errors.js';
import { readBootImage } from '../../images/bootimg-read.js';


let dir: string;
const file: Record<string, string> = {};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bootimg-cli-'));
  for (const [name, size] of Object.entries({ kernel: 7000, ramdisk: 2000, dtb: 900, vendor_ramdisk: 3000, dlkm: 1500, bootconfig: 40 })) {
    file[name] = path.join(dir, name);
    await writeFile(file[name]!, randomBytes(size));
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs a command and returns its exit status and standard output. */
async function runCommand(command: { run(argv: string[]): Promise<number> }, argv: string[]): Promise<{ status: number; stdout: string }> {
  let stdout = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  try {
    const status = await command.run(argv);
    return { status, stdout };
  } finally {
    spy.mockRestore();
  }
}

describe('bootimg pack', () => {
  it('takes a mkbootimg command line and matches its bytes and --id', async () => {
    const args = (output: string) => [
      '--kernel', file.kernel!, '--ramdisk', file.ramdisk!, '--dtb', file.dtb!, '--header_version', '2', '--pagesize', '4096',
      '--base', '0x80000000', '--kernel_offset', '0x00080000', '--ramdisk_offset', '0x02000000', '--tags_offset', '0x100',
      '--dtb_offset', '0x01f00000', '--os_version', '14.0.0', '--os_patch_level', '2024-05-05', '--board', 'qwamos',
      '--cmdline', 'console=ttyAMA0 quiet', '--id', '-o', output,
    ];
    const theirs = path.join(dir, 'cli-theirs.img');
    const ours = path.join(dir, 'cli-ours.img');
    const expected = await runTool('mkbootimg', args(theirs));
    const actual = await runCommand(bootimgPackCommand, args(ours));

    expect(actual.status).toBe(0);
    expect((await readFile(ours)).equals(await readFile(theirs))).toBe(true);
    expect(actual.stdout).toBe(`${expected.stdout}\n`);
  });

  it('writes boot and vendor_boot v3 in one call as mkbootimg does', async () => {
    const args = (boot: string, vendor: string) => [
      '--header_version', '3', '--kernel', file.kernel!, '--ramdisk', file.ramdisk!, '--cmdline', 'quiet',
      '--vendor_boot', vendor, '--vendor_ramdisk', file.vendor_ramdisk!, '--dtb', file.dtb!, '--vendor_cmdline', 'androidboot.x=1',
      '--pagesize', '2048', '--board', 'qwamos', '--base', '0x0', '--output', boot,
    ];
    await runTool('mkbootimg', args(path.join(dir, 'v3-theirs.img'), path.join(dir, 'vendor-v3-theirs.img')));
    await runCommand(bootimgPackCommand, args(path.join(dir, 'v3-ours.img'), path.join(dir, 'vendor-v3-ours.img')));

    // Only the header_size fields differ: boot 1580 (theirs 1596) at 20, vendor_boot 2112 (theirs 2108) at 2096.
    const boot = await readFile(path.join(dir, 'v3-ours.img'));
    const bootTheirs = await readFile(path.join(dir, 'v3-theirs.img'));
    bootTheirs.writeUInt32LE(1580, 20);
    expect(boot.equals(bootTheirs)).toBe(true);
    const vendor = await readFile(path.join(dir, 'vendor-v3-ours.img'));
    const vendorTheirs = await readFile(path.join(dir, 'vendor-v3-theirs.img'));
    vendorTheirs.writeUInt32LE(2112, 2096);
    expect(vendor.equals(vendorTheirs)).toBe(true);
  });

  it('groups vendor ramdisk fragment options as mkbootimg does', async () => {
    const output = path.join(dir, 'vendor-v4.img');
    const { status, stdout } = await runCommand(bootimgPackCommand, [
      '--header_version', '4', '--vendor_boot', output, '--pagesize', '4096', '--dtb', file.dtb!, '--vendor_ramdisk', file.vendor_ramdisk!,
      '--ramdisk_type', 'DLKM', '--ramdisk_name', 'dlkm', '--board_id0', '0xC0FFEE', '--board_id15', '0x15151515', '--vendor_ramdisk_fragment', file.dlkm!,
      '--ramdisk_type', '2', '--ramdisk_name', 'recovery', '--vendor_ramdisk_fragment', file.dlkm!,
      '--vendor_bootconfig', file.bootconfig!, '--json',
    ]);
    expect(status).toBe(0);
    expect(JSON.parse(stdout).images[0].kind).toBe('vendor_boot');

    const info = await readBootImage(output);
    if (info.kind !== 'vendor_boot') throw new Error(`read ${info.kind}`);
    expect(info.ramdiskTable.map((entry) => [entry.name, entry.type, entry.size])).toEqual([['', 1, 3000], ['dlkm', 3, 1500], ['recovery', 2, 1500]]);
    expect(info.ramdiskTable[1]!.boardId[0]).toBe(0xc0ffee);
    expect(info.ramdiskTable[1]!.boardId[15]).toBe(0x15151515);
    expect(info.ramdiskTable[2]!.boardId.every((word) => word === 0)).toBe(true);
    expect(info.header.bootconfigSize).toBe(40);
  });

  it('writes init_boot for v4 with a ramdisk and no kernel', async () => {
    const output = path.join(dir, 'init_boot.img');
    await runCommand(bootimgPackCommand, ['--header_version', '4', '--ramdisk', file.ramdisk!, '--os_version', '14.0.0', '--os_patch_level', '2024-05', '--output', output]);
    const info = await readBootImage(output);
    expect(info.kind).toBe('boot');
    if (info.kind === 'boot') expect(info.header.headerVersion).toBe(4);
    expect(info.sections.map((section) => section.name)).toEqual(['ramdisk']);
  });

  it.each([
    ['no output', ['--kernel', 'k'], 'give --output'],
    ['unknown option', ['--gki_signing_key', 'k', '-o', 'x'], "Unknown option '--gki_signing_key'"],
    ['fragment without name', ['--header_version', '4', '--vendor_boot', 'v.img', '--vendor_ramdisk_fragment', 'r'], 'has no --ramdisk_name before it'],
    ['options after the last fragment', ['--header_version', '4', '--vendor_boot', 'v.img', '--ramdisk_name', 'a'], '--ramdisk_name after the last --vendor_ramdisk_fragment'],
    ['non-integer base', ['--kernel', 'k', '--base', '0xZZ', '-o', 'x'], "--base '0xZZ' is not an integer"],
    ['dtbo and acpio', ['--kernel', 'k', '--recovery_dtbo', 'a', '--recovery_acpio', 'b', '-o', 'x'], 'give only one'],
  ])('rejects %s', async (_name, argv, message) => {
    const error = await bootimgPackCommand.run(argv).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QwamosError);
    expect((error as QwamosError).code).toBe('USAGE');
    expect((error as QwamosError).message).toContain(message);
  });

  it('rejects --pagesize 2048 for a v3 boot image alone', async () => {
    const error = await bootimgPackCommand.run(['--header_version', '3', '--kernel', file.kernel!, '--pagesize', '2048', '-o', path.join(dir, 'x.img')]).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).code).toBe('LIMIT_EXCEEDED');
    expect((error as QwamosError).message).toContain('fixed page size of 4096');
  });

  it('rejects --vendor_boot with header version 2', async () => {
    const error = await bootimgPackCommand.run(['--header_version', '2', '--vendor_boot', path.join(dir, 'v.img'), '--vendor_ramdisk', file.ramdisk!]).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).message).toContain('--vendor_boot needs --header_version 3 or 4, not 2');
  });
});

describe('bootimg unpack and info', () => {
  it('unpack writes the sections under unpack_bootimg names', async () => {
    const outDir = path.join(dir, 'unpacked');
    const { status, stdout } = await runCommand(bootimgUnpackCommand, ['--boot_img', path.join(dir, 'cli-ours.img'), '--out', outDir, '--json']);
    expect(status).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.files.map((name: string) => path.basename(name))).toEqual(['kernel', 'ramdisk', 'dtb']);
    expect((await readFile(path.join(outDir, 'kernel'))).equals(await readFile(file.kernel!))).toBe(true);
    expect((await readFile(path.join(outDir, 'dtb'))).equals(await readFile(file.dtb!))).toBe(true);
  });

  it('info prints the header fields that unpack_bootimg prints', async () => {
    const image = path.join(dir, 'cli-theirs.img');
    const { stdout } = await runCommand(bootimgInfoCommand, [image, '--json']);
    const info = JSON.parse(stdout);
    const debian = (await runTool('unpack_bootimg', ['--boot_img', image, '--out', path.join(dir, 'info-debian')])).stdout;

    expect(debian).toContain(`kernel load address: 0x${info.header.kernelAddr.toString(16)}`);
    expect(debian).toContain(`ramdisk size: ${info.header.ramdiskSize}`);
    expect(debian).toContain(`os version: ${info.osVersion}`);
    expect(debian).toContain(`os patch level: ${info.osPatchLevel}`);
    expect(debian).toContain(`product name: ${info.header.name}`);
    expect(debian).toContain(`dtb address: 0x${info.header.dtbAddr.toString(16)}`);
  });

  it('info text lists the vendor ramdisk table', async () => {
    const { stdout } = await runCommand(bootimgInfoCommand, [path.join(dir, 'vendor-v4.img')]);
    expect(stdout).toContain("ramdisk 1: name 'dlkm', type 3, size 1500, offset 3000");
    expect(stdout).toContain('section bootconfig:');
  });

  it('info rejects two images', async () => {
    const error = await bootimgInfoCommand.run(['a.img', 'b.img']).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).message).toContain('give exactly one image (got 2)');
  });
});
