/**
 * The AVB footer and the partition layout avbtool writes around it.
 *
 * Footer, 64 bytes at the very end of the partition, integers big-endian:
 *
 *   0  magic "AVBf"          4  u32 footer version major (1)
 *   8  u32 version minor (0) 12 u64 original image size
 *   20 u64 vbmeta offset     28 u64 vbmeta size
 *   36 28 reserved zero bytes
 *
 * Partition layout, each part zero-padded to a multiple of 4096 bytes:
 * 1. the image;
 * 2. for hashtree footers, the hash tree;
 * 3. the vbmeta blob;
 * 4. zeros up to the last 4096-byte block, which ends with the footer.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, open, truncate } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { QwamosError } from '../core/errors.js';
import { avbVerifyError } from './avb-errors.js';
import { roundUp } from './avb-descriptors.js';
import { MAX_VBMETA_SIZE, parseVbmeta, type ParsedVbmeta } from './avb-vbmeta.js';

export const FOOTER_MAGIC = 'AVBf';
export const FOOTER_SIZE = 64;
export const FOOTER_VERSION_MAJOR = 1;
export const FOOTER_VERSION_MINOR = 0;
/** Block size avbtool pads images to for non-sparse files. */
export const IMAGE_BLOCK_SIZE = 4096;
/** Room avbtool reserves when it sizes a partition: 64 KiB of vbmeta and a 4 KiB footer block. */
export const FOOTER_METADATA_RESERVE = MAX_VBMETA_SIZE + IMAGE_BLOCK_SIZE;

/** Magic of an Android sparse image, little-endian at offset 0. */
const SPARSE_MAGIC = 0xed26ff3a;

export interface AvbFooter {
  versionMajor: number;
  versionMinor: number;
  /** Size of the image before avbtool added padding, tree, vbmeta and footer. */
  originalImageSize: number;
  vbmetaOffset: number;
  vbmetaSize: number;
}

export function encodeFooter(footer: AvbFooter): Buffer {
  const bytes = Buffer.alloc(FOOTER_SIZE);
  bytes.write(FOOTER_MAGIC, 0, 'latin1');
  bytes.writeUInt32BE(footer.versionMajor, 4);
  bytes.writeUInt32BE(footer.versionMinor, 8);
  bytes.writeBigUInt64BE(BigInt(footer.originalImageSize), 12);
  bytes.writeBigUInt64BE(BigInt(footer.vbmetaOffset), 20);
  bytes.writeBigUInt64BE(BigInt(footer.vbmetaSize), 28);
  return bytes;
}

/** Parses the last 64 bytes of a partition; undefined when they do not start with "AVBf". */
export function parseFooter(bytes: Uint8Array): AvbFooter | undefined {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length !== FOOTER_SIZE || buffer.toString('latin1', 0, 4) !== FOOTER_MAGIC) return undefined;

  const u64 = (offset: number): number => {
    const value = buffer.readBigUInt64BE(offset);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw avbVerifyError('footer', `footer field at offset ${offset} has value ${value}, larger than any image`);
    return Number(value);
  };
  return {
    versionMajor: buffer.readUInt32BE(4),
    versionMinor: buffer.readUInt32BE(8),
    originalImageSize: u64(12),
    vbmetaOffset: u64(20),
    vbmetaSize: u64(28),
  };
}

/** Reads the footer at the end of an image file; undefined when the file has none. */
export async function readFooter(imagePath: string): Promise<AvbFooter | undefined> {
  const handle = await openImage(imagePath);
  try {
    const { size } = await handle.stat();
    if (size < FOOTER_SIZE) return undefined;
    return parseFooter(await readRange(handle, size - FOOTER_SIZE, FOOTER_SIZE));
  } finally {
    await handle.close();
  }
}

/** An image file's AVB metadata: the footer, if any, and its parsed vbmeta. */
export interface AvbImage {
  path: string;
  /** File size in bytes. */
  imageSize: number;
  footer?: AvbFooter;
  vbmeta: ParsedVbmeta;
}

/**
 * Reads the vbmeta of an image: through its footer when it has one,
 * otherwise from offset 0 (a vbmeta partition image). Checks the footer as
 * libavb does (major version 1, vbmeta at most 64 KiB) and that it is
 * consistent: the vbmeta lies inside the file before the footer, after the
 * original image data.
 */
export async function readImageVbmeta(imagePath: string): Promise<AvbImage> {
  const handle = await openImage(imagePath);
  try {
    const { size } = await handle.stat();
    await rejectSparseImage(handle, imagePath, size);

    const footer = size >= FOOTER_SIZE ? parseFooter(await readRange(handle, size - FOOTER_SIZE, FOOTER_SIZE)) : undefined;
    if (footer) checkFooter(footer, size, imagePath);

    const offset = footer?.vbmetaOffset ?? 0;
    const length = footer?.vbmetaSize ?? Math.min(size, MAX_VBMETA_SIZE);
    const vbmeta = parseVbmeta(await readRange(handle, offset, length));
    return { path: imagePath, imageSize: size, footer, vbmeta };
  } finally {
    await handle.close();
  }
}

function checkFooter(footer: AvbFooter, fileSize: number, imagePath: string): void {
  const fail = (problem: string): never => {
    throw avbVerifyError('footer', `AVB footer of ${imagePath} is invalid: ${problem}`, { image: imagePath });
  };

  if (footer.versionMajor !== FOOTER_VERSION_MAJOR) fail(`footer version ${footer.versionMajor}.${footer.versionMinor} is not supported (major must be ${FOOTER_VERSION_MAJOR})`);
  if (footer.vbmetaSize > MAX_VBMETA_SIZE) fail(`vbmeta size ${footer.vbmetaSize} exceeds libavb's maximum of ${MAX_VBMETA_SIZE} bytes`);
  if (footer.vbmetaOffset + footer.vbmetaSize > fileSize - FOOTER_SIZE) {
    fail(`vbmeta at offset ${footer.vbmetaOffset} with size ${footer.vbmetaSize} runs past the footer of a ${fileSize}-byte image`);
  }
  if (footer.originalImageSize > footer.vbmetaOffset) {
    fail(`original image size ${footer.originalImageSize} overlaps the vbmeta at offset ${footer.vbmetaOffset}`);
  }
}

/** Rejects Android sparse images: AVB footers are added to and read from raw images. */
async function rejectSparseImage(handle: FileHandle, imagePath: string, size: number): Promise<void> {
  if (size < 4) return;
  const magic = (await readRange(handle, 0, 4)).readUInt32LE(0);
  if (magic === SPARSE_MAGIC) {
    throw new QwamosError('INPUT_INVALID', `${imagePath} is an Android sparse image; convert it to a raw image first (simg2img ${imagePath} raw.img)`);
  }
}

// ---------------------------------------------------------------- reading helpers

type FileHandle = Awaited<ReturnType<typeof open>>;

async function openImage(imagePath: string): Promise<FileHandle> {
  try {
    return await open(imagePath, 'r');
  } catch (error) {
    throw new QwamosError('INPUT_NOT_FOUND', `cannot open image ${imagePath}: ${(error as Error).message}`, { cause: error });
  }
}

/** Reads exactly `length` bytes at `offset`, or fewer at the end of the file. */
export async function readRange(handle: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

/** Hashes `prefix` followed by the first `length` bytes of a file, streaming. */
export async function hashFile(filePath: string, algorithm: string, length: number, prefix: Uint8Array = Buffer.alloc(0)): Promise<Buffer> {
  const hash = createHash(algorithm).update(prefix);
  if (length > 0) {
    await pipeline(createReadStream(filePath, { start: 0, end: length - 1 }), async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) hash.update(chunk);
    });
  }
  return hash.digest();
}

// ---------------------------------------------------------------- writing

/** The data part of an image that a footer is about to be added to. */
export interface SourceImage {
  path: string;
  /** File size in bytes, including any existing footer. */
  fileSize: number;
  /** Bytes of image data: the file size, or the original size recorded in an existing footer. */
  originalSize: number;
  /** File mode bits, kept when the image is replaced. */
  mode: number;
}

/**
 * Inspects an image before adding a footer. An existing footer is dropped
 * (its original image size is used), which makes adding a footer
 * idempotent, as in avbtool.
 */
export async function inspectSourceImage(imagePath: string): Promise<SourceImage> {
  const handle = await openImage(imagePath);
  try {
    const { size, mode } = await handle.stat();
    await rejectSparseImage(handle, imagePath, size);

    const footer = size >= FOOTER_SIZE ? parseFooter(await readRange(handle, size - FOOTER_SIZE, FOOTER_SIZE)) : undefined;
    if (footer && footer.originalImageSize > size) {
      throw new QwamosError('INPUT_INVALID', `${imagePath} has an AVB footer whose original image size ${footer.originalImageSize} exceeds the file size ${size}; the file is damaged`);
    }
    return { path: imagePath, fileSize: size, originalSize: footer?.originalImageSize ?? size, mode: mode & 0o7777 };
  } finally {
    await handle.close();
  }
}

/** Copies the image data of `source` into `targetPath`, zero-padded to `paddedSize` bytes. */
export async function copyImageData(source: SourceImage, targetPath: string, paddedSize: number): Promise<void> {
  if (source.originalSize > 0) {
    await pipeline(createReadStream(source.path, { start: 0, end: source.originalSize - 1 }), createWriteStream(targetPath));
  } else {
    await (await open(targetPath, 'w')).close();
  }
  await truncate(targetPath, paddedSize);
  await chmod(targetPath, source.mode);
}

export interface FooterTail {
  /** Offset of the vbmeta blob: the 4096-aligned end of the data (and tree). */
  vbmetaOffset: number;
  vbmeta: Uint8Array;
  originalImageSize: number;
  /** Partition size; the footer block ends there. Without it the footer follows the vbmeta. */
  partitionSize?: number;
  /** Named in error messages. */
  partitionName: string;
}

/**
 * Writes the vbmeta blob and the footer block into a file that already
 * holds the data (and tree) up to `vbmetaOffset`. The gap before the footer
 * block is left as a hole, which reads as zeros. Returns the footer.
 */
export async function writeVbmetaAndFooter(filePath: string, tail: FooterTail): Promise<AvbFooter> {
  const paddedVbmeta = roundUp(tail.vbmeta.length, IMAGE_BLOCK_SIZE);
  const vbmetaEnd = tail.vbmetaOffset + paddedVbmeta;
  const end = tail.partitionSize ?? vbmetaEnd + IMAGE_BLOCK_SIZE;
  if (vbmetaEnd + IMAGE_BLOCK_SIZE > end) {
    throw new QwamosError('LIMIT_EXCEEDED', `partition '${tail.partitionName}' of ${end} bytes is too small: image, tree and vbmeta end at ${vbmetaEnd} bytes and the footer block needs ${IMAGE_BLOCK_SIZE} more`);
  }

  const footer: AvbFooter = {
    versionMajor: FOOTER_VERSION_MAJOR,
    versionMinor: FOOTER_VERSION_MINOR,
    originalImageSize: tail.originalImageSize,
    vbmetaOffset: tail.vbmetaOffset,
    vbmetaSize: tail.vbmeta.length,
  };
  const footerBlock = Buffer.alloc(IMAGE_BLOCK_SIZE);
  encodeFooter(footer).copy(footerBlock, IMAGE_BLOCK_SIZE - FOOTER_SIZE);

  const handle = await open(filePath, 'r+');
  try {
    await handle.truncate(tail.vbmetaOffset);
    await handle.write(Buffer.concat([tail.vbmeta, Buffer.alloc(paddedVbmeta - tail.vbmeta.length)]), 0, paddedVbmeta, tail.vbmetaOffset);
    await handle.write(footerBlock, 0, IMAGE_BLOCK_SIZE, end - IMAGE_BLOCK_SIZE);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return footer;
}

/** Domain label of derived salts, so they never collide with other uses of the same digest. */
const SALT_LABEL = 'qwamos-build AVB salt v1';

/**
 * Derives a salt where avbtool would read one from /dev/urandom, so the
 * same image, partition name and algorithm always give the same output:
 * H(label || NUL || partition name || NUL || SHA-256(image data)), with H
 * the descriptor's hash algorithm, so the salt is as long as its digest
 * (avbtool's random salt has that length too).
 */
export function deriveSalt(hashAlgorithm: string, partitionName: string, imageSha256: Uint8Array): Buffer {
  return createHash(hashAlgorithm)
    .update(`${SALT_LABEL}\0${partitionName}\0`, 'utf8')
    .update(imageSha256)
    .digest();
}
