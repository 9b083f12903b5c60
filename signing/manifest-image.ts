/**
 * Image digests for stage manifests: the SHA-512 of the image span and the
 * dm-verity root digest read back from the hash tree's top-level block.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { QwamosError } from '../core/errors.js';
import type { VerityParameters } from './manifest.js';

export interface ImageDigest {
  imageSize: bigint;
  imageSha512: Uint8Array;
}

/** Returns the size of the file at `path`, or throws INPUT_NOT_FOUND naming it. */
export async function imageFileSize(path: string): Promise<bigint> {
  const status = await stat(path, { bigint: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `image ${path} does not exist; build the stage image first`);
    throw error;
  });
  return status.size;
}

/**
 * Hashes the first `size` bytes of the image at `path` (the whole file by
 * default) with SHA-512. Throws VERIFY_FAILED "image too small" when the
 * file is shorter than `size`.
 */
export async function hashImage(path: string, size?: bigint): Promise<ImageDigest> {
  const fileSize = await imageFileSize(path);
  const imageSize = size ?? fileSize;
  if (fileSize < imageSize) {
    throw new QwamosError('VERIFY_FAILED', `image ${path}: image too small (${fileSize} < ${imageSize} bytes)`, { data: { reason: `image too small (${fileSize} < ${imageSize} bytes)` } });
  }

  const hash = createHash('sha512');
  if (imageSize > 0n) {
    for await (const chunk of createReadStream(path, { start: 0, end: Number(imageSize - 1n), highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
    }
  }
  return { imageSize, imageSha512: hash.digest() };
}

/**
 * Computes the dm-verity root digest of the image at `path` from the top
 * level block of its hash tree: hash(salt || first hash block), the format
 * 1 rule that `veritysetup format --format=1` follows. Returns the digest
 * without comparing it.
 */
export async function readVerityRootDigest(path: string, verity: Omit<VerityParameters, 'rootDigest'>): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const block = Buffer.alloc(verity.hashBlockSize);
    // Number() is exact here: file offsets on the host are far below 2^53.
    const { bytesRead } = await handle.read(block, 0, block.length, Number(verity.hashTreeOffset));
    if (bytesRead < block.length) {
      const reason = `image too small (${verity.hashTreeOffset + BigInt(bytesRead)} < ${verity.hashTreeOffset + BigInt(block.length)} bytes)`;
      throw new QwamosError('VERIFY_FAILED', `image ${path}: ${reason}`, { data: { reason } });
    }
    return createHash(verity.hashAlgorithm).update(verity.salt).update(block).digest();
  } finally {
    await handle.close();
  }
}
