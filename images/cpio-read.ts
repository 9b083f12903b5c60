/**
 * Strict reader for initramfs images: cpio "newc" archives (magic 070701,
 * or 070702 with checksums), uncompressed or gzip-compressed, concatenated
 * the way the Linux kernel unpacks them (init/initramfs.c, Linux 6.1).
 *
 * It reads everything the kernel would unpack, including data after a gzip
 * member. It rejects what the kernel reads differently from a plain reader:
 * a second archive at an unaligned offset, gzip headers the kernel's gunzip
 * does not parse, and two entries with the same path, because the kernel
 * overwrites the first. Padding must be NUL bytes and checksums must match,
 * which the kernel does not require.
 *
 * The newc header layout is in images/cpio.ts, beside the writer.
 */
import { crc32, inflateRawSync } from 'node:zlib';
import { QwamosError } from '../core/errors.js';

export type CpioArchiveEntryType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';

/** One archive member, trailers excluded. */
export interface CpioArchiveEntry {
  /** Name as stored in the archive. */
  name: string;
  /**
   * Path relative to the archive root: leading '/' and './', empty and '.'
   * components removed, so 'etc/x', './etc/x' and '/etc//x' are all 'etc/x'.
   * The root folder '.' is ''.
   */
  path: string;
  type: CpioArchiveEntryType;
  /** Permission bits, 0 to 0o7777. */
  mode: number;
  ino: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  /** Device number of a chardev or blockdev node. */
  rdevMajor: number;
  rdevMinor: number;
  /** File contents or symlink target; empty for other types. */
  data: Buffer;
}

export interface ReadCpioOptions {
  /** Names the archive in errors, such as its path. Default 'cpio archive'. */
  source?: string;
  /** Limit on the decompressed size of all gzip members together, in bytes. Default 1 GiB. */
  maxDecompressedSize?: number;
}

const HEADER_SIZE = 110;
const MAGIC_NEWC = '070701';
const MAGIC_CRC = '070702';
const TRAILER_NAME = 'TRAILER!!!';
const ASCII_ZERO = 0x30;

/** init/initramfs.c rejects names longer than PATH_MAX, the NUL included. */
const PATH_MAX = 4096;

const DEFAULT_MAX_DECOMPRESSED = 1024 * 1024 * 1024;

/** Header fields in order, after the 6-byte magic: 13 fields of 8 hexadecimal digits. */
const FIELDS = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'fileSize', 'devMajor', 'devMinor', 'rdevMajor', 'rdevMinor', 'nameSize', 'check'] as const;
type HeaderFields = Record<(typeof FIELDS)[number], number>;

const FILE_TYPES: Record<number, CpioArchiveEntryType> = {
  0o100000: 'file',
  0o040000: 'dir',
  0o120000: 'symlink',
  0o020000: 'chardev',
  0o060000: 'blockdev',
  0o010000: 'fifo',
  0o140000: 'socket',
};
const FILE_TYPE_MASK = 0o170000;

/*
 * gzip member (RFC 1952), integers little-endian:
 *
 * offset  size  field
 *      0     2  ID1 ID2 = 1f 8b
 *      2     1  CM = 8 (deflate)
 *      3     1  FLG: 0x01 FTEXT, 0x02 FHCRC, 0x04 FEXTRA, 0x08 FNAME, 0x10 FCOMMENT
 *      4     4  MTIME
 *      8     1  XFL
 *      9     1  OS
 *     10     -  with FNAME: file name, ended by NUL
 *      -     -  raw deflate data
 *  end-8     4  CRC32 of the uncompressed data
 *  end-4     4  ISIZE, uncompressed size modulo 2^32
 */
const GZIP_HEADER_SIZE = 10;
const GZIP_TRAILER_SIZE = 8;
const GZIP_FLG_FTEXT = 0x01;
const GZIP_FLG_FNAME = 0x08;

/** Magic numbers of the other initramfs compressions the kernel recognizes (lib/decompress.c). */
const OTHER_COMPRESSIONS: { name: string; magic: number[] }[] = [
  { name: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { name: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd] },
  { name: 'bzip2', magic: [0x42, 0x5a, 0x68] },
  { name: 'lzma', magic: [0x5d, 0x00, 0x00] },
  { name: 'lz4', magic: [0x02, 0x21] },
  { name: 'lzo', magic: [0x89, 0x4c, 0x5a] },
];

/** Reader state: the archive name, the entries so far, and the gzip member when reading decompressed data. */
interface ReadContext {
  source: string;
  /** Offset of the gzip member in the input, when reading its decompressed data. */
  memberOffset?: number;
  entries: CpioArchiveEntry[];
  decompressedTotal: number;
  maxDecompressedSize: number;
}

function rejectArchive(context: ReadContext, offset: number, reason: string): never {
  const where = context.memberOffset === undefined
    ? `at byte ${offset}`
    : `at byte ${offset} of the data decompressed from the gzip member at byte ${context.memberOffset}`;
  throw new QwamosError('INPUT_INVALID', `${context.source}: ${reason} ${where}; the file is not an initramfs that this reader accepts, so rebuild it with qwamos-build`, {
    data: { reason, offset, ...(context.memberOffset === undefined ? {} : { memberOffset: context.memberOffset }) },
  });
}

/**
 * Reads every entry of an initramfs image: newc archives and gzip members
 * that contain newc archives, in any sequence the kernel unpacks, separated
 * by NUL bytes. Throws INPUT_INVALID naming the offset of the first problem,
 * or LIMIT_EXCEEDED when the decompressed data exceeds the limit.
 */
export function readCpio(bytes: Uint8Array, options: ReadCpioOptions = {}): CpioArchiveEntry[] {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const context: ReadContext = {
    source: options.source ?? 'cpio archive',
    entries: [],
    decompressedTotal: 0,
    maxDecompressedSize: options.maxDecompressedSize ?? DEFAULT_MAX_DECOMPRESSED,
  };

  let offset = 0;
  while (offset < data.length) {
    // The kernel skips NUL bytes between archives and between compressed members.
    if (data[offset] === 0) {
      offset += 1;
    } else if (data[offset] === ASCII_ZERO) {
      if (offset % 4 !== 0) rejectArchive(context, offset, 'cpio archive starts at an offset that is not a multiple of 4');
      offset = readArchive(data, offset, context);
    } else if (data[offset] === 0x1f && data[offset + 1] === 0x8b) {
      offset += readGzipMember(data, offset, context);
    } else {
      const other = OTHER_COMPRESSIONS.find(({ magic }) => magic.every((byte, index) => data[offset + index] === byte));
      if (other) rejectArchive(context, offset, `${other.name} compressed data is not supported (only gzip)`);
      rejectArchive(context, offset, `invalid data 0x${data[offset]!.toString(16).padStart(2, '0')}, neither a cpio header, NUL padding nor gzip`);
    }
  }

  rejectDuplicatePaths(context);
  return context.entries;
}

/** Returns the entry whose normalized path is `entryPath` (normalized the same way), or undefined. */
export function findCpioEntry(entries: readonly CpioArchiveEntry[], entryPath: string): CpioArchiveEntry | undefined {
  const wanted = normalizeCpioPath(entryPath);
  return entries.find((entry) => entry.path === wanted);
}

/**
 * Normalizes an archive name as the kernel resolves it from the root
 * folder: leading '/' and './', empty and '.' components dropped. Returns
 * undefined for a name with a '..' component, which this reader rejects.
 */
export function normalizeCpioPath(name: string): string | undefined {
  const components = name.split('/').filter((component) => component !== '' && component !== '.');
  if (components.includes('..')) return undefined;
  return components.join('/');
}

// ---------------------------------------------------------------- gzip

/** Decompresses the gzip member at `start`, reads the archives in it, and returns the member's size in bytes. */
function readGzipMember(data: Buffer, start: number, context: ReadContext): number {
  if (data.length - start < GZIP_HEADER_SIZE) rejectArchive(context, start, 'truncated gzip header');
  if (data[start + 2] !== 8) rejectArchive(context, start + 2, `gzip compression method ${data[start + 2]} is not deflate (8)`);
  const flags = data[start + 3]!;
  // lib/decompress_inflate.c skips only the 10-byte header and an FNAME
  // field, so any other optional field would be read as deflate data.
  if ((flags & ~(GZIP_FLG_FTEXT | GZIP_FLG_FNAME)) !== 0) {
    rejectArchive(context, start + 3, `gzip flags 0x${flags.toString(16).padStart(2, '0')} set FHCRC, FEXTRA, FCOMMENT or reserved bits, which the kernel's gunzip does not parse`);
  }

  let deflateStart = start + GZIP_HEADER_SIZE;
  if ((flags & GZIP_FLG_FNAME) !== 0) {
    const nameEnd = data.indexOf(0, deflateStart);
    if (nameEnd < 0) rejectArchive(context, deflateStart, 'gzip file name has no terminating NUL');
    deflateStart = nameEnd + 1;
  }

  const { decompressed, deflateSize } = inflateMember(data, start, deflateStart, context);

  const trailer = deflateStart + deflateSize;
  if (data.length - trailer < GZIP_TRAILER_SIZE) rejectArchive(context, trailer, 'truncated gzip trailer');
  if (data.readUInt32LE(trailer) !== crc32(decompressed)) rejectArchive(context, trailer, 'gzip CRC32 does not match the decompressed data');
  if (data.readUInt32LE(trailer + 4) !== decompressed.length % 2 ** 32) rejectArchive(context, trailer + 4, 'gzip ISIZE does not match the decompressed size');

  readDecompressed(decompressed, { ...context, memberOffset: start });
  return trailer + GZIP_TRAILER_SIZE - start;
}

/**
 * Inflates the raw deflate stream at `deflateStart` and returns its output
 * and the number of compressed bytes it took, so that whatever follows the
 * member is read too.
 */
function inflateMember(data: Buffer, memberStart: number, deflateStart: number, context: ReadContext): { decompressed: Buffer; deflateSize: number } {
  const remaining = context.maxDecompressedSize - context.decompressedTotal;
  const tooLarge = (): QwamosError => new QwamosError('LIMIT_EXCEEDED', `${context.source}: gzip member at byte ${memberStart} decompresses to more than the limit of ${context.maxDecompressedSize} bytes for all members together; raise maxDecompressedSize if the initramfs is really that large`);

  let result: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    result = inflateRawSync(data.subarray(deflateStart), { info: true, maxOutputLength: Math.max(remaining, 1) }) as unknown as typeof result;
  } catch (error) {
    if (error instanceof RangeError) throw tooLarge();
    rejectArchive(context, deflateStart, `invalid deflate data (${(error as Error).message})`);
  }
  if (result.buffer.length > remaining) throw tooLarge();
  context.decompressedTotal += result.buffer.length;

  // With `info`, bytesWritten counts the input bytes the inflater consumed: the deflate stream alone.
  return { decompressed: result.buffer, deflateSize: result.engine.bytesWritten };
}

/** Reads the archives in decompressed data: archives separated by NUL bytes, each at a multiple of 4. */
function readDecompressed(data: Buffer, context: ReadContext): void {
  let offset = 0;
  while (offset < data.length) {
    if (data[offset] === 0) {
      offset += 1;
      continue;
    }
    if (data[offset] !== ASCII_ZERO) rejectArchive(context, offset, 'invalid data after a cpio trailer, neither NUL padding nor another cpio header');
    if (offset % 4 !== 0) rejectArchive(context, offset, 'cpio archive starts at an offset that is not a multiple of 4');
    offset = readArchive(data, offset, context);
  }
}

// ---------------------------------------------------------------- newc

/** Reads the archive at `start` up to and including its trailer; returns the offset after the trailer. */
function readArchive(data: Buffer, start: number, context: ReadContext): number {
  let offset = start;
  for (;;) {
    const { header, name, dataStart } = readHeader(data, offset, context);
    const dataEnd = dataStart + header.fileSize;
    if (dataEnd > data.length) rejectArchive(context, offset, `truncated data of cpio entry '${name}' (${header.fileSize} bytes)`);
    const next = align4(dataEnd);
    if (next > data.length) rejectArchive(context, dataEnd, `truncated padding after cpio entry '${name}'`);
    checkZeroPadding(data, dataEnd, next, context, `padding after the data of cpio entry '${name}'`);

    if (name === TRAILER_NAME) {
      if (header.fileSize !== 0) rejectArchive(context, offset, `cpio trailer has ${header.fileSize} bytes of data`);
      return next;
    }

    context.entries.push(toEntry(header, name, data.subarray(dataStart, dataEnd), offset, context));
    offset = next;
  }
}

function readHeader(data: Buffer, offset: number, context: ReadContext): { header: HeaderFields; name: string; dataStart: number } {
  if (data.length - offset < HEADER_SIZE) rejectArchive(context, offset, 'truncated cpio header (or missing trailer)');

  const magic = data.toString('latin1', offset, offset + 6);
  if (magic !== MAGIC_NEWC && magic !== MAGIC_CRC) {
    const known = magic === '070707' ? ' (odc format; this reader reads newc only)' : '';
    rejectArchive(context, offset, `bad cpio magic ${JSON.stringify(magic)}${known}`);
  }

  const header = {} as HeaderFields;
  FIELDS.forEach((field, index) => {
    const position = offset + 6 + index * 8;
    const text = data.toString('latin1', position, position + 8);
    if (!/^[0-9A-Fa-f]{8}$/.test(text)) rejectArchive(context, position, `cpio header field ${field} ${JSON.stringify(text)} is not 8 hexadecimal digits`);
    header[field] = Number.parseInt(text, 16);
  });
  if (magic === MAGIC_NEWC && header.check !== 0) rejectArchive(context, offset, `cpio header field check is ${header.check}, but a 070701 archive has 0`);

  if (header.nameSize < 2 || header.nameSize > PATH_MAX) rejectArchive(context, offset, `cpio name size ${header.nameSize} is outside 2 to ${PATH_MAX}`);
  const nameStart = offset + HEADER_SIZE;
  const nameEnd = nameStart + header.nameSize;
  if (nameEnd > data.length) rejectArchive(context, nameStart, 'truncated cpio name');
  const nameBytes = data.subarray(nameStart, nameEnd - 1);
  if (data[nameEnd - 1] !== 0 || nameBytes.includes(0)) rejectArchive(context, nameStart, 'cpio name is not a NUL-terminated string of its name size');
  let name: string;
  try {
    name = new TextDecoder('utf-8', { fatal: true }).decode(nameBytes);
  } catch {
    rejectArchive(context, nameStart, 'cpio name is not valid UTF-8');
  }

  const dataStart = align4(nameEnd);
  if (dataStart > data.length) rejectArchive(context, nameEnd, `truncated padding after cpio name '${name}'`);
  checkZeroPadding(data, nameEnd, dataStart, context, `padding after cpio name '${name}'`);

  if (magic === MAGIC_CRC && name !== TRAILER_NAME) {
    const end = Math.min(dataStart + header.fileSize, data.length);
    let sum = 0;
    for (let i = dataStart; i < end; i++) sum = (sum + data[i]!) >>> 0;
    if (sum !== header.check) rejectArchive(context, offset, `cpio checksum of entry '${name}' is ${header.check}, but its data sums to ${sum}`);
  }
  return { header, name, dataStart };
}

function toEntry(header: HeaderFields, name: string, body: Buffer, offset: number, context: ReadContext): CpioArchiveEntry {
  const type = FILE_TYPES[header.mode & FILE_TYPE_MASK];
  if (type === undefined) rejectArchive(context, offset, `cpio entry '${name}' has mode 0o${header.mode.toString(8)}, which is no known file type`);
  if (body.length > 0 && type !== 'file' && type !== 'symlink') rejectArchive(context, offset, `cpio entry '${name}' is a ${type} with ${body.length} bytes of data`);

  const normalized = normalizeCpioPath(name);
  if (normalized === undefined) rejectArchive(context, offset, `cpio entry name '${name}' contains a '..' component`);
  if (normalized === '' && type !== 'dir') rejectArchive(context, offset, `cpio entry '${name}' names the archive root but is a ${type}`);

  return {
    name,
    path: normalized,
    type,
    mode: header.mode & 0o7777,
    ino: header.ino,
    uid: header.uid,
    gid: header.gid,
    nlink: header.nlink,
    mtime: header.mtime,
    rdevMajor: header.rdevMajor,
    rdevMinor: header.rdevMinor,
    data: Buffer.from(body),
  };
}

/** Rejects two entries with the same path: the kernel overwrites the earlier one, so the archive does not show which one the system uses. */
function rejectDuplicatePaths(context: ReadContext): void {
  const seen = new Set<string>();
  for (const entry of context.entries) {
    if (seen.has(entry.path)) {
      throw new QwamosError('INPUT_INVALID', `${context.source}: path '${entry.path || '.'}' occurs twice; the kernel keeps the last one, so the archive does not say which contents the system sees. Rebuild the initramfs with one entry per path`, {
        data: { reason: 'duplicate path', path: entry.path },
      });
    }
    seen.add(entry.path);
  }
}

function checkZeroPadding(data: Buffer, from: number, to: number, context: ReadContext, what: string): void {
  for (let i = from; i < to; i++) {
    if (data[i] !== 0) rejectArchive(context, i, `${what} is not NUL`);
  }
}

function align4(value: number): number {
  return Math.ceil(value / 4) * 4;
}
