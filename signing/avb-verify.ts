/**
 * Verification of one vbmeta blob with libavb's rules (avb_vbmeta_image.c
 * and avb_slot_verify.c of libavb 1.3): header structure, algorithm and
 * sizes, digest and RSA signature, trusted key, rollback index and
 * location, and the chain descriptor rules. Partition contents are checked
 * by verifyImage in avb-verify-image.ts.
 */
import { createHash } from 'node:crypto';
import type { AvbChainPartitionDescriptor } from './avb-descriptors.js';
import { avbVerifyError } from './avb-errors.js';
import { verifyAvbSignature, type AvbAlgorithm } from './avb-key.js';
import { MAX_ROLLBACK_INDEX_LOCATIONS, parseVbmeta, type ParsedVbmeta } from './avb-vbmeta.js';

/** Stored rollback indexes by location, as a bootloader keeps them in tamper-evident storage. */
export type RollbackIndexStore = ReadonlyMap<number, bigint | number>;

export interface VerifyVbmetaOptions {
  /**
   * Public key blob the vbmeta must be signed with: the device's trusted
   * key (or avb_custom_key) for a top-level vbmeta, the chain descriptor's
   * key for a chained one. Without it any embedded key is accepted.
   */
  expectedPublicKey?: Uint8Array;
  /** Stored rollback indexes; a location not in the store counts as 0. */
  rollbackIndexes?: RollbackIndexStore;
  /**
   * Set for a partition reached through a chain descriptor: its rollback
   * index location comes from that descriptor, its flags must be 0, and it
   * may not chain further.
   */
  chained?: { rollbackIndexLocation: number };
  /** Accepts algorithm NONE, as avbtool verify_image does; libavb treats it as a verification error. */
  allowUnsigned?: boolean;
  /** Names the image in error messages. */
  name?: string;
}

export interface VerifiedVbmeta {
  vbmeta: ParsedVbmeta;
  algorithm: AvbAlgorithm;
  /** Location whose stored rollback index was compared. */
  rollbackIndexLocation: number;
  rollbackIndex: bigint;
  /** SHA-256 of the embedded public key blob (androidboot.vbmeta.public_key_digest); empty for NONE. */
  publicKeySha256: string;
}

/**
 * Verifies a vbmeta blob (parsed or raw bytes). Throws VERIFY_FAILED with
 * `data.reason` naming the failed rule (see AvbFailureReason).
 */
export function verifyVbmeta(input: Uint8Array | ParsedVbmeta, options: VerifyVbmetaOptions = {}): VerifiedVbmeta {
  const vbmeta = input instanceof Uint8Array ? parseVbmeta(input) : input;
  const name = options.name ?? 'vbmeta';
  const algorithm = checkAuthentication(vbmeta, name, options.allowUnsigned ?? false);

  if (options.expectedPublicKey && !Buffer.from(options.expectedPublicKey).equals(vbmeta.publicKey)) {
    const role = options.chained ? 'the key in its chain partition descriptor' : 'the expected public key';
    throw avbVerifyError('key_mismatch', `${name}: the embedded public key (sha256 ${sha256Hex(vbmeta.publicKey)}) does not match ${role} (sha256 ${sha256Hex(options.expectedPublicKey)})`, { image: name });
  }

  if (options.chained && vbmeta.header.flags !== 0) {
    throw avbVerifyError('chain_flags', `${name}: chained vbmeta has flags ${vbmeta.header.flags}; libavb requires 0 in chained partitions`, { image: name });
  }

  const location = options.chained?.rollbackIndexLocation ?? vbmeta.header.rollbackIndexLocation;
  checkRollback(vbmeta, location, options.rollbackIndexes, name);
  checkChainDescriptors(vbmeta, location, options.chained !== undefined, name);

  return {
    vbmeta,
    algorithm,
    rollbackIndexLocation: location,
    rollbackIndex: vbmeta.header.rollbackIndex,
    publicKeySha256: vbmeta.publicKey.length > 0 ? sha256Hex(vbmeta.publicKey) : '',
  };
}

/** Checks algorithm, sizes, digest and signature as avb_vbmeta_image_verify does. */
function checkAuthentication(vbmeta: ParsedVbmeta, name: string, allowUnsigned: boolean): AvbAlgorithm {
  const { header, algorithm } = vbmeta;
  if (!algorithm) {
    throw avbVerifyError('algorithm', `${name}: algorithm type ${header.algorithmType} is not one libavb implements (0 to 6)`, { image: name });
  }
  if (!algorithm.hashName) {
    if (allowUnsigned) return algorithm;
    throw avbVerifyError('unsigned', `${name}: vbmeta is not signed (algorithm NONE); a locked bootloader rejects it`, { image: name });
  }

  if (header.hashSize !== algorithm.hashBytes) {
    throw avbVerifyError('hash_size', `${name}: hash size ${header.hashSize} does not match ${algorithm.name}, which uses ${algorithm.hashBytes}-byte digests`, { image: name });
  }
  if (header.signatureSize !== algorithm.signatureBytes) {
    throw avbVerifyError('signature_size', `${name}: signature size ${header.signatureSize} does not match ${algorithm.name}, which uses ${algorithm.signatureBytes}-byte signatures`, { image: name });
  }

  const digest = createHash(algorithm.hashName).update(vbmeta.signedData).digest();
  if (!digest.equals(vbmeta.hash)) {
    throw avbVerifyError('hash_mismatch', `${name}: the ${algorithm.hashName} digest of header and auxiliary block does not match the stored digest; the vbmeta was changed after signing`, { image: name });
  }
  if (!verifyAvbSignature(algorithm, vbmeta.publicKey, vbmeta.signature, digest)) {
    throw avbVerifyError('signature', `${name}: the ${algorithm.name} signature does not verify with the embedded public key`, { image: name });
  }
  return algorithm;
}

function checkRollback(vbmeta: ParsedVbmeta, location: number, store: RollbackIndexStore | undefined, name: string): void {
  if (location >= MAX_ROLLBACK_INDEX_LOCATIONS) {
    throw avbVerifyError('rollback_location', `${name}: rollback index location ${location} is out of range; libavb has locations 0 to ${MAX_ROLLBACK_INDEX_LOCATIONS - 1}`, { image: name, location });
  }

  const stored = BigInt(store?.get(location) ?? 0);
  if (vbmeta.header.rollbackIndex < stored) {
    throw avbVerifyError('rollback', `${name}: rollback index ${vbmeta.header.rollbackIndex} is below the stored value ${stored} at location ${location}; the image is older than one already booted`, { image: name, location, stored: stored.toString(), rollbackIndex: vbmeta.header.rollbackIndex.toString() });
  }
}

/**
 * Chain descriptors only in a top-level vbmeta, each with a location of 1
 * or more that no other chain and not the top-level vbmeta itself uses
 * (libavb checks location 0; avbtool rejects shared locations when building).
 */
function checkChainDescriptors(vbmeta: ParsedVbmeta, ownLocation: number, chained: boolean, name: string): void {
  const chains = vbmeta.descriptors.filter((descriptor): descriptor is AvbChainPartitionDescriptor => descriptor.kind === 'chain_partition');
  if (chained && chains.length > 0) {
    throw avbVerifyError('chain_nested', `${name}: chained vbmeta contains a chain descriptor for '${chains[0]?.partitionName}'; libavb allows chain descriptors only in the top-level vbmeta`, { image: name });
  }

  const used = new Map<number, string>([[ownLocation, 'the top-level vbmeta']]);
  for (const chain of chains) {
    const location = chain.rollbackIndexLocation;
    const partition = chain.partitionName;
    if (location === 0) {
      throw avbVerifyError('chain_location', `${name}: chain partition '${partition}' has rollback index location 0; chained partitions need location 1 or larger`, { image: name, partition });
    }
    if (location >= MAX_ROLLBACK_INDEX_LOCATIONS) {
      throw avbVerifyError('rollback_location', `${name}: chain partition '${partition}' has rollback index location ${location}; libavb has locations 0 to ${MAX_ROLLBACK_INDEX_LOCATIONS - 1}`, { image: name, partition });
    }

    const user = used.get(location);
    if (user !== undefined) {
      throw avbVerifyError('chain_location', `${name}: chain partition '${partition}' uses rollback index location ${location}, which ${user} already uses`, { image: name, partition, location });
    }
    used.set(location, `chain partition '${partition}'`);
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
