/**
 * The QWAMOS stage manifest, format version 1: the signed statement that
 * names one boot stage's image, its digest or dm-verity root, its rollback
 * index and the keys allowed to sign the next stage. verifier/manifest.h
 * contains the same layout for the C parser; docs/stage-manifest.md explains
 * each field.
 *
 * Header, 256 bytes, all integers big-endian:
 *
 *   offset size field
 *        0    8 magic "QWAMOSMF"
 *        8    4 format version (1)
 *       12    4 flags (bit 0: the image is dm-verity protected; other bits 0)
 *       16    4 signed size: header plus variable area, the bytes the signature covers
 *       20    4 signature size (4627)
 *       24    8 image size in bytes, the span the SHA-512 covers
 *       32    8 rollback index
 *       40    4 rollback index location (counter slot, 0 to 31)
 *       44    1 stage name size (1 to 32)
 *       45    1 device profile id size (1 to 64)
 *       46    1 next-stage key id count (0 to 8)
 *       47    1 reserved (0)
 *       48   64 SHA-512 of the first image-size bytes of the image
 *      112   32 signer key id
 *      144    4 verity hash algorithm (1 sha256, 2 sha512; 0 without verity)
 *      148    4 verity data block size
 *      152    4 verity hash block size
 *      156    4 verity salt size (0 to 256)
 *      160    8 verity data block count
 *      168    8 verity hash tree offset in bytes from the start of the image
 *      176   64 verity root digest (32 or 64 bytes used, the rest 0)
 *      240   16 reserved (0)
 *
 * The variable area follows at offset 256 without padding: stage name,
 * device profile id, verity salt, next-stage key ids (32 bytes each). The
 * ML-DSA-87 signature follows the variable area and ends the file.
 */
import { MLDSA87_SIGNATURE_SIZE } from './mldsa.js';

export const MANIFEST_MAGIC = Buffer.from('QWAMOSMF', 'latin1');
export const MANIFEST_FORMAT_VERSION = 1;
export const MANIFEST_HEADER_SIZE = 256;
export const MANIFEST_MAX_SIZE = 8192;
export const MANIFEST_SIGNATURE_SIZE = MLDSA87_SIGNATURE_SIZE;

export const KEY_ID_SIZE = 32;
export const SHA512_SIZE = 64;
export const ROOT_DIGEST_FIELD_SIZE = 64;

export const STAGE_NAME_MAX = 32;
export const DEVICE_PROFILE_MAX = 64;
export const NEXT_KEY_IDS_MAX = 8;
export const VERITY_SALT_MAX = 256;
export const ROLLBACK_LOCATIONS = 32;
export const VERITY_BLOCK_MIN = 512;
export const VERITY_BLOCK_MAX = 65536;

export const FLAG_VERITY = 0x1;

/** Header field offsets; sizes are in the table above. */
export const OFFSET = {
  magic: 0,
  formatVersion: 8,
  flags: 12,
  signedSize: 16,
  signatureSize: 20,
  imageSize: 24,
  rollbackIndex: 32,
  rollbackIndexLocation: 40,
  stageNameSize: 44,
  deviceProfileSize: 45,
  nextKeyIdCount: 46,
  reservedByte: 47,
  imageSha512: 48,
  signerKeyId: 112,
  verityAlgorithm: 144,
  verityDataBlockSize: 148,
  verityHashBlockSize: 152,
  veritySaltSize: 156,
  verityDataBlockCount: 160,
  verityHashTreeOffset: 168,
  verityRootDigest: 176,
  reserved: 240,
} as const;

export type VerityHashAlgorithm = 'sha256' | 'sha512';

/** Header codes of the verity hash algorithms, and their digest sizes. */
export const VERITY_ALGORITHMS: Record<VerityHashAlgorithm, { code: number; digestSize: number }> = {
  sha256: { code: 1, digestSize: 32 },
  sha512: { code: 2, digestSize: 64 },
};

/**
 * dm-verity parameters of an image whose hash tree (format 1, as
 * `veritysetup format --format=1 --no-superblock` writes it) follows the
 * data in the same image.
 */
export interface VerityParameters {
  hashAlgorithm: VerityHashAlgorithm;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlockCount: bigint;
  /** Byte offset of the hash tree from the start of the image. */
  hashTreeOffset: bigint;
  rootDigest: Uint8Array;
  salt: Uint8Array;
}

/** The signed content of a manifest, before the signer key id and signature are added. */
export interface UnsignedManifest {
  /** Stage name, 1 to 32 of a-z 0-9 _ -, starting with a letter or digit. */
  stage: string;
  /** Device profile id, 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit. */
  deviceProfile: string;
  /** Bytes of the image the SHA-512 covers, from offset 0; includes the hash tree of a verity image. */
  imageSize: bigint;
  imageSha512: Uint8Array;
  verity?: VerityParameters;
  /** Counter slot, 0 to 31. */
  rollbackIndexLocation: number;
  rollbackIndex: bigint;
  /** Key ids (SHA-256 of the SubjectPublicKeyInfo) allowed to sign the next stage; at most 8. */
  nextStageKeyIds: Uint8Array[];
}

/** A parsed manifest. */
export interface StageManifest extends UnsignedManifest {
  formatVersion: number;
  signerKeyId: Uint8Array;
  /** The bytes the signature covers: header and variable area. */
  signedBytes: Uint8Array;
  signature: Uint8Array;
}

/** Returns the ML-DSA context string of `stage`: it names the stage and the format version. */
export function manifestSignatureContext(stage: string): Buffer {
  return Buffer.from(`qwamos/stage-manifest/v${MANIFEST_FORMAT_VERSION}/${stage}`, 'latin1');
}
