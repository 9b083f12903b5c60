/**
 * Writes boot.img (header versions 0 to 4) and init_boot.img files.
 *
 * Versions 0 to 2 match Debian's mkbootimg 29.0.6 byte for byte, except for
 * command lines longer than 511 bytes. Those are split after byte 511 with a
 * NUL, as current AOSP mkbootimg does, while 29.0.6 fills all 512 bytes of
 * the cmdline field with no NUL. Versions 3 and 4 follow the final AOSP
 * layout (header_size 1580 and 1584), which 29.0.6 predates.
 *
 * Image layout, each section padded to the page size:
 *   v0 to v2: header page, kernel, ramdisk, second, recovery_dtbo (v1, v2), dtb (v2)
 *   v3, v4:   4096-byte header page, kernel, ramdisk, boot signature (v4, optional)
 */
import {
  ALLOWED_PAGE_SIZES, BOOT_ARGS_SIZE, BOOT_EXTRA_ARGS_SIZE, BOOT_HEADER_SIZE, BOOT_NAME_SIZE, BOOT_V3_ARGS_SIZE,
  BOOT_V3_PAGE_SIZE, BOOT_V4_SIGNATURE_SIZE, alignToPage, encodeGkiBootHeader, encodeLegacyBootHeader, encodeOsVersion,
  type BootHeaderVersion, type GkiBootHeader, type LegacyBootHeader,
} from './bootimg-header.js';
import {
  U32_MAX, computeBootImageId, resolveSection, writePagedImage,
  type ImageSection, type ResolvedSection, type SectionInput,
} from './bootimg-io.js';
import { QwamosError } from '../core/errors.js';

/** Load address options; each address is base + offset, as in mkbootimg. */
export interface LoadAddressOptions {
  base?: number;
  kernelOffset?: number;
  ramdiskOffset?: number;
  secondOffset?: number;
  tagsOffset?: number;
  dtbOffset?: number;
}

/** mkbootimg's default load addresses (base and offsets). */
export const MKBOOTIMG_DEFAULT_ADDRESSES: Required<LoadAddressOptions> = {
  base: 0x1000_0000,
  kernelOffset: 0x0000_8000,
  ramdiskOffset: 0x0100_0000,
  secondOffset: 0x00f0_0000,
  tagsOffset: 0x0000_0100,
  dtbOffset: 0x01f0_0000,
};

/** mkbootimg's default page size for boot v0 to v2 and for vendor_boot. */
export const MKBOOTIMG_DEFAULT_PAGE_SIZE = 2048;

export interface BootImageOptions extends LoadAddressOptions {
  /** Path of the image to create; it is replaced atomically. */
  output: string;
  headerVersion: BootHeaderVersion;
  kernel?: SectionInput;
  ramdisk?: SectionInput;
  /** Second-stage bootloader, versions 0 to 2 only. */
  second?: SectionInput;
  /** Recovery DTBO or ACPIO image, versions 1 and 2 only. */
  recoveryDtbo?: SectionInput;
  /** Device tree blob, version 2 only (required there). */
  dtb?: SectionInput;
  /** Boot signature (a vbmeta image of at most 4096 bytes), version 4 only. */
  bootSignature?: SectionInput;
  /** Kernel command line, printable ASCII. */
  cmdline?: string;
  /** Product name, versions 0 to 2 only; at most 15 characters. */
  board?: string;
  /** Default 2048 for versions 0 to 2; versions 3 and 4 allow only 4096. */
  pageSize?: number;
  /** Android version "A.B.C". */
  osVersion?: string;
  /** Security patch level "YYYY-MM" or "YYYY-MM-DD". */
  osPatchLevel?: string;
}

export interface InitBootImageOptions {
  output: string;
  /** The generic ramdisk, the only section of an init_boot image. */
  ramdisk: SectionInput;
  osVersion?: string;
  osPatchLevel?: string;
}

export interface WrittenBootImage {
  path: string;
  /** Size of the written file in bytes. */
  size: number;
  header: LegacyBootHeader | GkiBootHeader;
  sections: ImageSection[];
}

/** Writes a boot.img with header version 0 to 4 after checking every input against the format's limits. */
export async function writeBootImage(options: BootImageOptions): Promise<WrittenBootImage> {
  const version = options.headerVersion;
  if (!Number.isInteger(version) || version < 0 || version > 4) {
    throw new QwamosError('INPUT_INVALID', `boot image header version ${String(version)} is not supported; use 0, 1, 2, 3 or 4`);
  }
  if (options.kernel === undefined) {
    throw new QwamosError('INPUT_INVALID', `boot image header version ${version} needs a kernel; give the kernel (or write an init_boot image for a ramdisk alone)`);
  }
  return version <= 2 ? writeLegacyBootImage(options, version as 0 | 1 | 2) : writeGkiBootImage(options, version as 3 | 4);
}

/**
 * Writes an init_boot.img: a boot image with header version 4, no kernel and
 * the generic ramdisk, as devices launched with Android 13 and later use.
 */
export async function writeInitBootImage(options: InitBootImageOptions): Promise<WrittenBootImage> {
  if (options.ramdisk === undefined) {
    throw new QwamosError('INPUT_INVALID', 'an init_boot image needs a ramdisk; give the generic ramdisk');
  }
  return writeGkiBootImage({ ...options, headerVersion: 4 }, 4);
}

async function writeLegacyBootImage(options: BootImageOptions, version: 0 | 1 | 2): Promise<WrittenBootImage> {
  const pageSize = options.pageSize ?? MKBOOTIMG_DEFAULT_PAGE_SIZE;
  checkPageSize(pageSize, `boot header version ${version}`);
  const cmdline = checkCommandLine(options.cmdline ?? '', BOOT_ARGS_SIZE + BOOT_EXTRA_ARGS_SIZE - 2, `boot header version ${version} (a 512-byte and a 1024-byte field, each ending in NUL)`);
  const board = checkAsciiField(options.board ?? '', 'board name', BOOT_NAME_SIZE - 1);
  if (options.bootSignature !== undefined) throw sectionNotInVersion('boot signature', version, 'header version 4');
  if (version === 0 && options.recoveryDtbo !== undefined) throw sectionNotInVersion('recovery dtbo', version, 'header versions 1 and 2');
  if (version < 2 && options.dtb !== undefined) throw sectionNotInVersion('dtb', version, 'header version 2');

  const kernel = await resolveSection('kernel', options.kernel);
  const ramdisk = await resolveSection('ramdisk', options.ramdisk);
  const second = await resolveSection('second', options.second);
  const recoveryDtbo = version >= 1 ? await resolveSection('recovery_dtbo', options.recoveryDtbo) : undefined;
  const dtb = version === 2 ? await resolveSection('dtb', options.dtb) : undefined;
  if (version === 2 && (dtb === undefined || dtb.size === 0)) {
    throw new QwamosError('INPUT_INVALID', 'boot header version 2 needs a non-empty dtb; give the device tree blob');
  }

  const addresses = { ...MKBOOTIMG_DEFAULT_ADDRESSES, ...definedOnly(options) };
  const pages = (section: ResolvedSection | undefined): number => alignToPage(section?.size ?? 0, pageSize);
  const idSections = [kernel, ramdisk, second, ...(version >= 1 ? [recoveryDtbo] : []), ...(version === 2 ? [dtb] : [])];

  const header: LegacyBootHeader = {
    headerVersion: version,
    kernelSize: kernel?.size ?? 0,
    kernelAddr: address32('kernel', addresses.base, addresses.kernelOffset),
    ramdiskSize: ramdisk?.size ?? 0,
    // mkbootimg writes load address 0 for an absent or empty ramdisk and second stage.
    ramdiskAddr: (ramdisk?.size ?? 0) > 0 ? address32('ramdisk', addresses.base, addresses.ramdiskOffset) : 0,
    secondSize: second?.size ?? 0,
    secondAddr: (second?.size ?? 0) > 0 ? address32('second', addresses.base, addresses.secondOffset) : 0,
    tagsAddr: address32('tags', addresses.base, addresses.tagsOffset),
    pageSize,
    osVersion: encodeOsVersion(options.osVersion, options.osPatchLevel),
    name: board,
    cmdline,
    id: await computeBootImageId(idSections),
    recoveryDtboSize: recoveryDtbo?.size ?? 0,
    recoveryDtboOffset: recoveryDtbo ? pageSize + pages(kernel) + pages(ramdisk) + pages(second) : 0,
    headerSize: version >= 1 ? BOOT_HEADER_SIZE[version] : 0,
    dtbSize: dtb?.size ?? 0,
    dtbAddr: version === 2 ? address64('dtb', addresses.base, addresses.dtbOffset) : 0,
  };

  const { size, result: sections } = await writePagedImage(options.output, pageSize, async (writer) => {
    await writer.writePadded(encodeLegacyBootHeader(header));
    const placed: ImageSection[] = [];
    for (const section of [kernel, ramdisk, second, recoveryDtbo, dtb]) {
      if (section) placed.push(await writer.writeSection(section));
    }
    return placed;
  });
  return { path: options.output, size, header, sections };
}

async function writeGkiBootImage(options: BootImageOptions, version: 3 | 4): Promise<WrittenBootImage> {
  if (options.pageSize !== undefined && options.pageSize !== BOOT_V3_PAGE_SIZE) {
    throw new QwamosError('LIMIT_EXCEEDED', `page size ${options.pageSize} is not allowed for boot header version ${version}; versions 3 and 4 use a fixed page size of ${BOOT_V3_PAGE_SIZE}`);
  }
  const cmdline = checkCommandLine(options.cmdline ?? '', BOOT_V3_ARGS_SIZE - 1, `boot header version ${version} (a 1536-byte field ending in NUL)`);
  if (options.board !== undefined && options.board !== '') {
    throw new QwamosError('INPUT_INVALID', `boot header version ${version} has no board name field; put the board name in the vendor_boot image`);
  }
  if (options.second !== undefined) throw sectionNotInVersion('second', version, 'header versions 0 to 2');
  if (options.recoveryDtbo !== undefined) throw sectionNotInVersion('recovery dtbo', version, 'header versions 1 and 2');
  if (options.dtb !== undefined) {
    throw new QwamosError('INPUT_INVALID', `boot header version ${version} has no dtb section; put the dtb in the vendor_boot image`);
  }
  if (version === 3 && options.bootSignature !== undefined) throw sectionNotInVersion('boot signature', version, 'header version 4');
  const addressOptions = Object.keys(definedOnly(options));
  if (addressOptions.length > 0) {
    throw new QwamosError('INPUT_INVALID', `boot header version ${version} has no load addresses (${addressOptions.join(', ')} given); put them in the vendor_boot image`);
  }

  const kernel = await resolveSection('kernel', options.kernel);
  const ramdisk = await resolveSection('ramdisk', options.ramdisk);
  const signature = await resolveSection('boot_signature', options.bootSignature);
  if (signature && signature.size > BOOT_V4_SIGNATURE_SIZE) {
    throw new QwamosError('LIMIT_EXCEEDED', `boot signature is ${signature.size} bytes; header version 4 reserves at most ${BOOT_V4_SIGNATURE_SIZE} bytes for it`);
  }

  const header: GkiBootHeader = {
    headerVersion: version,
    kernelSize: kernel?.size ?? 0,
    ramdiskSize: ramdisk?.size ?? 0,
    osVersion: encodeOsVersion(options.osVersion, options.osPatchLevel),
    headerSize: BOOT_HEADER_SIZE[version],
    cmdline,
    // AOSP mkbootimg reserves a whole 4096-byte section for a signature and records that size.
    signatureSize: signature ? BOOT_V4_SIGNATURE_SIZE : 0,
  };

  const { size, result: sections } = await writePagedImage(options.output, BOOT_V3_PAGE_SIZE, async (writer) => {
    await writer.writePadded(encodeGkiBootHeader(header));
    const placed: ImageSection[] = [];
    for (const section of [kernel, ramdisk, signature]) {
      if (section) placed.push(await writer.writeSection(section));
    }
    return placed;
  });
  return { path: options.output, size, header, sections };
}

/** Rejects a page size that mkbootimg does not offer. */
export function checkPageSize(pageSize: number, imageKind: string): void {
  if (!ALLOWED_PAGE_SIZES.includes(pageSize)) {
    throw new QwamosError('LIMIT_EXCEEDED', `page size ${pageSize} is not allowed for ${imageKind}; use one of ${ALLOWED_PAGE_SIZES.join(', ')}`);
  }
}

/** Checks that a command line is printable ASCII and at most `maxLength` bytes; returns it. */
export function checkCommandLine(cmdline: string, maxLength: number, where: string): string {
  checkAsciiField(cmdline, 'command line', Number.MAX_SAFE_INTEGER);
  if (cmdline.length > maxLength) {
    throw new QwamosError('LIMIT_EXCEEDED', `command line is ${cmdline.length} bytes; ${where} allows at most ${maxLength} bytes`, { data: { length: cmdline.length, max: maxLength } });
  }
  return cmdline;
}

/** Checks a text field for printable ASCII and its length limit; returns it. */
export function checkAsciiField(text: string, field: string, maxLength: number): string {
  const bad = /[^\x20-\x7e\t\n]/.exec(text);
  if (bad) {
    const code = bad[0].codePointAt(0) ?? 0;
    throw new QwamosError('INPUT_INVALID', `${field} contains character U+${code.toString(16).padStart(4, '0').toUpperCase()} at index ${bad.index}; boot image text fields take printable ASCII only`);
  }
  if (text.length > maxLength) {
    throw new QwamosError('LIMIT_EXCEEDED', `${field} '${text}' is ${text.length} characters; the field has room for at most ${maxLength} characters and a NUL`);
  }
  return text;
}

/** Returns base + offset after checking that it fits a u32 address field. */
export function address32(target: string, base: number, offset: number): number {
  const address = base + offset;
  if (!Number.isSafeInteger(address) || address < 0 || address > U32_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `${target} load address 0x${address.toString(16)} (base 0x${base.toString(16)} + offset 0x${offset.toString(16)}) does not fit its 32-bit field; the maximum is 0xffffffff`);
  }
  return address;
}

/** Returns base + offset after checking that it fits a u64 field as a safe integer. */
export function address64(target: string, base: number, offset: number): number {
  const address = base + offset;
  if (!Number.isSafeInteger(address) || address < 0) {
    throw new QwamosError('LIMIT_EXCEEDED', `${target} load address base 0x${base.toString(16)} + offset 0x${offset.toString(16)} is negative or above 2^53, which this writer does not handle`);
  }
  return address;
}

function sectionNotInVersion(section: string, version: number, versions: string): QwamosError {
  return new QwamosError('INPUT_INVALID', `boot header version ${version} has no ${section} section; it exists only in ${versions}`);
}

/** Returns the load address options that are set, so they can override the defaults. */
export function definedOnly(options: LoadAddressOptions): LoadAddressOptions {
  const result: LoadAddressOptions = {};
  for (const key of ['base', 'kernelOffset', 'ramdiskOffset', 'secondOffset', 'tagsOffset', 'dtbOffset'] as const) {
    if (options[key] !== undefined) result[key] = options[key];
  }
  return result;
}
