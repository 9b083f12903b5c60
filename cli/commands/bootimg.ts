/**
 * `qwamos-build bootimg pack|unpack|info`: Android boot, init_boot and
 * vendor_boot images. `pack` takes AOSP mkbootimg's option names and
 * `unpack` takes unpack_bootimg's (--boot_img, --out), so scripts written
 * for those tools run unchanged.
 */
import { parseArgs } from 'node:util';
import { type Command, parseCommandArgs, printJson } from '../command.js';
import { QwamosError } from '../../core/errors.js';
import type { VendorRamdiskTypeName } from '../../images/bootimg-header.js';
import type { ImageSection } from '../../images/bootimg-io.js';
import { readBootImage, unpackBootImage, type AnyBootImageInfo } from '../../images/bootimg-read.js';
import { writeVendorBootImage, type VendorRamdiskFragment } from '../../images/bootimg-vendor.js';
import { writeBootImage, writeInitBootImage, type LoadAddressOptions } from '../../images/bootimg-write.js';

const BOARD_ID_OPTIONS = Array.from({ length: 16 }, (_, index) => `board_id${index}`);

const PACK_OPTIONS = {
  kernel: { type: 'string' },
  ramdisk: { type: 'string' },
  second: { type: 'string' },
  dtb: { type: 'string' },
  recovery_dtbo: { type: 'string' },
  recovery_acpio: { type: 'string' },
  cmdline: { type: 'string' },
  vendor_cmdline: { type: 'string' },
  base: { type: 'string' },
  kernel_offset: { type: 'string' },
  ramdisk_offset: { type: 'string' },
  second_offset: { type: 'string' },
  dtb_offset: { type: 'string' },
  tags_offset: { type: 'string' },
  os_version: { type: 'string' },
  os_patch_level: { type: 'string' },
  board: { type: 'string' },
  pagesize: { type: 'string' },
  id: { type: 'boolean' },
  header_version: { type: 'string' },
  output: { type: 'string', short: 'o' },
  vendor_boot: { type: 'string' },
  vendor_ramdisk: { type: 'string' },
  vendor_bootconfig: { type: 'string' },
  ramdisk_type: { type: 'string', multiple: true },
  ramdisk_name: { type: 'string', multiple: true },
  vendor_ramdisk_fragment: { type: 'string', multiple: true },
  ...Object.fromEntries(BOARD_ID_OPTIONS.map((name) => [name, { type: 'string', multiple: true }])),
  json: { type: 'boolean' },
} as const;

type PackValues = Record<string, string | boolean | string[] | undefined>;

export const bootimgPackCommand: Command = {
  name: ['bootimg', 'pack'],
  summary: 'create boot, init_boot and vendor_boot images (mkbootimg options)',
  help: `Usage: qwamos-build bootimg pack [mkbootimg options] [--json]

Creates a boot image (--output) and/or a vendor_boot image (--vendor_boot)
with AOSP mkbootimg's options and defaults. Header versions 0 to 2 give
the same bytes as Debian's mkbootimg 29.0.6 for command lines of up to 511
bytes; longer ones end the first field with a NUL, as current AOSP does.
Versions 3 and 4 use the final AOSP layout. With --header_version 4 and a
--ramdisk but no --kernel, --output is an init_boot image.

Boot image:
  --kernel FILE              kernel (required except for init_boot)
  --ramdisk FILE             ramdisk
  --second FILE              second-stage bootloader (versions 0 to 2)
  --recovery_dtbo FILE       recovery DTBO (versions 1 and 2)
  --recovery_acpio FILE      recovery ACPIO, in place of --recovery_dtbo
  --dtb FILE                 device tree blob (boot version 2, or vendor_boot)
  --cmdline TEXT             kernel command line: at most 1534 bytes in
                             versions 0 to 2, 1535 in versions 3 and 4
  --header_version N         header version 0 to 4 (default 0)
  --pagesize N               2048, 4096, 8192 or 16384 (default 2048);
                             boot versions 3 and 4 allow only 4096, so with
                             --vendor_boot it sets the vendor_boot page size
  --os_version A.B.C         Android version
  --os_patch_level YYYY-MM   security patch level (YYYY-MM-DD also accepted)
  --board NAME               product name, at most 15 characters
  --base, --kernel_offset, --ramdisk_offset, --second_offset,
  --tags_offset, --dtb_offset N
                             load address = base + offset (hex with 0x);
                             boot versions 3 and 4 store none (vendor_boot does)
  --id                       print the image id (versions 0 to 2)
  -o, --output FILE          boot or init_boot image to create

Vendor boot image (header versions 3 and 4):
  --vendor_boot FILE         vendor_boot image to create
  --vendor_ramdisk FILE      vendor ramdisk (required in version 3)
  --vendor_cmdline TEXT      vendor command line, at most 2047 bytes
  --vendor_bootconfig FILE   bootconfig section (version 4)
  --ramdisk_type TYPE, --ramdisk_name NAME, --board_id0..15 N,
  --vendor_ramdisk_fragment FILE
                             version 4: each group of options ending with
                             --vendor_ramdisk_fragment adds one ramdisk to
                             the vendor ramdisk table; TYPE is none,
                             platform, recovery, dlkm or a number
  --json                     print the written images as JSON`,

  async run(argv) {
    const { values } = parseCommandArgs('bootimg pack', argv, PACK_OPTIONS);
    const options = values as PackValues;
    const headerVersion = parseInteger(options, 'header_version') ?? 0;
    const output = text(options, 'output');
    const vendorBoot = text(options, 'vendor_boot');
    if (output === undefined && vendorBoot === undefined) {
      throw new QwamosError('USAGE', "bootimg pack: give --output (boot image), --vendor_boot (vendor_boot image) or both; run 'qwamos-build bootimg pack --help' for the options");
    }

    const written: Record<string, unknown>[] = [];
    if (vendorBoot !== undefined) written.push(await packVendorBoot(options, argv, headerVersion, vendorBoot));
    if (output !== undefined) {
      const image = await packBoot(options, headerVersion, output, vendorBoot !== undefined);
      written.push(image);
      if (options.id && typeof image.id === 'string' && !options.json) process.stdout.write(`0x${image.id}\n`);
    }

    if (options.json) printJson({ ok: true, images: written });
    return 0;
  },
};

export const bootimgUnpackCommand: Command = {
  name: ['bootimg', 'unpack'],
  summary: 'write the sections of a boot or vendor_boot image to a folder',
  help: `Usage: qwamos-build bootimg unpack [--boot_img] IMAGE [--out DIR] [--json]

Writes each non-empty section of IMAGE to its own file in DIR, under the
names unpack_bootimg uses: kernel, ramdisk, second, recovery_dtbo, dtb,
boot_signature; for vendor_boot, vendor_ramdisk (version 3) or
vendor_ramdisk00, vendor_ramdisk01, ... (version 4), dtb,
vendor_ramdisk_table and bootconfig. Other files in DIR are left alone.

Options:
  --boot_img IMAGE   image to unpack (or give it as the argument)
  --out DIR          output folder (default: out)
  --json             print the header fields and written files as JSON`,

  async run(argv) {
    const { values, positionals } = parseCommandArgs('bootimg unpack', argv, {
      boot_img: { type: 'string' },
      out: { type: 'string', default: 'out' },
      json: { type: 'boolean', default: false },
    }, true);
    const image = singleImage('bootimg unpack', values.boot_img, positionals);
    const { info, files } = await unpackBootImage(image, values.out);

    if (values.json) {
      printJson({ ok: true, image, ...describeImage(info), files });
    } else {
      process.stdout.write(`${formatInfo(info)}\n${files.map((file) => `wrote ${file}`).join('\n')}\n`);
    }
    return 0;
  },
};

export const bootimgInfoCommand: Command = {
  name: ['bootimg', 'info'],
  summary: 'print the header fields and sections of a boot or vendor_boot image',
  help: `Usage: qwamos-build bootimg info IMAGE [--json]

Prints the header fields of a boot, init_boot or vendor_boot image and
where each section lies (byte offset and size).

Options:
  --json   print the fields as JSON`,

  async run(argv) {
    const { values, positionals } = parseCommandArgs('bootimg info', argv, { json: { type: 'boolean', default: false } }, true);
    const image = singleImage('bootimg info', undefined, positionals);
    const info = await readBootImage(image);
    if (values.json) {
      printJson({ ok: true, image, ...describeImage(info) });
    } else {
      process.stdout.write(`${formatInfo(info)}\n`);
    }
    return 0;
  },
};

export const BOOTIMG_COMMANDS: Command[] = [bootimgPackCommand, bootimgUnpackCommand, bootimgInfoCommand];

async function packBoot(options: PackValues, headerVersion: number, output: string, vendorBootToo: boolean): Promise<Record<string, unknown>> {
  if (text(options, 'recovery_dtbo') !== undefined && text(options, 'recovery_acpio') !== undefined) {
    throw new QwamosError('USAGE', 'bootimg pack: --recovery_dtbo and --recovery_acpio fill the same section; give only one');
  }

  const gki = headerVersion >= 3;
  const pageSize = parseInteger(options, 'pagesize');
  const common = {
    output,
    cmdline: text(options, 'cmdline'),
    osVersion: text(options, 'os_version'),
    osPatchLevel: text(options, 'os_patch_level'),
  };

  if (headerVersion === 4 && text(options, 'kernel') === undefined && text(options, 'ramdisk') !== undefined) {
    if (pageSize !== undefined && pageSize !== 4096 && !vendorBootToo) {
      throw new QwamosError('LIMIT_EXCEEDED', `page size ${pageSize} is not allowed for init_boot; boot header version 4 uses a fixed page size of 4096`);
    }
    if (common.cmdline) throw new QwamosError('INPUT_INVALID', 'an init_boot image has no command line; drop --cmdline or give a --kernel for a boot image');
    const written = await writeInitBootImage({ ...common, ramdisk: text(options, 'ramdisk')! });
    return describeWritten('init_boot', written.path, written.size, written.sections, written.header);
  }

  const written = await writeBootImage({
    ...common,
    headerVersion: headerVersion as 0 | 1 | 2 | 3 | 4,
    kernel: text(options, 'kernel'),
    ramdisk: text(options, 'ramdisk'),
    second: text(options, 'second'),
    recoveryDtbo: text(options, 'recovery_dtbo') ?? text(options, 'recovery_acpio'),
    // In versions 3 and 4 the dtb belongs to vendor_boot; mkbootimg routes it there.
    dtb: gki && vendorBootToo ? undefined : text(options, 'dtb'),
    board: gki ? undefined : text(options, 'board'),
    // In versions 3 and 4 --pagesize sets the vendor_boot page size when one is written.
    pageSize: gki && vendorBootToo ? undefined : pageSize,
    // Versions 3 and 4 store no load addresses; mkbootimg ignores them for the boot image.
    ...(gki ? {} : loadAddresses(options)),
  });
  return describeWritten('boot', written.path, written.size, written.sections, written.header);
}

async function packVendorBoot(options: PackValues, argv: string[], headerVersion: number, vendorBoot: string): Promise<Record<string, unknown>> {
  if (headerVersion !== 3 && headerVersion !== 4) {
    throw new QwamosError('INPUT_INVALID', `--vendor_boot needs --header_version 3 or 4, not ${headerVersion}`);
  }
  const fragments = collectFragments(argv);
  const written = await writeVendorBootImage({
    output: vendorBoot,
    headerVersion,
    pageSize: parseInteger(options, 'pagesize'),
    vendorRamdisk: text(options, 'vendor_ramdisk'),
    fragments,
    dtb: text(options, 'dtb'),
    bootconfig: text(options, 'vendor_bootconfig'),
    vendorCmdline: text(options, 'vendor_cmdline'),
    board: text(options, 'board'),
    ...loadAddresses(options),
  });
  return { ...describeWritten('vendor_boot', written.path, written.size, written.sections, written.header), ramdiskTable: written.ramdiskTable };
}

/**
 * Groups --ramdisk_type, --ramdisk_name and --board_idN with the
 * --vendor_ramdisk_fragment that follows them, in command-line order, as
 * mkbootimg does. Each fragment needs a --ramdisk_name.
 */
function collectFragments(argv: string[]): VendorRamdiskFragment[] {
  const { tokens } = parseArgs({ args: argv, options: PACK_OPTIONS, strict: true, tokens: true });
  const fragments: VendorRamdiskFragment[] = [];
  let pending: { type?: string; name?: string; boardId: number[] } = { boardId: [] };
  let pendingOptions: string[] = [];

  for (const token of tokens) {
    if (token.kind !== 'option' || token.value === undefined) continue;
    const value = token.value;
    if (token.name === 'ramdisk_type') pending.type = value;
    else if (token.name === 'ramdisk_name') pending.name = value;
    else if (token.name.startsWith('board_id')) pending.boardId[Number(token.name.slice('board_id'.length))] = parseIntegerText(value, `--${token.name}`);
    else if (token.name !== 'vendor_ramdisk_fragment') continue;

    if (token.name !== 'vendor_ramdisk_fragment') {
      pendingOptions.push(`--${token.name}`);
      continue;
    }
    if (pending.name === undefined) {
      throw new QwamosError('USAGE', `bootimg pack: --vendor_ramdisk_fragment ${value} has no --ramdisk_name before it; each fragment needs a unique name`);
    }
    fragments.push({
      ramdisk: value,
      name: pending.name,
      type: (pending.type !== undefined && /^\d|^0x/i.test(pending.type) ? parseIntegerText(pending.type, '--ramdisk_type') : (pending.type ?? 'none')) as VendorRamdiskTypeName | number,
      boardId: Array.from({ length: 16 }, (_, index) => pending.boardId[index] ?? 0),
    });
    pending = { boardId: [] };
    pendingOptions = [];
  }

  if (pendingOptions.length > 0) {
    throw new QwamosError('USAGE', `bootimg pack: ${pendingOptions.join(', ')} after the last --vendor_ramdisk_fragment apply to no fragment; end each group with --vendor_ramdisk_fragment FILE`);
  }
  return fragments;
}

function loadAddresses(options: PackValues): LoadAddressOptions {
  const addresses: LoadAddressOptions = {};
  const fields = { base: 'base', kernelOffset: 'kernel_offset', ramdiskOffset: 'ramdisk_offset', secondOffset: 'second_offset', tagsOffset: 'tags_offset', dtbOffset: 'dtb_offset' } as const;
  for (const [key, option] of Object.entries(fields) as [keyof LoadAddressOptions, string][]) {
    const value = parseInteger(options, option);
    if (value !== undefined) addresses[key] = value;
  }
  return addresses;
}

function describeWritten(kind: string, path: string, size: number, sections: ImageSection[], header: object): Record<string, unknown> {
  const id = 'id' in header && typeof header.id === 'string' ? header.id : undefined;
  return { kind, path, size, ...(id ? { id } : {}), header, sections };
}

function describeImage(info: AnyBootImageInfo): Record<string, unknown> {
  const osFields = info.kind === 'boot' ? { osVersion: info.osVersion, osPatchLevel: info.osPatchLevel } : {};
  const table = info.kind === 'vendor_boot' ? { ramdiskTable: info.ramdiskTable } : {};
  return { kind: info.kind, size: info.size, pageSize: info.pageSize, ...osFields, header: info.header, ...table, sections: info.sections };
}

/** Formats the header fields as "name: value" lines, addresses in hex. */
function formatInfo(info: AnyBootImageInfo): string {
  const lines = [`image type: ${info.kind}`, `file size: ${info.size}`, `page size: ${info.pageSize}`];
  if (info.kind === 'boot') {
    lines.push(`os version: ${info.osVersion}`, `os patch level: ${info.osPatchLevel}`);
  }
  for (const [field, value] of Object.entries(info.header)) {
    const formatted = typeof value === 'number' && /Addr$|Offset$|^osVersion$/.test(field) ? `0x${value.toString(16).padStart(8, '0')}` : String(value);
    lines.push(`${field}: ${formatted}`);
  }
  if (info.kind === 'vendor_boot') {
    info.ramdiskTable.forEach((entry, index) => {
      const boardId = entry.boardId.map((word) => `0x${word.toString(16).padStart(8, '0')}`).join(' ');
      lines.push(`ramdisk ${index}: name '${entry.name}', type ${entry.type}, size ${entry.size}, offset ${entry.offset}, board_id ${boardId}`);
    });
  }
  for (const section of info.sections) lines.push(`section ${section.name}: offset ${section.offset}, size ${section.size}`);
  return lines.join('\n');
}

function singleImage(command: string, option: string | undefined, positionals: string[]): string {
  const images = [...(option !== undefined ? [option] : []), ...positionals];
  if (images.length !== 1) {
    throw new QwamosError('USAGE', `${command}: give exactly one image (got ${images.length}); run 'qwamos-build ${command} --help' for the options`);
  }
  return images[0]!;
}

function text(options: PackValues, name: string): string | undefined {
  const value = options[name];
  return typeof value === 'string' ? value : undefined;
}

function parseInteger(options: PackValues, name: string): number | undefined {
  const value = text(options, name);
  return value === undefined ? undefined : parseIntegerText(value, `--${name}`);
}

/** Parses an integer as Python's int(x, 0) does for mkbootimg: decimal, 0x hex, 0o octal or 0b binary. */
function parseIntegerText(value: string, option: string): number {
  if (!/^(0x[0-9a-f]+|0o[0-7]+|0b[01]+|\d+)$/i.test(value)) {
    throw new QwamosError('USAGE', `bootimg pack: ${option} '${value}' is not an integer; write it in decimal or as hex with 0x`);
  }
  const number = Number(value.toLowerCase());
  if (!Number.isSafeInteger(number)) {
    throw new QwamosError('LIMIT_EXCEEDED', `bootimg pack: ${option} '${value}' is above 2^53`);
  }
  return number;
}
