/**
 * ML-DSA-87 key encodings of RFC 9881 (X.509 algorithm identifiers for
 * ML-DSA): the PKCS#8 private key in the 32-byte seed form, the
 * SubjectPublicKeyInfo public key, PEM armor (RFC 7468), and the key id.
 *
 * Encodings, with id-ml-dsa-87 = 2.16.840.1.101.3.4.3.19 and the
 * AlgorithmIdentifier parameters absent:
 *
 *   OneAsymmetricKey ::= SEQUENCE {            -- RFC 5958, 54 bytes in all
 *     version INTEGER (0),
 *     privateKeyAlgorithm SEQUENCE { id-ml-dsa-87 },
 *     privateKey OCTET STRING containing
 *       ML-DSA-87-PrivateKey ::= CHOICE {
 *         seed [0] IMPLICIT OCTET STRING (SIZE (32)),        -- tag 0x80, the form written here
 *         expandedKey OCTET STRING (SIZE (4896)),
 *         both SEQUENCE { seed OCTET STRING, expandedKey OCTET STRING } } }
 *
 *   SubjectPublicKeyInfo ::= SEQUENCE {        -- 2,614 bytes
 *     algorithm SEQUENCE { id-ml-dsa-87 },
 *     subjectPublicKey BIT STRING (the 2,592-byte FIPS 204 public key) }
 */
import { createHash } from 'node:crypto';
import {
  concatBytes,
  contextTag,
  DerError,
  decodeBitStringBytes,
  decodeOctets,
  decodeOid,
  decodeSingle,
  decodeUnsignedInteger,
  derBitString,
  derInteger,
  derOctetString,
  derOid,
  derSequence,
  expectSequence,
  TAG_OCTET_STRING,
  TAG_SEQUENCE,
} from './keys-der.js';
import { mldsaKeyPairFromSeed, mldsaSubjectPublicKeyInfo } from './mldsa.js';

export const OID_ML_DSA_87 = '2.16.840.1.101.3.4.3.19';
export const OID_ML_DSA_65 = '2.16.840.1.101.3.4.3.18';
export const OID_ML_DSA_44 = '2.16.840.1.101.3.4.3.17';
export const OID_RSA_ENCRYPTION = '1.2.840.113549.1.1.1';

export const ML_DSA_87_SEED_LENGTH = 32;
export const ML_DSA_87_PUBLIC_KEY_LENGTH = 2592;
export const ML_DSA_87_EXPANDED_KEY_LENGTH = 4896;
export const ML_DSA_87_SIGNATURE_LENGTH = 4627;

/** Names of algorithm OIDs that may turn up in a key file, for error messages. */
const ALGORITHM_NAMES: Record<string, string> = {
  [OID_ML_DSA_87]: 'ML-DSA-87',
  [OID_ML_DSA_65]: 'ML-DSA-65',
  [OID_ML_DSA_44]: 'ML-DSA-44',
  [OID_RSA_ENCRYPTION]: 'RSA',
  '1.2.840.10045.2.1': 'EC',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
};

/** Returns a readable name for an algorithm OID, such as 'RSA (1.2.840.113549.1.1.1)'. */
export function algorithmName(oid: string): string {
  const name = ALGORITHM_NAMES[oid];
  return name ? `${name} (${oid})` : `unknown algorithm ${oid}`;
}

// --- PEM (RFC 7468) ---

/** Wraps DER bytes in PEM armor with 64-character base64 lines. */
export function pemEncode(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * Decodes the one PEM block of `text` and returns its label and bytes.
 * Throws DerError when there is no complete block, more than one, or the
 * base64 body is invalid.
 */
export function pemDecode(text: string): { label: string; der: Uint8Array } {
  const begins = [...text.matchAll(/^-----BEGIN ([A-Z0-9 ]+)-----\s*$/gm)];
  if (begins.length === 0) throw new DerError('no "-----BEGIN ...-----" line found; the file is not PEM');
  if (begins.length > 1) throw new DerError(`${begins.length} PEM blocks found; a key file contains exactly one`);

  const begin = begins[0] as RegExpMatchArray;
  const label = begin[1] as string;
  const bodyStart = (begin.index ?? 0) + begin[0].length;
  const endLine = `-----END ${label}-----`;
  const bodyEnd = text.indexOf(endLine, bodyStart);
  if (bodyEnd < 0) throw new DerError(`"${endLine}" line is missing (truncated file)`);

  const body = text.slice(bodyStart, bodyEnd).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
    throw new DerError(`the base64 body of the ${label} block is invalid`);
  }
  return { label, der: new Uint8Array(Buffer.from(body, 'base64')) };
}

// --- Key id ---

/** Returns the key id: the lowercase hex SHA-256 of the SubjectPublicKeyInfo DER. */
export function keyIdOfSpki(spkiDer: Uint8Array): string {
  return createHash('sha256').update(spkiDer).digest('hex');
}

// --- SubjectPublicKeyInfo ---

/** Encodes an ML-DSA-87 public key as SubjectPublicKeyInfo DER (the encoding of signing/mldsa.ts). */
export function spkiDer(publicKey: Uint8Array): Uint8Array {
  return new Uint8Array(mldsaSubjectPublicKeyInfo(publicKey));
}

/** Returns the algorithm OID of a SubjectPublicKeyInfo, for type checks before decoding. */
export function spkiAlgorithm(spki: Uint8Array): string {
  const [algorithm] = expectSequence(decodeSingle(spki), 'SubjectPublicKeyInfo', 2);
  const [oid] = expectSequence(algorithm, 'SubjectPublicKeyInfo algorithm', 1, 2);
  return decodeOid(oid, 'SubjectPublicKeyInfo algorithm OID');
}

/** Decodes an ML-DSA-87 SubjectPublicKeyInfo and returns the raw 2,592-byte public key. */
export function decodeMlDsa87Spki(spki: Uint8Array): Uint8Array {
  const [algorithm, subjectPublicKey] = expectSequence(decodeSingle(spki), 'SubjectPublicKeyInfo', 2);
  const oid = decodeOid(expectSequence(algorithm, 'SubjectPublicKeyInfo algorithm', 1, 2)[0], 'SubjectPublicKeyInfo algorithm OID');
  if (oid !== OID_ML_DSA_87) throw new DerError(`public key is ${algorithmName(oid)}, expected ML-DSA-87 (${OID_ML_DSA_87})`);
  expectSequence(algorithm, 'ML-DSA-87 AlgorithmIdentifier (parameters must be absent)', 1);

  const publicKey = decodeBitStringBytes(subjectPublicKey, 'subjectPublicKey');
  if (publicKey.length !== ML_DSA_87_PUBLIC_KEY_LENGTH) {
    throw new DerError(`ML-DSA-87 public key is ${publicKey.length} bytes, expected ${ML_DSA_87_PUBLIC_KEY_LENGTH}`);
  }
  return publicKey;
}

// --- PKCS#8 private key ---

/** Encodes a 32-byte ML-DSA-87 seed as PKCS#8 OneAsymmetricKey DER in the RFC 9881 seed form. */
export function encodeMlDsa87Pkcs8(seed: Uint8Array): Uint8Array {
  if (seed.length !== ML_DSA_87_SEED_LENGTH) throw new RangeError(`ML-DSA-87 seed must be ${ML_DSA_87_SEED_LENGTH} bytes, got ${seed.length}`);

  const privateKeyChoice = concatBytes([Uint8Array.of(contextTag(0), ML_DSA_87_SEED_LENGTH), seed]);
  return derSequence(derInteger(0), derSequence(derOid(OID_ML_DSA_87)), derOctetString(privateKeyChoice));
}

/** Returns the privateKeyAlgorithm OID of any PKCS#8 OneAsymmetricKey, for type checks before decoding. */
export function pkcs8Algorithm(pkcs8: Uint8Array): string {
  const fields = expectSequence(decodeSingle(pkcs8), 'PKCS#8 OneAsymmetricKey', 3, 5);
  const [oid] = expectSequence(fields[1], 'privateKeyAlgorithm', 1, 2);
  return decodeOid(oid, 'privateKeyAlgorithm OID');
}

/**
 * Decodes ML-DSA-87 PKCS#8 DER in the seed form and returns the 32-byte
 * seed. Rejects the expandedKey and both forms, version 1 keys with
 * attributes or a public key, parameters, and any trailing bytes.
 */
export function decodeMlDsa87Pkcs8(pkcs8: Uint8Array): Uint8Array {
  const fields = expectSequence(decodeSingle(pkcs8), 'PKCS#8 OneAsymmetricKey', 3, 5);
  const [version, algorithm, privateKey] = fields;

  if (decodeUnsignedInteger(version, 'PKCS#8 version') !== 0n) throw new DerError('PKCS#8 version must be 0 (v1)');
  if (fields.length > 3) throw new DerError('PKCS#8 attributes and publicKey fields are not supported in an ML-DSA-87 seed key');

  const oid = decodeOid(expectSequence(algorithm, 'privateKeyAlgorithm', 1, 2)[0], 'privateKeyAlgorithm OID');
  if (oid !== OID_ML_DSA_87) throw new DerError(`private key is ${algorithmName(oid)}, expected ML-DSA-87 (${OID_ML_DSA_87})`);
  expectSequence(algorithm, 'ML-DSA-87 AlgorithmIdentifier (parameters must be absent)', 1);

  const choice = decodeSingle(decodeOctets(privateKey, 'privateKey'));
  if (choice.tag === TAG_OCTET_STRING) throw new DerError('ML-DSA-87 private key uses the expandedKey form; only the 32-byte seed form [0] is supported');
  if (choice.tag === TAG_SEQUENCE) throw new DerError('ML-DSA-87 private key uses the "both" form; only the 32-byte seed form [0] is supported');

  const seed = decodeOctets(choice, 'ML-DSA-87 private key seed [0]', contextTag(0));
  if (seed.length !== ML_DSA_87_SEED_LENGTH) throw new DerError(`ML-DSA-87 seed is ${seed.length} bytes, expected ${ML_DSA_87_SEED_LENGTH}`);
  return new Uint8Array(seed);
}

/** Derives the ML-DSA-87 key pair from its seed (FIPS 204 ML-DSA.KeyGen_internal). */
export function mlDsa87KeyPair(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array } {
  return mldsaKeyPairFromSeed(seed);
}
