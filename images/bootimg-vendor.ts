/**
 * Writes vendor_boot.img files, header versions 3 and 4, in the final AOSP
 * layout (header_size 2112 and 2128; Debian's mkbootimg 29.0.6 writes 2108
 * for v3 and rejects v4).
 *
 * Image layout, each part padded to the page size:
 *   v3: header, vendor ramdisk, dtb
 *   v4: header, vendor ramdisk fragments (back to back, padded once), dtb,
 *       vendor ramdisk table, bootconfig
 */
import {
  VENDOR_BOOT_ARGS_SIZE, VENDOR_BOOT_HEADER_SIZE, BOOT_NAME_SIZE, VENDOR_RAMDISK_BOARD_ID_COUNT, VENDOR_RAMDISK_NAME_SIZE,
  VENDOR_RAMDISK_TABLE_ENTRY_SIZE, VENDOR_RAMDISK_TYPES, encodeVendorBootHeader, encodeVendorRamdiskTable,
  type VendorBootHeader, type VendorBootHeaderVersion, type VendorRamdiskEntry, type VendorRamdiskTypeName,
} from './bootimg-header.js';
import { U32_MAX, resolveSection, writePagedImage, type ImageSection, type ResolvedSection, type SectionInput } from './bootimg-io.js';
import {
  MKBOOTIMG_DEFAULT_ADDRESSES, MKBOOTIMG_DEFAULT_PAGE_SIZE, address32, address64, checkAsciiField, checkCommandLine,
  checkPageSize, definedOnly, type LoadAddressOptions,
} from './bootimg-write.js';
import { QwamosError } from '../core/errors.js';

/** One vendor ramdisk fragment of a v4 vendor_boot image. */
export interface VendorRamdiskFragment {
  ramdisk: SectionInput;
  /** Ramdisk type: a name or the raw number; default 'none'. */
  type?: VendorRamdiskTypeName | number;
  /** Unique name of at most 31 characters; 'default' is reserved. */
  name: string;
  /** Up to 16 u32 board id words; missing words are 0. */
  boardId?: readonly number[];
}

export interface VendorBootImageOptions extends Omit<LoadAddressOptions, 'secondOffset'> {
  output: string;
  headerVersion: VendorBootHeaderVersion;
  /** Default 2048, as in mkbootimg. */
  pageSize?: number;
  /**
   * The vendor ramdisk. Required in v3. In v4 it becomes the first table
   * entry, with type 'platform' and an empty name, as mkbootimg's --vendor_ramdisk does.
   */
  vendorRamdisk?: SectionInput;
  /** v4 only: further ramdisks, in table order after `vendorRamdisk`. */
  fragments?: readonly VendorRamdiskFragment[];
  dtb?: SectionInput;
  /** v4 only: bootconfig text appended after the table. */
  bootconfig?: SectionInput;
  /** Vendor part of the kernel command line; at most 2047 bytes. */
  vendorCmdline?: string;
  /** Product name; at most 15 characters. */
  board?: string;
}

export interface WrittenVendorBootImage {
  path: string;
  size: number;
  header: VendorBootHeader;
  ramdiskTable: VendorRamdiskEntry[];
  sections: ImageSection[];
}

/** Ramdisk names with a meaning of their own in AOSP, which mkbootimg rejects. */
const RESERVED_RAMDISK_NAMES = new Set(['default']);

/** Writes a vendor_boot.img with header version 3 or 4 after checking every input against the format's limits. */
export async function writeVendorBootImage(options: VendorBootImageOptions): Promise<WrittenVendorBootImage> {
  const version = options.headerVersion;
  if (version !== 3 && version !== 4) {
    throw new QwamosError('INPUT_INVALID', `vendor_boot header version ${String(version)} is not supported; use 3 or 4`);
  }
  const pageSize = options.pageSize ?? MKBOOTIMG_DEFAULT_PAGE_SIZE;
  checkPageSize(pageSize, `vendor_boot header version ${version}`);
  const cmdline = checkCommandLine(options.vendorCmdline ?? '', VENDOR_BOOT_ARGS_SIZE - 1, `the vendor_boot cmdline field (2048 bytes ending in NUL)`);
  const board = checkAsciiField(options.board ?? '', 'board name', BOOT_NAME_SIZE - 1);
  if (version === 3) checkVersion3Inputs(options);

  const ramdisks = await resolveRamdisks(options);
  const dtb = await resolveSection('dtb', options.dtb);
  const bootconfig = await resolveSection('bootconfig', options.bootconfig);
  const ramdiskTotal = ramdisks.reduce((total, ramdisk) => total + ramdisk.section.size, 0);
  if (ramdiskTotal > U32_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `vendor ramdisks add up to ${ramdiskTotal} bytes; the vendor_ramdisk_size field is 32 bits, so the maximum is ${U32_MAX} bytes`);
  }

  const ramdiskTable = buildRamdiskTable(ramdisks);
  const table = encodeVendorRamdiskTable(ramdiskTable);
  const addresses = { ...MKBOOTIMG_DEFAULT_ADDRESSES, ...definedOnly(options) };
  const header: VendorBootHeader = {
    headerVersion: version,
    pageSize,
    kernelAddr: address32('kernel', addresses.base, addresses.kernelOffset),
    ramdiskAddr: address32('ramdisk', addresses.base, addresses.ramdiskOffset),
    vendorRamdiskSize: ramdiskTotal,
    cmdline,
    tagsAddr: address32('tags', addresses.base, addresses.tagsOffset),
    name: board,
    headerSize: VENDOR_BOOT_HEADER_SIZE[version],
    dtbSize: dtb?.size ?? 0,
    dtbAddr: address64('dtb', addresses.base, addresses.dtbOffset),
    vendorRamdiskTableSize: version === 4 ? table.length : 0,
    vendorRamdiskTableEntryCount: version === 4 ? ramdiskTable.length : 0,
    vendorRamdiskTableEntrySize: version === 4 ? VENDOR_RAMDISK_TABLE_ENTRY_SIZE : 0,
    bootconfigSize: bootconfig?.size ?? 0,
  };

  const { size, result: sections } = await writePagedImage(options.output, pageSize, async (writer) => {
    await writer.writePadded(encodeVendorBootHeader(header));
    const placed: ImageSection[] = [];
    for (const ramdisk of ramdisks) {
      const section = await writer.appendSection(ramdisk.section);
      placed.push(version === 4 ? { ...section, name: ramdisk.outputName } : section);
    }
    await writer.pad();
    if (dtb) placed.push(await writer.writeSection(dtb));

    if (version === 4) {
      const tableOffset = writer.position;
      await writer.writePadded(table);
      placed.push({ name: 'vendor_ramdisk_table', offset: tableOffset, size: table.length });
      if (bootconfig) placed.push(await writer.writeSection(bootconfig));
    }
    return placed;
  });
  return { path: options.output, size, header, ramdiskTable, sections };
}

interface ResolvedRamdisk {
  section: ResolvedSection;
  type: number;
  name: string;
  boardId: number[];
  /** File name that unpacking gives this fragment: vendor_ramdisk00, vendor_ramdisk01, ... */
  outputName: string;
}

function checkVersion3Inputs(options: VendorBootImageOptions): void {
  if (options.vendorRamdisk === undefined) {
    throw new QwamosError('INPUT_INVALID', 'vendor_boot header version 3 needs a vendor ramdisk; give the vendor ramdisk');
  }
  if ((options.fragments?.length ?? 0) > 0) {
    throw new QwamosError('INPUT_INVALID', 'vendor_boot header version 3 has a single vendor ramdisk; vendor ramdisk fragments need header version 4');
  }
  if (options.bootconfig !== undefined) {
    throw new QwamosError('INPUT_INVALID', 'vendor_boot header version 3 has no bootconfig section; bootconfig needs header version 4');
  }
}

async function resolveRamdisks(options: VendorBootImageOptions): Promise<ResolvedRamdisk[]> {
  const ramdisks: ResolvedRamdisk[] = [];
  const names = new Set<string>();
  const add = async (input: SectionInput, type: number, name: string, boardId: readonly number[] | undefined): Promise<void> => {
    if (RESERVED_RAMDISK_NAMES.has(name)) {
      throw new QwamosError('INPUT_INVALID', `vendor ramdisk name '${name}' is reserved; choose another name`);
    }
    if (names.has(name)) {
      const hint = name === '' ? '; the vendor ramdisk itself has the empty name, so give each fragment a name' : '';
      throw new QwamosError('INPUT_INVALID', `vendor ramdisk name '${name}' is used twice; each table entry needs its own name${hint}`);
    }
    names.add(name);
    const outputName = `vendor_ramdisk${String(ramdisks.length).padStart(2, '0')}`;
    const section = await resolveSection(options.headerVersion === 4 ? `vendor ramdisk '${name}'` : 'vendor_ramdisk', input);
    ramdisks.push({ section: { ...section!, name: options.headerVersion === 4 ? outputName : 'vendor_ramdisk' }, type, name, boardId: checkBoardId(boardId, name), outputName });
  };

  if (options.vendorRamdisk !== undefined) await add(options.vendorRamdisk, VENDOR_RAMDISK_TYPES.platform, '', undefined);
  for (const fragment of options.fragments ?? []) {
    checkAsciiField(fragment.name, 'vendor ramdisk name', VENDOR_RAMDISK_NAME_SIZE - 1);
    await add(fragment.ramdisk, ramdiskTypeNumber(fragment.type ?? 'none'), fragment.name, fragment.boardId);
  }
  return ramdisks;
}

function buildRamdiskTable(ramdisks: readonly ResolvedRamdisk[]): VendorRamdiskEntry[] {
  let offset = 0;
  return ramdisks.map((ramdisk) => {
    const entry = { size: ramdisk.section.size, offset, type: ramdisk.type, name: ramdisk.name, boardId: ramdisk.boardId };
    offset += ramdisk.section.size;
    return entry;
  });
}

/** Converts a ramdisk type name or number into the table's u32 value. */
export function ramdiskTypeNumber(type: VendorRamdiskTypeName | number | string): number {
  if (typeof type === 'number') {
    if (!Number.isInteger(type) || type < 0 || type > U32_MAX) {
      throw new QwamosError('LIMIT_EXCEEDED', `vendor ramdisk type ${type} does not fit its 32-bit field`);
    }
    return type;
  }
  const known = VENDOR_RAMDISK_TYPES[type.toLowerCase() as VendorRamdiskTypeName];
  if (known === undefined) {
    throw new QwamosError('INPUT_INVALID', `vendor ramdisk type '${type}' is unknown; use none, platform, recovery, dlkm or a number`);
  }
  return known;
}

function checkBoardId(boardId: readonly number[] | undefined, name: string): number[] {
  const words = [...(boardId ?? [])];
  if (words.length > VENDOR_RAMDISK_BOARD_ID_COUNT) {
    throw new QwamosError('LIMIT_EXCEEDED', `vendor ramdisk '${name}' has ${words.length} board id words; the table entry has room for ${VENDOR_RAMDISK_BOARD_ID_COUNT}`);
  }
  for (const word of words) {
    if (!Number.isInteger(word) || word < 0 || word > U32_MAX) {
      throw new QwamosError('LIMIT_EXCEEDED', `vendor ramdisk '${name}' board id word ${word} does not fit 32 bits`);
    }
  }
  while (words.length < VENDOR_RAMDISK_BOARD_ID_COUNT) words.push(0);
  return words;
}
