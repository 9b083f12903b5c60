/**
 * Boot v4, init_boot and vendor_boot v4, which Debian's mkbootimg 29.0.6
 * cannot write. Every field is checked at the offset that the AOSP bootimg.h
 * layout gives it, with the numbers written out here rather than taken from
 * the writer. The images are then read back with our reader, and with
 * Debian's unpack_bootimg where it understands the layout.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { readBootImage, readBootImageSection, unpackBootImage } from '../../images/bootimg-read.js';
import { writeVendorBootImage } from '../../images/bootimg-vendor.js';
import { writeBootImage, writeInitBootImage } from '../../images/bootimg-write.js';


let dir: string;
const data: Record<string, Buffer> = {};
const file: Record<string, string> = {};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bootimg-v4-'));
  const sizes = { kernel: 9000, ramdisk: 3001, signature: 1000, platform: 5000, dlkm: 4096, recovery: 123, dtb: 2049, bootconfig: 77 };
  for (const [name, size] of Object.entries(sizes)) {
    data[name] = randomBytes(size);
    file[name] = path.join(dir, name);
    await writeFile(file[name]!, data[name]!);
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const u32 = (image: Buffer, offset: number): number => image.readUInt32LE(offset);
const text = (image: Buffer, offset: number, size: number): string => image.subarray(offset, offset + size).toString('latin1').replace(/\0+$/, '');
const isZero = (bytes: Buffer): boolean => bytes.every((byte) => byte === 0);
const pad = (size: number, page: number): number => Math.ceil(size / page) * page;

// os_version for 14.0.0 and 2024-05: 14<<25 | 0<<18 | 0<<11 | 24<<4 | 5.
const OS_VERSION_14_2024_05 = (14 * 2 ** 25 + (24 << 4) + 5) >>> 0;

describe('boot image header version 4', () => {
  const cmdline = 'console=ttyAMA0 androidboot.hardware=qwamos';

  it('places every field and section as documented', async () => {
    const output = path.join(dir, 'boot-v4.img');
    const written = await writeBootImage({ output, headerVersion: 4, kernel: file.kernel, ramdisk: file.ramdisk, cmdline, osVersion: '14.0.0', osPatchLevel: '2024-05' });
    const image = await readFile(output);

    expect(text(image, 0, 8)).toBe('ANDROID!');
    expect(u32(image, 8)).toBe(9000); // kernel_size
    expect(u32(image, 12)).toBe(3001); // ramdisk_size
    expect(u32(image, 16)).toBe(OS_VERSION_14_2024_05); // os_version
    expect(u32(image, 20)).toBe(1584); // header_size
    expect(isZero(image.subarray(24, 40))).toBe(true); // reserved[4]
    expect(u32(image, 40)).toBe(4); // header_version
    expect(text(image, 44, 1536)).toBe(cmdline); // cmdline[1536]
    expect(u32(image, 1580)).toBe(0); // signature_size: no signature
    expect(isZero(image.subarray(1584, 4096))).toBe(true);

    // Kernel at 4096 (one header page), ramdisk after the kernel's whole pages.
    expect(image.subarray(4096, 4096 + 9000).equals(data.kernel!)).toBe(true);
    expect(isZero(image.subarray(4096 + 9000, 4096 + 12288))).toBe(true);
    const ramdiskOffset = 4096 + pad(9000, 4096);
    expect(image.subarray(ramdiskOffset, ramdiskOffset + 3001).equals(data.ramdisk!)).toBe(true);
    expect(image.length).toBe(ramdiskOffset + 4096);
    expect(written.size).toBe(image.length);
  });

  it('reserves 4096 bytes for a boot signature after the ramdisk', async () => {
    const output = path.join(dir, 'boot-v4-signed.img');
    await writeBootImage({ output, headerVersion: 4, kernel: file.kernel, ramdisk: file.ramdisk, bootSignature: file.signature });
    const image = await readFile(output);

    expect(u32(image, 1580)).toBe(4096);
    const signatureOffset = 4096 + pad(9000, 4096) + pad(3001, 4096);
    expect(image.subarray(signatureOffset, signatureOffset + 1000).equals(data.signature!)).toBe(true);
    expect(isZero(image.subarray(signatureOffset + 1000))).toBe(true);
    expect(image.length).toBe(signatureOffset + 4096);
  });

  it('round-trips through our reader', async () => {
    const output = path.join(dir, 'boot-v4-signed.img');
    const info = await readBootImage(output);
    if (info.kind !== 'boot' || info.header.headerVersion !== 4) throw new Error(`read ${info.kind}`);

    expect(info.header.signatureSize).toBe(4096);
    expect(info.header.headerSize).toBe(1584);
    expect(info.sections.map((section) => section.name)).toEqual(['kernel', 'ramdisk', 'boot_signature']);
    const signature = await readBootImageSection(output, info.sections[2]!);
    expect(signature.subarray(0, 1000).equals(data.signature!)).toBe(true);
    expect(isZero(signature.subarray(1000))).toBe(true);
  });

  it('unpack_bootimg extracts its kernel and ramdisk', async () => {
    const outDir = path.join(dir, 'boot-v4-unpacked');
    await runTool('unpack_bootimg', ['--boot_img', path.join(dir, 'boot-v4.img'), '--out', outDir]);
    expect((await readFile(path.join(outDir, 'kernel'))).equals(data.kernel!)).toBe(true);
    expect((await readFile(path.join(outDir, 'ramdisk'))).equals(data.ramdisk!)).toBe(true);
  });
});

describe('init_boot', () => {
  it('is a v4 header with only a ramdisk at 4096', async () => {
    const output = path.join(dir, 'init_boot.img');
    await writeInitBootImage({ output, ramdisk: file.ramdisk!, osVersion: '14.0.0', osPatchLevel: '2024-05' });
    const image = await readFile(output);

    expect(text(image, 0, 8)).toBe('ANDROID!');
    expect(u32(image, 8)).toBe(0); // kernel_size
    expect(u32(image, 12)).toBe(3001); // ramdisk_size
    expect(u32(image, 16)).toBe(OS_VERSION_14_2024_05);
    expect(u32(image, 20)).toBe(1584);
    expect(u32(image, 40)).toBe(4);
    expect(isZero(image.subarray(44, 4096))).toBe(true); // empty cmdline, signature_size 0, padding
    expect(image.subarray(4096, 4096 + 3001).equals(data.ramdisk!)).toBe(true);
    expect(image.length).toBe(8192);

    const info = await readBootImage(output);
    expect(info.kind).toBe('boot');
    if (info.kind === 'boot') expect(info.osPatchLevel).toBe('2024-05');
    expect(info.sections).toEqual([{ name: 'ramdisk', offset: 4096, size: 3001 }]);
  });
});

describe('vendor_boot header version 4', () => {
  const fragments = () => [
    { ramdisk: file.dlkm!, type: 'dlkm' as const, name: 'dlkm', boardId: [0xc0ffee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15151515] },
    { ramdisk: file.recovery!, type: 'recovery' as const, name: 'recovery' },
  ];

  it.each([4096, 2048])('places every field, table entry and section as documented (page %i)', async (page) => {
    const output = path.join(dir, `vendor_boot-v4-${page}.img`);
    await writeVendorBootImage({
      output, headerVersion: 4, pageSize: page, vendorRamdisk: file.platform, fragments: fragments(), dtb: file.dtb, bootconfig: file.bootconfig,
      vendorCmdline: 'androidboot.console=ttyS0', board: 'shiba', base: 0, kernelOffset: 0x8000, ramdiskOffset: 0x100_0000, tagsOffset: 0x100, dtbOffset: 0x1f0_0000,
    });
    const image = await readFile(output);
    const ramdiskTotal = 5000 + 4096 + 123;

    expect(text(image, 0, 8)).toBe('VNDRBOOT');
    expect(u32(image, 8)).toBe(4); // header_version
    expect(u32(image, 12)).toBe(page); // page_size
    expect(u32(image, 16)).toBe(0x8000); // kernel_addr
    expect(u32(image, 20)).toBe(0x100_0000); // ramdisk_addr
    expect(u32(image, 24)).toBe(ramdiskTotal); // vendor_ramdisk_size: all fragments
    expect(text(image, 28, 2048)).toBe('androidboot.console=ttyS0'); // cmdline[2048]
    expect(u32(image, 2076)).toBe(0x100); // tags_addr
    expect(text(image, 2080, 16)).toBe('shiba'); // name[16]
    expect(u32(image, 2096)).toBe(2128); // header_size
    expect(u32(image, 2100)).toBe(2049); // dtb_size
    expect(image.readBigUInt64LE(2104)).toBe(0x1f0_0000n); // dtb_addr
    expect(u32(image, 2112)).toBe(3 * 108); // vendor_ramdisk_table_size
    expect(u32(image, 2116)).toBe(3); // vendor_ramdisk_table_entry_num
    expect(u32(image, 2120)).toBe(108); // vendor_ramdisk_table_entry_size
    expect(u32(image, 2124)).toBe(77); // vendor_bootconfig_size

    // Sections: header pages, ramdisks back to back, dtb, table, bootconfig, each page-aligned.
    const ramdiskOffset = pad(2128, page);
    expect(isZero(image.subarray(2128, ramdiskOffset))).toBe(true);
    expect(image.subarray(ramdiskOffset, ramdiskOffset + ramdiskTotal).equals(Buffer.concat([data.platform!, data.dlkm!, data.recovery!]))).toBe(true);
    const dtbOffset = ramdiskOffset + pad(ramdiskTotal, page);
    expect(image.subarray(dtbOffset, dtbOffset + 2049).equals(data.dtb!)).toBe(true);
    const tableOffset = dtbOffset + pad(2049, page);
    const bootconfigOffset = tableOffset + pad(3 * 108, page);
    expect(image.subarray(bootconfigOffset, bootconfigOffset + 77).equals(data.bootconfig!)).toBe(true);
    expect(image.length).toBe(bootconfigOffset + page);

    // Table entries: u32 size @0, u32 offset @4, u32 type @8, name[32] @12, u32 board_id[16] @44.
    const entries = [0, 1, 2].map((index) => image.subarray(tableOffset + index * 108, tableOffset + (index + 1) * 108));
    expect(entries.map((entry) => u32(entry, 0))).toEqual([5000, 4096, 123]);
    expect(entries.map((entry) => u32(entry, 4))).toEqual([0, 5000, 9096]);
    expect(entries.map((entry) => u32(entry, 8))).toEqual([1, 3, 2]); // platform, dlkm, recovery
    expect(entries.map((entry) => text(entry, 12, 32))).toEqual(['', 'dlkm', 'recovery']);
    expect(u32(entries[1]!, 44)).toBe(0xc0ffee);
    expect(u32(entries[1]!, 44 + 15 * 4)).toBe(0x15151515);
    expect(isZero(entries[0]!.subarray(44))).toBe(true);
    expect(isZero(image.subarray(tableOffset + 324, bootconfigOffset))).toBe(true);
  });

  it('round-trips through our reader and unpack', async () => {
    const output = path.join(dir, 'vendor_boot-v4-4096.img');
    const info = await readBootImage(output);
    if (info.kind !== 'vendor_boot') throw new Error(`read ${info.kind}`);

    expect(info.header.headerVersion).toBe(4);
    expect(info.header.name).toBe('shiba');
    expect(info.ramdiskTable.map((entry) => entry.name)).toEqual(['', 'dlkm', 'recovery']);
    expect(info.ramdiskTable[1]!.boardId[15]).toBe(0x15151515);

    const { files } = await unpackBootImage(output, path.join(dir, 'vendor-v4-unpacked'));
    expect(files.map((name) => path.basename(name))).toEqual(['vendor_ramdisk00', 'vendor_ramdisk01', 'vendor_ramdisk02', 'dtb', 'vendor_ramdisk_table', 'bootconfig']);
    expect((await readFile(files[1]!)).equals(data.dlkm!)).toBe(true);
    expect((await readFile(files[2]!)).equals(data.recovery!)).toBe(true);
    expect((await readFile(files[5]!)).equals(data.bootconfig!)).toBe(true);
  });

  it('unpack_bootimg extracts the whole vendor ramdisk section and the dtb', async () => {
    const outDir = path.join(dir, 'vendor-v4-debian');
    await runTool('unpack_bootimg', ['--boot_img', path.join(dir, 'vendor_boot-v4-4096.img'), '--out', outDir]);
    expect((await readFile(path.join(outDir, 'vendor_ramdisk'))).equals(Buffer.concat([data.platform!, data.dlkm!, data.recovery!]))).toBe(true);
    expect((await readFile(path.join(outDir, 'dtb'))).equals(data.dtb!)).toBe(true);
  });

  it('allows a table without --vendor_ramdisk and without dtb', async () => {
    const output = path.join(dir, 'vendor_boot-v4-fragments.img');
    await writeVendorBootImage({ output, headerVersion: 4, pageSize: 4096, fragments: fragments() });
    const image = await readFile(output);
    expect(u32(image, 24)).toBe(4096 + 123);
    expect(u32(image, 2100)).toBe(0);
    expect(u32(image, 2116)).toBe(2);
    const info = await readBootImage(output);
    expect(info.kind).toBe('vendor_boot');
    if (info.kind === 'vendor_boot') expect(info.ramdiskTable.map((entry) => entry.offset)).toEqual([0, 4096]);
  });
});
