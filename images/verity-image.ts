/**
 * Appending a dm-verity hash tree to a file system image, so that one
 * device contains the data followed by its tree, the layout that the kernel
 * table `verity 1 /dev/vda /dev/vda ...` reads. Also the salt derivation
 * that keeps the result reproducible.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { copyFile, open, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { produceAtomic, rethrowWriteError } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { computeHashTreeParallel } from './verity-parallel.js';
import { validateHashTreeParams, type HashTreeParams, type HashTreeSource, type VerityHashAlgorithm } from './verity.js';

export interface VerityTreeOptions {
  /** Default sha256. */
  hashAlgorithm?: VerityHashAlgorithm;
  /** Default 4096. */
  dataBlockSize?: number;
  /** Default 4096. */
  hashBlockSize?: number;
  /** Salt to use. Default: deriveVeritySalt over the padded data with `saltLabel`. */
  salt?: Uint8Array;
  /** Label mixed into the derived salt, such as the partition name. Default 'system'. */
  saltLabel?: string;
  /** Worker threads for hashing; see computeHashTreeParallel. */
  workers?: number;
}

export interface AppendHashTreeOptions extends VerityTreeOptions {
  /** Path of the image with the tree appended. Default: replace `imagePath`. */
  output?: string;
}

/** Everything a dm-verity table or an AVB hashtree descriptor needs about an image with an appended tree. */
export interface VerityImage {
  rootDigest: Buffer;
  salt: Buffer;
  hashAlgorithm: VerityHashAlgorithm;
  dataBlockSize: number;
  hashBlockSize: number;
  /** Number of data blocks: the image size rounded up to whole data blocks. */
  dataBlocks: number;
  /** Byte offset of the tree in the output file, a multiple of hashBlockSize. */
  hashOffset: number;
  /** Tree size in bytes; 0 for a single data block. */
  treeSize: number;
}

/** Prefix of the salt derivation input. Changing it changes every derived salt. */
const SALT_DOMAIN = 'qwamos-build dm-verity salt v1';

/**
 * Derives a 32-byte salt from the data and a label, so the same image gets
 * the same salt on every build while different images or partitions get
 * different salts:
 *
 *   salt = SHA-256(SALT_DOMAIN || 0x00 || label (UTF-8) || 0x00 || SHA-256(data))
 *
 * A file source is streamed. Throws INPUT_INVALID for an empty label or one
 * containing NUL.
 */
export async function deriveVeritySalt(source: HashTreeSource, label: string): Promise<Buffer> {
  if (typeof label !== 'string' || label === '' || label.includes('\0')) {
    throw new QwamosError('INPUT_INVALID', `dm-verity salt label ${JSON.stringify(label)} is invalid; give a non-empty name without NUL, such as the partition name`);
  }

  const dataDigest = createHash('sha256');
  if (source instanceof Uint8Array) {
    dataDigest.update(source);
  } else {
    const length = source.length ?? (await stat(source.path)).size;
    if (length > 0) await pipeline(createReadStream(source.path, { start: 0, end: length - 1 }), dataDigest);
  }

  return createHash('sha256')
    .update(SALT_DOMAIN)
    .update(Buffer.from([0]))
    .update(label)
    .update(Buffer.from([0]))
    .update(dataDigest.digest())
    .digest();
}

/**
 * Copies `imagePath` to a temporary file, appends the hash tree there with
 * appendHashTreeInPlace and renames the result to `options.output`
 * (default: `imagePath` itself). The copy costs a full write of the image;
 * a caller that already owns a temporary image can call
 * appendHashTreeInPlace directly.
 */
export async function appendHashTree(imagePath: string, options: AppendHashTreeOptions = {}): Promise<VerityImage> {
  await imageFileSize(imagePath);

  return produceAtomic(options.output ?? imagePath, async (temporaryPath) => {
    await copyFile(imagePath, temporaryPath, constants.COPYFILE_FICLONE);
    return appendHashTreeInPlace(temporaryPath, options);
  });
}

/**
 * Pads `imagePath` with zeros to whole data blocks and writes the hash tree
 * after it, at the next hash block boundary, changing the file in place.
 * A failure part-way leaves a file that is
 * neither the input nor the result, so call this only on a temporary file
 * that is renamed into place afterwards.
 */
export async function appendHashTreeInPlace(imagePath: string, options: VerityTreeOptions = {}): Promise<VerityImage> {
  const hashAlgorithm = options.hashAlgorithm ?? 'sha256';
  const dataBlockSize = options.dataBlockSize ?? 4096;
  const hashBlockSize = options.hashBlockSize ?? 4096;
  validateHashTreeParams({ hashAlgorithm, dataBlockSize, hashBlockSize, salt: options.salt ?? new Uint8Array(0) });

  const imageSize = await imageFileSize(imagePath);
  const dataSize = roundUp(imageSize, dataBlockSize);
  const hashOffset = roundUp(dataSize, hashBlockSize);
  const data = { path: imagePath, length: dataSize };

  const handle = await open(imagePath, 'r+');
  try {
    // Zero padding: the end of the last data block, then up to the hash block boundary.
    await handle.truncate(hashOffset);

    const salt = options.salt === undefined ? await deriveVeritySalt(data, options.saltLabel ?? 'system') : Buffer.from(options.salt);
    const params: HashTreeParams = { hashAlgorithm, dataBlockSize, hashBlockSize, salt };
    const hashTree = await computeHashTreeParallel(data, params, { workers: options.workers });

    await handle.write(hashTree.tree, 0, hashTree.tree.length, hashOffset);
    await handle.sync();

    return {
      rootDigest: hashTree.rootDigest,
      salt,
      hashAlgorithm,
      dataBlockSize,
      hashBlockSize,
      dataBlocks: hashTree.dataBlocks,
      hashOffset,
      treeSize: hashTree.tree.length,
    };
  } catch (error) {
    rethrowWriteError(error, imagePath);
  } finally {
    await handle.close();
  }
}

async function imageFileSize(imagePath: string): Promise<number> {
  const stats = await stat(imagePath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `image ${imagePath} does not exist; build it before appending the dm-verity hash tree`);
    }
    throw error;
  });

  if (!stats.isFile() || stats.size === 0) {
    throw new QwamosError('INPUT_INVALID', `image ${imagePath} is ${stats.isFile() ? 'empty' : 'not a regular file'}; a dm-verity hash tree needs at least one data block`);
  }
  return stats.size;
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}
