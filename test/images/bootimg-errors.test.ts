/**
 * Input that does not fit a boot image format is rejected with the limit
 * named, and damaged images are rejected by the reader.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { readBootImage } from '../../images/bootimg-read.js';
import { writeVendorBootImage, type VendorBootImageOptions } from '../../images/bootimg-vendor.js';
import { writeBootImage, writeInitBootImage, type BootImageOptions } from '../../images/bootimg-write.js';

let dir: string;
const kernel = Buffer.alloc(3000, 1);
const ramdisk = Buffer.alloc(1000, 2);
const dtb = Buffer.alloc(500, 3);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bootimg-errors-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function bootError(options: Partial<BootImageOptions>): Promise<QwamosError> {
  const output = path.join(dir, 'rejected.img');
  const error = await writeBootImage({ output, headerVersion: 0, kernel, ...options }).then(() => undefined, (caught: unknown) => caught);
  if (!(error instanceof QwamosError)) throw new Error(`expected a QwamosError, got ${String(error)}`);
  expect(existsSync(output)).toBe(false);
  return error;
}

async function vendorError(options: Partial<VendorBootImageOptions>): Promise<QwamosError> {
  const error = await writeVendorBootImage({ output: path.join(dir, 'rejected-vendor.img'), headerVersion: 4, ...options }).then(() => undefined, (caught: unknown) => caught);
  if (!(error instanceof QwamosError)) throw new Error(`expected a QwamosError, got ${String(error)}`);
  return error;
}

describe('boot image limits', () => {
  it.each([0, 1, 2] as const)('v%i command line over 1534 bytes', async (version) => {
    const error = await bootError({ headerVersion: version, dtb: version === 2 ? dtb : undefined, cmdline: 'a'.repeat(1535) });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('command line is 1535 bytes');
    expect(error.message).toContain('at most 1534 bytes');
  });

  it.each([3, 4] as const)('v%i command line over 1535 bytes', async (version) => {
    const error = await bootError({ headerVersion: version, cmdline: 'a'.repeat(1536) });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('at most 1535 bytes');
  });

  it('v3 accepts exactly 1535 bytes', async () => {
    const output = path.join(dir, 'v3-max.img');
    await writeBootImage({ output, headerVersion: 3, kernel, cmdline: 'b'.repeat(1535) });
    const image = await readFile(output);
    expect(image[44 + 1535]).toBe(0);
  });

  it.each([1024, 3000, 32768])('page size %i', async (pageSize) => {
    const error = await bootError({ pageSize });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain(`page size ${pageSize} is not allowed for boot header version 0`);
    expect(error.message).toContain('2048, 4096, 8192, 16384');
  });

  it.each([3, 4] as const)('v%i page size other than 4096', async (version) => {
    const error = await bootError({ headerVersion: version, pageSize: 2048 });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('fixed page size of 4096');
  });

  it('board name over 15 characters', async () => {
    const error = await bootError({ board: 'b'.repeat(16) });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('at most 15 characters');
  });

  it('non-ASCII command line', async () => {
    const error = await bootError({ cmdline: 'root=/dev/vda quiet\u00e9' });
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('U+00E9');
  });

  it('v2 without dtb', async () => {
    const error = await bootError({ headerVersion: 2 });
    expect(error.message).toContain('needs a non-empty dtb');
  });

  it('v2 with an empty dtb', async () => {
    const error = await bootError({ headerVersion: 2, dtb: Buffer.alloc(0) });
    expect(error.message).toContain('needs a non-empty dtb');
  });

  it('missing kernel', async () => {
    const error = await bootError({ kernel: undefined, ramdisk });
    expect(error.message).toContain('needs a kernel');
  });

  it.each([
    ['dtb in v1', { headerVersion: 1 as const, dtb }, 'has no dtb section; it exists only in header version 2'],
    ['recovery dtbo in v0', { headerVersion: 0 as const, recoveryDtbo: dtb }, 'has no recovery dtbo section'],
    ['second in v3', { headerVersion: 3 as const, second: dtb }, 'has no second section'],
    ['dtb in v4', { headerVersion: 4 as const, dtb }, 'put the dtb in the vendor_boot image'],
    ['signature in v3', { headerVersion: 3 as const, bootSignature: dtb }, 'has no boot signature section'],
    ['load address in v4', { headerVersion: 4 as const, base: 0 }, 'has no load addresses (base given)'],
    ['board in v3', { headerVersion: 3 as const, board: 'x' }, 'has no board name field'],
  ])('%s', async (_name, options, message) => {
    const error = await bootError(options);
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain(message);
  });

  it('boot signature over 4096 bytes', async () => {
    const error = await bootError({ headerVersion: 4, bootSignature: Buffer.alloc(4097) });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('at most 4096 bytes');
  });

  it('header version 5', async () => {
    const error = await bootError({ headerVersion: 5 as 4 });
    expect(error.message).toContain('header version 5 is not supported');
  });

  it('load address above 32 bits', async () => {
    const error = await bootError({ base: 0xffff_ffff, kernelOffset: 0x8000 });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('kernel load address 0x100007fff');
    expect(error.message).toContain('0xffffffff');
  });

  it.each([
    ['128.0.0', undefined, 'above 127'],
    ['14.x', undefined, "os version '14.x' is invalid"],
    [undefined, '2024-13', 'month 1 to 12'],
    [undefined, '1999-01', 'year must be 2000 to 2127'],
    [undefined, 'May 2024', 'write it as YYYY-MM'],
  ])('os version %s, patch level %s', async (osVersion, osPatchLevel, message) => {
    const error = await bootError({ osVersion, osPatchLevel });
    expect(error.message).toContain(message);
  });

  it('missing section file', async () => {
    const error = await bootError({ kernel: path.join(dir, 'no-such-kernel') });
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain('no-such-kernel');
  });

  it('init_boot without ramdisk', async () => {
    const error = await writeInitBootImage({ output: path.join(dir, 'init.img'), ramdisk: undefined as unknown as Buffer }).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).message).toContain('needs a ramdisk');
  });
});

describe('vendor_boot limits', () => {
  it('vendor command line over 2047 bytes', async () => {
    const error = await vendorError({ vendorCmdline: 'v'.repeat(2048) });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('at most 2047 bytes');
  });

  it('page size 1024', async () => {
    const error = await vendorError({ pageSize: 1024 });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('2048, 4096, 8192, 16384');
  });

  it('v3 without vendor ramdisk', async () => {
    const error = await vendorError({ headerVersion: 3, dtb });
    expect(error.message).toContain('needs a vendor ramdisk');
  });

  it('v3 with fragments', async () => {
    const error = await vendorError({ headerVersion: 3, vendorRamdisk: ramdisk, fragments: [{ ramdisk, name: 'dlkm' }] });
    expect(error.message).toContain('fragments need header version 4');
  });

  it('v3 with bootconfig', async () => {
    const error = await vendorError({ headerVersion: 3, vendorRamdisk: ramdisk, bootconfig: dtb });
    expect(error.message).toContain('bootconfig needs header version 4');
  });

  it('ramdisk name over 31 characters', async () => {
    const error = await vendorError({ fragments: [{ ramdisk, name: 'n'.repeat(32) }] });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('at most 31 characters');
  });

  it('duplicate ramdisk name', async () => {
    const error = await vendorError({ fragments: [{ ramdisk, name: 'dlkm' }, { ramdisk, name: 'dlkm' }] });
    expect(error.message).toContain("name 'dlkm' is used twice");
  });

  it('fragment named like the vendor ramdisk', async () => {
    const error = await vendorError({ vendorRamdisk: ramdisk, fragments: [{ ramdisk, name: '' }] });
    expect(error.message).toContain('the vendor ramdisk itself has the empty name');
  });

  it('reserved ramdisk name', async () => {
    const error = await vendorError({ fragments: [{ ramdisk, name: 'default' }] });
    expect(error.message).toContain("name 'default' is reserved");
  });

  it('board id over 16 words', async () => {
    const error = await vendorError({ fragments: [{ ramdisk, name: 'a', boardId: new Array<number>(17).fill(0) }] });
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('has room for 16');
  });

  it('unknown ramdisk type', async () => {
    const error = await vendorError({ fragments: [{ ramdisk, name: 'a', type: 'vendor' as 'none' }] });
    expect(error.message).toContain("type 'vendor' is unknown");
  });
});

describe('boot image reader', () => {
  let valid: Buffer;

  beforeAll(async () => {
    const output = path.join(dir, 'valid.img');
    await writeBootImage({ output, headerVersion: 2, kernel, ramdisk, dtb, pageSize: 2048 });
    valid = await readFile(output);
  });

  it('rejects a wrong magic', async () => {
    const image = Buffer.from(valid);
    image.write('ANDROID?', 0, 'latin1');
    await expect(readBootImage(image)).rejects.toThrow("does not start with 'ANDROID!' or 'VNDRBOOT'");
  });

  it('rejects a truncated image and names the section', async () => {
    const truncated = path.join(dir, 'truncated.img');
    await writeFile(truncated, valid.subarray(0, valid.length - 2048));
    await expect(readBootImage(truncated)).rejects.toThrow(`${truncated} is truncated: its dtb section ends at byte`);
  });

  it('rejects a file shorter than its header', async () => {
    await expect(readBootImage(valid.subarray(0, 1000))).rejects.toThrow('it has 1000 bytes, fewer than its header needs (1660)');
  });

  it('rejects a page size that the format does not allow', async () => {
    const image = Buffer.from(valid);
    image.writeUInt32LE(1000, 36);
    await expect(readBootImage(image)).rejects.toThrow('page size field is 1000');
  });

  it('rejects header version 7', async () => {
    const image = Buffer.from(valid);
    image.writeUInt32LE(7, 40);
    await expect(readBootImage(image)).rejects.toThrow('header version 7 is not supported');
  });

  it('rejects a vendor ramdisk table whose size does not match its entries', async () => {
    const output = path.join(dir, 'vendor-table.img');
    await writeVendorBootImage({ output, headerVersion: 4, pageSize: 4096, vendorRamdisk: ramdisk });
    const image = await readFile(output);
    image.writeUInt32LE(2, 2116);
    await expect(readBootImage(image)).rejects.toThrow('2 entries of 108 bytes need 216');
  });

  it('rejects a table entry outside the vendor ramdisk section', async () => {
    const output = path.join(dir, 'vendor-entry.img');
    await writeVendorBootImage({ output, headerVersion: 4, pageSize: 4096, vendorRamdisk: ramdisk });
    const image = await readFile(output);
    // One page header, one page of ramdisk, no dtb: the table starts at 8192; entry size field at +0.
    image.writeUInt32LE(5000, 8192);
    await expect(readBootImage(image)).rejects.toThrow("entry 0 ('') ends at byte 5000 of the vendor ramdisk section, which has 1000 bytes");
  });
});
