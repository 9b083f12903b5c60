/**
 * Failure kinds of AVB verification. Every verification failure is a
 * QwamosError with code VERIFY_FAILED whose `data.reason` is one of these
 * names, so a caller that models a bootloader can branch on the kind.
 */
import { QwamosError } from '../core/errors.js';

export type AvbFailureReason =
  /** The vbmeta data does not start with the `AVB0` magic. */
  | 'bad_magic'
  /** The data is shorter than the header, or than the header's block sizes add up to. */
  | 'truncated'
  /** The image requires a libavb major or minor version this code does not implement. */
  | 'version'
  /** The 48-byte release string field does not end with a NUL byte. */
  | 'release_string'
  /** The authentication or auxiliary block size is not a multiple of 64. */
  | 'block_size'
  /** A hash, signature, public key, metadata or descriptor range lies outside its block. */
  | 'range'
  /** The algorithm field names no algorithm that libavb implements. */
  | 'algorithm'
  /** The header's hash size does not match the algorithm's digest size. */
  | 'hash_size'
  /** The header's signature size does not match the algorithm's key size. */
  | 'signature_size'
  /** The embedded public key blob is malformed or does not fit the algorithm. */
  | 'public_key'
  /** The stored digest differs from the digest of header and auxiliary block. */
  | 'hash_mismatch'
  /** The RSA signature does not verify with the embedded public key. */
  | 'signature'
  /** The vbmeta uses algorithm NONE and the caller did not allow unsigned images. */
  | 'unsigned'
  /** The embedded public key differs from the expected (trusted or chained) key. */
  | 'key_mismatch'
  /** The rollback index is below the value stored for its location. */
  | 'rollback'
  /** The rollback index location is 32 or more (libavb has 32 locations). */
  | 'rollback_location'
  /** A chain descriptor uses location 0 or a location already in use. */
  | 'chain_location'
  /** A chained vbmeta itself contains a chain descriptor. */
  | 'chain_nested'
  /** A chained vbmeta has non-zero header flags. */
  | 'chain_flags'
  /** A chain descriptor differs from the expected chain partition, or none was expected. */
  | 'chain_partition'
  /** A descriptor is malformed: bad size, bad UTF-8, unsupported hash algorithm. */
  | 'descriptor'
  /** The footer is malformed or disagrees with the vbmeta it points to. */
  | 'footer'
  /** The digest of a partition's data differs from its hash descriptor. */
  | 'image_digest'
  /** The hash tree or its root digest differs from the hashtree descriptor. */
  | 'hashtree';

/** Creates the VERIFY_FAILED error for `reason`; `data` adds fields such as the partition name. */
export function avbVerifyError(reason: AvbFailureReason, message: string, data: Record<string, unknown> = {}): QwamosError {
  return new QwamosError('VERIFY_FAILED', message, { data: { reason, ...data } });
}

/** Returns the failure reason of an AVB verification error, or undefined for any other value. */
export function avbFailureReason(error: unknown): AvbFailureReason | undefined {
  if (!(error instanceof QwamosError) || error.code !== 'VERIFY_FAILED') return undefined;
  return error.data.reason as AvbFailureReason | undefined;
}
