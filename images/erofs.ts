/**
 * Reproducible EROFS images from a folder, built with mkfs.erofs from
 * erofs-utils 1.5 (Debian 12). The image depends only on the folder's
 * names, file types, permission bits, contents, symlink targets, device
 * numbers and hard links, and on the timestamp and UUID passed here.
 *
 * mkfs.erofs 1.5 adds entries in name order whatever order readdir returns,
 * but it copies each inode's permission bits from the host, the root
 * folder's included. The caller must set the permission bits it wants in
 * the folder before building.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { produceAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { runTool } from '../core/exec.js';

export interface ErofsBuildOptions {
  /** Folder whose contents become the file system root. */
  sourceDir: string;
  /** Image path; written to a temporary file and renamed into place. */
  output: string;
  /** Modification time of every inode and the superblock build time, in seconds since the epoch: the build's SOURCE_DATE_EPOCH. */
  timestamp: number;
  /** File system UUID. Default: deriveErofsUuid(sourceDir, timestamp, label). */
  uuid?: string;
  /** Name mixed into the derived UUID, such as the partition name. Default 'system'. */
  label?: string;
  /** Appends mkfs.erofs output to this file. */
  logFile?: string;
}

export interface ErofsImage {
  path: string;
  uuid: string;
  timestamp: number;
  /** Image size in bytes, a multiple of the 4096-byte EROFS block. */
  size: number;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Prefix of the UUID derivation input. Changing it changes every derived UUID. */
const UUID_DOMAIN = 'qwamos-build erofs uuid v1';

/** Limit shared with the initramfs writer, whose cpio mtime field has 32 bits. */
const MAX_TIMESTAMP = 0xffff_ffff;

/**
 * Builds an uncompressed EROFS image of `sourceDir` at `output`. Throws
 * INPUT_NOT_FOUND when the folder is missing, INPUT_INVALID for a bad
 * timestamp or UUID, and the runTool errors when mkfs.erofs is missing or
 * fails.
 */
export async function buildErofsImage(options: ErofsBuildOptions): Promise<ErofsImage> {
  await checkSourceFolder(options.sourceDir);
  checkTimestamp(options.timestamp);

  const uuid = options.uuid ?? await deriveErofsUuid(options.sourceDir, options.timestamp, options.label ?? 'system');
  if (!UUID_PATTERN.test(uuid)) {
    throw new QwamosError('INPUT_INVALID', `EROFS UUID ${JSON.stringify(uuid)} is invalid; give 8-4-4-4-12 lower-case hexadecimal digits, or leave it unset to derive one`);
  }

  return produceAtomic(options.output, async (temporaryPath) => {
    const args = [
      '--quiet',
      // Every inode's mtime and the superblock build time become this value.
      // Without -T, mkfs.erofs 1.5 uses each file's host mtime and the build time.
      `-T${options.timestamp}`,
      // Without -U the UUID is random.
      `-U${uuid}`,
      // uid and gid 0 on every inode instead of the host owners.
      '--all-root',
      // A negative xattr tolerance disables extended attributes, so host
      // xattrs (security.selinux, user.*) do not reach the image.
      '-x-1',
      // No -z: data stays uncompressed, so no compressor version affects the bytes.
      temporaryPath,
      options.sourceDir,
    ];
    await runTool('mkfs.erofs', args, { logFile: options.logFile });

    const { size } = await lstat(temporaryPath);
    return { path: options.output, uuid, timestamp: options.timestamp, size };
  });
}

/**
 * Derives a UUID from the folder contents, the timestamp and a label, so the
 * same inputs give the same UUID and a changed file gives a new one. Reads
 * every file once. The UUID is the first 16 bytes of a SHA-256 over a
 * listing of the tree, with the version set to 8 (RFC 9562 custom format)
 * and the RFC variant bits.
 */
export async function deriveErofsUuid(sourceDir: string, timestamp: number, label: string): Promise<string> {
  await checkSourceFolder(sourceDir);
  checkTimestamp(timestamp);

  const listing = createHash('sha256');
  listing.update(`${JSON.stringify([UUID_DOMAIN, label, timestamp])}\n`);
  await hashTree(sourceDir, '', listing);

  const bytes = listing.digest().subarray(0, 16);
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x80;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;

  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Adds one JSON line per entry below `hostFolder`, in byte order of the names, to `listing`. */
async function hashTree(hostFolder: string, relativeFolder: string, listing: Hash): Promise<void> {
  const names = (await readdir(hostFolder)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

  for (const name of names) {
    const hostPath = path.join(hostFolder, name);
    const relativePath = relativeFolder === '' ? name : `${relativeFolder}/${name}`;
    const stats = await lstat(hostPath);
    const permissions = stats.mode & 0o7777;

    if (stats.isDirectory()) {
      listing.update(`${JSON.stringify([relativePath, 'dir', permissions])}\n`);
      await hashTree(hostPath, relativePath, listing);
    } else if (stats.isFile()) {
      listing.update(`${JSON.stringify([relativePath, 'file', permissions, stats.size, await fileDigest(hostPath)])}\n`);
    } else if (stats.isSymbolicLink()) {
      listing.update(`${JSON.stringify([relativePath, 'symlink', permissions, await readlink(hostPath)])}\n`);
    } else {
      const type = stats.isCharacterDevice() ? 'chardev' : stats.isBlockDevice() ? 'blockdev' : stats.isFIFO() ? 'fifo' : 'socket';
      listing.update(`${JSON.stringify([relativePath, type, permissions, stats.rdev])}\n`);
    }
  }
}

async function fileDigest(filePath: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(filePath), hash);
  return hash.digest('hex');
}

async function checkSourceFolder(sourceDir: string): Promise<void> {
  const stats = await lstat(sourceDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `EROFS source folder ${sourceDir} does not exist; create it or pass another folder`);
    }
    throw error;
  });
  if (!stats.isDirectory()) {
    throw new QwamosError('INPUT_INVALID', `EROFS source ${sourceDir} is not a folder; pass the folder whose contents become the image root`);
  }
}

function checkTimestamp(timestamp: number): void {
  if (!Number.isInteger(timestamp) || timestamp < 0 || timestamp > MAX_TIMESTAMP) {
    throw new QwamosError('INPUT_INVALID', `EROFS timestamp ${timestamp} is invalid; use whole seconds since 1970-01-01 UTC, from 0 to ${MAX_TIMESTAMP}`);
  }
}
