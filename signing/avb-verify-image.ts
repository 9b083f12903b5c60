/**
 * Verification of an image file as `avbtool verify_image` does it, with
 * libavb's rules for the vbmeta itself (see verifyVbmeta): the footer, the
 * contents of every hash and hashtree descriptor, and chain partitions.
 *
 * A descriptor's partition image is found as avbtool finds it: the image
 * itself when the descriptor's partition name is empty, otherwise the file
 * NAME.EXT beside the image, where EXT is the image's extension. The
 * `partitionImages` option overrides that per partition name.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { computeHashTree, type VerityHashAlgorithm } from '../images/verity.js';
import { roundUp, type AvbChainPartitionDescriptor, type AvbHashDescriptor, type AvbHashtreeDescriptor } from './avb-descriptors.js';
import { avbVerifyError } from './avb-errors.js';
import { FOOTER_SIZE, IMAGE_BLOCK_SIZE, hashFile, parseFooter, readImageVbmeta, readRange, type AvbFooter } from './avb-footer.js';
import { HASH_FOOTER_ALGORITHMS } from './avb-hash-footer.js';
import { HASHTREE_ALGORITHMS } from './avb-hashtree-footer.js';
import { verifyVbmeta, type RollbackIndexStore, type VerifiedVbmeta } from './avb-verify.js';

export interface ExpectedChainPartition {
  rollbackIndexLocation: number;
  /** AVB public key blob the chain descriptor must carry. */
  publicKey: Uint8Array;
}

export interface VerifyImageOptions {
  /** Public key blob the top-level vbmeta must be signed with; default: accept the embedded key. */
  expectedPublicKey?: Uint8Array;
  rollbackIndexes?: RollbackIndexStore;
  /** Accepts algorithm NONE (avbtool does; libavb does not). */
  allowUnsigned?: boolean;
  /** Partition image paths by partition name, overriding NAME.EXT beside the image. */
  partitionImages?: Readonly<Record<string, string>>;
  /** Chain descriptors must match these (avbtool --expected_chain_partition). */
  expectedChainPartitions?: Readonly<Record<string, ExpectedChainPartition>>;
  /** Verifies chained partition images too (avbtool --follow_chain_partitions). */
  followChainPartitions?: boolean;
  /** Skips the on-disk tree comparison when the tree is empty or starts with "ZeRoHaSH". */
  acceptZeroedHashtree?: boolean;
  /** Receives one progress line per verified item, worded as avbtool's. */
  onMessage?: (line: string) => void;
}

export interface VerifiedDescriptor {
  kind: 'hash' | 'hashtree' | 'chain_partition';
  partitionName: string;
  /** Partition image whose contents were checked. */
  image?: string;
  /** Outcome: contents verified, or the reason they were not checked. */
  result: 'verified' | 'persistent_digest' | 'zeroed_hashtree' | 'chain_matches' | 'chain_followed';
}

export interface VerifyImageReport {
  image: string;
  footer?: AvbFooter;
  verified: VerifiedVbmeta;
  descriptors: VerifiedDescriptor[];
  /** Reports of chained partitions that were followed. */
  chained: VerifyImageReport[];
}

/** Verifies an image with a footer, or a vbmeta image, and what its descriptors cover. */
export async function verifyImage(imagePath: string, options: VerifyImageOptions = {}): Promise<VerifyImageReport> {
  return verifyImageFile(imagePath, options, undefined);
}

async function verifyImageFile(imagePath: string, options: VerifyImageOptions, chain: AvbChainPartitionDescriptor | undefined): Promise<VerifyImageReport> {
  const emit = options.onMessage ?? (() => undefined);
  const image = await readImageVbmeta(imagePath);
  const verified = verifyVbmeta(image.vbmeta, {
    expectedPublicKey: chain ? chain.publicKey : options.expectedPublicKey,
    rollbackIndexes: options.rollbackIndexes,
    chained: chain ? { rollbackIndexLocation: chain.rollbackIndexLocation } : undefined,
    allowUnsigned: options.allowUnsigned,
    name: imagePath,
  });
  emit(`vbmeta: Successfully verified ${image.footer ? 'footer and ' : ''}${verified.algorithm.name} vbmeta struct in ${imagePath}`);

  const report: VerifyImageReport = { image: imagePath, footer: image.footer, verified, descriptors: [], chained: [] };
  for (const descriptor of image.vbmeta.descriptors) {
    if (descriptor.kind === 'hash') {
      report.descriptors.push(await verifyHashDescriptor(descriptor, imagePath, options));
    } else if (descriptor.kind === 'hashtree') {
      report.descriptors.push(await verifyHashtreeDescriptor(descriptor, imagePath, options));
    } else if (descriptor.kind === 'chain_partition') {
      report.descriptors.push(checkChainDescriptor(descriptor, options));
      if (options.followChainPartitions) {
        emit('--');
        report.chained.push(await verifyImageFile(partitionImagePath(descriptor.partitionName, imagePath, options), options, descriptor));
      }
    }
  }
  return report;
}

/** Returns the file holding a descriptor's partition, by avbtool's rule or the override map. */
export function partitionImagePath(partitionName: string, imagePath: string, options: Pick<VerifyImageOptions, 'partitionImages'>): string {
  if (partitionName === '') return imagePath;
  const override = options.partitionImages?.[partitionName];
  if (override !== undefined) return override;
  return path.join(path.dirname(imagePath), `${partitionName}${path.extname(imagePath)}`);
}

// ---------------------------------------------------------------- hash descriptors

async function verifyHashDescriptor(descriptor: AvbHashDescriptor, imagePath: string, options: VerifyImageOptions): Promise<VerifiedDescriptor> {
  const partition = descriptor.partitionName;
  const algorithm = descriptor.hashAlgorithm;
  if (!(HASH_FOOTER_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw avbVerifyError('descriptor', `hash descriptor of '${partition}' uses hash algorithm '${algorithm}'; libavb verifies sha256 and sha512`, { partition });
  }
  const digestSize = createHash(algorithm).digest().length;
  if (descriptor.digest.length !== 0 && descriptor.digest.length !== digestSize) {
    throw avbVerifyError('descriptor', `hash descriptor of '${partition}' has a ${descriptor.digest.length}-byte digest; ${algorithm} digests are ${digestSize} bytes`, { partition });
  }

  const target = partitionImagePath(partition, imagePath, options);
  const { fileSize, footer } = await inspectPartitionImage(target, partition);
  if (footer && footer.originalImageSize !== descriptor.imageSize) {
    throw avbVerifyError('footer', `footer of ${target} records an original image size of ${footer.originalImageSize} bytes but the hash descriptor of '${partition}' covers ${descriptor.imageSize} bytes`, { partition, image: target });
  }
  if (fileSize < descriptor.imageSize) {
    throw avbVerifyError('image_digest', `${target} has ${fileSize} bytes, fewer than the ${descriptor.imageSize} bytes the hash descriptor of '${partition}' covers`, { partition, image: target });
  }

  if (descriptor.digest.length === 0) {
    options.onMessage?.(`${partition}: no digest in descriptor (persistent digest); contents of ${target} not checked`);
    return { kind: 'hash', partitionName: partition, image: target, result: 'persistent_digest' };
  }

  const digest = await hashFile(target, algorithm, descriptor.imageSize, descriptor.salt);
  if (!digest.equals(descriptor.digest)) {
    throw avbVerifyError('image_digest', `${algorithm} digest of ${target} does not match the hash descriptor of '${partition}'; the partition data was changed after signing`, { partition, image: target });
  }
  options.onMessage?.(`${partition}: Successfully verified ${algorithm} hash of ${target} for image of ${descriptor.imageSize} bytes`);
  return { kind: 'hash', partitionName: partition, image: target, result: 'verified' };
}

// ---------------------------------------------------------------- hashtree descriptors

async function verifyHashtreeDescriptor(descriptor: AvbHashtreeDescriptor, imagePath: string, options: VerifyImageOptions): Promise<VerifiedDescriptor> {
  const partition = descriptor.partitionName;
  checkHashtreeParameters(descriptor);

  const target = partitionImagePath(partition, imagePath, options);
  const { fileSize, footer } = await inspectPartitionImage(target, partition);
  if (footer) checkHashtreeAgainstFooter(descriptor, footer, target);
  if (fileSize < descriptor.treeOffset + descriptor.treeSize || fileSize < descriptor.imageSize) {
    throw avbVerifyError('hashtree', `${target} has ${fileSize} bytes, too few for the data and tree the hashtree descriptor of '${partition}' describes`, { partition, image: target });
  }

  const computed = await computeHashTree(
    { path: target, length: descriptor.imageSize },
    { hashAlgorithm: descriptor.hashAlgorithm as VerityHashAlgorithm, dataBlockSize: descriptor.dataBlockSize, hashBlockSize: descriptor.hashBlockSize, salt: descriptor.salt },
  );
  if (descriptor.rootDigest.length > 0 && !computed.rootDigest.equals(descriptor.rootDigest)) {
    throw avbVerifyError('hashtree', `hashtree root digest of ${target} does not match the descriptor of '${partition}'; the partition data was changed after signing`, { partition, image: target });
  }

  const stored = await readFileRange(target, descriptor.treeOffset, descriptor.treeSize);
  const zeroed = descriptor.treeSize === 0 ? computed.tree.length > 0 : stored.subarray(0, 8).toString('latin1') === 'ZeRoHaSH';
  if (zeroed && options.acceptZeroedHashtree) {
    options.onMessage?.(`${partition}: skipping verification since hashtree is zeroed and --accept_zeroed_hashtree was given`);
    return { kind: 'hashtree', partitionName: partition, image: target, result: 'zeroed_hashtree' };
  }
  if (!stored.equals(computed.tree)) {
    throw avbVerifyError('hashtree', `hashtree of ${target} contains invalid data: the ${descriptor.treeSize} bytes at offset ${descriptor.treeOffset} differ from the tree of the data (${computed.tree.length} bytes)`, { partition, image: target });
  }

  options.onMessage?.(`${partition}: Successfully verified ${descriptor.hashAlgorithm} hashtree of ${target} for image of ${descriptor.imageSize} bytes`);
  return { kind: 'hashtree', partitionName: partition, image: target, result: 'verified' };
}

function checkHashtreeParameters(descriptor: AvbHashtreeDescriptor): void {
  const partition = descriptor.partitionName;
  const fail = (problem: string): never => {
    throw avbVerifyError('descriptor', `hashtree descriptor of '${partition}' ${problem}`, { partition });
  };

  if (!(HASHTREE_ALGORITHMS as readonly string[]).includes(descriptor.hashAlgorithm)) fail(`uses hash algorithm '${descriptor.hashAlgorithm}'; supported are sha1, sha256 and sha512`);
  const digestSize = createHash(descriptor.hashAlgorithm).digest().length;
  if (descriptor.rootDigest.length !== 0 && descriptor.rootDigest.length !== digestSize) fail(`has a ${descriptor.rootDigest.length}-byte root digest; ${descriptor.hashAlgorithm} digests are ${digestSize} bytes`);
  if (descriptor.dmVerityVersion !== 1) fail(`has dm-verity version ${descriptor.dmVerityVersion}; only version 1 exists`);

  const blockSize = descriptor.dataBlockSize;
  if (blockSize === 0 || descriptor.imageSize === 0 || descriptor.imageSize % blockSize !== 0) {
    fail(`covers ${descriptor.imageSize} bytes, not a whole non-zero number of ${blockSize}-byte data blocks`);
  }
}

/** avbtool pads the data to the block size and to 4096 and puts the tree (and FEC) before the vbmeta. */
function checkHashtreeAgainstFooter(descriptor: AvbHashtreeDescriptor, footer: AvbFooter, target: string): void {
  const partition = descriptor.partitionName;
  const expectedSize = roundUp(roundUp(footer.originalImageSize, descriptor.dataBlockSize), IMAGE_BLOCK_SIZE);
  if (descriptor.imageSize !== expectedSize) {
    throw avbVerifyError('footer', `footer of ${target} records an original image size of ${footer.originalImageSize} bytes, which pads to ${expectedSize}, but the hashtree descriptor of '${partition}' covers ${descriptor.imageSize} bytes`, { partition, image: target });
  }

  const treeEnd = descriptor.treeOffset + descriptor.treeSize;
  const fecEnd = descriptor.fecSize > 0 ? descriptor.fecOffset + descriptor.fecSize : 0;
  if (descriptor.treeOffset < descriptor.imageSize || Math.max(treeEnd, fecEnd) > footer.vbmetaOffset) {
    throw avbVerifyError('footer', `hashtree of '${partition}' at offset ${descriptor.treeOffset} (${descriptor.treeSize} bytes) is not between the data end ${descriptor.imageSize} and the vbmeta at ${footer.vbmetaOffset} in ${target}`, { partition, image: target });
  }
}

// ---------------------------------------------------------------- chain descriptors

function checkChainDescriptor(descriptor: AvbChainPartitionDescriptor, options: VerifyImageOptions): VerifiedDescriptor {
  const partition = descriptor.partitionName;
  const expected = options.expectedChainPartitions?.[partition];

  if (!expected) {
    if (!options.followChainPartitions) {
      throw avbVerifyError('chain_partition', `no expected chain partition for partition '${partition}'; pass --expected_chain_partition ${partition}:LOCATION:KEY.avbpubkey or --follow_chain_partitions`, { partition });
    }
    const keyDigest = createHash('sha1').update(descriptor.publicKey).digest('hex');
    options.onMessage?.(`${partition}: Chained but ROLLBACK_SLOT (which is ${descriptor.rollbackIndexLocation}) and KEY (which has sha1 ${keyDigest}) not specified`);
    return { kind: 'chain_partition', partitionName: partition, result: 'chain_followed' };
  }

  if (expected.rollbackIndexLocation !== descriptor.rollbackIndexLocation) {
    throw avbVerifyError('chain_partition', `chain partition '${partition}' has rollback index location ${descriptor.rollbackIndexLocation}, expected ${expected.rollbackIndexLocation}`, { partition });
  }
  if (!Buffer.from(expected.publicKey).equals(descriptor.publicKey)) {
    throw avbVerifyError('chain_partition', `chain partition '${partition}' pins a different public key than the expected one`, { partition });
  }
  options.onMessage?.(`${partition}: Successfully verified chain partition descriptor matches expected data`);
  return { kind: 'chain_partition', partitionName: partition, result: 'chain_matches' };
}

// ---------------------------------------------------------------- file helpers

async function inspectPartitionImage(target: string, partition: string): Promise<{ fileSize: number; footer?: AvbFooter }> {
  const handle = await open(target, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new QwamosError('INPUT_NOT_FOUND', `cannot open the image of partition '${partition}' at ${target}: ${error.message}; put it beside the verified image as ${path.basename(target)}`, { cause: error });
  });
  try {
    const { size } = await handle.stat();
    const footer = size >= FOOTER_SIZE ? parseFooter(await readRange(handle, size - FOOTER_SIZE, FOOTER_SIZE)) : undefined;
    return { fileSize: size, footer };
  } finally {
    await handle.close();
  }
}

async function readFileRange(filePath: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(filePath, 'r');
  try {
    return await readRange(handle, offset, length);
  } finally {
    await handle.close();
  }
}
