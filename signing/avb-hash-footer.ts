/**
 * `add_hash_footer`: a hash descriptor for the whole image (boot,
 * init_boot, vendor_boot, dtbo), signed into a vbmeta blob that is
 * appended to the image together with the footer, with avbtool's
 * partition-size rules.
 */
import { produceAtomic, writeFileAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { HASH_DESCRIPTOR_FLAG_DO_NOT_USE_AB, roundUp, type AvbHashDescriptor } from './avb-descriptors.js';
import {
  FOOTER_METADATA_RESERVE,
  IMAGE_BLOCK_SIZE,
  copyImageData,
  deriveSalt,
  hashFile,
  inspectSourceImage,
  writeVbmetaAndFooter,
  type AvbFooter,
} from './avb-footer.js';
import { buildVbmeta, requiredLibavbMinor, type VbmetaOptions } from './avb-vbmeta.js';

/** Hash algorithms libavb checks hash descriptors with. */
export const HASH_FOOTER_ALGORITHMS = ['sha256', 'sha512'] as const;
export type HashFooterAlgorithm = (typeof HASH_FOOTER_ALGORITHMS)[number];

export interface AddHashFooterOptions extends Omit<VbmetaOptions, 'descriptors'> {
  partitionName: string;
  /** Partition size in bytes, a multiple of 4096; required unless dynamicPartitionSize. */
  partitionSize?: number;
  /** Uses the smallest partition size that fits image and metadata (avbtool --dynamic_partition_size). */
  dynamicPartitionSize?: boolean;
  /** Default sha256. */
  hashAlgorithm?: HashFooterAlgorithm;
  /** Salt; an empty array means no salt. Default: derived from partition name and image digest. */
  salt?: Uint8Array;
  /** Leaves the digest out; the device keeps it as a persistent value. */
  usePersistentDigest?: boolean;
  /** The partition has no A/B suffix. */
  doNotUseAb?: boolean;
  /** Writes the result here; by default the image is replaced in place (atomically). */
  output?: string;
  /** Also writes the vbmeta blob to this file. */
  outputVbmetaImage?: string;
  /** Leaves the image unchanged (with outputVbmetaImage, only the vbmeta is written). */
  doNotAppendVbmetaImage?: boolean;
}

export interface AddFooterResult {
  /** Undefined with doNotAppendVbmetaImage. */
  footer?: AvbFooter;
  vbmeta: Buffer;
  partitionSize: number;
  /** Largest image that fits the partition. */
  maxImageSize: number;
}

export interface AddHashFooterResult extends AddFooterResult {
  descriptor: AvbHashDescriptor;
}

/** Largest image avbtool fits into a partition with a hash footer: partition size minus 69,632 bytes. */
export function maxImageSizeForHashFooter(partitionSize: number): number {
  return partitionSize - FOOTER_METADATA_RESERVE;
}

/** Adds a hash footer to `imagePath`, as `avbtool add_hash_footer`. */
export async function addHashFooter(imagePath: string, options: AddHashFooterOptions): Promise<AddHashFooterResult> {
  const hashAlgorithm = checkHashAlgorithm(options.hashAlgorithm ?? 'sha256');
  if (options.partitionSize === undefined && !options.dynamicPartitionSize) {
    throw new QwamosError('USAGE', `add_hash_footer for partition '${options.partitionName}' needs --partition_size or --dynamic_partition_size`);
  }
  if (options.partitionSize !== undefined && !options.dynamicPartitionSize) checkMinimumPartitionSize(options.partitionName, options.partitionSize);

  const source = await inspectSourceImage(imagePath);
  const partitionSize = options.dynamicPartitionSize
    ? roundUp(source.originalSize + FOOTER_METADATA_RESERVE, IMAGE_BLOCK_SIZE)
    : (options.partitionSize as number);
  checkPartitionFits(options.partitionName, partitionSize, source.originalSize);

  const descriptor = await hashDescriptor(imagePath, source.originalSize, hashAlgorithm, options);
  const vbmeta = buildVbmeta({
    ...options,
    descriptors: [descriptor],
    requiredLibavbMinor: requiredLibavbMinor({ ...options, requiredLibavbMinor: footerMinorVersion(options) }),
  });

  if (options.outputVbmetaImage) await writeFileAtomic(options.outputVbmetaImage, vbmeta);

  const result = { vbmeta, partitionSize, maxImageSize: maxImageSizeForHashFooter(partitionSize), descriptor };
  if (options.doNotAppendVbmetaImage) return result;

  const dataSize = roundUp(source.originalSize, IMAGE_BLOCK_SIZE);
  const footer = await produceAtomic(options.output ?? imagePath, async (temporaryPath) => {
    await copyImageData(source, temporaryPath, dataSize);
    return writeVbmetaAndFooter(temporaryPath, {
      vbmetaOffset: dataSize,
      vbmeta,
      originalImageSize: source.originalSize,
      partitionSize,
      partitionName: options.partitionName,
    });
  });
  return { ...result, footer };
}

async function hashDescriptor(imagePath: string, imageSize: number, hashAlgorithm: HashFooterAlgorithm, options: AddHashFooterOptions): Promise<AvbHashDescriptor> {
  const salt = options.salt
    ?? (options.usePersistentDigest ? Buffer.alloc(0) : deriveSalt(hashAlgorithm, options.partitionName, await hashFile(imagePath, 'sha256', imageSize)));
  const digest = await hashFile(imagePath, hashAlgorithm, imageSize, salt);

  return {
    kind: 'hash',
    imageSize,
    hashAlgorithm,
    partitionName: options.partitionName,
    salt,
    digest: options.usePersistentDigest ? Buffer.alloc(0) : digest,
    flags: options.doNotUseAb ? HASH_DESCRIPTOR_FLAG_DO_NOT_USE_AB : 0,
  };
}

/** libavb 1.1 added persistent digests and the do-not-use-A/B flag. */
function footerMinorVersion(options: AddHashFooterOptions): number {
  return options.usePersistentDigest || options.doNotUseAb ? 1 : 0;
}

function checkHashAlgorithm(algorithm: string): HashFooterAlgorithm {
  if (!(HASH_FOOTER_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw new QwamosError('INPUT_INVALID', `hash algorithm '${algorithm}' is not supported for hash footers; libavb verifies sha256 and sha512`);
  }
  return algorithm as HashFooterAlgorithm;
}

function checkMinimumPartitionSize(partitionName: string, partitionSize: number): void {
  if (!Number.isSafeInteger(partitionSize) || partitionSize < FOOTER_METADATA_RESERVE) {
    throw new QwamosError('LIMIT_EXCEEDED', `partition '${partitionName}' size ${partitionSize} bytes is too small; a hash footer needs at least ${FOOTER_METADATA_RESERVE} bytes (64 KiB vbmeta + 4 KiB footer block)`);
  }
}

/** Checks that the partition size is 4096-aligned and fits the image plus 69,632 bytes of metadata. */
function checkPartitionFits(partitionName: string, partitionSize: number, imageSize: number): void {
  if (partitionSize % IMAGE_BLOCK_SIZE !== 0) {
    throw new QwamosError('INPUT_INVALID', `partition '${partitionName}' size ${partitionSize} bytes is not a multiple of the ${IMAGE_BLOCK_SIZE}-byte block size`);
  }

  const maxImageSize = maxImageSizeForHashFooter(partitionSize);
  if (imageSize > maxImageSize) {
    throw new QwamosError('LIMIT_EXCEEDED', `image of ${imageSize} bytes does not fit partition '${partitionName}' of ${partitionSize} bytes: after ${FOOTER_METADATA_RESERVE} bytes for vbmeta and footer the limit is ${maxImageSize} bytes; use a larger --partition_size or --dynamic_partition_size`);
  }
}
