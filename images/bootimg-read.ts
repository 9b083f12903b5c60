/**
 * Reads boot.img (header versions 0 to 4), init_boot.img and vendor_boot.img
 * (versions 3 and 4) headers, locates their sections, and unpacks the
 * sections into a folder under the names unpack_bootimg uses. It also reads
 * the header sizes that Debian's mkbootimg 29.0.6 writes for v3 (1596 and 2108).
 */
import { open, mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  ALLOWED_PAGE_SIZES, BOOT_HEADER_SIZE, BOOT_V3_PAGE_SIZE, VENDOR_BOOT_HEADER_SIZE, VENDOR_RAMDISK_TABLE_ENTRY_SIZE, alignToPage, decodeBootHeader, decodeOsVersion,
  decodeVendorBootHeader, decodeVendorRamdiskTable, detectBootImageKind,
  type BootHeader, type VendorBootHeader, type VendorRamdiskEntry,
} from './bootimg-header.js';
import type { ImageSection } from './bootimg-io.js';
import { produceAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { openByteSource, type ByteSource } from './byte-source.js';

export interface BootImageInfo {
  kind: 'boot';
  /** Size of the image file in bytes. */
  size: number;
  /** Page size: the header field in v0 to v2, 4096 in v3 and v4. */
  pageSize: number;
  osVersion: string;
  osPatchLevel: string;
  header: BootHeader;
  /** Non-empty sections in file order. */
  sections: ImageSection[];
}

export interface VendorBootImageInfo {
  kind: 'vendor_boot';
  size: number;
  pageSize: number;
  header: VendorBootHeader;
  /** v4 only; empty in v3. */
  ramdiskTable: VendorRamdiskEntry[];
  sections: ImageSection[];
}

export type AnyBootImageInfo = BootImageInfo | VendorBootImageInfo;

/** Bytes of an image, from a file or from memory. */

/** Largest header that any version needs read at once: one 16 KiB page. */
const MAX_HEADER_READ = 16384;

/**
 * Reads the header of a boot, init_boot or vendor_boot image and locates
 * its sections. Rejects a wrong magic, an unknown version, a page size that
 * the format does not allow, an inconsistent ramdisk table, and a file too
 * short for the sections its header names.
 */
export async function readBootImage(source: string | Uint8Array): Promise<AnyBootImageInfo> {
  const bytes = await openSource(source);
  try {
    const head = await bytes.read(0, Math.min(bytes.size, MAX_HEADER_READ));
    const kind = head.length >= 8 ? detectBootImageKind(head) : undefined;
    if (kind === undefined) {
      throw new QwamosError('INPUT_INVALID', `${bytes.label} is not an Android boot image: it does not start with 'ANDROID!' or 'VNDRBOOT'`);
    }
    // The largest header of each kind: boot v2 and vendor_boot v4.
    requireLength(bytes, head, kind === 'boot' ? BOOT_HEADER_SIZE[2] : VENDOR_BOOT_HEADER_SIZE[4]);
    return kind === 'boot' ? locateBootSections(bytes, head) : await locateVendorBootSections(bytes, head);
  } finally {
    await bytes.close();
  }
}

/** Returns the bytes of one section of an image. */
export async function readBootImageSection(source: string | Uint8Array, section: ImageSection): Promise<Buffer> {
  const bytes = await openSource(source);
  try {
    return await bytes.read(section.offset, section.size);
  } finally {
    await bytes.close();
  }
}

/**
 * Writes each non-empty section of the image at `imagePath` to its own file
 * in `outDir` (kernel, ramdisk, second, recovery_dtbo, dtb, boot_signature;
 * vendor_ramdisk, or vendor_ramdisk00 and so on in v4, plus
 * vendor_ramdisk_table and bootconfig). Existing files of those names are
 * replaced; other files in `outDir` are left alone.
 */
export async function unpackBootImage(imagePath: string, outDir: string): Promise<{ info: AnyBootImageInfo; files: string[] }> {
  const info = await readBootImage(imagePath);
  await mkdir(outDir, { recursive: true });

  const files: string[] = [];
  const input = await open(imagePath, 'r');
  try {
    for (const section of info.sections) {
      const destination = path.join(outDir, section.name);
      await produceAtomic(destination, async (temporaryPath) => copyRange(input, section, temporaryPath));
      files.push(destination);
    }
  } finally {
    await input.close();
  }
  return { info, files };
}

function locateBootSections(bytes: ByteSource, head: Buffer): BootImageInfo {
  const header = decodeBootHeader(head);
  const { osVersion, osPatchLevel } = decodeOsVersion(header.osVersion);
  const sections: ImageSection[] = [];

  if (header.headerVersion >= 3) {
    const gki = header as Extract<BootHeader, { headerVersion: 3 | 4 }>;
    const pages = new SectionCursor(BOOT_V3_PAGE_SIZE, BOOT_V3_PAGE_SIZE, sections);
    pages.place('kernel', gki.kernelSize);
    pages.place('ramdisk', gki.ramdiskSize);
    pages.place('boot_signature', gki.signatureSize);
    checkSectionsFit(bytes, sections);
    return { kind: 'boot', size: bytes.size, pageSize: BOOT_V3_PAGE_SIZE, osVersion, osPatchLevel, header, sections };
  }

  const legacy = header as Extract<BootHeader, { headerVersion: 0 | 1 | 2 }>;
  checkPageSizeField(bytes, legacy.pageSize, `boot header version ${legacy.headerVersion}`);
  const pages = new SectionCursor(legacy.pageSize, legacy.pageSize, sections);
  pages.place('kernel', legacy.kernelSize);
  pages.place('ramdisk', legacy.ramdiskSize);
  pages.place('second', legacy.secondSize);

  // The header records where the recovery dtbo lies; the dtb follows it.
  if (legacy.recoveryDtboSize > 0) {
    sections.push({ name: 'recovery_dtbo', offset: legacy.recoveryDtboOffset, size: legacy.recoveryDtboSize });
  }
  pages.skip(legacy.recoveryDtboSize);
  pages.place('dtb', legacy.dtbSize);
  checkSectionsFit(bytes, sections);
  return { kind: 'boot', size: bytes.size, pageSize: legacy.pageSize, osVersion, osPatchLevel, header, sections };
}

async function locateVendorBootSections(bytes: ByteSource, head: Buffer): Promise<VendorBootImageInfo> {
  const header = decodeVendorBootHeader(head);
  checkPageSizeField(bytes, header.pageSize, `vendor_boot header version ${header.headerVersion}`);
  const minimumHeaderSize = header.headerVersion === 3 ? 2108 : 2128;
  if (header.headerSize < minimumHeaderSize || header.headerSize > MAX_HEADER_READ) {
    throw new QwamosError('INPUT_INVALID', `${bytes.label}: vendor_boot header_size ${header.headerSize} is invalid; version ${header.headerVersion} needs at least ${minimumHeaderSize}`);
  }

  const sections: ImageSection[] = [];
  const ramdiskBase = alignToPage(header.headerSize, header.pageSize);
  const pages = new SectionCursor(header.pageSize, ramdiskBase, sections);
  if (header.headerVersion === 3) {
    pages.place('vendor_ramdisk', header.vendorRamdiskSize);
    pages.place('dtb', header.dtbSize);
    checkSectionsFit(bytes, sections);
    return { kind: 'vendor_boot', size: bytes.size, pageSize: header.pageSize, header, ramdiskTable: [], sections };
  }

  checkTableFields(bytes, header);
  pages.skip(header.vendorRamdiskSize);
  pages.place('dtb', header.dtbSize);
  const tableSection = pages.place('vendor_ramdisk_table', header.vendorRamdiskTableSize);
  pages.place('bootconfig', header.bootconfigSize);
  checkSectionsFit(bytes, sections);

  const tableBytes = tableSection ? await bytes.read(tableSection.offset, tableSection.size) : Buffer.alloc(0);
  const ramdiskTable = decodeVendorRamdiskTable(tableBytes, header.vendorRamdiskTableEntryCount, header.vendorRamdiskTableEntrySize);
  const fragments = ramdiskTable.map((entry, index): ImageSection => {
    if (entry.offset + entry.size > header.vendorRamdiskSize) {
      throw new QwamosError('INPUT_INVALID', `${bytes.label}: vendor ramdisk table entry ${index} ('${entry.name}') ends at byte ${entry.offset + entry.size} of the vendor ramdisk section, which has ${header.vendorRamdiskSize} bytes`);
    }
    return { name: `vendor_ramdisk${String(index).padStart(2, '0')}`, offset: ramdiskBase + entry.offset, size: entry.size };
  });
  return { kind: 'vendor_boot', size: bytes.size, pageSize: header.pageSize, header, ramdiskTable, sections: [...fragments.filter((fragment) => fragment.size > 0), ...sections] };
}

function checkTableFields(bytes: ByteSource, header: VendorBootHeader): void {
  if (header.vendorRamdiskTableEntryCount > 0 && header.vendorRamdiskTableEntrySize < VENDOR_RAMDISK_TABLE_ENTRY_SIZE) {
    throw new QwamosError('INPUT_INVALID', `${bytes.label}: vendor ramdisk table entry size is ${header.vendorRamdiskTableEntrySize}; version 4 entries are at least ${VENDOR_RAMDISK_TABLE_ENTRY_SIZE} bytes`);
  }
  const expected = header.vendorRamdiskTableEntryCount * header.vendorRamdiskTableEntrySize;
  if (header.vendorRamdiskTableSize !== expected) {
    throw new QwamosError('INPUT_INVALID', `${bytes.label}: vendor ramdisk table size is ${header.vendorRamdiskTableSize}, but ${header.vendorRamdiskTableEntryCount} entries of ${header.vendorRamdiskTableEntrySize} bytes need ${expected}`);
  }
}

/** Places sections one after another, each starting on a page boundary. */
class SectionCursor {
  constructor(private readonly pageSize: number, private offset: number, private readonly sections: ImageSection[]) {}

  /** Records a section of `size` bytes at the cursor if it is not empty, and moves past its pages. */
  place(name: string, size: number): ImageSection | undefined {
    const section = size > 0 ? { name, offset: this.offset, size } : undefined;
    if (section) this.sections.push(section);
    this.skip(size);
    return section;
  }

  skip(size: number): void {
    this.offset += alignToPage(size, this.pageSize);
  }
}

function checkPageSizeField(bytes: ByteSource, pageSize: number, imageKind: string): void {
  if (!ALLOWED_PAGE_SIZES.includes(pageSize)) {
    throw new QwamosError('INPUT_INVALID', `${bytes.label}: page size field is ${pageSize}, which ${imageKind} does not allow; it must be one of ${ALLOWED_PAGE_SIZES.join(', ')}`);
  }
}

function checkSectionsFit(bytes: ByteSource, sections: readonly ImageSection[]): void {
  for (const section of sections) {
    if (section.offset + section.size > bytes.size) {
      throw new QwamosError('INPUT_INVALID', `${bytes.label} is truncated: its ${section.name} section ends at byte ${section.offset + section.size}, but the file has ${bytes.size} bytes`);
    }
  }
}

function requireLength(bytes: ByteSource, head: Buffer, needed: number): void {
  if (head.length < Math.min(needed, MAX_HEADER_READ)) {
    throw new QwamosError('INPUT_INVALID', `${bytes.label} is truncated: it has ${bytes.size} bytes, fewer than its header needs (${needed})`);
  }
}

function openSource(source: string | Uint8Array): Promise<ByteSource> {
  return openByteSource(source, 'boot image');
}

/** Copies `section` from an open image file into a new file, 1 MiB at a time. */
async function copyRange(input: Awaited<ReturnType<typeof open>>, section: ImageSection, destination: string): Promise<void> {
  const output = await open(destination, 'w', 0o644);
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  try {
    let copied = 0;
    while (copied < section.size) {
      const length = Math.min(buffer.length, section.size - copied);
      const { bytesRead } = await input.read(buffer, 0, length, section.offset + copied);
      if (bytesRead === 0) throw new QwamosError('INPUT_INVALID', `image ended inside its ${section.name} section`);
      await output.write(buffer, 0, bytesRead, copied);
      copied += bytesRead;
    }
    await output.sync();
  } finally {
    await output.close();
  }
}
