/**
 * Header layouts of Android boot images (boot.img header versions 0 to 4,
 * init_boot) and vendor boot images (vendor_boot versions 3 and 4), as AOSP
 * system/tools/mkbootimg (include/bootimg/bootimg.h, mkbootimg.py) defines
 * them. All integers are little-endian. Strings are NUL-padded ASCII.
 *
 * This module only encodes and decodes header bytes; bootimg-write.ts,
 * bootimg-vendor.ts and bootimg-read.ts place the sections.
 */
import { QwamosError } from '../core/errors.js';

export const BOOT_MAGIC = 'ANDROID!';
export const VENDOR_BOOT_MAGIC = 'VNDRBOOT';

/** Size of boot_img_hdr.name and vendor_boot_img_hdr.name, NUL included. */
export const BOOT_NAME_SIZE = 16;
/** Size of boot_img_hdr_v0.cmdline; the first part of the command line. */
export const BOOT_ARGS_SIZE = 512;
/** Size of boot_img_hdr_v0.extra_cmdline; the rest of the command line. */
export const BOOT_EXTRA_ARGS_SIZE = 1024;
/** Size of boot_img_hdr_v3.cmdline (512 + 1024 in one field). */
export const BOOT_V3_ARGS_SIZE = BOOT_ARGS_SIZE + BOOT_EXTRA_ARGS_SIZE;
export const VENDOR_BOOT_ARGS_SIZE = 2048;

/** Header sizes the header_size field holds, per header version. */
export const BOOT_HEADER_SIZE = { 0: 1632, 1: 1648, 2: 1660, 3: 1580, 4: 1584 } as const;
export const VENDOR_BOOT_HEADER_SIZE = { 3: 2112, 4: 2128 } as const;

/** Page size of boot images with header version 3 and 4, fixed by the format. */
export const BOOT_V3_PAGE_SIZE = 4096;
/** Page sizes that mkbootimg accepts for boot v0 to v2 and for vendor_boot. */
export const ALLOWED_PAGE_SIZES: readonly number[] = [2048, 4096, 8192, 16384];

/** Space that a v4 boot signature (an AVB vbmeta image) takes after the ramdisk. */
export const BOOT_V4_SIGNATURE_SIZE = 4096;

export const VENDOR_RAMDISK_TABLE_ENTRY_SIZE = 108;
export const VENDOR_RAMDISK_NAME_SIZE = 32;
export const VENDOR_RAMDISK_BOARD_ID_COUNT = 16;

/** vendor_ramdisk_table_entry_v4.ramdisk_type values. */
export const VENDOR_RAMDISK_TYPES = { none: 0, platform: 1, recovery: 2, dlkm: 3 } as const;
export type VendorRamdiskTypeName = keyof typeof VENDOR_RAMDISK_TYPES;

export type BootHeaderVersion = 0 | 1 | 2 | 3 | 4;
export type VendorBootHeaderVersion = 3 | 4;

/** Fields of boot_img_hdr_v0, v1 and v2. */
export interface LegacyBootHeader {
  headerVersion: 0 | 1 | 2;
  kernelSize: number;
  kernelAddr: number;
  ramdiskSize: number;
  ramdiskAddr: number;
  secondSize: number;
  secondAddr: number;
  tagsAddr: number;
  pageSize: number;
  /** Raw os_version field: version A.B.C in bits 31..11, patch level in bits 10..0. */
  osVersion: number;
  name: string;
  /** cmdline and extra_cmdline joined, as the bootloader passes them to the kernel. */
  cmdline: string;
  /** The 32-byte id field in hex: SHA-1 of the sections, then 12 zero bytes. */
  id: string;
  /** v1 and v2 only (0 in v0). */
  recoveryDtboSize: number;
  recoveryDtboOffset: number;
  /** v1 and v2 only (0 in v0). */
  headerSize: number;
  /** v2 only (0 in v0 and v1). */
  dtbSize: number;
  dtbAddr: number;
}

/** Fields of boot_img_hdr_v3 and v4 (also used by init_boot). */
export interface GkiBootHeader {
  headerVersion: 3 | 4;
  kernelSize: number;
  ramdiskSize: number;
  osVersion: number;
  headerSize: number;
  cmdline: string;
  /** v4 only (0 in v3): size of the boot signature section after the ramdisk. */
  signatureSize: number;
}

export type BootHeader = LegacyBootHeader | GkiBootHeader;

/** Fields of vendor_boot_img_hdr_v3 and v4. */
export interface VendorBootHeader {
  headerVersion: VendorBootHeaderVersion;
  pageSize: number;
  kernelAddr: number;
  ramdiskAddr: number;
  /** Total size of all vendor ramdisk fragments. */
  vendorRamdiskSize: number;
  cmdline: string;
  tagsAddr: number;
  name: string;
  headerSize: number;
  dtbSize: number;
  dtbAddr: number;
  /** v4 only (0 in v3). */
  vendorRamdiskTableSize: number;
  vendorRamdiskTableEntryCount: number;
  vendorRamdiskTableEntrySize: number;
  bootconfigSize: number;
}

/** One vendor_ramdisk_table_entry_v4. */
export interface VendorRamdiskEntry {
  /** Size in bytes. */
  size: number;
  /** Offset inside the vendor ramdisk section (not inside the file). */
  offset: number;
  type: number;
  name: string;
  /** 16 board id words; a bootloader may pick ramdisks by them. */
  boardId: number[];
}

/**
 * boot_img_hdr_v0 to v2 layout (offset, size):
 *   0 magic[8] "ANDROID!"     8 u32 kernel_size        12 u32 kernel_addr
 *  16 u32 ramdisk_size       20 u32 ramdisk_addr       24 u32 second_size
 *  28 u32 second_addr        32 u32 tags_addr          36 u32 page_size
 *  40 u32 header_version     44 u32 os_version         48 name[16]
 *  64 cmdline[512]          576 id[32]                608 extra_cmdline[1024]
 *  v1: 1632 u32 recovery_dtbo_size   1636 u64 recovery_dtbo_offset   1644 u32 header_size
 *  v2: 1648 u32 dtb_size             1652 u64 dtb_addr
 */
const LEGACY = {
  kernelSize: 8, kernelAddr: 12, ramdiskSize: 16, ramdiskAddr: 20, secondSize: 24, secondAddr: 28,
  tagsAddr: 32, pageSize: 36, headerVersion: 40, osVersion: 44, name: 48, cmdline: 64, id: 576,
  extraCmdline: 608, recoveryDtboSize: 1632, recoveryDtboOffset: 1636, headerSize: 1644, dtbSize: 1648, dtbAddr: 1652,
} as const;

/**
 * boot_img_hdr_v3 and v4 layout (offset, size):
 *   0 magic[8]   8 u32 kernel_size   12 u32 ramdisk_size   16 u32 os_version
 *  20 u32 header_size   24 u32 reserved[4]   40 u32 header_version   44 cmdline[1536]
 *  v4: 1580 u32 signature_size
 */
const GKI = { kernelSize: 8, ramdiskSize: 12, osVersion: 16, headerSize: 20, headerVersion: 40, cmdline: 44, signatureSize: 1580 } as const;

/**
 * vendor_boot_img_hdr_v3 and v4 layout (offset, size):
 *   0 magic[8] "VNDRBOOT"   8 u32 header_version   12 u32 page_size   16 u32 kernel_addr
 *  20 u32 ramdisk_addr     24 u32 vendor_ramdisk_size   28 cmdline[2048]   2076 u32 tags_addr
 *  2080 name[16]   2096 u32 header_size   2100 u32 dtb_size   2104 u64 dtb_addr
 *  v4: 2112 u32 vendor_ramdisk_table_size   2116 u32 vendor_ramdisk_table_entry_num
 *      2120 u32 vendor_ramdisk_table_entry_size   2124 u32 vendor_bootconfig_size
 */
const VENDOR = {
  headerVersion: 8, pageSize: 12, kernelAddr: 16, ramdiskAddr: 20, vendorRamdiskSize: 24, cmdline: 28,
  tagsAddr: 2076, name: 2080, headerSize: 2096, dtbSize: 2100, dtbAddr: 2104,
  tableSize: 2112, tableEntryCount: 2116, tableEntrySize: 2120, bootconfigSize: 2124,
} as const;

/**
 * vendor_ramdisk_table_entry_v4 layout (offset, size):
 *   0 u32 ramdisk_size   4 u32 ramdisk_offset   8 u32 ramdisk_type
 *  12 ramdisk_name[32]   44 u32 board_id[16]
 */
const ENTRY = { size: 0, offset: 4, type: 8, name: 12, boardId: 44 } as const;

/** Offset of header_version, the same in every boot and vendor_boot header. */
export const HEADER_VERSION_OFFSET = 40;

/** Rounds `size` up to a whole number of `pageSize` pages. */
export function alignToPage(size: number, pageSize: number): number {
  return Math.ceil(size / pageSize) * pageSize;
}

/**
 * Encodes a legacy (v0 to v2) header into a zeroed buffer of one page. The
 * command line is split as current AOSP mkbootimg splits it: the first 511
 * bytes and a NUL go in cmdline, the rest in extra_cmdline, so that a
 * bootloader that reads cmdline as a C string stops inside the field.
 */
export function encodeLegacyBootHeader(header: LegacyBootHeader): Buffer {
  const page = Buffer.alloc(header.pageSize);
  page.write(BOOT_MAGIC, 0, 'latin1');
  page.writeUInt32LE(header.kernelSize, LEGACY.kernelSize);
  page.writeUInt32LE(header.kernelAddr, LEGACY.kernelAddr);
  page.writeUInt32LE(header.ramdiskSize, LEGACY.ramdiskSize);
  page.writeUInt32LE(header.ramdiskAddr, LEGACY.ramdiskAddr);
  page.writeUInt32LE(header.secondSize, LEGACY.secondSize);
  page.writeUInt32LE(header.secondAddr, LEGACY.secondAddr);
  page.writeUInt32LE(header.tagsAddr, LEGACY.tagsAddr);
  page.writeUInt32LE(header.pageSize, LEGACY.pageSize);
  page.writeUInt32LE(header.headerVersion, LEGACY.headerVersion);
  page.writeUInt32LE(header.osVersion, LEGACY.osVersion);
  writeFixedString(page, header.name, LEGACY.name, BOOT_NAME_SIZE);
  writeFixedString(page, header.cmdline.slice(0, BOOT_ARGS_SIZE - 1), LEGACY.cmdline, BOOT_ARGS_SIZE - 1);
  Buffer.from(header.id, 'hex').copy(page, LEGACY.id);
  writeFixedString(page, header.cmdline.slice(BOOT_ARGS_SIZE - 1), LEGACY.extraCmdline, BOOT_EXTRA_ARGS_SIZE);

  if (header.headerVersion >= 1) {
    page.writeUInt32LE(header.recoveryDtboSize, LEGACY.recoveryDtboSize);
    page.writeBigUInt64LE(BigInt(header.recoveryDtboOffset), LEGACY.recoveryDtboOffset);
    page.writeUInt32LE(header.headerSize, LEGACY.headerSize);
  }

  if (header.headerVersion >= 2) {
    page.writeUInt32LE(header.dtbSize, LEGACY.dtbSize);
    page.writeBigUInt64LE(BigInt(header.dtbAddr), LEGACY.dtbAddr);
  }
  return page;
}

/** Encodes a v3 or v4 header into a zeroed 4096-byte page. */
export function encodeGkiBootHeader(header: GkiBootHeader): Buffer {
  const page = Buffer.alloc(BOOT_V3_PAGE_SIZE);
  page.write(BOOT_MAGIC, 0, 'latin1');
  page.writeUInt32LE(header.kernelSize, GKI.kernelSize);
  page.writeUInt32LE(header.ramdiskSize, GKI.ramdiskSize);
  page.writeUInt32LE(header.osVersion, GKI.osVersion);
  page.writeUInt32LE(header.headerSize, GKI.headerSize);
  page.writeUInt32LE(header.headerVersion, GKI.headerVersion);
  writeFixedString(page, header.cmdline, GKI.cmdline, BOOT_V3_ARGS_SIZE);
  if (header.headerVersion >= 4) page.writeUInt32LE(header.signatureSize, GKI.signatureSize);
  return page;
}

/** Encodes a vendor_boot header, padded with zeros to whole pages. */
export function encodeVendorBootHeader(header: VendorBootHeader): Buffer {
  const page = Buffer.alloc(alignToPage(header.headerSize, header.pageSize));
  page.write(VENDOR_BOOT_MAGIC, 0, 'latin1');
  page.writeUInt32LE(header.headerVersion, VENDOR.headerVersion);
  page.writeUInt32LE(header.pageSize, VENDOR.pageSize);
  page.writeUInt32LE(header.kernelAddr, VENDOR.kernelAddr);
  page.writeUInt32LE(header.ramdiskAddr, VENDOR.ramdiskAddr);
  page.writeUInt32LE(header.vendorRamdiskSize, VENDOR.vendorRamdiskSize);
  writeFixedString(page, header.cmdline, VENDOR.cmdline, VENDOR_BOOT_ARGS_SIZE);
  page.writeUInt32LE(header.tagsAddr, VENDOR.tagsAddr);
  writeFixedString(page, header.name, VENDOR.name, BOOT_NAME_SIZE);
  page.writeUInt32LE(header.headerSize, VENDOR.headerSize);
  page.writeUInt32LE(header.dtbSize, VENDOR.dtbSize);
  page.writeBigUInt64LE(BigInt(header.dtbAddr), VENDOR.dtbAddr);

  if (header.headerVersion >= 4) {
    page.writeUInt32LE(header.vendorRamdiskTableSize, VENDOR.tableSize);
    page.writeUInt32LE(header.vendorRamdiskTableEntryCount, VENDOR.tableEntryCount);
    page.writeUInt32LE(header.vendorRamdiskTableEntrySize, VENDOR.tableEntrySize);
    page.writeUInt32LE(header.bootconfigSize, VENDOR.bootconfigSize);
  }
  return page;
}

/** Encodes vendor ramdisk table entries back to back (not page-padded). */
export function encodeVendorRamdiskTable(entries: readonly VendorRamdiskEntry[]): Buffer {
  const table = Buffer.alloc(entries.length * VENDOR_RAMDISK_TABLE_ENTRY_SIZE);
  entries.forEach((entry, index) => {
    const base = index * VENDOR_RAMDISK_TABLE_ENTRY_SIZE;
    table.writeUInt32LE(entry.size, base + ENTRY.size);
    table.writeUInt32LE(entry.offset, base + ENTRY.offset);
    table.writeUInt32LE(entry.type, base + ENTRY.type);
    writeFixedString(table, entry.name, base + ENTRY.name, VENDOR_RAMDISK_NAME_SIZE);
    for (let word = 0; word < VENDOR_RAMDISK_BOARD_ID_COUNT; word += 1) {
      table.writeUInt32LE(entry.boardId[word] ?? 0, base + ENTRY.boardId + 4 * word);
    }
  });
  return table;
}

/** Returns the magic at the start of `bytes`: 'boot', 'vendor_boot' or undefined. */
export function detectBootImageKind(bytes: Uint8Array): 'boot' | 'vendor_boot' | undefined {
  const magic = Buffer.from(bytes.subarray(0, 8)).toString('latin1');
  if (magic === BOOT_MAGIC) return 'boot';
  if (magic === VENDOR_BOOT_MAGIC) return 'vendor_boot';
  return undefined;
}

/** Decodes a boot.img header of any version; `bytes` must hold the first page. */
export function decodeBootHeader(bytes: Uint8Array): BootHeader {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerVersion = buffer.readUInt32LE(HEADER_VERSION_OFFSET);

  if (headerVersion === 3 || headerVersion === 4) {
    return {
      headerVersion,
      kernelSize: buffer.readUInt32LE(GKI.kernelSize),
      ramdiskSize: buffer.readUInt32LE(GKI.ramdiskSize),
      osVersion: buffer.readUInt32LE(GKI.osVersion),
      headerSize: buffer.readUInt32LE(GKI.headerSize),
      cmdline: readFixedString(buffer, GKI.cmdline, BOOT_V3_ARGS_SIZE),
      signatureSize: headerVersion === 4 ? buffer.readUInt32LE(GKI.signatureSize) : 0,
    };
  }

  if (headerVersion > 4) {
    throw new QwamosError('INPUT_INVALID', `boot image header version ${headerVersion} is not supported; header versions 0 to 4 exist`);
  }

  const version = headerVersion as 0 | 1 | 2;
  return {
    headerVersion: version,
    kernelSize: buffer.readUInt32LE(LEGACY.kernelSize),
    kernelAddr: buffer.readUInt32LE(LEGACY.kernelAddr),
    ramdiskSize: buffer.readUInt32LE(LEGACY.ramdiskSize),
    ramdiskAddr: buffer.readUInt32LE(LEGACY.ramdiskAddr),
    secondSize: buffer.readUInt32LE(LEGACY.secondSize),
    secondAddr: buffer.readUInt32LE(LEGACY.secondAddr),
    tagsAddr: buffer.readUInt32LE(LEGACY.tagsAddr),
    pageSize: buffer.readUInt32LE(LEGACY.pageSize),
    osVersion: buffer.readUInt32LE(LEGACY.osVersion),
    name: readFixedString(buffer, LEGACY.name, BOOT_NAME_SIZE),
    cmdline: readFixedString(buffer, LEGACY.cmdline, BOOT_ARGS_SIZE) + readFixedString(buffer, LEGACY.extraCmdline, BOOT_EXTRA_ARGS_SIZE),
    id: buffer.subarray(LEGACY.id, LEGACY.id + 32).toString('hex'),
    recoveryDtboSize: version >= 1 ? buffer.readUInt32LE(LEGACY.recoveryDtboSize) : 0,
    recoveryDtboOffset: version >= 1 ? readUInt64(buffer, LEGACY.recoveryDtboOffset, 'recovery_dtbo_offset') : 0,
    headerSize: version >= 1 ? buffer.readUInt32LE(LEGACY.headerSize) : 0,
    dtbSize: version >= 2 ? buffer.readUInt32LE(LEGACY.dtbSize) : 0,
    dtbAddr: version >= 2 ? readUInt64(buffer, LEGACY.dtbAddr, 'dtb_addr') : 0,
  };
}

/** Decodes a vendor_boot header; `bytes` must hold at least 2128 bytes for v4. */
export function decodeVendorBootHeader(bytes: Uint8Array): VendorBootHeader {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerVersion = buffer.readUInt32LE(VENDOR.headerVersion);
  if (headerVersion !== 3 && headerVersion !== 4) {
    throw new QwamosError('INPUT_INVALID', `vendor_boot header version ${headerVersion} is not supported; vendor_boot versions 3 and 4 exist`);
  }

  const v4 = headerVersion === 4;
  return {
    headerVersion,
    pageSize: buffer.readUInt32LE(VENDOR.pageSize),
    kernelAddr: buffer.readUInt32LE(VENDOR.kernelAddr),
    ramdiskAddr: buffer.readUInt32LE(VENDOR.ramdiskAddr),
    vendorRamdiskSize: buffer.readUInt32LE(VENDOR.vendorRamdiskSize),
    cmdline: readFixedString(buffer, VENDOR.cmdline, VENDOR_BOOT_ARGS_SIZE),
    tagsAddr: buffer.readUInt32LE(VENDOR.tagsAddr),
    name: readFixedString(buffer, VENDOR.name, BOOT_NAME_SIZE),
    headerSize: buffer.readUInt32LE(VENDOR.headerSize),
    dtbSize: buffer.readUInt32LE(VENDOR.dtbSize),
    dtbAddr: readUInt64(buffer, VENDOR.dtbAddr, 'dtb_addr'),
    vendorRamdiskTableSize: v4 ? buffer.readUInt32LE(VENDOR.tableSize) : 0,
    vendorRamdiskTableEntryCount: v4 ? buffer.readUInt32LE(VENDOR.tableEntryCount) : 0,
    vendorRamdiskTableEntrySize: v4 ? buffer.readUInt32LE(VENDOR.tableEntrySize) : 0,
    bootconfigSize: v4 ? buffer.readUInt32LE(VENDOR.bootconfigSize) : 0,
  };
}

/** Decodes `count` table entries spaced `entrySize` bytes apart. */
export function decodeVendorRamdiskTable(bytes: Uint8Array, count: number, entrySize: number): VendorRamdiskEntry[] {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries: VendorRamdiskEntry[] = [];
  for (let index = 0; index < count; index += 1) {
    const base = index * entrySize;
    const boardId: number[] = [];
    for (let word = 0; word < VENDOR_RAMDISK_BOARD_ID_COUNT; word += 1) {
      boardId.push(buffer.readUInt32LE(base + ENTRY.boardId + 4 * word));
    }
    entries.push({
      size: buffer.readUInt32LE(base + ENTRY.size),
      offset: buffer.readUInt32LE(base + ENTRY.offset),
      type: buffer.readUInt32LE(base + ENTRY.type),
      name: readFixedString(buffer, base + ENTRY.name, VENDOR_RAMDISK_NAME_SIZE),
      boardId,
    });
  }
  return entries;
}

/**
 * Encodes the os_version field from an Android version "A.B.C" (each part
 * 0 to 127) and a security patch level "YYYY-MM" or "YYYY-MM-DD" (years 2000
 * to 2127; the day is not stored): A<<25 | B<<18 | C<<11 | (YYYY-2000)<<4 | MM.
 * A missing value encodes as 0, as in mkbootimg.
 */
export function encodeOsVersion(version: string | undefined, patchLevel: string | undefined): number {
  let versionBits = 0;
  if (version !== undefined && version !== '') {
    const match = /^(\d{1,3})(?:\.(\d{1,3})(?:\.(\d{1,3}))?)?$/.exec(version);
    if (!match) {
      throw new QwamosError('INPUT_INVALID', `os version '${version}' is invalid; write it as A.B.C, for example 14.0.0`);
    }
    const parts = [match[1], match[2], match[3]].map((part) => Number(part ?? '0'));
    if (parts.some((part) => part > 127)) {
      throw new QwamosError('LIMIT_EXCEEDED', `os version '${version}' has a part above 127, the maximum of its 7-bit field`);
    }
    versionBits = ((parts[0] ?? 0) << 14) | ((parts[1] ?? 0) << 7) | (parts[2] ?? 0);
  }

  let patchBits = 0;
  if (patchLevel !== undefined && patchLevel !== '') {
    const match = /^(\d{4})-(\d{2})(?:-(\d{2}))?$/.exec(patchLevel);
    if (!match) {
      throw new QwamosError('INPUT_INVALID', `os patch level '${patchLevel}' is invalid; write it as YYYY-MM or YYYY-MM-DD, for example 2024-05-05`);
    }
    const year = Number(match[1]) - 2000;
    const month = Number(match[2]);
    if (year < 0 || year > 127 || month < 1 || month > 12) {
      throw new QwamosError('LIMIT_EXCEEDED', `os patch level '${patchLevel}' is out of range; the year must be 2000 to 2127 and the month 1 to 12`);
    }
    patchBits = (year << 4) | month;
  }

  return (versionBits * 2048 + patchBits) >>> 0;
}

/** Decodes the os_version field into the strings that unpack_bootimg prints. */
export function decodeOsVersion(field: number): { osVersion: string; osPatchLevel: string } {
  const versionBits = field >>> 11;
  const patchBits = field & 0x7ff;
  const osVersion = `${versionBits >>> 14}.${(versionBits >>> 7) & 0x7f}.${versionBits & 0x7f}`;
  const osPatchLevel = `${(patchBits >>> 4) + 2000}-${String(patchBits & 0xf).padStart(2, '0')}`;
  return { osVersion, osPatchLevel };
}

/** Writes ASCII text into a fixed-size field; the caller has checked the length. */
function writeFixedString(target: Buffer, text: string, offset: number, size: number): void {
  const bytes = Buffer.from(text, 'latin1');
  bytes.copy(target, offset, 0, Math.min(bytes.length, size));
}

/** Reads a NUL-padded string field, stopping at the first NUL. */
function readFixedString(buffer: Buffer, offset: number, size: number): string {
  const field = buffer.subarray(offset, offset + size);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? size : end).toString('latin1');
}

function readUInt64(buffer: Buffer, offset: number, field: string): number {
  const value = buffer.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new QwamosError('INPUT_INVALID', `header field ${field} is 0x${value.toString(16)}, above 2^53; this reader handles 64-bit fields only up to 2^53`);
  }
  return Number(value);
}
