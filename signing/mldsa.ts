/**
 * Pure ML-DSA-87 (FIPS 204) for stage manifests: deterministic signing with
 * a context string, verification, and key ids. A thin layer over
 * @noble/post-quantum that fixes the parameter set and the options.
 */
import { createHash } from 'node:crypto';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { QwamosError } from '../core/errors.js';

export const MLDSA87_PUBLIC_KEY_SIZE = 2592;
export const MLDSA87_SECRET_KEY_SIZE = 4896;
export const MLDSA87_SIGNATURE_SIZE = 4627;
export const MLDSA87_SEED_SIZE = 32;
/** FIPS 204 limits the context string to 255 bytes. */
export const MLDSA_CONTEXT_MAX = 255;

/**
 * Signs `message` with `context` and returns the signature. Implementations
 * may keep the secret key elsewhere (a hardware token, another process).
 */
export type MldsaSigner = (message: Uint8Array, context: Uint8Array) => Promise<Uint8Array>;

export interface MldsaKeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/** id-ml-dsa-87, 2.16.840.1.101.3.4.3.19, as DER: tag, length, then the arcs. */
const ID_ML_DSA_87 = Buffer.from('0609608648016503040313', 'hex');

function checkSize(value: Uint8Array, size: number, what: string): void {
  if (value.length !== size) {
    throw new QwamosError('INPUT_INVALID', `${what} has ${value.length} bytes, but an ML-DSA-87 ${what} has ${size}; pass the raw key bytes, not PEM or DER`);
  }
}

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  if (length < 0x100) return Buffer.from([0x81, length]);
  return Buffer.from([0x82, length >> 8, length & 0xff]);
}

function derElement(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

/**
 * Encodes `publicKey` as a SubjectPublicKeyInfo (RFC 9881):
 * SEQUENCE { SEQUENCE { OID id-ml-dsa-87 }, BIT STRING publicKey }.
 */
export function mldsaSubjectPublicKeyInfo(publicKey: Uint8Array): Buffer {
  checkSize(publicKey, MLDSA87_PUBLIC_KEY_SIZE, 'public key');

  const algorithm = derElement(0x30, ID_ML_DSA_87);
  const bitString = derElement(0x03, Buffer.concat([Buffer.from([0]), publicKey]));
  return derElement(0x30, Buffer.concat([algorithm, bitString]));
}

/** Returns the key id of `publicKey`: SHA-256 of its SubjectPublicKeyInfo DER. */
export function mldsaKeyId(publicKey: Uint8Array): Buffer {
  return createHash('sha256').update(mldsaSubjectPublicKeyInfo(publicKey)).digest();
}

/** Derives the key pair of a 32-byte seed (FIPS 204 ML-DSA.KeyGen_internal). */
export function mldsaKeyPairFromSeed(seed: Uint8Array): MldsaKeyPair {
  checkSize(seed, MLDSA87_SEED_SIZE, 'seed');
  return ml_dsa87.keygen(seed);
}

function checkContext(context: Uint8Array): void {
  if (context.length > MLDSA_CONTEXT_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `ML-DSA context string has ${context.length} bytes; FIPS 204 allows at most ${MLDSA_CONTEXT_MAX}`);
  }
}

/**
 * Signs `message` with pure ML-DSA-87 and `context`. Signing is
 * deterministic (the FIPS 204 hedging input rnd is 32 zero bytes), so the
 * same key, message and context always give the same signature.
 */
export function mldsaSign(secretKey: Uint8Array, message: Uint8Array, context: Uint8Array): Uint8Array {
  checkSize(secretKey, MLDSA87_SECRET_KEY_SIZE, 'secret key');
  checkContext(context);
  return ml_dsa87.sign(message, secretKey, { context, extraEntropy: false });
}

/** Returns true when `signature` is a valid pure ML-DSA-87 signature of `message` with `context`. */
export function mldsaVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array, context: Uint8Array): boolean {
  checkSize(publicKey, MLDSA87_PUBLIC_KEY_SIZE, 'public key');
  checkContext(context);
  if (signature.length !== MLDSA87_SIGNATURE_SIZE) return false;
  return ml_dsa87.verify(signature, message, publicKey, { context });
}

/** Returns a signer that signs in this process with `secretKey`. */
export function localMldsaSigner(secretKey: Uint8Array): MldsaSigner {
  checkSize(secretKey, MLDSA87_SECRET_KEY_SIZE, 'secret key');
  return async (message, context) => mldsaSign(secretKey, message, context);
}
