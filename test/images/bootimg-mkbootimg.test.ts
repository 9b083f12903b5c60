/**
 * Boot images against Debian's mkbootimg and unpack_bootimg (29.0.6):
 * byte-identical output for header versions 0 to 2, the documented
 * differences (v3 header sizes, command lines over 511 bytes), and each
 * tool reading the other's output.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { QwamosError } from '../../core/errors.js';
import { readBootImage, readBootImageSection } from '../../images/bootimg-read.js';
import { writeVendorBootImage } from '../../images/bootimg-vendor.js';
import { writeBootImage, type BootImageOptions } from '../../images/bootimg-write.js';


let dir: string;
const input: Record<string, string> = {};
const sizes = { kernel: 5000, ramdisk: 3001, second: 1234, recovery_dtbo: 777, dtb: 2049, vendor_ramdisk: 6000 };

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bootimg-mkbootimg-'));
  for (const [name, size] of Object.entries(sizes)) {
    input[name] = path.join(dir, name);
    await writeFile(input[name]!, randomBytes(size));
  }
  input.empty = path.join(dir, 'empty');
  await writeFile(input.empty, '');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Case {
  version: 0 | 1 | 2;
  pageSize: number;
  second: boolean;
  cmdline: string;
  extra: string[];
  options: Partial<BootImageOptions>;
}

const CMDLINES = ['', 'console=ttyAMA0 androidboot.hardware=qwamos', `${'x'.repeat(499)} y=123456789`];
/** Further mkbootimg options, cycled over the cases, with the matching writer options. */
const EXTRAS: { args: string[]; options: Partial<BootImageOptions> }[] = [
  { args: [], options: {} },
  { args: ['--board', 'qwamos-board', '--os_version', '14.0.0', '--os_patch_level', '2024-05'], options: { board: 'qwamos-board', osVersion: '14.0.0', osPatchLevel: '2024-05' } },
  {
    args: ['--base', '0x80000000', '--kernel_offset', '0x80000', '--ramdisk_offset', '0x2000000', '--second_offset', '0x10000', '--tags_offset', '0x1000', '--dtb_offset', '0x1f00000', '--os_version', '13.1.2', '--os_patch_level', '2023-12-05'],
    options: { base: 0x8000_0000, kernelOffset: 0x80000, ramdiskOffset: 0x200_0000, secondOffset: 0x10000, tagsOffset: 0x1000, dtbOffset: 0x1f0_0000, osVersion: '13.1.2', osPatchLevel: '2023-12-05' },
  },
];

/**
 * Every header version with every page size; the second stage, command line
 * (up to 511 bytes) and other options alternate over the cases. Version 2
 * always has a dtb, which it requires. Recovery dtbo cases are derived from
 * these below, because mkbootimg 29.0.6 fails on --recovery_dtbo.
 */
function matrix(): Case[] {
  const cases: Case[] = [];
  let index = 0;
  for (const version of [0, 1, 2] as const) {
    for (const pageSize of [2048, 4096, 8192, 16384]) {
      const extra = EXTRAS[index % EXTRAS.length]!;
      cases.push({ version, pageSize, second: index % 2 === 1, cmdline: CMDLINES[index % CMDLINES.length]!, extra: extra.args, options: extra.options });
      index += 1;
    }
  }
  return cases;
}

function caseName(testCase: Case): string {
  const parts = [`v${testCase.version}`, `page ${testCase.pageSize}`];
  if (testCase.second) parts.push('second');
  if (testCase.version === 2) parts.push('dtb');
  parts.push(`cmdline ${testCase.cmdline.length}`);
  return parts.join(', ');
}

function mkbootimgArgs(testCase: Case, output: string): string[] {
  const args = ['--kernel', input.kernel!, '--ramdisk', input.ramdisk!, '--header_version', String(testCase.version), '--pagesize', String(testCase.pageSize), '--cmdline', testCase.cmdline, ...testCase.extra, '--output', output];
  if (testCase.second) args.push('--second', input.second!);
  if (testCase.version === 2) args.push('--dtb', input.dtb!);
  return args;
}

function writerOptions(testCase: Case, output: string): BootImageOptions {
  return {
    output,
    headerVersion: testCase.version,
    pageSize: testCase.pageSize,
    kernel: input.kernel,
    ramdisk: input.ramdisk,
    cmdline: testCase.cmdline,
    ...(testCase.second ? { second: input.second } : {}),
    ...(testCase.version === 2 ? { dtb: input.dtb } : {}),
    ...testCase.options,
  };
}

/** Returns the offsets where two buffers differ, and a length difference as its own entry. */
function differingOffsets(a: Buffer, b: Buffer): number[] {
  const offsets: number[] = [];
  for (let index = 0; index < Math.min(a.length, b.length); index += 1) {
    if (a[index] !== b[index]) offsets.push(index);
  }
  if (a.length !== b.length) offsets.push(-1);
  return offsets;
}

const theirImages = new Map<string, Promise<string>>();

/** Runs mkbootimg once per case and returns the image path. */
function mkbootimgImage(testCase: Case): Promise<string> {
  const name = caseName(testCase);
  let image = theirImages.get(name);
  if (!image) {
    const output = path.join(dir, `theirs ${name}.img`);
    image = runTool('mkbootimg', mkbootimgArgs(testCase, output)).then(() => output);
    theirImages.set(name, image);
  }
  return image;
}

async function unpackWithDebian(image: string, outDir: string): Promise<string> {
  const { stdout } = await runTool('unpack_bootimg', ['--boot_img', image, '--out', outDir]);
  return stdout;
}

function printedField(stdout: string, field: string): string | undefined {
  const line = stdout.split('\n').find((candidate) => candidate.startsWith(`${field}: `));
  return line?.slice(field.length + 2);
}

/**
 * Inserts a recovery dtbo into a v1 or v2 image that mkbootimg wrote without
 * one, following the documented layout. It sets recovery_dtbo_size at 1632
 * and its u64 offset at 1636, and recomputes the id at 576: SHA-1 over
 * kernel, ramdisk, second, recovery dtbo and (v2) dtb, each followed by its
 * u32 size. The padded section goes after the second stage, before the dtb.
 */
async function withRecoveryDtbo(image: Buffer, testCase: Case): Promise<Buffer> {
  const page = testCase.pageSize;
  const padded = (size: number): number => Math.ceil(size / page) * page;
  const kernel = await readFile(input.kernel!);
  const ramdisk = await readFile(input.ramdisk!);
  const second = testCase.second ? await readFile(input.second!) : undefined;
  const dtbo = await readFile(input.recovery_dtbo!);
  const dtb = testCase.version === 2 ? await readFile(input.dtb!) : undefined;
  const dtboOffset = page + padded(kernel.length) + padded(ramdisk.length) + padded(second?.length ?? 0);

  const header = Buffer.from(image.subarray(0, page));
  header.writeUInt32LE(dtbo.length, 1632);
  header.writeBigUInt64LE(BigInt(dtboOffset), 1636);
  const hash = createHash('sha1');
  for (const part of [kernel, ramdisk, second, dtbo, ...(dtb ? [dtb] : [])]) {
    if (part) hash.update(part);
    const size = Buffer.alloc(4);
    size.writeUInt32LE(part?.length ?? 0);
    hash.update(size);
  }
  hash.digest().copy(header, 576);

  const dtboSection = Buffer.alloc(padded(dtbo.length));
  dtbo.copy(dtboSection);
  return Buffer.concat([header, image.subarray(page, dtboOffset), dtboSection, image.subarray(dtboOffset)]);
}

describe('boot v0 to v2 against mkbootimg', () => {
  const cases = matrix();

  beforeAll(async () => {
    // Two mkbootimg processes at a time, for two-core test machines.
    const queue = [...cases];
    await Promise.all([0, 1].map(async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await mkbootimgImage(next);
    }));
  });

  it.each(cases.map((testCase) => [caseName(testCase), testCase] as const))('%s is byte-identical', async (name, testCase) => {
    const theirs = await mkbootimgImage(testCase);
    const ours = path.join(dir, `ours ${name}.img`);
    const written = await writeBootImage(writerOptions(testCase, ours));

    const expected = await readFile(theirs);
    const actual = await readFile(ours);
    expect(differingOffsets(actual, expected).slice(0, 8)).toEqual([]);
    expect(written.size).toBe(expected.length);
  });

  it.each(cases.map((testCase) => [caseName(testCase), testCase] as const))('%s from mkbootimg reads back', async (_name, testCase) => {
    const theirs = await mkbootimgImage(testCase);
    const info = await readBootImage(theirs);
    if (info.kind !== 'boot' || info.header.headerVersion > 2) throw new Error(`read ${info.kind} v${info.header.headerVersion}`);

    expect(info.header.headerVersion).toBe(testCase.version);
    expect(info.pageSize).toBe(testCase.pageSize);
    expect(info.header.cmdline).toBe(testCase.cmdline);
    const expectedSections = ['kernel', 'ramdisk', ...(testCase.second ? ['second'] : []), ...(testCase.version === 2 ? ['dtb'] : [])];
    expect(info.sections.map((section) => section.name)).toEqual(expectedSections);
    for (const section of info.sections) {
      expect((await readBootImageSection(theirs, section)).equals(await readFile(input[section.name]!))).toBe(true);
    }
  });

  it.each(cases.filter((testCase) => testCase.version >= 1).map((testCase) => [caseName(testCase), testCase] as const))('%s with recovery dtbo matches the documented layout', async (name, testCase) => {
    const theirs = await readFile(await mkbootimgImage(testCase));
    const ours = path.join(dir, `ours dtbo ${name}.img`);
    await writeBootImage({ ...writerOptions(testCase, ours), recoveryDtbo: input.recovery_dtbo });

    const expected = await withRecoveryDtbo(theirs, testCase);
    expect(differingOffsets(await readFile(ours), expected).slice(0, 8)).toEqual([]);
  });

  it('mkbootimg 29.0.6 fails on --recovery_dtbo', async () => {
    // Its page count uses Python 3 true division, so the u64 offset is a float.
    const failure = await runTool('mkbootimg', ['--kernel', input.kernel!, '--recovery_dtbo', input.recovery_dtbo!, '--header_version', '1', '--output', path.join(dir, 'dtbo-theirs.img')]).catch((error: QwamosError) => error);
    expect('details' in failure ? failure.details.join('\n') : '').toContain('struct.error');
  });

  it('id printed by --id matches', async () => {
    const testCase = cases.find((candidate) => candidate.version === 2 && candidate.second)!;
    const theirs = path.join(dir, 'id-theirs.img');
    const { stdout } = await runTool('mkbootimg', [...mkbootimgArgs(testCase, theirs), '--id']);
    const written = await writeBootImage(writerOptions(testCase, path.join(dir, 'id-ours.img')));
    expect(`0x${'id' in written.header ? written.header.id : ''}`).toBe(stdout.trim());
  });

  it('absent ramdisk gives load address 0 as mkbootimg does', async () => {
    const theirs = path.join(dir, 'no-ramdisk-theirs.img');
    const ours = path.join(dir, 'no-ramdisk-ours.img');
    await runTool('mkbootimg', ['--kernel', input.kernel!, '--header_version', '1', '--output', theirs]);
    await writeBootImage({ output: ours, headerVersion: 1, kernel: input.kernel });
    expect((await readFile(ours)).equals(await readFile(theirs))).toBe(true);
    expect((await readFile(ours)).readUInt32LE(20)).toBe(0);
  });

  it('empty ramdisk file matches mkbootimg', async () => {
    const theirs = path.join(dir, 'empty-ramdisk-theirs.img');
    const ours = path.join(dir, 'empty-ramdisk-ours.img');
    await runTool('mkbootimg', ['--kernel', input.kernel!, '--ramdisk', input.empty!, '--output', theirs]);
    await writeBootImage({ output: ours, headerVersion: 0, kernel: input.kernel, ramdisk: input.empty });
    expect((await readFile(ours)).equals(await readFile(theirs))).toBe(true);
  });

  it.each([0, 1, 2] as const)('unpack_bootimg reads our v%i image', async (version) => {
    const ours = path.join(dir, `unpack-v${version}.img`);
    const outDir = path.join(dir, `unpack-v${version}`);
    const cmdline = 'console=ttyS0 root=/dev/ram0';
    await writeBootImage({
      output: ours, headerVersion: version, kernel: input.kernel, ramdisk: input.ramdisk, second: input.second,
      ...(version >= 1 ? { recoveryDtbo: input.recovery_dtbo } : {}), ...(version === 2 ? { dtb: input.dtb } : {}),
      cmdline, board: 'qwamos', osVersion: '14.0.0', osPatchLevel: '2024-05', pageSize: 4096,
    });
    const stdout = await unpackWithDebian(ours, outDir);

    expect(printedField(stdout, 'boot image header version')).toBe(String(version));
    expect(printedField(stdout, 'command line args')).toBe(cmdline);
    expect(printedField(stdout, 'product name')).toBe('qwamos');
    expect(printedField(stdout, 'os version')).toBe('14.0.0');
    expect(printedField(stdout, 'os patch level')).toBe('2024-05');
    const names = ['kernel', 'ramdisk', 'second', ...(version >= 1 ? ['recovery_dtbo'] : []), ...(version === 2 ? ['dtb'] : [])];
    for (const name of names) {
      expect((await readFile(path.join(outDir, name))).equals(await readFile(input[name]!)), name).toBe(true);
    }
  });
});

describe('command lines over 511 bytes', () => {
  const long = Array.from({ length: 120 }, (_, index) => `opt${index}=value${index}`).join(' ').slice(0, 1400);

  it('differ from mkbootimg 29.0.6 only in the command line fields', async () => {
    const theirs = path.join(dir, 'long-theirs.img');
    const ours = path.join(dir, 'long-ours.img');
    await runTool('mkbootimg', ['--kernel', input.kernel!, '--ramdisk', input.ramdisk!, '--dtb', input.dtb!, '--header_version', '2', '--cmdline', long, '--output', theirs]);
    await writeBootImage({ output: ours, headerVersion: 2, kernel: input.kernel, ramdisk: input.ramdisk, dtb: input.dtb, cmdline: long });
    const actual = await readFile(ours);
    const expected = await readFile(theirs);

    // cmdline is bytes 64..575 and extra_cmdline bytes 608..1631; the id at 576..607 must not change.
    const outside = differingOffsets(actual, expected).filter((offset) => !(offset >= 64 + 511 && offset < 64 + 512) && !(offset >= 608 && offset < 1632));
    expect(outside).toEqual([]);
    expect(actual[64 + 511]).toBe(0);
    expect(actual.subarray(64, 64 + 511).toString('latin1')).toBe(long.slice(0, 511));
    expect(actual.subarray(608, 608 + long.length - 511).toString('latin1')).toBe(long.slice(511));
  });

  it('unpack_bootimg and our reader rejoin them', async () => {
    const ours = path.join(dir, 'long-ours.img');
    const stdout = await unpackWithDebian(ours, path.join(dir, 'long-unpacked'));
    const first = printedField(stdout, 'command line args') ?? '';
    const rest = printedField(stdout, 'additional command line args') ?? '';
    expect(first + rest).toBe(long);

    const info = await readBootImage(ours);
    expect(info.kind).toBe('boot');
    if (info.kind === 'boot') expect(info.header.cmdline).toBe(long);
  });

  it('1534 bytes, the v0 to v2 maximum, round-trip', async () => {
    const maximum = 'k'.repeat(1534);
    const ours = path.join(dir, 'max-cmdline.img');
    await writeBootImage({ output: ours, headerVersion: 0, kernel: input.kernel, cmdline: maximum });
    const image = await readFile(ours);
    expect(image[64 + 511]).toBe(0);
    expect(image[608 + 1023]).toBe(0);
    const info = await readBootImage(ours);
    expect(info.kind).toBe('boot');
    if (info.kind === 'boot') expect(info.header.cmdline).toBe(maximum);
  });
});

describe('v3 against mkbootimg 29.0.6', () => {
  it('boot v3 differs only in header_size (1580, theirs 1596)', async () => {
    const theirs = path.join(dir, 'v3-theirs.img');
    const ours = path.join(dir, 'v3-ours.img');
    const cmdline = 'androidboot.hardware=qwamos '.repeat(40).trim();
    await runTool('mkbootimg', ['--kernel', input.kernel!, '--ramdisk', input.ramdisk!, '--header_version', '3', '--cmdline', cmdline, '--os_version', '12.0.0', '--os_patch_level', '2022-03', '--output', theirs]);
    await writeBootImage({ output: ours, headerVersion: 3, kernel: input.kernel, ramdisk: input.ramdisk, cmdline, osVersion: '12.0.0', osPatchLevel: '2022-03' });
    const actual = await readFile(ours);
    const expected = await readFile(theirs);

    expect(differingOffsets(actual, expected).every((offset) => offset >= 20 && offset < 24)).toBe(true);
    expect(differingOffsets(actual, expected).length).toBeGreaterThan(0);
    expect(actual.readUInt32LE(20)).toBe(1580);
    expect(expected.readUInt32LE(20)).toBe(1596);
  });

  it('our reader reads the mkbootimg v3 boot image', async () => {
    const theirs = path.join(dir, 'v3-theirs.img');
    const info = await readBootImage(theirs);
    expect(info.kind).toBe('boot');
    if (info.kind === 'boot') expect(info.header.headerSize).toBe(1596);
    const kernel = info.sections.find((section) => section.name === 'kernel')!;
    const ramdisk = info.sections.find((section) => section.name === 'ramdisk')!;
    expect((await readBootImageSection(theirs, kernel)).equals(await readFile(input.kernel!))).toBe(true);
    expect((await readBootImageSection(theirs, ramdisk)).equals(await readFile(input.ramdisk!))).toBe(true);
  });

  it('unpack_bootimg reads our v3 boot image', async () => {
    const outDir = path.join(dir, 'v3-unpacked');
    const stdout = await unpackWithDebian(path.join(dir, 'v3-ours.img'), outDir);
    expect(printedField(stdout, 'boot image header version')).toBe('3');
    expect((await readFile(path.join(outDir, 'kernel'))).equals(await readFile(input.kernel!))).toBe(true);
    expect((await readFile(path.join(outDir, 'ramdisk'))).equals(await readFile(input.ramdisk!))).toBe(true);
  });

  it.each([2048, 4096, 16384])('vendor_boot v3 with page %i differs only in header_size (2112, theirs 2108)', async (pageSize) => {
    const theirs = path.join(dir, `vendor-v3-${pageSize}-theirs.img`);
    const ours = path.join(dir, `vendor-v3-${pageSize}-ours.img`);
    await runTool('mkbootimg', ['--header_version', '3', '--vendor_boot', theirs, '--vendor_ramdisk', input.vendor_ramdisk!, '--dtb', input.dtb!, '--vendor_cmdline', 'androidboot.console=ttyMSM0', '--board', 'qwamos', '--pagesize', String(pageSize), '--base', '0x0', '--kernel_offset', '0x8000']);
    await writeVendorBootImage({ output: ours, headerVersion: 3, vendorRamdisk: input.vendor_ramdisk, dtb: input.dtb, vendorCmdline: 'androidboot.console=ttyMSM0', board: 'qwamos', pageSize, base: 0, kernelOffset: 0x8000 });
    const actual = await readFile(ours);
    const expected = await readFile(theirs);

    expect(differingOffsets(actual, expected).every((offset) => offset >= 2096 && offset < 2100)).toBe(true);
    expect(actual.readUInt32LE(2096)).toBe(2112);
    expect(expected.readUInt32LE(2096)).toBe(2108);

    const info = await readBootImage(theirs);
    const ramdisk = info.sections.find((section) => section.name === 'vendor_ramdisk')!;
    expect((await readBootImageSection(theirs, ramdisk)).equals(await readFile(input.vendor_ramdisk!))).toBe(true);
  });

  it('unpack_bootimg reads our vendor_boot v3 image', async () => {
    const outDir = path.join(dir, 'vendor-v3-unpacked');
    const stdout = await unpackWithDebian(path.join(dir, 'vendor-v3-4096-ours.img'), outDir);
    expect(printedField(stdout, 'vendor command line args')).toBe('androidboot.console=ttyMSM0');
    expect(printedField(stdout, 'kernel load address')).toBe('0x8000');
    expect((await readFile(path.join(outDir, 'vendor_ramdisk'))).equals(await readFile(input.vendor_ramdisk!))).toBe(true);
    expect((await readFile(path.join(outDir, 'dtb'))).equals(await readFile(input.dtb!))).toBe(true);
  });

  it('mkbootimg 29.0.6 rejects header version 4', async () => {
    const failure = await runTool('mkbootimg', ['--kernel', input.kernel!, '--header_version', '4', '--output', path.join(dir, 'v4-theirs.img')]).catch((error: QwamosError) => error);
    expect('details' in failure ? failure.details.join('\n') : '').toContain('Boot header version 4 not supported');
  });
});
