/**
 * AVB 2.0 vbmeta images: building them byte for byte as avbtool 1.3 does,
 * and parsing them with the structural checks of libavb's
 * avb_vbmeta_image_verify.
 *
 * Layout: 256-byte header, authentication block (hash, then signature,
 * zero-padded to a multiple of 64), auxiliary block (descriptors, public
 * key, public key metadata, zero-padded to a multiple of 64). Header
 * fields, all integers big-endian:
 *
 *   0   magic "AVB0"              4   u32 required libavb major (1)
 *   8   u32 required minor        12  u64 authentication block size
 *   20  u64 auxiliary block size  28  u32 algorithm type
 *   32  u64 hash offset           40  u64 hash size
 *   48  u64 signature offset      56  u64 signature size
 *   64  u64 public key offset     72  u64 public key size
 *   80  u64 key metadata offset   88  u64 key metadata size
 *   96  u64 descriptors offset    104 u64 descriptors size
 *   112 u64 rollback index        120 u32 flags
 *   124 u32 rollback index location
 *   128 release string, 48 bytes, NUL-terminated
 *   176 80 reserved zero bytes
 *
 * Hash and signature offsets count from the start of the authentication
 * block. Key, metadata and descriptor offsets count from the auxiliary block.
 * The signed data is header || auxiliary block.
 */
import { createHash } from 'node:crypto';
import { writeFileAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import {
  CHAIN_PARTITION_FLAG_DO_NOT_USE_AB,
  dmVerityCmdlineDescriptors,
  encodeDescriptor,
  parseDescriptors,
  roundUp,
  type AvbChainPartitionDescriptor,
  type AvbDescriptor,
  type AvbHashtreeDescriptor,
} from './avb-descriptors.js';
import { avbVerifyError } from './avb-errors.js';
import { avbAlgorithmForType, encodeAvbPublicKey, findAvbAlgorithm, signAvb, type AvbAlgorithm, type AvbAlgorithmName, type AvbRsaKey } from './avb-key.js';

export const VBMETA_MAGIC = 'AVB0';
export const VBMETA_HEADER_SIZE = 256;
const RELEASE_STRING_OFFSET = 128;
const RELEASE_STRING_SIZE = 48;
const BLOCK_ALIGNMENT = 64;

/** libavb major version this code implements. */
export const LIBAVB_VERSION_MAJOR = 1;
/** Highest required minor version accepted: libavb 1.3 (1.4 adds ML-DSA, not implemented here). */
export const LIBAVB_VERSION_MINOR = 3;
/**
 * Release string avbtool 1.3.0 writes when --internal_release_string is not
 * given. It is the default here too so that outputs match avbtool byte for byte.
 */
export const AVBTOOL_RELEASE_STRING = 'avbtool 1.3.0';

/** Header flag: dm-verity is disabled (hashtree descriptors are not applied). */
export const VBMETA_FLAG_HASHTREE_DISABLED = 1;
/** Header flag: the bootloader skips descriptor verification. */
export const VBMETA_FLAG_VERIFICATION_DISABLED = 2;
/** libavb stores 32 rollback indexes: locations 0 to 31. */
export const MAX_ROLLBACK_INDEX_LOCATIONS = 32;
/** libavb reads at most 64 KiB of vbmeta from a partition. */
export const MAX_VBMETA_SIZE = 64 * 1024;

const MAX_U64 = (1n << 64n) - 1n;
const MAX_U32 = 0xffff_ffff;

export interface AvbVbmetaHeader {
  requiredLibavbVersionMajor: number;
  requiredLibavbVersionMinor: number;
  authenticationBlockSize: number;
  auxiliaryBlockSize: number;
  algorithmType: number;
  hashOffset: number;
  hashSize: number;
  signatureOffset: number;
  signatureSize: number;
  publicKeyOffset: number;
  publicKeySize: number;
  publicKeyMetadataOffset: number;
  publicKeyMetadataSize: number;
  descriptorsOffset: number;
  descriptorsSize: number;
  rollbackIndex: bigint;
  flags: number;
  rollbackIndexLocation: number;
  releaseString: string;
}

/** One --chain_partition: the partition's vbmeta must be signed with `publicKey`. */
export interface ChainPartitionSpec {
  partitionName: string;
  rollbackIndexLocation: number;
  /** AVB public key blob, as written by extract_public_key. */
  publicKey: Uint8Array;
  /** Sets the chain descriptor's do-not-use-A/B flag (avbtool --chain_partition_do_not_use_ab). */
  doNotUseAb?: boolean;
}

export interface VbmetaOptions {
  /** avbtool algorithm name; default NONE (unsigned). */
  algorithm?: AvbAlgorithmName | string;
  /** Signing key; required unless the algorithm is NONE. */
  key?: AvbRsaKey;
  rollbackIndex?: bigint | number;
  rollbackIndexLocation?: number;
  /** Header flags: VBMETA_FLAG_HASHTREE_DISABLED, VBMETA_FLAG_VERIFICATION_DISABLED. */
  flags?: number;
  /** Replaces the default release string (avbtool --internal_release_string). */
  releaseString?: string;
  /** Appended after a space (avbtool --append_to_release_string). */
  appendToReleaseString?: string;
  /** Descriptors written first, in order, such as the hash descriptor of a footer. */
  descriptors?: AvbDescriptor[];
  /**
   * Chain descriptors, written after `descriptors` in the order given.
   * avbtool sorts its --chain_partition arguments as strings first; the
   * CLI does the same before calling this.
   */
  chainPartitions?: ChainPartitionSpec[];
  properties?: { key: string; value: Uint8Array | string }[];
  /** Hashtrees to add dm-verity kernel command lines for (--setup_rootfs_from_kernel). */
  rootfsHashtrees?: AvbHashtreeDescriptor[];
  kernelCmdlines?: string[];
  /** Parsed vbmeta images whose descriptors are copied in (--include_descriptors_from_image). */
  includeDescriptorsFrom?: ParsedVbmeta[];
  publicKeyMetadata?: Uint8Array;
  /** Lowest required libavb minor version; features used may raise it. */
  requiredLibavbMinor?: number;
}

/**
 * Builds a signed vbmeta blob exactly as avbtool's _generate_vbmeta_blob:
 * descriptors in avbtool's order, then the public key, auth block with
 * digest and PKCS#1 v1.5 signature. Deterministic for the same inputs.
 */
export function buildVbmeta(options: VbmetaOptions): Buffer {
  const algorithm = findAvbAlgorithm(options.algorithm ?? 'NONE');
  const rollbackIndex = checkRollbackIndex(options.rollbackIndex ?? 0);
  const rollbackIndexLocation = checkRollbackIndexLocation(options.rollbackIndexLocation ?? 0, 'rollback index location');
  const flags = checkU32(options.flags ?? 0, 'flags');
  const releaseString = checkReleaseString(options);

  const descriptors = Buffer.concat(collectDescriptors(options, rollbackIndexLocation).map(encodeDescriptor));
  const publicKey = encodeSigningKey(algorithm, options.key);
  const publicKeyMetadata = Buffer.from(options.publicKeyMetadata ?? Buffer.alloc(0));

  const auxiliaryBlock = padTo(Buffer.concat([descriptors, publicKey, publicKeyMetadata]), BLOCK_ALIGNMENT);
  const authenticationBlockSize = roundUp(algorithm.hashBytes + algorithm.signatureBytes, BLOCK_ALIGNMENT);

  const header = encodeHeader({
    requiredLibavbVersionMajor: LIBAVB_VERSION_MAJOR,
    requiredLibavbVersionMinor: requiredLibavbMinor(options),
    authenticationBlockSize,
    auxiliaryBlockSize: auxiliaryBlock.length,
    algorithmType: algorithm.type,
    hashOffset: 0,
    hashSize: algorithm.hashBytes,
    signatureOffset: algorithm.hashBytes,
    signatureSize: algorithm.signatureBytes,
    publicKeyOffset: descriptors.length,
    publicKeySize: publicKey.length,
    publicKeyMetadataOffset: descriptors.length + publicKey.length,
    publicKeyMetadataSize: publicKeyMetadata.length,
    descriptorsOffset: 0,
    descriptorsSize: descriptors.length,
    rollbackIndex,
    flags,
    rollbackIndexLocation,
    releaseString,
  });

  const authenticationBlock = Buffer.alloc(authenticationBlockSize);
  if (algorithm.hashName && options.key) {
    const signedData = Buffer.concat([header, auxiliaryBlock]);
    createHash(algorithm.hashName).update(signedData).digest().copy(authenticationBlock, 0);
    signAvb(algorithm, options.key, signedData).copy(authenticationBlock, algorithm.hashBytes);
  }

  const vbmeta = Buffer.concat([header, authenticationBlock, auxiliaryBlock]);
  if (vbmeta.length > MAX_VBMETA_SIZE) {
    throw new QwamosError('LIMIT_EXCEEDED', `the vbmeta image would be ${vbmeta.length} bytes; libavb reads at most ${MAX_VBMETA_SIZE}, so move descriptors into chained partitions or drop properties`);
  }
  return vbmeta;
}

export interface MakeVbmetaImageOptions extends VbmetaOptions {
  /** Output file; written atomically. */
  output: string;
  /** Pads the file with zeros to a multiple of this size (avbtool --padding_size). */
  paddingSize?: number;
}

/** Builds a vbmeta image and writes it to `options.output`; returns the bytes written. */
export async function makeVbmetaImage(options: MakeVbmetaImageOptions): Promise<Buffer> {
  const vbmeta = buildVbmeta(options);
  const paddingSize = options.paddingSize ?? 0;
  if (!Number.isSafeInteger(paddingSize) || paddingSize < 0) {
    throw new QwamosError('INPUT_INVALID', `padding size ${paddingSize} is invalid; give 0 or a positive number of bytes`);
  }

  const image = paddingSize > 0 ? padTo(vbmeta, paddingSize) : vbmeta;
  await writeFileAtomic(options.output, image);
  return image;
}

/**
 * Returns the required libavb minor version avbtool's make_vbmeta_image
 * writes: 2 with a rollback index location above 0, 3 with a chained
 * partition that does not use A/B, and at least that of each included image.
 */
export function requiredLibavbMinor(options: VbmetaOptions): number {
  let minor = options.requiredLibavbMinor ?? 0;
  if ((options.rollbackIndexLocation ?? 0) > 0) minor = Math.max(minor, 2);
  if (options.chainPartitions?.some((chain) => chain.doNotUseAb)) minor = Math.max(minor, 3);
  for (const included of options.includeDescriptorsFrom ?? []) {
    minor = Math.max(minor, included.header.requiredLibavbVersionMinor);
  }
  return minor;
}

/**
 * Orders descriptors as avbtool: given descriptors, chain partitions,
 * properties, dm-verity command lines, kernel command lines, then included
 * descriptors. Included descriptors without a partition name keep their
 * order. Of those with one, only the last per kind and name is kept, and
 * they are sorted by avbtool's key: its Python class name, '_', the name.
 */
function collectDescriptors(options: VbmetaOptions, topLevelLocation: number): AvbDescriptor[] {
  const descriptors: AvbDescriptor[] = [...(options.descriptors ?? [])];
  descriptors.push(...chainDescriptors(options.chainPartitions ?? [], topLevelLocation));

  for (const property of options.properties ?? []) {
    const value = typeof property.value === 'string' ? Buffer.from(property.value, 'utf8') : property.value;
    descriptors.push({ kind: 'property', key: property.key, value });
  }
  for (const hashtree of options.rootfsHashtrees ?? []) descriptors.push(...dmVerityCmdlineDescriptors(hashtree));
  for (const kernelCmdline of options.kernelCmdlines ?? []) descriptors.push({ kind: 'kernel_cmdline', flags: 0, kernelCmdline });

  const byPartition = new Map<string, AvbDescriptor>();
  for (const included of options.includeDescriptorsFrom ?? []) {
    for (const descriptor of included.descriptors) {
      const key = includeKey(descriptor);
      if (key === undefined) descriptors.push(descriptor);
      else byPartition.set(key, descriptor);
    }
  }
  const sortedKeys = [...byPartition.keys()].sort(compareCodeUnits);
  for (const key of sortedKeys) descriptors.push(byPartition.get(key) as AvbDescriptor);

  return descriptors;
}

/** avbtool's de-duplication key for included descriptors that name a partition. */
function includeKey(descriptor: AvbDescriptor): string | undefined {
  switch (descriptor.kind) {
    case 'hash':
      return `AvbHashDescriptor_${descriptor.partitionName}`;
    case 'hashtree':
      return `AvbHashtreeDescriptor_${descriptor.partitionName}`;
    case 'chain_partition':
      return `AvbChainPartitionDescriptor_${descriptor.partitionName}`;
    default:
      return undefined;
  }
}

/** Creates chain descriptors, rejecting location 0 and locations already used (as avbtool does). */
function chainDescriptors(chains: ChainPartitionSpec[], topLevelLocation: number): AvbChainPartitionDescriptor[] {
  const usedLocations = new Map<number, string>([[topLevelLocation, 'this vbmeta image']]);

  return chains.map((chain) => {
    const location = chain.rollbackIndexLocation;
    if (!Number.isInteger(location) || location < 1) {
      throw new QwamosError('INPUT_INVALID', `chain partition '${chain.partitionName}' has rollback index location ${location}; chained partitions need location 1 or larger`);
    }
    checkRollbackIndexLocation(location, `rollback index location of chain partition '${chain.partitionName}'`);

    const user = usedLocations.get(location);
    if (user !== undefined) {
      throw new QwamosError('INPUT_INVALID', `rollback index location ${location} of chain partition '${chain.partitionName}' is already used by ${user}; give each chained partition its own location`);
    }
    usedLocations.set(location, `chain partition '${chain.partitionName}'`);

    return {
      kind: 'chain_partition',
      rollbackIndexLocation: location,
      partitionName: chain.partitionName,
      publicKey: chain.publicKey,
      flags: chain.doNotUseAb ? CHAIN_PARTITION_FLAG_DO_NOT_USE_AB : 0,
    };
  });
}

function encodeSigningKey(algorithm: AvbAlgorithm, key: AvbRsaKey | undefined): Buffer {
  if (algorithm.publicKeyBytes === 0) return Buffer.alloc(0);
  if (!key) throw new QwamosError('USAGE', `algorithm ${algorithm.name} needs a signing key; pass --key KEY.pem`);

  const encoded = encodeAvbPublicKey(key);
  if (encoded.length !== algorithm.publicKeyBytes) {
    throw new QwamosError('INPUT_INVALID', `the key is a ${key.keyBits}-bit RSA key but ${algorithm.name} needs ${algorithm.keyBits} bits; pass a matching --algorithm or --key`);
  }
  return encoded;
}

function checkReleaseString(options: VbmetaOptions): string {
  let releaseString = options.releaseString ?? AVBTOOL_RELEASE_STRING;
  if (options.appendToReleaseString !== undefined) releaseString += ` ${options.appendToReleaseString}`;

  const length = Buffer.byteLength(releaseString, 'utf8');
  if (length > RELEASE_STRING_SIZE - 1 || releaseString.includes('\0')) {
    throw new QwamosError('LIMIT_EXCEEDED', `release string '${releaseString}' is ${length} bytes; the header field fits at most ${RELEASE_STRING_SIZE - 1} bytes and no NUL characters, so shorten it`);
  }
  return releaseString;
}

function checkRollbackIndex(value: bigint | number): bigint {
  const index = BigInt(value);
  if (index < 0n || index > MAX_U64) {
    throw new QwamosError('INPUT_INVALID', `rollback index ${value} is out of range; it is an unsigned 64-bit number`);
  }
  return index;
}

function checkRollbackIndexLocation(location: number, what: string): number {
  if (!Number.isInteger(location) || location < 0 || location >= MAX_ROLLBACK_INDEX_LOCATIONS) {
    throw new QwamosError('LIMIT_EXCEEDED', `${what} ${location} is out of range; libavb has locations 0 to ${MAX_ROLLBACK_INDEX_LOCATIONS - 1}`);
  }
  return location;
}

function checkU32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw new QwamosError('INPUT_INVALID', `${what} ${value} is out of range; it is an unsigned 32-bit number`);
  }
  return value;
}

/** Orders strings by UTF-16 code units, as Python's sorted() orders them for BMP text. */
export function compareCodeUnits(a: string, b: string): number {
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}

function padTo(bytes: Buffer, multiple: number): Buffer {
  const padded = roundUp(bytes.length, multiple);
  return padded === bytes.length ? bytes : Buffer.concat([bytes, Buffer.alloc(padded - bytes.length)]);
}

// ---------------------------------------------------------------- header

export function encodeHeader(header: AvbVbmetaHeader): Buffer {
  const bytes = Buffer.alloc(VBMETA_HEADER_SIZE);
  bytes.write(VBMETA_MAGIC, 0, 'latin1');
  bytes.writeUInt32BE(header.requiredLibavbVersionMajor, 4);
  bytes.writeUInt32BE(header.requiredLibavbVersionMinor, 8);
  bytes.writeBigUInt64BE(BigInt(header.authenticationBlockSize), 12);
  bytes.writeBigUInt64BE(BigInt(header.auxiliaryBlockSize), 20);
  bytes.writeUInt32BE(header.algorithmType, 28);
  bytes.writeBigUInt64BE(BigInt(header.hashOffset), 32);
  bytes.writeBigUInt64BE(BigInt(header.hashSize), 40);
  bytes.writeBigUInt64BE(BigInt(header.signatureOffset), 48);
  bytes.writeBigUInt64BE(BigInt(header.signatureSize), 56);
  bytes.writeBigUInt64BE(BigInt(header.publicKeyOffset), 64);
  bytes.writeBigUInt64BE(BigInt(header.publicKeySize), 72);
  bytes.writeBigUInt64BE(BigInt(header.publicKeyMetadataOffset), 80);
  bytes.writeBigUInt64BE(BigInt(header.publicKeyMetadataSize), 88);
  bytes.writeBigUInt64BE(BigInt(header.descriptorsOffset), 96);
  bytes.writeBigUInt64BE(BigInt(header.descriptorsSize), 104);
  bytes.writeBigUInt64BE(header.rollbackIndex, 112);
  bytes.writeUInt32BE(header.flags, 120);
  bytes.writeUInt32BE(header.rollbackIndexLocation, 124);
  bytes.write(header.releaseString, RELEASE_STRING_OFFSET, RELEASE_STRING_SIZE - 1, 'utf8');
  return bytes;
}

// ---------------------------------------------------------------- parsing

export interface ParsedVbmeta {
  header: AvbVbmetaHeader;
  /** Undefined when the algorithm number is not one libavb implements. */
  algorithm?: AvbAlgorithm;
  descriptors: AvbDescriptor[];
  hash: Buffer;
  signature: Buffer;
  publicKey: Buffer;
  publicKeyMetadata: Buffer;
  /** The vbmeta blob itself: header, authentication and auxiliary block. */
  bytes: Buffer;
  /** The bytes the hash and signature cover: header || auxiliary block. */
  signedData: Buffer;
}

/**
 * Parses a vbmeta blob (trailing bytes are ignored) with the structural
 * checks of libavb's avb_vbmeta_image_verify, plus descriptor parsing.
 * Does not check hash, signature or rollback: see verifyVbmeta.
 * Throws VERIFY_FAILED with a named reason.
 */
export function parseVbmeta(data: Uint8Array): ParsedVbmeta {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length < VBMETA_HEADER_SIZE) {
    throw avbVerifyError('truncated', `vbmeta data has ${bytes.length} bytes, fewer than the ${VBMETA_HEADER_SIZE}-byte header`);
  }
  if (bytes.toString('latin1', 0, 4) !== VBMETA_MAGIC) {
    throw avbVerifyError('bad_magic', `vbmeta magic is ${JSON.stringify(bytes.toString('latin1', 0, 4))}, expected "AVB0"; this is not a vbmeta image`);
  }

  const major = bytes.readUInt32BE(4);
  const minor = bytes.readUInt32BE(8);
  if (major !== LIBAVB_VERSION_MAJOR || minor > LIBAVB_VERSION_MINOR) {
    throw avbVerifyError('version', `vbmeta requires libavb ${major}.${minor}; this verifier implements libavb ${LIBAVB_VERSION_MAJOR}.${LIBAVB_VERSION_MINOR}`);
  }
  if (bytes[RELEASE_STRING_OFFSET + RELEASE_STRING_SIZE - 1] !== 0) {
    throw avbVerifyError('release_string', 'vbmeta release string does not end with a NUL byte');
  }

  const authenticationBlockSize = bytes.readBigUInt64BE(12);
  const auxiliaryBlockSize = bytes.readBigUInt64BE(20);
  if (authenticationBlockSize % 64n !== 0n || auxiliaryBlockSize % 64n !== 0n) {
    throw avbVerifyError('block_size', `vbmeta block sizes ${authenticationBlockSize} and ${auxiliaryBlockSize} are not both multiples of 64`);
  }
  const total = BigInt(VBMETA_HEADER_SIZE) + authenticationBlockSize + auxiliaryBlockSize;
  if (total > BigInt(bytes.length)) {
    throw avbVerifyError('truncated', `vbmeta blocks add up to ${total} bytes but only ${bytes.length} are present`);
  }

  const header = readHeaderFields(bytes, Number(authenticationBlockSize), Number(auxiliaryBlockSize));
  return sliceBlocks(bytes, header);
}

function readHeaderFields(bytes: Buffer, authenticationBlockSize: number, auxiliaryBlockSize: number): AvbVbmetaHeader {
  const range = (offsetAt: number, sizeAt: number, blockSize: number, what: string, block: string): [number, number] => {
    const offset = bytes.readBigUInt64BE(offsetAt);
    const size = bytes.readBigUInt64BE(sizeAt);
    if (offset + size > BigInt(blockSize)) {
      throw avbVerifyError('range', `vbmeta ${what} (offset ${offset}, size ${size}) is not entirely inside the ${blockSize}-byte ${block} block`);
    }
    return [Number(offset), Number(size)];
  };

  const [hashOffset, hashSize] = range(32, 40, authenticationBlockSize, 'hash', 'authentication');
  const [signatureOffset, signatureSize] = range(48, 56, authenticationBlockSize, 'signature', 'authentication');
  const [publicKeyOffset, publicKeySize] = range(64, 72, auxiliaryBlockSize, 'public key', 'auxiliary');
  const metadataSize = bytes.readBigUInt64BE(88);
  const [publicKeyMetadataOffset, publicKeyMetadataSize] = metadataSize > 0n
    ? range(80, 88, auxiliaryBlockSize, 'public key metadata', 'auxiliary')
    : [Number(bytes.readBigUInt64BE(80)), 0];
  const [descriptorsOffset, descriptorsSize] = range(96, 104, auxiliaryBlockSize, 'descriptors', 'auxiliary');

  const releaseField = bytes.subarray(RELEASE_STRING_OFFSET, RELEASE_STRING_OFFSET + RELEASE_STRING_SIZE);
  return {
    requiredLibavbVersionMajor: bytes.readUInt32BE(4),
    requiredLibavbVersionMinor: bytes.readUInt32BE(8),
    authenticationBlockSize,
    auxiliaryBlockSize,
    algorithmType: bytes.readUInt32BE(28),
    hashOffset,
    hashSize,
    signatureOffset,
    signatureSize,
    publicKeyOffset,
    publicKeySize,
    publicKeyMetadataOffset,
    publicKeyMetadataSize,
    descriptorsOffset,
    descriptorsSize,
    rollbackIndex: bytes.readBigUInt64BE(112),
    flags: bytes.readUInt32BE(120),
    rollbackIndexLocation: bytes.readUInt32BE(124),
    releaseString: releaseField.subarray(0, releaseField.indexOf(0)).toString('utf8'),
  };
}

function sliceBlocks(bytes: Buffer, header: AvbVbmetaHeader): ParsedVbmeta {
  const authenticationStart = VBMETA_HEADER_SIZE;
  const auxiliaryStart = authenticationStart + header.authenticationBlockSize;
  const end = auxiliaryStart + header.auxiliaryBlockSize;
  const auxiliary = bytes.subarray(auxiliaryStart, end);
  const slice = (block: Buffer, offset: number, size: number): Buffer => Buffer.from(block.subarray(offset, offset + size));
  const authentication = bytes.subarray(authenticationStart, auxiliaryStart);

  return {
    header,
    algorithm: avbAlgorithmForType(header.algorithmType),
    descriptors: parseDescriptors(auxiliary.subarray(header.descriptorsOffset, header.descriptorsOffset + header.descriptorsSize)),
    hash: slice(authentication, header.hashOffset, header.hashSize),
    signature: slice(authentication, header.signatureOffset, header.signatureSize),
    publicKey: slice(auxiliary, header.publicKeyOffset, header.publicKeySize),
    publicKeyMetadata: slice(auxiliary, header.publicKeyMetadataOffset, header.publicKeyMetadataSize),
    bytes: Buffer.from(bytes.subarray(0, end)),
    signedData: Buffer.concat([bytes.subarray(0, VBMETA_HEADER_SIZE), auxiliary]),
  };
}
