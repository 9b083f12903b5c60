/**
 * Passphrase encryption of PKCS#8 private keys at rest: a standard PKCS#8
 * EncryptedPrivateKeyInfo (RFC 5958) with PBES2 (RFC 8018), scrypt (RFC 7914)
 * as the key derivation function and AES-256-GCM (RFC 5084) as the cipher.
 *
 *   EncryptedPrivateKeyInfo ::= SEQUENCE {
 *     encryptionAlgorithm SEQUENCE {
 *       id-PBES2 (1.2.840.113549.1.5.13),
 *       PBES2-params ::= SEQUENCE {
 *         keyDerivationFunc SEQUENCE {
 *           id-scrypt (1.3.6.1.4.1.11591.4.11),
 *           scrypt-params ::= SEQUENCE {
 *             salt OCTET STRING (16 bytes written),
 *             costParameter INTEGER (N),
 *             blockSize INTEGER (r),
 *             parallelizationParameter INTEGER (p),
 *             keyLength INTEGER OPTIONAL (omitted; 32 if present) } },
 *         encryptionScheme SEQUENCE {
 *           id-aes256-GCM (2.16.840.1.101.3.4.1.46),
 *           GCMParameters ::= SEQUENCE {
 *             aes-nonce OCTET STRING (12 bytes),
 *             aes-ICVlen INTEGER (16; the DER default 12 is not accepted) } } } },
 *     encryptedData OCTET STRING (AES-256-GCM ciphertext, then the 16-byte tag) }
 *
 * The GCM tag authenticates the key, so a wrong passphrase and a modified
 * file both fail the tag check instead of yielding a wrong key.
 * NOTE: OpenSSL 3.0 `openssl pkcs8` rejects AEAD ciphers in PBES2
 * ("AEAD ciphers not supported"), so these files open only with this module.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import { QwamosError } from '../core/errors.js';
import {
  concatBytes,
  type DerElement,
  DerError,
  decodeOctets,
  decodeOid,
  decodeSingle,
  decodeUnsignedInteger,
  derInteger,
  derOctetString,
  derOid,
  derSequence,
  expectSequence,
} from './keys-der.js';

export const OID_PBES2 = '1.2.840.113549.1.5.13';
export const OID_SCRYPT = '1.3.6.1.4.1.11591.4.11';
export const OID_AES_256_GCM = '2.16.840.1.101.3.4.1.46';

/** scrypt cost of every key written for release: N = 2^17, r = 8, p = 1, which needs 128 MiB (128 * N * r bytes). */
export const RELEASE_SCRYPT_LOG2N = 17;
export const SCRYPT_BLOCK_SIZE = 8;
export const SCRYPT_PARALLELIZATION = 1;

/** Lowest scrypt cost accepted anywhere: N = 2^14 (16 MiB). */
export const MIN_SCRYPT_LOG2N = 14;

/** Highest cost accepted when reading, so a crafted file cannot demand more than 1 GiB. */
const MAX_SCRYPT_MEMORY = 1024 * 1024 * 1024;

/**
 * Test-only environment variable that lowers N for dev keys (an integer
 * from 14 to 17, the base-2 logarithm of N). Release keys ignore it.
 */
export const TEST_SCRYPT_ENV = 'QWAMOS_TEST_SCRYPT_LOG2N';

const SALT_LENGTH = 16;
const GCM_NONCE_LENGTH = 12;
const GCM_TAG_LENGTH = 16;
const AES_256_KEY_LENGTH = 32;

/** The passphrase did not open the key: it is wrong or the file was modified. */
export class KeyDecryptionError extends Error {
  override readonly name = 'KeyDecryptionError';
}

export interface ScryptParameters {
  salt: Uint8Array;
  /** CPU/memory cost N, a power of two. */
  cost: number;
  blockSize: number;
  parallelization: number;
}

/**
 * Returns log2(N) for new keys: 17 for release keys; for dev keys the value
 * of QWAMOS_TEST_SCRYPT_LOG2N when set (14 to 17), else 17.
 */
export function scryptLog2NFor(kind: 'dev' | 'release'): number {
  const override = process.env[TEST_SCRYPT_ENV];
  if (kind === 'release' || override === undefined || override === '') return RELEASE_SCRYPT_LOG2N;

  const value = Number(override);
  if (!Number.isInteger(value) || value < MIN_SCRYPT_LOG2N || value > RELEASE_SCRYPT_LOG2N) {
    throw new QwamosError('USAGE', `${TEST_SCRYPT_ENV}=${override} is invalid; set an integer from ${MIN_SCRYPT_LOG2N} to ${RELEASE_SCRYPT_LOG2N} or unset it`);
  }
  return value;
}

function scryptMemory(cost: number, blockSize: number, parallelization: number): number {
  // OpenSSL's scrypt (used by node:crypto) allocates 128 * r * (N + 2) bytes for V plus 128 * r * p for B.
  return 128 * blockSize * (cost + 2 + parallelization);
}

async function deriveKey(passphrase: string, parameters: ScryptParameters): Promise<Buffer> {
  const { salt, cost, blockSize, parallelization } = parameters;
  const secret = Buffer.from(passphrase.normalize('NFC'), 'utf8');
  const maxmem = scryptMemory(cost, blockSize, parallelization) + 1024 * 1024;

  try {
    return await new Promise<Buffer>((resolve, reject) => {
      scrypt(secret, salt, AES_256_KEY_LENGTH, { N: cost, r: blockSize, p: parallelization, maxmem }, (error, key) => (error ? reject(error) : resolve(key)));
    });
  } finally {
    secret.fill(0);
  }
}

/**
 * Encrypts PKCS#8 DER under `passphrase` and returns EncryptedPrivateKeyInfo
 * DER. `log2N` sets the scrypt cost N = 2^log2N.
 */
export async function encryptPrivateKey(pkcs8: Uint8Array, passphrase: string, log2N = RELEASE_SCRYPT_LOG2N): Promise<Uint8Array> {
  if (!Number.isInteger(log2N) || log2N < MIN_SCRYPT_LOG2N) throw new RangeError(`scrypt log2(N) must be an integer >= ${MIN_SCRYPT_LOG2N}, got ${log2N}`);

  const parameters: ScryptParameters = {
    salt: randomBytes(SALT_LENGTH),
    cost: 2 ** log2N,
    blockSize: SCRYPT_BLOCK_SIZE,
    parallelization: SCRYPT_PARALLELIZATION,
  };
  const nonce = randomBytes(GCM_NONCE_LENGTH);
  const key = await deriveKey(passphrase, parameters);

  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_LENGTH });
  const encrypted = concatBytes([cipher.update(pkcs8), cipher.final(), cipher.getAuthTag()]);
  key.fill(0);

  const scryptParams = derSequence(
    derOctetString(parameters.salt),
    derInteger(parameters.cost),
    derInteger(parameters.blockSize),
    derInteger(parameters.parallelization),
  );
  const pbes2Params = derSequence(
    derSequence(derOid(OID_SCRYPT), scryptParams),
    derSequence(derOid(OID_AES_256_GCM), derSequence(derOctetString(nonce), derInteger(GCM_TAG_LENGTH))),
  );
  return derSequence(derSequence(derOid(OID_PBES2), pbes2Params), derOctetString(encrypted));
}

interface EncryptedKeyFields {
  scrypt: ScryptParameters;
  nonce: Uint8Array;
  encrypted: Uint8Array;
}

function decodeScryptParameters(element: DerElement | undefined): ScryptParameters {
  const fields = expectSequence(element, 'scrypt-params', 4, 5);
  const salt = decodeOctets(fields[0], 'scrypt salt');
  const cost = decodeUnsignedInteger(fields[1], 'scrypt costParameter');
  const blockSize = decodeUnsignedInteger(fields[2], 'scrypt blockSize');
  const parallelization = decodeUnsignedInteger(fields[3], 'scrypt parallelizationParameter');
  if (fields[4] !== undefined && decodeUnsignedInteger(fields[4], 'scrypt keyLength') !== BigInt(AES_256_KEY_LENGTH)) {
    throw new DerError(`scrypt keyLength must be ${AES_256_KEY_LENGTH} for AES-256`);
  }

  if (salt.length < 8 || salt.length > 64) throw new DerError(`scrypt salt is ${salt.length} bytes; 8 to 64 are accepted`);
  if (cost < 2n || (cost & (cost - 1n)) !== 0n) throw new DerError(`scrypt costParameter N=${cost} is not a power of two`);
  if (blockSize < 1n || blockSize > 32n) throw new DerError(`scrypt blockSize r=${blockSize} is outside 1 to 32`);
  if (parallelization < 1n || parallelization > 16n) throw new DerError(`scrypt parallelizationParameter p=${parallelization} is outside 1 to 16`);

  const result = { salt, cost: Number(cost), blockSize: Number(blockSize), parallelization: Number(parallelization) };
  if (cost > 2n ** 30n || scryptMemory(result.cost, result.blockSize, result.parallelization) > MAX_SCRYPT_MEMORY) {
    throw new DerError(`scrypt parameters N=${cost}, r=${blockSize} need more than the 1 GiB this tool allows`);
  }
  return result;
}

/** Splits EncryptedPrivateKeyInfo DER into the scrypt parameters, the cipher AlgorithmIdentifier and the encrypted data. */
function decodeOuter(der: Uint8Array): { scrypt: ScryptParameters; cipher: DerElement | undefined; encryptedData: DerElement | undefined } {
  const [algorithm, encryptedData] = expectSequence(decodeSingle(der), 'EncryptedPrivateKeyInfo', 2);
  const [pbes2Oid, pbes2Params] = expectSequence(algorithm, 'encryptionAlgorithm', 2);
  const scheme = decodeOid(pbes2Oid, 'encryptionAlgorithm OID');
  if (scheme !== OID_PBES2) throw new DerError(`encryption scheme is ${scheme}; only PBES2 (${OID_PBES2}) is supported`);

  const [kdf, cipher] = expectSequence(pbes2Params, 'PBES2-params', 2);
  const [kdfOid, kdfParams] = expectSequence(kdf, 'keyDerivationFunc', 2);
  const kdfName = decodeOid(kdfOid, 'keyDerivationFunc OID');
  if (kdfName !== OID_SCRYPT) throw new DerError(`key derivation function is ${kdfName}; only scrypt (${OID_SCRYPT}) is supported`);
  return { scrypt: decodeScryptParameters(kdfParams), cipher, encryptedData };
}

function decodeEncryptedKey(der: Uint8Array): EncryptedKeyFields {
  const { scrypt, cipher, encryptedData } = decodeOuter(der);

  const [cipherOid, gcmParams] = expectSequence(cipher, 'encryptionScheme', 2);
  const cipherName = decodeOid(cipherOid, 'encryptionScheme OID');
  if (cipherName !== OID_AES_256_GCM) throw new DerError(`cipher is ${cipherName}; only AES-256-GCM (${OID_AES_256_GCM}) is supported`);

  const [nonce, tagLength] = expectSequence(gcmParams, 'GCMParameters', 1, 2);
  const nonceBytes = decodeOctets(nonce, 'GCM nonce');
  if (nonceBytes.length !== GCM_NONCE_LENGTH) throw new DerError(`GCM nonce is ${nonceBytes.length} bytes, expected ${GCM_NONCE_LENGTH}`);
  const tagBytes = tagLength === undefined ? 12n : decodeUnsignedInteger(tagLength, 'GCM aes-ICVlen');
  if (tagBytes !== BigInt(GCM_TAG_LENGTH)) throw new DerError(`GCM tag length is ${tagBytes} bytes; only ${GCM_TAG_LENGTH} is accepted`);

  const encrypted = decodeOctets(encryptedData, 'encryptedData');
  if (encrypted.length <= GCM_TAG_LENGTH) throw new DerError(`encryptedData is ${encrypted.length} bytes, too short to hold a key and its tag`);
  return { scrypt, nonce: nonceBytes, encrypted };
}

/** Returns the scrypt parameters of PBES2 EncryptedPrivateKeyInfo DER without decrypting it; any cipher is accepted here. */
export function readScryptParameters(der: Uint8Array): ScryptParameters {
  return decodeOuter(der).scrypt;
}

/**
 * Decrypts EncryptedPrivateKeyInfo DER and returns the PKCS#8 DER inside.
 * Throws DerError for a malformed file or a cost below 2^minLog2N, and
 * KeyDecryptionError when the GCM tag does not match.
 */
export async function decryptPrivateKey(der: Uint8Array, passphrase: string, minLog2N = MIN_SCRYPT_LOG2N): Promise<Uint8Array> {
  const fields = decodeEncryptedKey(der);
  if (fields.scrypt.cost < 2 ** Math.max(minLog2N, MIN_SCRYPT_LOG2N)) {
    throw new DerError(`scrypt cost N=${fields.scrypt.cost} is below the required 2^${Math.max(minLog2N, MIN_SCRYPT_LOG2N)}`);
  }

  const key = await deriveKey(passphrase, fields.scrypt);
  const ciphertext = fields.encrypted.subarray(0, fields.encrypted.length - GCM_TAG_LENGTH);
  const tag = fields.encrypted.subarray(fields.encrypted.length - GCM_TAG_LENGTH);

  try {
    const decipher = createDecipheriv('aes-256-gcm', key, fields.nonce, { authTagLength: GCM_TAG_LENGTH });
    decipher.setAuthTag(tag);
    return new Uint8Array(concatBytes([decipher.update(ciphertext), decipher.final()]));
  } catch {
    throw new KeyDecryptionError('the GCM tag does not match');
  } finally {
    key.fill(0);
  }
}
