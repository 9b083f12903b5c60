/**
 * `add_hashtree_footer`: a dm-verity (format 1) hash tree appended to the
 * image, a hashtree descriptor for it, the signed vbmeta blob and the
 * footer, with avbtool's partition-size rules. Forward error correction
 * (FEC) is not implemented; a request for it is rejected.
 */
import { open, rm } from 'node:fs/promises';
import { produceAtomic, temporaryPathFor, writeFileAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { computeHashTree, hashTreeLayout, validateHashTreeParams, type HashTree, type VerityHashAlgorithm } from '../images/verity.js';
import {
  HASHTREE_DESCRIPTOR_FLAG_CHECK_AT_MOST_ONCE,
  HASHTREE_DESCRIPTOR_FLAG_DO_NOT_USE_AB,
  roundUp,
  type AvbHashtreeDescriptor,
} from './avb-descriptors.js';
import {
  FOOTER_METADATA_RESERVE,
  IMAGE_BLOCK_SIZE,
  copyImageData,
  deriveSalt,
  hashFile,
  inspectSourceImage,
  writeVbmetaAndFooter,
  type SourceImage,
} from './avb-footer.js';
import type { AddFooterResult } from './avb-hash-footer.js';
import { buildVbmeta, requiredLibavbMinor, type VbmetaOptions } from './avb-vbmeta.js';

export const HASHTREE_ALGORITHMS: readonly VerityHashAlgorithm[] = ['sha1', 'sha256', 'sha512'];
const DM_VERITY_VERSION = 1;

export interface AddHashtreeFooterOptions extends Omit<VbmetaOptions, 'descriptors'> {
  partitionName: string;
  /** Partition size in bytes, a multiple of 4096; 0 or undefined puts the footer right after the vbmeta. */
  partitionSize?: number;
  /** dm-verity hash algorithm; default sha256 (avbtool's CLI defaults to sha1). */
  hashAlgorithm?: VerityHashAlgorithm;
  /** Data and hash block size in bytes; default 4096. */
  blockSize?: number;
  /** Salt; an empty array means no salt. Default: derived from partition name and image digest. */
  salt?: Uint8Array;
  /** FEC is not implemented: true is rejected. */
  generateFec?: boolean;
  /** Computes the root digest but stores no tree (descriptor tree size 0), as avbtool --no_hashtree. */
  noHashtree?: boolean;
  /** Leaves the root digest out; the device keeps it as a persistent value. */
  usePersistentRootDigest?: boolean;
  doNotUseAb?: boolean;
  /** dm-verity verifies each block only the first time it is read. */
  checkAtMostOnce?: boolean;
  /** Adds the dm-verity kernel command lines for this hashtree (avbtool --setup_as_rootfs_from_kernel). */
  setupAsRootfsFromKernel?: boolean;
  output?: string;
  outputVbmetaImage?: string;
  doNotAppendVbmetaImage?: boolean;
}

export interface AddHashtreeFooterResult extends AddFooterResult {
  descriptor: AvbHashtreeDescriptor;
}

/**
 * Largest image avbtool fits into a partition with a hashtree footer:
 * partition size minus the tree a full partition would need, minus 64 KiB
 * of vbmeta and the 4 KiB footer block. 0 when no partition size is given.
 */
export function maxImageSizeForHashtreeFooter(partitionSize: number, hashAlgorithm: VerityHashAlgorithm = 'sha256', blockSize = IMAGE_BLOCK_SIZE): number {
  if (partitionSize <= 0) return 0;
  return partitionSize - maxTreeSize(partitionSize, hashAlgorithm, blockSize) - FOOTER_METADATA_RESERVE;
}

function maxTreeSize(partitionSize: number, hashAlgorithm: VerityHashAlgorithm, blockSize: number): number {
  const blocks = Math.ceil(partitionSize / blockSize);
  return hashTreeLayout(blocks, { hashAlgorithm, dataBlockSize: blockSize, hashBlockSize: blockSize }).treeSize;
}

/** Adds a hashtree footer to `imagePath`, as `avbtool add_hashtree_footer --do_not_generate_fec`. */
export async function addHashtreeFooter(imagePath: string, options: AddHashtreeFooterOptions): Promise<AddHashtreeFooterResult> {
  const hashAlgorithm = options.hashAlgorithm ?? 'sha256';
  const blockSize = options.blockSize ?? IMAGE_BLOCK_SIZE;
  const partitionSize = options.partitionSize ?? 0;
  checkOptions(options, hashAlgorithm, blockSize);

  const source = await inspectSourceImage(imagePath);
  checkPartitionSize(options.partitionName, partitionSize, source);

  // Data is zero-padded to the dm-verity block size and to avbtool's 4096-byte image block.
  const dataSize = roundUp(roundUp(source.originalSize, blockSize), IMAGE_BLOCK_SIZE);
  const maxImageSize = maxImageSizeForHashtreeFooter(partitionSize, hashAlgorithm, blockSize);
  if (partitionSize > 0 && dataSize > maxImageSize) {
    throw new QwamosError('LIMIT_EXCEEDED', `image of ${dataSize} bytes (padded to ${blockSize}-byte blocks) does not fit partition '${options.partitionName}' of ${partitionSize} bytes: after room for the hash tree, vbmeta and footer the limit is ${maxImageSize} bytes; use a larger --partition_size`);
  }

  const salt = options.salt ?? (options.usePersistentRootDigest
    ? Buffer.alloc(0)
    : deriveSalt(hashAlgorithm, options.partitionName, await hashFile(imagePath, 'sha256', source.originalSize)));

  const signing: SigningInputs = { options, source, hashAlgorithm, blockSize, salt, dataSize };
  if (options.doNotAppendVbmetaImage) {
    // The tree needs the zero-padded data, so stage it beside the image and leave the image unchanged.
    const stagingPath = temporaryPathFor(imagePath);
    try {
      const signed = await stageAndSign(stagingPath, signing);
      if (options.outputVbmetaImage) await writeFileAtomic(options.outputVbmetaImage, signed.vbmeta);
      return { vbmeta: signed.vbmeta, descriptor: signed.descriptor, partitionSize, maxImageSize };
    } finally {
      await rm(stagingPath, { force: true });
    }
  }

  return produceAtomic(options.output ?? imagePath, async (temporaryPath) => {
    const signed = await stageAndSign(temporaryPath, signing);
    if (options.outputVbmetaImage) await writeFileAtomic(options.outputVbmetaImage, signed.vbmeta);

    await writeAt(temporaryPath, signed.storedTree, dataSize);
    const footer = await writeVbmetaAndFooter(temporaryPath, {
      vbmetaOffset: dataSize + roundUp(signed.storedTree.length, IMAGE_BLOCK_SIZE),
      vbmeta: signed.vbmeta,
      originalImageSize: source.originalSize,
      partitionSize: partitionSize > 0 ? partitionSize : undefined,
      partitionName: options.partitionName,
    });
    return { vbmeta: signed.vbmeta, descriptor: signed.descriptor, partitionSize, maxImageSize, footer };
  });
}

interface SigningInputs {
  options: AddHashtreeFooterOptions;
  source: SourceImage;
  hashAlgorithm: VerityHashAlgorithm;
  blockSize: number;
  salt: Uint8Array;
  dataSize: number;
}

interface SignedHashtree {
  vbmeta: Buffer;
  descriptor: AvbHashtreeDescriptor;
  /** The tree as written to the image: empty with noHashtree. */
  storedTree: Buffer;
}

/** Copies the padded data to `stagingPath`, computes its tree and builds the signed vbmeta. */
async function stageAndSign(stagingPath: string, inputs: SigningInputs): Promise<SignedHashtree> {
  const { options, hashAlgorithm, blockSize, salt, dataSize } = inputs;
  await copyImageData(inputs.source, stagingPath, dataSize);
  const tree = await computeHashTree({ path: stagingPath, length: dataSize }, { hashAlgorithm, dataBlockSize: blockSize, hashBlockSize: blockSize, salt });
  const storedTree = options.noHashtree ? Buffer.alloc(0) : tree.tree;

  const descriptor = hashtreeDescriptor(options, { hashAlgorithm, blockSize, salt, dataSize, tree, storedTree });
  const vbmeta = buildVbmeta({
    ...options,
    descriptors: [descriptor],
    rootfsHashtrees: [...(options.rootfsHashtrees ?? []), ...(options.setupAsRootfsFromKernel ? [descriptor] : [])],
    requiredLibavbMinor: requiredLibavbMinor({ ...options, requiredLibavbMinor: footerMinorVersion(options) }),
  });
  return { vbmeta, descriptor, storedTree };
}

interface TreeFacts {
  hashAlgorithm: VerityHashAlgorithm;
  blockSize: number;
  salt: Uint8Array;
  dataSize: number;
  tree: HashTree;
  storedTree: Buffer;
}

function hashtreeDescriptor(options: AddHashtreeFooterOptions, facts: TreeFacts): AvbHashtreeDescriptor {
  let flags = 0;
  if (options.doNotUseAb) flags |= HASHTREE_DESCRIPTOR_FLAG_DO_NOT_USE_AB;
  if (options.checkAtMostOnce) flags |= HASHTREE_DESCRIPTOR_FLAG_CHECK_AT_MOST_ONCE;

  return {
    kind: 'hashtree',
    dmVerityVersion: DM_VERITY_VERSION,
    imageSize: facts.dataSize,
    treeOffset: facts.dataSize,
    treeSize: facts.storedTree.length,
    dataBlockSize: facts.blockSize,
    hashBlockSize: facts.blockSize,
    fecNumRoots: 0,
    fecOffset: 0,
    fecSize: 0,
    hashAlgorithm: facts.hashAlgorithm,
    partitionName: options.partitionName,
    salt: facts.salt,
    rootDigest: options.usePersistentRootDigest ? Buffer.alloc(0) : facts.tree.rootDigest,
    flags,
  };
}

/** libavb 1.1 added persistent root digests, the do-not-use-A/B flag and check_at_most_once. */
function footerMinorVersion(options: AddHashtreeFooterOptions): number {
  return options.usePersistentRootDigest || options.doNotUseAb || options.checkAtMostOnce ? 1 : 0;
}

function checkOptions(options: AddHashtreeFooterOptions, hashAlgorithm: string, blockSize: number): void {
  if (options.generateFec) {
    throw new QwamosError('USAGE', `FEC generation for partition '${options.partitionName}' is not implemented yet; pass --do_not_generate_fec (dm-verity works without FEC, it only cannot repair corrupted blocks)`);
  }
  if (!(HASHTREE_ALGORITHMS as readonly string[]).includes(hashAlgorithm)) {
    throw new QwamosError('INPUT_INVALID', `hash algorithm '${hashAlgorithm}' is not supported for hashtree footers; use sha1, sha256 or sha512`);
  }
  validateHashTreeParams({ hashAlgorithm: hashAlgorithm as VerityHashAlgorithm, dataBlockSize: blockSize, hashBlockSize: blockSize, salt: options.salt ?? new Uint8Array(0) });
}

function checkPartitionSize(partitionName: string, partitionSize: number, source: SourceImage): void {
  if (!Number.isSafeInteger(partitionSize) || partitionSize < 0) {
    throw new QwamosError('INPUT_INVALID', `partition '${partitionName}' size ${partitionSize} is invalid; give a size in bytes`);
  }
  if (partitionSize > 0 && partitionSize % IMAGE_BLOCK_SIZE !== 0) {
    throw new QwamosError('INPUT_INVALID', `partition '${partitionName}' size ${partitionSize} bytes is not a multiple of the ${IMAGE_BLOCK_SIZE}-byte block size`);
  }
  if (partitionSize === 0 && source.fileSize % IMAGE_BLOCK_SIZE !== 0) {
    throw new QwamosError('INPUT_INVALID', `${source.path} is ${source.fileSize} bytes, not a multiple of ${IMAGE_BLOCK_SIZE}; without --partition_size avbtool requires a block-aligned image, so pad it or give --partition_size`);
  }
}

async function writeAt(filePath: string, bytes: Buffer, offset: number): Promise<void> {
  if (bytes.length === 0) return;
  const handle = await open(filePath, 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, offset);
  } finally {
    await handle.close();
  }
}
