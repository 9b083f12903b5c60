/**
 * AVB signing algorithms, RSA keys and the AVB public key blob.
 *
 * The blob (AvbRSAPublicKeyHeader followed by n and rr) is what a vbmeta
 * image embeds, what a chain descriptor pins, and the `avb_custom_key` file
 * that Pixel bootloaders accept. Its layout, all integers big-endian:
 *
 *   offset 0  u32 key size in bits (2048, 4096 or 8192)
 *   offset 4  u32 n0inv = 2^32 - (n^-1 mod 2^32), for Montgomery reduction
 *   offset 8  n, key-bits/8 bytes
 *   then      rr = (2^bitlength(n))^2 mod n, key-bits/8 bytes
 */
import { constants, createPrivateKey, createPublicKey, publicDecrypt, sign, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { QwamosError } from '../core/errors.js';
import { avbVerifyError } from './avb-errors.js';

export type AvbAlgorithmName =
  | 'NONE'
  | 'SHA256_RSA2048'
  | 'SHA256_RSA4096'
  | 'SHA256_RSA8192'
  | 'SHA512_RSA2048'
  | 'SHA512_RSA4096'
  | 'SHA512_RSA8192';

export interface AvbAlgorithm {
  name: AvbAlgorithmName;
  /** Value of the vbmeta header's algorithm field (AvbAlgorithmType). */
  type: number;
  /** Digest over header and auxiliary block; undefined for NONE. */
  hashName?: 'sha256' | 'sha512';
  hashBytes: number;
  /** RSA modulus size in bits; 0 for NONE. */
  keyBits: number;
  signatureBytes: number;
  /** Size of the public key blob: 8 + 2 * keyBits / 8. */
  publicKeyBytes: number;
}

/** DER DigestInfo prefixes of EMSA-PKCS1-v1_5 (RFC 8017, section 9.2, note 1). */
const DIGEST_INFO_PREFIX = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
} as const;

const RSA_EXPONENT_JWK = 'AQAB';
const PUBLIC_KEY_HEADER_SIZE = 8;
const SUPPORTED_KEY_BITS = [2048, 4096, 8192];

function rsaAlgorithm(name: AvbAlgorithmName, type: number, hashName: 'sha256' | 'sha512', keyBits: number): AvbAlgorithm {
  return {
    name,
    type,
    hashName,
    hashBytes: hashName === 'sha256' ? 32 : 64,
    keyBits,
    signatureBytes: keyBits / 8,
    publicKeyBytes: PUBLIC_KEY_HEADER_SIZE + (2 * keyBits) / 8,
  };
}

/** The algorithms of libavb 1.3, by their AvbAlgorithmType number. */
export const AVB_ALGORITHMS: readonly AvbAlgorithm[] = [
  { name: 'NONE', type: 0, hashBytes: 0, keyBits: 0, signatureBytes: 0, publicKeyBytes: 0 },
  rsaAlgorithm('SHA256_RSA2048', 1, 'sha256', 2048),
  rsaAlgorithm('SHA256_RSA4096', 2, 'sha256', 4096),
  rsaAlgorithm('SHA256_RSA8192', 3, 'sha256', 8192),
  rsaAlgorithm('SHA512_RSA2048', 4, 'sha512', 2048),
  rsaAlgorithm('SHA512_RSA4096', 5, 'sha512', 4096),
  rsaAlgorithm('SHA512_RSA8192', 6, 'sha512', 8192),
];

/** Looks up an algorithm by its avbtool name, such as SHA256_RSA4096. */
export function findAvbAlgorithm(name: string): AvbAlgorithm {
  const algorithm = AVB_ALGORITHMS.find((candidate) => candidate.name === name);
  if (!algorithm) {
    const names = AVB_ALGORITHMS.map((candidate) => candidate.name).join(', ');
    throw new QwamosError('INPUT_INVALID', `unknown AVB algorithm '${name}'; use one of ${names}`);
  }
  return algorithm;
}

/** Looks up an algorithm by the header's algorithm number; undefined when libavb has none. */
export function avbAlgorithmForType(type: number): AvbAlgorithm | undefined {
  return AVB_ALGORITHMS.find((candidate) => candidate.type === type);
}

/** Returns the EMSA-PKCS1-v1_5 block without the digest: 00 01 FF..FF 00 DigestInfo-prefix. */
export function pkcs1Padding(algorithm: AvbAlgorithm): Buffer {
  if (!algorithm.hashName) throw new Error(`algorithm ${algorithm.name} has no padding`);
  const prefix = DIGEST_INFO_PREFIX[algorithm.hashName];
  const fillBytes = algorithm.signatureBytes - algorithm.hashBytes - prefix.length - 3;
  return Buffer.concat([Buffer.from([0x00, 0x01]), Buffer.alloc(fillBytes, 0xff), Buffer.from([0x00]), prefix]);
}

/** An RSA key as AVB uses it: exponent 65537 and a modulus of 2048, 4096 or 8192 bits. */
export interface AvbRsaKey {
  publicKey: KeyObject;
  /** Present when the key was loaded from a private key. */
  privateKey?: KeyObject;
  modulus: bigint;
  /** Bit length of the modulus rounded up to a power of two, as avbtool computes it. */
  keyBits: number;
}

/**
 * Loads an RSA key from PEM text: a private key (PKCS#1 or PKCS#8) or a
 * public key (PKCS#1 or SubjectPublicKeyInfo). `source` names the key in
 * error messages.
 */
export function loadAvbKey(pem: string | Uint8Array, source = 'key'): AvbRsaKey {
  const text = typeof pem === 'string' ? pem : Buffer.from(pem).toString('utf8');
  const privateKey = text.includes('PRIVATE KEY') ? parsePrivateKey(text, source) : undefined;
  const publicKey = privateKey ? createPublicKey(privateKey) : parsePublicKey(text, source);

  if (publicKey.asymmetricKeyType !== 'rsa') {
    throw new QwamosError('INPUT_INVALID', `${source} is a ${publicKey.asymmetricKeyType ?? 'unknown'} key; AVB needs an RSA key (openssl genrsa -out key.pem 4096)`);
  }

  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.e !== RSA_EXPONENT_JWK) {
    throw new QwamosError('INPUT_INVALID', `${source} has RSA public exponent ${bytesToBigInt(Buffer.from(jwk.e ?? '', 'base64url'))}; libavb only verifies exponent 65537`);
  }

  const modulus = bytesToBigInt(Buffer.from(jwk.n ?? '', 'base64url'));
  const keyBits = roundUpToPowerOfTwo(modulus.toString(2).length);
  if (!SUPPORTED_KEY_BITS.includes(keyBits)) {
    throw new QwamosError('INPUT_INVALID', `${source} is a ${keyBits}-bit RSA key; AVB supports 2048, 4096 and 8192 bits`);
  }

  return { publicKey, privateKey, modulus, keyBits };
}

/** Reads and loads a PEM key file; see loadAvbKey. */
export async function readAvbKey(keyPath: string): Promise<AvbRsaKey> {
  let pem: string;
  try {
    pem = await readFile(keyPath, 'utf8');
  } catch (error) {
    throw new QwamosError('INPUT_NOT_FOUND', `cannot read key file ${keyPath}: ${(error as Error).message}`, { cause: error });
  }
  return loadAvbKey(pem, keyPath);
}

function parsePrivateKey(pem: string, source: string): KeyObject {
  if (pem.includes('ENCRYPTED PRIVATE KEY') || pem.includes('Proc-Type: 4,ENCRYPTED')) {
    throw new QwamosError('INPUT_INVALID', `cannot load private key ${source}: it is encrypted, and encrypted PEM keys are not supported`);
  }
  try {
    return createPrivateKey(pem);
  } catch (error) {
    throw new QwamosError('INPUT_INVALID', `cannot load private key ${source}: ${(error as Error).message}`, { cause: error });
  }
}

function parsePublicKey(pem: string, source: string): KeyObject {
  try {
    return createPublicKey(pem);
  } catch (error) {
    throw new QwamosError('INPUT_INVALID', `cannot load ${source} as a PEM RSA key: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Encodes the AVB public key blob of a key: PEM text (private or public),
 * a node KeyObject, or a loaded AvbRsaKey. For testkey_rsa2048.pem this is
 * the 520-byte blob whose SHA-256 is 22de3994...7c8c.
 */
export function encodeAvbPublicKey(key: string | Uint8Array | KeyObject | AvbRsaKey): Buffer {
  const loaded = toAvbKey(key);
  return encodePublicKeyBlob(loaded.modulus, loaded.keyBits);
}

function encodePublicKeyBlob(modulus: bigint, keyBits: number): Buffer {
  const bytes = keyBits / 8;
  const wordModulus = 1n << 32n;
  const n0inv = wordModulus - modularInverse(modulus % wordModulus, wordModulus);
  const r = 1n << BigInt(modulus.toString(2).length);
  const rr = (r * r) % modulus;

  const header = Buffer.alloc(PUBLIC_KEY_HEADER_SIZE);
  header.writeUInt32BE(keyBits, 0);
  header.writeUInt32BE(Number(n0inv), 4);
  return Buffer.concat([header, bigIntToBytes(modulus, bytes), bigIntToBytes(rr, bytes)]);
}

function toAvbKey(key: string | Uint8Array | KeyObject | AvbRsaKey): AvbRsaKey {
  if (typeof key === 'string' || key instanceof Uint8Array) return loadAvbKey(key);
  if ('modulus' in key) return key;
  const pem = key.type === 'private'
    ? key.export({ format: 'pem', type: 'pkcs8' })
    : key.export({ format: 'pem', type: 'spki' });
  return loadAvbKey(pem);
}

export interface AvbPublicKeyBlob {
  keyBits: number;
  n0inv: number;
  modulus: bigint;
  rr: bigint;
}

/**
 * Decodes and checks a public key blob the way libavb's avb_rsa_verify
 * does (size, key bits), and also checks that n0inv and rr belong to n,
 * because libavb's Montgomery arithmetic silently fails with wrong ones.
 */
export function decodeAvbPublicKey(blob: Uint8Array): AvbPublicKeyBlob {
  const bytes = Buffer.from(blob);
  if (bytes.length < PUBLIC_KEY_HEADER_SIZE) {
    throw avbVerifyError('public_key', `public key blob has ${bytes.length} bytes, fewer than its 8-byte header`);
  }

  const keyBits = bytes.readUInt32BE(0);
  if (!SUPPORTED_KEY_BITS.includes(keyBits)) {
    throw avbVerifyError('public_key', `public key blob declares ${keyBits} key bits; libavb supports 2048, 4096 and 8192`);
  }

  const keyBytes = keyBits / 8;
  const expectedLength = PUBLIC_KEY_HEADER_SIZE + 2 * keyBytes;
  if (bytes.length !== expectedLength) {
    throw avbVerifyError('public_key', `public key blob has ${bytes.length} bytes; a ${keyBits}-bit key blob has ${expectedLength}`);
  }

  const n0inv = bytes.readUInt32BE(4);
  const modulus = bytesToBigInt(bytes.subarray(PUBLIC_KEY_HEADER_SIZE, PUBLIC_KEY_HEADER_SIZE + keyBytes));
  const rr = bytesToBigInt(bytes.subarray(PUBLIC_KEY_HEADER_SIZE + keyBytes));
  if (modulus % 2n === 0n || !encodePublicKeyBlob(modulus, keyBits).equals(bytes)) {
    throw avbVerifyError('public_key', 'public key blob is inconsistent: n0inv or rr does not belong to the modulus n');
  }

  return { keyBits, n0inv, modulus, rr };
}

/** Builds a node public KeyObject (exponent 65537) from a modulus. */
export function rsaPublicKeyFromModulus(modulus: bigint, keyBits: number): KeyObject {
  const n = bigIntToBytes(modulus, keyBits / 8).toString('base64url');
  return createPublicKey({ key: { kty: 'RSA', n, e: RSA_EXPONENT_JWK }, format: 'jwk' });
}

/**
 * Signs `data` with RSASSA-PKCS1-v1_5 (deterministic), which gives the same
 * bytes as avbtool's raw RSA over padding || digest.
 */
export function signAvb(algorithm: AvbAlgorithm, key: AvbRsaKey, data: Uint8Array): Buffer {
  if (!algorithm.hashName) throw new Error('algorithm NONE has no signature');
  if (!key.privateKey) {
    throw new QwamosError('INPUT_INVALID', `signing with ${algorithm.name} needs a private key, but the key given is a public key`);
  }
  if (key.keyBits !== algorithm.keyBits) {
    throw new QwamosError('INPUT_INVALID', `the key is a ${key.keyBits}-bit RSA key but ${algorithm.name} needs ${algorithm.keyBits} bits; pass a matching --algorithm or --key`);
  }
  return sign(algorithm.hashName, data, { key: key.privateKey, padding: constants.RSA_PKCS1_PADDING });
}

/**
 * Checks an RSA signature over a digest as libavb does: raw RSA with the
 * public key, then compare the whole block with padding || digest.
 * Returns false on any mismatch; throws for a malformed key blob.
 */
export function verifyAvbSignature(algorithm: AvbAlgorithm, publicKeyBlob: Uint8Array, signature: Uint8Array, digest: Uint8Array): boolean {
  const blob = decodeAvbPublicKey(publicKeyBlob);
  if (blob.keyBits !== algorithm.keyBits) {
    throw avbVerifyError('public_key', `embedded public key has ${blob.keyBits} bits but ${algorithm.name} needs ${algorithm.keyBits}`);
  }
  if (signature.length !== algorithm.signatureBytes || bytesToBigInt(Buffer.from(signature)) >= blob.modulus) return false;

  const publicKey = rsaPublicKeyFromModulus(blob.modulus, blob.keyBits);
  const block = publicDecrypt({ key: publicKey, padding: constants.RSA_NO_PADDING }, signature);
  const expected = Buffer.concat([pkcs1Padding(algorithm), digest]);
  return block.equals(expected);
}

export function bytesToBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

function bigIntToBytes(value: bigint, length: number): Buffer {
  return Buffer.from(value.toString(16).padStart(length * 2, '0'), 'hex');
}

function roundUpToPowerOfTwo(value: number): number {
  let power = 1;
  while (power < value) power *= 2;
  return power;
}

/** Inverse of `a` modulo `m` by the extended Euclidean algorithm; `a` and `m` must be coprime. */
function modularInverse(a: bigint, m: bigint): bigint {
  let [previousRemainder, remainder] = [a, m];
  let [previousCoefficient, coefficient] = [1n, 0n];
  while (remainder !== 0n) {
    const quotient = previousRemainder / remainder;
    [previousRemainder, remainder] = [remainder, previousRemainder - quotient * remainder];
    [previousCoefficient, coefficient] = [coefficient, previousCoefficient - quotient * coefficient];
  }
  return ((previousCoefficient % m) + m) % m;
}
