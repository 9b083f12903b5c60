/**
 * Stage-key certificates: the root key's ML-DSA-87 signature over a stage
 * key's id, purpose and validity, so that a stage verifier that trusts only
 * the root public key can accept a stage key.
 *
 * Layout, version 1 (integers big-endian):
 *
 *   offset  size  field
 *   0       4     magic "QKC1" (0x51 0x4B 0x43 0x31)
 *   4       4     format version, 1
 *   8       4     purpose: 1 = system-stage, 2 = guest-stage
 *   12      4     flags: bit 0 set = dev key; other bits must be 0
 *   16      32    subject key id: SHA-256 of the stage key's SubjectPublicKeyInfo DER
 *   48      32    issuer key id: SHA-256 of the root key's SubjectPublicKeyInfo DER
 *   80      8     not before, seconds since 1970-01-01T00:00:00Z
 *   88      8     not after, seconds since 1970-01-01T00:00:00Z
 *   96      4627  ML-DSA-87 signature by the root key over bytes 0..95,
 *                 with the context string "qwamos-stage-key-certificate-v1"
 *   total   4723
 */
import { ML_DSA_87_SIGNATURE_LENGTH } from './keys-pkcs8.js';
import { mldsaSign, mldsaVerify } from './mldsa.js';

export const CERTIFICATE_MAGIC = 'QKC1';
export const CERTIFICATE_VERSION = 1;
export const CERTIFICATE_BODY_SIZE = 96;
export const CERTIFICATE_SIZE = CERTIFICATE_BODY_SIZE + ML_DSA_87_SIGNATURE_LENGTH;

/** ML-DSA context string of the certificate signature (FIPS 204 ctx), ASCII. */
export const CERTIFICATE_CONTEXT = new TextEncoder().encode('qwamos-stage-key-certificate-v1');

export type CertifiedPurpose = 'system-stage' | 'guest-stage';

const PURPOSE_CODES: Record<CertifiedPurpose, number> = { 'system-stage': 1, 'guest-stage': 2 };
const FLAG_DEV = 1;

/** A certificate format or signature problem. Callers add the file name. */
export class CertificateError extends Error {
  override readonly name = 'CertificateError';
}

export interface CertificateFields {
  purpose: CertifiedPurpose;
  dev: boolean;
  /** Lowercase hex key ids (64 characters). */
  subjectKeyId: string;
  issuerKeyId: string;
  /** Validity bounds in whole seconds since the Unix epoch. */
  notBefore: number;
  notAfter: number;
}

export interface KeyCertificate extends CertificateFields {
  /** Bytes 0..95, the signed part. */
  body: Uint8Array;
  signature: Uint8Array;
}

function keyIdBytes(hex: string, field: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new RangeError(`${field} must be 64 lowercase hex digits, got '${hex}'`);
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

function encodeBody(fields: CertificateFields): Uint8Array {
  const body = new Uint8Array(CERTIFICATE_BODY_SIZE);
  const view = new DataView(body.buffer);

  body.set(new TextEncoder().encode(CERTIFICATE_MAGIC), 0);
  view.setUint32(4, CERTIFICATE_VERSION);
  view.setUint32(8, PURPOSE_CODES[fields.purpose]);
  view.setUint32(12, fields.dev ? FLAG_DEV : 0);
  body.set(keyIdBytes(fields.subjectKeyId, 'subject key id'), 16);
  body.set(keyIdBytes(fields.issuerKeyId, 'issuer key id'), 48);
  view.setBigUint64(80, BigInt(fields.notBefore));
  view.setBigUint64(88, BigInt(fields.notAfter));
  return body;
}

/** Signs a certificate with the root key's FIPS 204 secret key (deterministic ML-DSA) and returns its 4,723 bytes. */
export function issueCertificate(fields: CertificateFields, rootSecretKey: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(fields.notBefore) || !Number.isSafeInteger(fields.notAfter) || fields.notBefore < 0 || fields.notAfter <= fields.notBefore) {
    throw new RangeError(`certificate validity ${fields.notBefore}..${fields.notAfter} is invalid`);
  }

  const body = encodeBody(fields);
  const signature = mldsaSign(rootSecretKey, body, CERTIFICATE_CONTEXT);
  const out = new Uint8Array(CERTIFICATE_SIZE);
  out.set(body, 0);
  out.set(signature, CERTIFICATE_BODY_SIZE);
  return out;
}

/** Decodes a certificate without checking its signature. */
export function parseCertificate(bytes: Uint8Array): KeyCertificate {
  if (bytes.length !== CERTIFICATE_SIZE) throw new CertificateError(`certificate is ${bytes.length} bytes, expected ${CERTIFICATE_SIZE}`);

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  if (magic !== CERTIFICATE_MAGIC) throw new CertificateError(`certificate magic is ${JSON.stringify(magic)}, expected "${CERTIFICATE_MAGIC}"`);
  const version = view.getUint32(4);
  if (version !== CERTIFICATE_VERSION) throw new CertificateError(`certificate format version is ${version}; this tool reads version ${CERTIFICATE_VERSION}`);

  const purposeCode = view.getUint32(8);
  const purpose = (Object.keys(PURPOSE_CODES) as CertifiedPurpose[]).find((name) => PURPOSE_CODES[name] === purposeCode);
  if (!purpose) throw new CertificateError(`certificate purpose code ${purposeCode} is unknown (1 = system-stage, 2 = guest-stage)`);
  const flags = view.getUint32(12);
  if ((flags & ~FLAG_DEV) !== 0) throw new CertificateError(`certificate flags 0x${flags.toString(16)} set reserved bits`);

  const notBefore = view.getBigUint64(80);
  const notAfter = view.getBigUint64(88);
  if (notAfter <= notBefore || notAfter > BigInt(Number.MAX_SAFE_INTEGER)) throw new CertificateError(`certificate validity ${notBefore}..${notAfter} is invalid`);

  return {
    purpose,
    dev: (flags & FLAG_DEV) !== 0,
    subjectKeyId: Buffer.from(bytes.subarray(16, 48)).toString('hex'),
    issuerKeyId: Buffer.from(bytes.subarray(48, 80)).toString('hex'),
    notBefore: Number(notBefore),
    notAfter: Number(notAfter),
    body: bytes.subarray(0, CERTIFICATE_BODY_SIZE),
    signature: bytes.subarray(CERTIFICATE_BODY_SIZE),
  };
}

/** Returns true when the root key's signature over the certificate body is valid. */
export function verifyCertificateSignature(certificate: KeyCertificate, rootPublicKey: Uint8Array): boolean {
  return mldsaVerify(rootPublicKey, certificate.body, certificate.signature, CERTIFICATE_CONTEXT);
}
