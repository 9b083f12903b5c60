/**
 * Writer for the cpio "newc" format (magic 070701), the archive format that
 * the Linux kernel unpacks as an initramfs (init/initramfs.c).
 *
 * The output depends only on the entries and the mtime option. Entries are
 * sorted by path with parents first, and missing parent folders are added.
 * Every entry gets uid 0, gid 0 and the same mtime, and inode numbers count
 * from 1 in archive order. Hard links are not supported, so every
 * non-folder entry has nlink 1.
 */
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';

export type CpioEntryType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev';

export interface CpioEntry {
  /** Path inside the archive, relative, with '/' separators, such as 'dev/console'. */
  path: string;
  type: CpioEntryType;
  /** Permission bits, 0 to 0o7777. The file type bits come from `type`. */
  mode: number;
  /** File contents; only for type 'file'. A string is written as UTF-8. Missing means an empty file. */
  data?: Uint8Array | string;
  /** Symlink target, stored as given; only for type 'symlink'. */
  target?: string;
  /** Device number of a 'chardev' or 'blockdev' node. */
  major?: number;
  minor?: number;
}

export interface CpioOptions {
  /** Modification time of every entry, in seconds since the epoch: the build's SOURCE_DATE_EPOCH. */
  mtime: number;
}

/*
 * newc header: 110 ASCII bytes, then the NUL-terminated name padded with NUL
 * to a multiple of 4 bytes (counted from the start of the header), then the
 * data padded to a multiple of 4 bytes. Each numeric field is 8 hexadecimal
 * digits, zero-padded on the left.
 *
 * offset  size  field
 *      0     6  c_magic "070701"
 *      6     8  c_ino
 *     14     8  c_mode (file type and permission bits, as st_mode)
 *     22     8  c_uid
 *     30     8  c_gid
 *     38     8  c_nlink
 *     46     8  c_mtime
 *     54     8  c_filesize (file data size, or symlink target length)
 *     62     8  c_devmajor, c_devminor (device that contains the file: 0 here)
 *     78     8  c_rdevmajor, c_rdevminor (device number of a device node)
 *     94     8  c_namesize (name length including the NUL)
 *    102     8  c_check (0 for magic 070701)
 */
const NEWC_MAGIC = '070701';
const HEADER_SIZE = 110;
const TRAILER_NAME = 'TRAILER!!!';

/** Largest value of an 8-digit hexadecimal header field. */
const MAX_FIELD = 0xffff_ffff;

/** init/initramfs.c (Linux 6.1) skips entries whose name, counting the NUL, or symlink target exceeds PATH_MAX. */
const KERNEL_PATH_MAX = 4096;

/** Linux dev_t has 12 bits of major and 20 bits of minor number (MINORBITS in include/linux/kdev_t.h). */
const MAX_MAJOR = 0xfff;
const MAX_MINOR = 0xf_ffff;

const FILE_TYPE_BITS: Record<CpioEntryType, number> = {
  file: 0o100000,
  dir: 0o040000,
  symlink: 0o120000,
  chardev: 0o020000,
  blockdev: 0o060000,
};

/** Mode of the parent folders that writeCpio adds when an entry's folder is not listed. */
const IMPLICIT_DIR_MODE = 0o755;

interface ArchiveMember {
  entry: CpioEntry;
  components: Buffer[];
  body: Buffer;
}

/**
 * Serializes `entries` into a newc archive that ends with the TRAILER!!!
 * entry. Throws INPUT_INVALID or LIMIT_EXCEEDED naming the first bad entry.
 */
export function writeCpio(entries: readonly CpioEntry[], options: CpioOptions): Buffer {
  const { mtime } = options;
  validateMtime(mtime);

  const members = entries.map(toMember);
  addMissingParents(members);
  members.sort((a, b) => compareComponents(a.components, b.components));

  const chunks: Buffer[] = [];
  members.forEach((member, index) => {
    chunks.push(encodeMember(member, index + 1, mtime));
  });
  chunks.push(encodeTrailer());
  return Buffer.concat(chunks);
}

/**
 * Lists the contents of the host folder `root` as cpio entries under
 * `prefix` (the archive root when empty). Only file contents, symlink
 * targets and the execute bit are copied. Files become 0o755 when any
 * execute bit is set on the host, else 0o644. Folders become 0o755 and
 * symlinks 0o777. Host owners and times are never read. File contents are
 * read into memory. Throws INPUT_INVALID for a FIFO, socket or device node,
 * because those must be listed as explicit entries.
 */
export async function entriesFromDirectory(root: string, prefix = ''): Promise<CpioEntry[]> {
  const rootStat = await lstat(root).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `initramfs source folder ${root} does not exist; create it or pass another folder`);
    }
    throw error;
  });
  if (!rootStat.isDirectory()) {
    throw new QwamosError('INPUT_INVALID', `initramfs source ${root} is not a folder; pass the folder whose contents go into the archive`);
  }

  const entries: CpioEntry[] = [];
  await collectEntries(root, prefix, entries);
  return entries;
}

async function collectEntries(hostFolder: string, archiveFolder: string, entries: CpioEntry[]): Promise<void> {
  const names = (await readdir(hostFolder)).sort();

  for (const name of names) {
    const hostPath = path.join(hostFolder, name);
    const archivePath = archiveFolder === '' ? name : `${archiveFolder}/${name}`;
    const stats = await lstat(hostPath);

    if (stats.isDirectory()) {
      entries.push({ path: archivePath, type: 'dir', mode: 0o755 });
      await collectEntries(hostPath, archivePath, entries);
    } else if (stats.isFile()) {
      const mode = (stats.mode & 0o111) !== 0 ? 0o755 : 0o644;
      entries.push({ path: archivePath, type: 'file', mode, data: await readFile(hostPath) });
    } else if (stats.isSymbolicLink()) {
      entries.push({ path: archivePath, type: 'symlink', mode: 0o777, target: await readlink(hostPath) });
    } else {
      throw new QwamosError('INPUT_INVALID', `${hostPath} is a FIFO, socket or device node, which is not copied from a host folder; remove it and list device nodes as chardev or blockdev entries`);
    }
  }
}

function validateMtime(mtime: number): void {
  if (!Number.isInteger(mtime) || mtime < 0 || mtime > MAX_FIELD) {
    throw new QwamosError('INPUT_INVALID', `cpio mtime ${mtime} is invalid; use whole seconds between 0 and ${MAX_FIELD}`);
  }
}

/** Validates one entry and prepares its sort key and data section. */
function toMember(entry: CpioEntry): ArchiveMember {
  const components = validatePath(entry.path);
  validateMode(entry);
  validateFieldsForType(entry);
  return { entry, components, body: entryBody(entry) };
}

function validatePath(entryPath: unknown): Buffer[] {
  if (typeof entryPath !== 'string' || entryPath === '') {
    throw new QwamosError('INPUT_INVALID', `cpio entry path ${JSON.stringify(entryPath)} is invalid; give a non-empty relative path such as 'dev/console'`);
  }

  const name = JSON.stringify(entryPath);
  if (entryPath.startsWith('/')) {
    throw new QwamosError('INPUT_INVALID', `cpio entry path ${name} is absolute; remove the leading '/', because paths are relative to the archive root`);
  }
  if (entryPath.includes('\0')) {
    throw new QwamosError('INPUT_INVALID', `cpio entry path ${name} contains a NUL byte; remove it`);
  }

  const parts = entryPath.split('/');
  for (const part of parts) {
    if (part === '' || part === '.' || part === '..') {
      throw new QwamosError('INPUT_INVALID', `cpio entry path ${name} contains an empty, '.' or '..' component; write it as a normalized relative path such as 'usr/bin/sh'`);
    }
  }
  if (entryPath === TRAILER_NAME) {
    throw new QwamosError('INPUT_INVALID', `cpio entry path ${name} is the end-of-archive marker name; rename the entry`);
  }

  const nameSize = Buffer.byteLength(entryPath) + 1;
  if (nameSize > KERNEL_PATH_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `cpio entry path ${name.slice(0, 80)}... is ${nameSize - 1} bytes long; the kernel skips initramfs names over ${KERNEL_PATH_MAX - 1} bytes, so shorten it`);
  }
  return parts.map((part) => Buffer.from(part));
}

function validateMode(entry: CpioEntry): void {
  if (!Object.hasOwn(FILE_TYPE_BITS, entry.type)) {
    throw new QwamosError('INPUT_INVALID', `cpio entry ${JSON.stringify(entry.path)} has type ${JSON.stringify(entry.type)}; use one of ${Object.keys(FILE_TYPE_BITS).join(', ')}`);
  }
  if (!Number.isInteger(entry.mode) || entry.mode < 0 || entry.mode > 0o7777) {
    throw new QwamosError('INPUT_INVALID', `cpio entry ${JSON.stringify(entry.path)} has mode ${String(entry.mode)}; give permission bits between 0 and 0o7777, without file type bits`);
  }
}

function validateFieldsForType(entry: CpioEntry): void {
  const name = JSON.stringify(entry.path);
  const isDevice = entry.type === 'chardev' || entry.type === 'blockdev';

  if (entry.data !== undefined && entry.type !== 'file') {
    throw new QwamosError('INPUT_INVALID', `cpio entry ${name} of type ${entry.type} has data; only 'file' entries carry data`);
  }
  if (entry.target !== undefined && entry.type !== 'symlink') {
    throw new QwamosError('INPUT_INVALID', `cpio entry ${name} of type ${entry.type} has a target; only 'symlink' entries have one`);
  }
  if ((entry.major !== undefined || entry.minor !== undefined) && !isDevice) {
    throw new QwamosError('INPUT_INVALID', `cpio entry ${name} of type ${entry.type} has a device number; only 'chardev' and 'blockdev' entries have one`);
  }

  if (entry.type === 'symlink') validateSymlinkTarget(entry);
  if (isDevice) validateDeviceNumber(entry);
}

function validateSymlinkTarget(entry: CpioEntry): void {
  const name = JSON.stringify(entry.path);
  if (typeof entry.target !== 'string' || entry.target === '' || entry.target.includes('\0')) {
    throw new QwamosError('INPUT_INVALID', `cpio symlink ${name} has no valid target; give a non-empty target without NUL bytes`);
  }
  if (Buffer.byteLength(entry.target) > KERNEL_PATH_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `cpio symlink ${name} has a target of ${Buffer.byteLength(entry.target)} bytes; the kernel skips initramfs symlinks whose target exceeds ${KERNEL_PATH_MAX} bytes`);
  }
}

function validateDeviceNumber(entry: CpioEntry): void {
  const name = JSON.stringify(entry.path);
  const { major, minor } = entry;
  if (major === undefined || !Number.isInteger(major) || major < 0 || major > MAX_MAJOR) {
    throw new QwamosError('INPUT_INVALID', `cpio device node ${name} has major number ${String(major)}; give an integer between 0 and ${MAX_MAJOR}`);
  }
  if (minor === undefined || !Number.isInteger(minor) || minor < 0 || minor > MAX_MINOR) {
    throw new QwamosError('INPUT_INVALID', `cpio device node ${name} has minor number ${String(minor)}; give an integer between 0 and ${MAX_MINOR}`);
  }
}

/** Returns the data section: file contents or symlink target, else empty. */
function entryBody(entry: CpioEntry): Buffer {
  let body: Buffer = Buffer.alloc(0);
  if (entry.type === 'file' && entry.data !== undefined) {
    body = typeof entry.data === 'string' ? Buffer.from(entry.data) : Buffer.from(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength);
  } else if (entry.type === 'symlink' && entry.target !== undefined) {
    body = Buffer.from(entry.target);
  }

  if (body.length > MAX_FIELD) {
    throw new QwamosError('LIMIT_EXCEEDED', `cpio entry ${JSON.stringify(entry.path)} has ${body.length} bytes of data; newc stores sizes in 32 bits, so files must be under 4 GiB`);
  }
  return body;
}

/**
 * Rejects duplicate paths and entries below a non-folder entry, and adds a
 * 0o755 folder entry for every parent that `members` does not list.
 */
function addMissingParents(members: ArchiveMember[]): void {
  const byPath = new Map<string, ArchiveMember>();
  for (const member of members) {
    if (byPath.has(member.entry.path)) {
      throw new QwamosError('INPUT_INVALID', `cpio entry path ${JSON.stringify(member.entry.path)} is listed twice; keep one entry per path`);
    }
    byPath.set(member.entry.path, member);
  }

  for (const member of [...members]) {
    for (let depth = 1; depth < member.components.length; depth++) {
      const parentPath = member.entry.path.split('/').slice(0, depth).join('/');
      const parent = byPath.get(parentPath);

      if (parent === undefined) {
        const added: ArchiveMember = { entry: { path: parentPath, type: 'dir', mode: IMPLICIT_DIR_MODE }, components: member.components.slice(0, depth), body: Buffer.alloc(0) };
        byPath.set(parentPath, added);
        members.push(added);
      } else if (parent.entry.type !== 'dir') {
        throw new QwamosError('INPUT_INVALID', `cpio entry ${JSON.stringify(member.entry.path)} is below ${JSON.stringify(parentPath)}, which is a ${parent.entry.type}, not a dir; fix one of the two paths`);
      }
    }
  }
}

/** Orders paths component by component, comparing UTF-8 bytes, so a folder comes right before its contents. */
function compareComponents(a: Buffer[], b: Buffer[]): number {
  const shared = Math.min(a.length, b.length);
  for (let i = 0; i < shared; i++) {
    const order = Buffer.compare(a[i] as Buffer, b[i] as Buffer);
    if (order !== 0) return order;
  }
  return a.length - b.length;
}

interface HeaderFields {
  ino: number;
  mode: number;
  nlink: number;
  mtime: number;
  fileSize: number;
  rdevMajor: number;
  rdevMinor: number;
  nameSize: number;
}

function encodeMember(member: ArchiveMember, ino: number, mtime: number): Buffer {
  const { entry, body } = member;
  const name = Buffer.from(entry.path);
  const header = encodeHeader({
    ino,
    mode: FILE_TYPE_BITS[entry.type] | entry.mode,
    nlink: entry.type === 'dir' ? 2 : 1,
    mtime,
    fileSize: body.length,
    rdevMajor: entry.major ?? 0,
    rdevMinor: entry.minor ?? 0,
    nameSize: name.length + 1,
  });
  return Buffer.concat([header, name, zeroPadding(HEADER_SIZE + name.length, 1), body, zeroPadding(body.length, 0)]);
}

/** The end-of-archive entry as GNU cpio and the kernel's gen_init_cpio write it: all fields 0 except nlink 1. */
function encodeTrailer(): Buffer {
  const name = Buffer.from(TRAILER_NAME);
  const header = encodeHeader({ ino: 0, mode: 0, nlink: 1, mtime: 0, fileSize: 0, rdevMajor: 0, rdevMinor: 0, nameSize: name.length + 1 });
  return Buffer.concat([header, name, zeroPadding(HEADER_SIZE + name.length, 1)]);
}

function encodeHeader(fields: HeaderFields): Buffer {
  const values = [fields.ino, fields.mode, 0, 0, fields.nlink, fields.mtime, fields.fileSize, 0, 0, fields.rdevMajor, fields.rdevMinor, fields.nameSize, 0];
  const text = NEWC_MAGIC + values.map((value) => value.toString(16).padStart(8, '0')).join('');
  return Buffer.from(text, 'ascii');
}

/** Returns the NUL bytes that follow `length` bytes plus `terminator` NULs, up to the next multiple of 4. */
function zeroPadding(length: number, terminator: number): Buffer {
  const end = length + terminator;
  return Buffer.alloc(terminator + ((4 - (end % 4)) % 4));
}
