/**
 * AVB descriptors: the typed records in a vbmeta auxiliary block.
 *
 * Every descriptor starts with u64 tag and u64 num_bytes_following (all
 * integers big-endian). avbtool writes num_bytes_following as the payload
 * size rounded up to a multiple of 8 and pads with zeros. libavb accepts any
 * multiple of 8 that is at least the payload size, and so does the parser
 * here. Fixed parts, with offsets from the start of the descriptor:
 *
 *   property (tag 0, 32 bytes): 16 u64 key length, 24 u64 value length;
 *     then key, NUL, value, NUL.
 *   hashtree (tag 1, 180 bytes): 16 u32 dm-verity version, 20 u64 image
 *     size, 28 u64 tree offset, 36 u64 tree size, 44 u32 data block size,
 *     48 u32 hash block size, 52 u32 FEC roots, 56 u64 FEC offset, 64 u64
 *     FEC size, 72 hash algorithm (32 bytes, NUL-padded), 104 u32 name
 *     length, 108 u32 salt length, 112 u32 root digest length, 116 u32
 *     flags, 120 60 reserved bytes; then name, salt, root digest.
 *   hash (tag 2, 132 bytes): 16 u64 image size, 24 hash algorithm (32
 *     bytes), 56 u32 name length, 60 u32 salt length, 64 u32 digest length,
 *     68 u32 flags, 72 60 reserved bytes; then name, salt, digest.
 *   kernel cmdline (tag 3, 24 bytes): 16 u32 flags, 20 u32 length; then the
 *     command line without NUL.
 *   chain partition (tag 4, 92 bytes): 16 u32 rollback index location, 20
 *     u32 name length, 24 u32 public key length, 28 u32 flags, 32 60
 *     reserved bytes; then name, public key blob.
 */
import { QwamosError } from '../core/errors.js';
import { avbVerifyError } from './avb-errors.js';

export const DESCRIPTOR_TAG = {
  property: 0,
  hashtree: 1,
  hash: 2,
  kernel_cmdline: 3,
  chain_partition: 4,
} as const;

const DESCRIPTOR_HEADER_SIZE = 16;
const HASH_ALGORITHM_FIELD_SIZE = 32;
const PROPERTY_FIXED_SIZE = 32;
const HASHTREE_FIXED_SIZE = 180;
const HASH_FIXED_SIZE = 132;
const KERNEL_CMDLINE_FIXED_SIZE = 24;
const CHAIN_PARTITION_FIXED_SIZE = 92;

/** Hash descriptor flag: the partition has no A/B suffix. */
export const HASH_DESCRIPTOR_FLAG_DO_NOT_USE_AB = 1;
/** Hashtree descriptor flag: the partition has no A/B suffix. */
export const HASHTREE_DESCRIPTOR_FLAG_DO_NOT_USE_AB = 1;
/** Hashtree descriptor flag: dm-verity checks each block only once. */
export const HASHTREE_DESCRIPTOR_FLAG_CHECK_AT_MOST_ONCE = 2;
/** Kernel cmdline flag: apply only when the hashtree is not disabled. */
export const KERNEL_CMDLINE_FLAG_USE_ONLY_IF_HASHTREE_NOT_DISABLED = 1;
/** Kernel cmdline flag: apply only when the hashtree is disabled. */
export const KERNEL_CMDLINE_FLAG_USE_ONLY_IF_HASHTREE_DISABLED = 2;
/** Chain partition flag: the chained partition has no A/B suffix. */
export const CHAIN_PARTITION_FLAG_DO_NOT_USE_AB = 1;

export interface AvbPropertyDescriptor {
  kind: 'property';
  key: string;
  value: Uint8Array;
}

export interface AvbHashtreeDescriptor {
  kind: 'hashtree';
  dmVerityVersion: number;
  /** Size of the data the tree covers, a multiple of the data block size. */
  imageSize: number;
  treeOffset: number;
  treeSize: number;
  dataBlockSize: number;
  hashBlockSize: number;
  fecNumRoots: number;
  fecOffset: number;
  fecSize: number;
  hashAlgorithm: string;
  partitionName: string;
  salt: Uint8Array;
  /** Empty when the root digest is stored as a persistent value on the device. */
  rootDigest: Uint8Array;
  flags: number;
}

export interface AvbHashDescriptor {
  kind: 'hash';
  imageSize: number;
  hashAlgorithm: string;
  partitionName: string;
  salt: Uint8Array;
  /** H(salt || image); empty when the digest is stored as a persistent value. */
  digest: Uint8Array;
  flags: number;
}

export interface AvbKernelCmdlineDescriptor {
  kind: 'kernel_cmdline';
  flags: number;
  kernelCmdline: string;
}

export interface AvbChainPartitionDescriptor {
  kind: 'chain_partition';
  rollbackIndexLocation: number;
  partitionName: string;
  /** AVB public key blob that the chained partition's vbmeta must be signed with. */
  publicKey: Uint8Array;
  flags: number;
}

/** A descriptor with a tag this code does not know; kept so it round-trips. */
export interface AvbUnknownDescriptor {
  kind: 'unknown';
  tag: bigint;
  /** The num_bytes_following bytes after the 16-byte descriptor header. */
  data: Uint8Array;
}

export type AvbDescriptor =
  | AvbPropertyDescriptor
  | AvbHashtreeDescriptor
  | AvbHashDescriptor
  | AvbKernelCmdlineDescriptor
  | AvbChainPartitionDescriptor
  | AvbUnknownDescriptor;

// ---------------------------------------------------------------- encoding

/** Encodes one descriptor with avbtool's exact padding to a multiple of 8. */
export function encodeDescriptor(descriptor: AvbDescriptor): Buffer {
  switch (descriptor.kind) {
    case 'property':
      return encodeProperty(descriptor);
    case 'hashtree':
      return encodeHashtree(descriptor);
    case 'hash':
      return encodeHash(descriptor);
    case 'kernel_cmdline':
      return encodeKernelCmdline(descriptor);
    case 'chain_partition':
      return encodeChainPartition(descriptor);
    case 'unknown':
      return withDescriptorHeader(descriptor.tag, Buffer.alloc(0), [descriptor.data]);
  }
}

/** Prepends tag and padded num_bytes_following to the fixed part (after offset 16) and payload. */
function withDescriptorHeader(tag: bigint | number, fixed: Buffer, payload: Uint8Array[]): Buffer {
  const body = Buffer.concat([fixed, ...payload]);
  const paddedLength = roundUp(body.length, 8);
  const header = Buffer.alloc(DESCRIPTOR_HEADER_SIZE);
  header.writeBigUInt64BE(BigInt(tag), 0);
  header.writeBigUInt64BE(BigInt(paddedLength), 8);
  return Buffer.concat([header, body, Buffer.alloc(paddedLength - body.length)]);
}

function encodeProperty(descriptor: AvbPropertyDescriptor): Buffer {
  const key = Buffer.from(descriptor.key, 'utf8');
  const fixed = Buffer.alloc(PROPERTY_FIXED_SIZE - DESCRIPTOR_HEADER_SIZE);
  fixed.writeBigUInt64BE(BigInt(key.length), 0);
  fixed.writeBigUInt64BE(BigInt(descriptor.value.length), 8);
  return withDescriptorHeader(DESCRIPTOR_TAG.property, fixed, [key, Buffer.alloc(1), descriptor.value, Buffer.alloc(1)]);
}

function encodeHashtree(descriptor: AvbHashtreeDescriptor): Buffer {
  const name = Buffer.from(descriptor.partitionName, 'utf8');
  const fixed = Buffer.alloc(HASHTREE_FIXED_SIZE - DESCRIPTOR_HEADER_SIZE);
  fixed.writeUInt32BE(descriptor.dmVerityVersion, 0);
  fixed.writeBigUInt64BE(BigInt(descriptor.imageSize), 4);
  fixed.writeBigUInt64BE(BigInt(descriptor.treeOffset), 12);
  fixed.writeBigUInt64BE(BigInt(descriptor.treeSize), 20);
  fixed.writeUInt32BE(descriptor.dataBlockSize, 28);
  fixed.writeUInt32BE(descriptor.hashBlockSize, 32);
  fixed.writeUInt32BE(descriptor.fecNumRoots, 36);
  fixed.writeBigUInt64BE(BigInt(descriptor.fecOffset), 40);
  fixed.writeBigUInt64BE(BigInt(descriptor.fecSize), 48);
  writeHashAlgorithm(fixed, 56, descriptor.hashAlgorithm);
  fixed.writeUInt32BE(name.length, 88);
  fixed.writeUInt32BE(descriptor.salt.length, 92);
  fixed.writeUInt32BE(descriptor.rootDigest.length, 96);
  fixed.writeUInt32BE(descriptor.flags, 100);
  return withDescriptorHeader(DESCRIPTOR_TAG.hashtree, fixed, [name, descriptor.salt, descriptor.rootDigest]);
}

function encodeHash(descriptor: AvbHashDescriptor): Buffer {
  const name = Buffer.from(descriptor.partitionName, 'utf8');
  const fixed = Buffer.alloc(HASH_FIXED_SIZE - DESCRIPTOR_HEADER_SIZE);
  fixed.writeBigUInt64BE(BigInt(descriptor.imageSize), 0);
  writeHashAlgorithm(fixed, 8, descriptor.hashAlgorithm);
  fixed.writeUInt32BE(name.length, 40);
  fixed.writeUInt32BE(descriptor.salt.length, 44);
  fixed.writeUInt32BE(descriptor.digest.length, 48);
  fixed.writeUInt32BE(descriptor.flags, 52);
  return withDescriptorHeader(DESCRIPTOR_TAG.hash, fixed, [name, descriptor.salt, descriptor.digest]);
}

function encodeKernelCmdline(descriptor: AvbKernelCmdlineDescriptor): Buffer {
  const cmdline = Buffer.from(descriptor.kernelCmdline, 'utf8');
  const fixed = Buffer.alloc(KERNEL_CMDLINE_FIXED_SIZE - DESCRIPTOR_HEADER_SIZE);
  fixed.writeUInt32BE(descriptor.flags, 0);
  fixed.writeUInt32BE(cmdline.length, 4);
  return withDescriptorHeader(DESCRIPTOR_TAG.kernel_cmdline, fixed, [cmdline]);
}

function encodeChainPartition(descriptor: AvbChainPartitionDescriptor): Buffer {
  const name = Buffer.from(descriptor.partitionName, 'utf8');
  const fixed = Buffer.alloc(CHAIN_PARTITION_FIXED_SIZE - DESCRIPTOR_HEADER_SIZE);
  fixed.writeUInt32BE(descriptor.rollbackIndexLocation, 0);
  fixed.writeUInt32BE(name.length, 4);
  fixed.writeUInt32BE(descriptor.publicKey.length, 8);
  fixed.writeUInt32BE(descriptor.flags, 12);
  return withDescriptorHeader(DESCRIPTOR_TAG.chain_partition, fixed, [name, descriptor.publicKey]);
}

/** Writes the 32-byte NUL-padded hash algorithm field; at most 31 bytes so libavb finds a NUL. */
function writeHashAlgorithm(target: Buffer, offset: number, algorithm: string): void {
  const encoded = Buffer.from(algorithm, 'ascii');
  if (encoded.length >= HASH_ALGORITHM_FIELD_SIZE || !/^[\x21-\x7e]*$/.test(algorithm)) {
    throw new QwamosError('INPUT_INVALID', `hash algorithm name '${algorithm}' does not fit the descriptor's 32-byte field; use sha1, sha256 or sha512`);
  }
  encoded.copy(target, offset);
}

// ---------------------------------------------------------------- parsing

/**
 * Parses a descriptors block by libavb's rules. Each descriptor's
 * num_bytes_following is a multiple of 8, covers its fixed part and
 * payload, and stays inside the block. Names and command lines are UTF-8.
 * Throws VERIFY_FAILED with reason 'descriptor'.
 */
export function parseDescriptors(block: Uint8Array): AvbDescriptor[] {
  const bytes = Buffer.from(block.buffer, block.byteOffset, block.byteLength);
  const descriptors: AvbDescriptor[] = [];
  let offset = 0;

  while (offset < bytes.length) {
    if (bytes.length - offset < DESCRIPTOR_HEADER_SIZE) {
      throw descriptorError(offset, `only ${bytes.length - offset} bytes remain, fewer than a 16-byte descriptor header`);
    }

    const tag = bytes.readBigUInt64BE(offset);
    const following = bytes.readBigUInt64BE(offset + 8);
    if (following % 8n !== 0n) throw descriptorError(offset, `num_bytes_following ${following} is not a multiple of 8`);
    if (following > BigInt(bytes.length - offset - DESCRIPTOR_HEADER_SIZE)) {
      throw descriptorError(offset, `num_bytes_following ${following} runs past the end of the descriptors block`);
    }

    const end = offset + DESCRIPTOR_HEADER_SIZE + Number(following);
    descriptors.push(parseDescriptor(tag, bytes.subarray(offset, end), offset));
    offset = end;
  }

  return descriptors;
}

function parseDescriptor(tag: bigint, bytes: Buffer, offset: number): AvbDescriptor {
  const reader = new PayloadReader(bytes, offset);
  switch (tag) {
    case BigInt(DESCRIPTOR_TAG.property):
      return parseProperty(reader);
    case BigInt(DESCRIPTOR_TAG.hashtree):
      return parseHashtree(bytes, reader);
    case BigInt(DESCRIPTOR_TAG.hash):
      return parseHash(bytes, reader);
    case BigInt(DESCRIPTOR_TAG.kernel_cmdline):
      return parseKernelCmdline(bytes, reader);
    case BigInt(DESCRIPTOR_TAG.chain_partition):
      return parseChainPartition(bytes, reader);
    default:
      return { kind: 'unknown', tag, data: Buffer.from(bytes.subarray(DESCRIPTOR_HEADER_SIZE)) };
  }
}

function parseProperty(reader: PayloadReader): AvbPropertyDescriptor {
  reader.requireFixed(PROPERTY_FIXED_SIZE, 'property');
  const keyLength = reader.u64(16, 'key length');
  const valueLength = reader.u64(24, 'value length');
  reader.start(PROPERTY_FIXED_SIZE, [keyLength, 1, valueLength, 1], 'property');

  const key = reader.utf8(keyLength, 'property key');
  reader.skip(1);
  const value = reader.bytes(valueLength);
  return { kind: 'property', key, value };
}

function parseHashtree(bytes: Buffer, reader: PayloadReader): AvbHashtreeDescriptor {
  reader.requireFixed(HASHTREE_FIXED_SIZE, 'hashtree');
  const nameLength = bytes.readUInt32BE(104);
  const saltLength = bytes.readUInt32BE(108);
  const rootDigestLength = bytes.readUInt32BE(112);
  reader.start(HASHTREE_FIXED_SIZE, [nameLength, saltLength, rootDigestLength], 'hashtree');

  return {
    kind: 'hashtree',
    dmVerityVersion: bytes.readUInt32BE(16),
    imageSize: reader.u64(20, 'image size'),
    treeOffset: reader.u64(28, 'tree offset'),
    treeSize: reader.u64(36, 'tree size'),
    dataBlockSize: bytes.readUInt32BE(44),
    hashBlockSize: bytes.readUInt32BE(48),
    fecNumRoots: bytes.readUInt32BE(52),
    fecOffset: reader.u64(56, 'FEC offset'),
    fecSize: reader.u64(64, 'FEC size'),
    hashAlgorithm: readHashAlgorithm(bytes, 72),
    flags: bytes.readUInt32BE(116),
    partitionName: reader.utf8(nameLength, 'partition name'),
    salt: reader.bytes(saltLength),
    rootDigest: reader.bytes(rootDigestLength),
  };
}

function parseHash(bytes: Buffer, reader: PayloadReader): AvbHashDescriptor {
  reader.requireFixed(HASH_FIXED_SIZE, 'hash');
  const nameLength = bytes.readUInt32BE(56);
  const saltLength = bytes.readUInt32BE(60);
  const digestLength = bytes.readUInt32BE(64);
  reader.start(HASH_FIXED_SIZE, [nameLength, saltLength, digestLength], 'hash');

  return {
    kind: 'hash',
    imageSize: reader.u64(16, 'image size'),
    hashAlgorithm: readHashAlgorithm(bytes, 24),
    flags: bytes.readUInt32BE(68),
    partitionName: reader.utf8(nameLength, 'partition name'),
    salt: reader.bytes(saltLength),
    digest: reader.bytes(digestLength),
  };
}

function parseKernelCmdline(bytes: Buffer, reader: PayloadReader): AvbKernelCmdlineDescriptor {
  reader.requireFixed(KERNEL_CMDLINE_FIXED_SIZE, 'kernel cmdline');
  const length = bytes.readUInt32BE(20);
  reader.start(KERNEL_CMDLINE_FIXED_SIZE, [length], 'kernel cmdline');
  return { kind: 'kernel_cmdline', flags: bytes.readUInt32BE(16), kernelCmdline: reader.utf8(length, 'kernel command line') };
}

function parseChainPartition(bytes: Buffer, reader: PayloadReader): AvbChainPartitionDescriptor {
  reader.requireFixed(CHAIN_PARTITION_FIXED_SIZE, 'chain partition');
  const nameLength = bytes.readUInt32BE(20);
  const publicKeyLength = bytes.readUInt32BE(24);
  reader.start(CHAIN_PARTITION_FIXED_SIZE, [nameLength, publicKeyLength], 'chain partition');

  return {
    kind: 'chain_partition',
    rollbackIndexLocation: bytes.readUInt32BE(16),
    flags: bytes.readUInt32BE(28),
    partitionName: reader.utf8(nameLength, 'partition name'),
    publicKey: reader.bytes(publicKeyLength),
  };
}

function readHashAlgorithm(bytes: Buffer, offset: number): string {
  const field = bytes.subarray(offset, offset + HASH_ALGORITHM_FIELD_SIZE);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('latin1');
}

/** Bounds-checked reads of one descriptor's fixed part and variable payload. */
class PayloadReader {
  private position = 0;

  constructor(private readonly descriptor: Buffer, private readonly blockOffset: number) {}

  requireFixed(fixedSize: number, kind: string): void {
    if (this.descriptor.length < fixedSize) {
      throw descriptorError(this.blockOffset, `${kind} descriptor has ${this.descriptor.length} bytes, fewer than its ${fixedSize}-byte fixed part`);
    }
  }

  /** Checks that the fixed part plus `lengths` fit in the descriptor, then reads from after the fixed part. */
  start(fixedSize: number, lengths: number[], kind: string): void {
    const needed = lengths.reduce((sum, length) => sum + length, fixedSize);
    if (needed > this.descriptor.length) {
      throw descriptorError(this.blockOffset, `${kind} descriptor payload needs ${needed} bytes but the descriptor has ${this.descriptor.length}`);
    }
    this.position = fixedSize;
  }

  /** Reads a u64 length or offset; values above 2^53 cannot describe real data and are rejected. */
  u64(offset: number, field: string): number {
    const value = this.descriptor.readBigUInt64BE(offset);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw descriptorError(this.blockOffset, `${field} ${value} is out of range`);
    return Number(value);
  }

  bytes(length: number): Buffer {
    const value = Buffer.from(this.descriptor.subarray(this.position, this.position + length));
    this.position += length;
    return value;
  }

  skip(length: number): void {
    this.position += length;
  }

  utf8(length: number, field: string): string {
    const raw = this.bytes(length);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch {
      throw descriptorError(this.blockOffset, `${field} is not valid UTF-8`);
    }
  }
}

function descriptorError(offset: number, problem: string): QwamosError {
  return avbVerifyError('descriptor', `invalid descriptor at offset ${offset} of the descriptors block: ${problem}`, { descriptorOffset: offset });
}

// ---------------------------------------------------------------- dm-verity command line

/**
 * Builds the two kernel cmdline descriptors avbtool adds for
 * --setup_as_rootfs_from_kernel: a dm="..." table used while the hashtree
 * is enabled, and root=PARTUUID=... used when it is disabled.
 */
export function dmVerityCmdlineDescriptors(hashtree: AvbHashtreeDescriptor): [AvbKernelCmdlineDescriptor, AvbKernelCmdlineDescriptor] {
  const blocks = Math.floor(hashtree.imageSize / hashtree.dataBlockSize);
  const checkAtMostOnce = (hashtree.flags & HASHTREE_DESCRIPTOR_FLAG_CHECK_AT_MOST_ONCE) !== 0;
  const table = [
    `dm="1 vroot none ro 1,0 ${Math.floor(hashtree.imageSize / 512)}`,
    `verity ${hashtree.dmVerityVersion}`,
    'PARTUUID=$(ANDROID_SYSTEM_PARTUUID) PARTUUID=$(ANDROID_SYSTEM_PARTUUID)',
    `${hashtree.dataBlockSize} ${hashtree.hashBlockSize} ${blocks} ${blocks}`,
    `${hashtree.hashAlgorithm} ${hex(hashtree.rootDigest)} ${hex(hashtree.salt)}`,
  ];

  const optional = ['$(ANDROID_VERITY_MODE)', 'ignore_zero_blocks'];
  if (hashtree.fecNumRoots > 0) {
    const fecBlocks = Math.floor(hashtree.fecOffset / hashtree.dataBlockSize);
    optional.push('use_fec_from_device PARTUUID=$(ANDROID_SYSTEM_PARTUUID)', `fec_roots ${hashtree.fecNumRoots}`, `fec_blocks ${fecBlocks}`, `fec_start ${fecBlocks}`);
  }
  // The count is dm-verity's number of optional argument words, which avbtool hard-codes per case.
  const optionalCount = (hashtree.fecNumRoots > 0 ? 10 : 2) + (checkAtMostOnce ? 1 : 0);
  const optionalWords = checkAtMostOnce ? ['check_at_most_once', ...optional] : optional;

  return [
    {
      kind: 'kernel_cmdline',
      flags: KERNEL_CMDLINE_FLAG_USE_ONLY_IF_HASHTREE_NOT_DISABLED,
      kernelCmdline: `${table.join(' ')} ${optionalCount} ${optionalWords.join(' ')}" root=/dev/dm-0`,
    },
    {
      kind: 'kernel_cmdline',
      flags: KERNEL_CMDLINE_FLAG_USE_ONLY_IF_HASHTREE_DISABLED,
      kernelCmdline: 'root=PARTUUID=$(ANDROID_SYSTEM_PARTUUID)',
    },
  ];
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function roundUp(value: number, multiple: number): number {
  const remainder = value % multiple;
  return remainder === 0 ? value : value + multiple - remainder;
}
