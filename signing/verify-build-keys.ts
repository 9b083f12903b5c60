/**
 * The keys of a build output as `qwamos-build verify` trusts them: the root
 * ML-DSA-87 key (the trust anchor, pinned with --root-key or taken from the
 * folder), the stage keys that the root key certifies, and the AVB key.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { QwamosError } from '../core/errors.js';
import { decodeAvbPublicKey, encodeAvbPublicKey } from './avb-key.js';
import { CertificateError, parseCertificate, verifyCertificateSignature, type KeyCertificate } from './keys-cert.js';
import { DerError } from './keys-der.js';
import { decodeMlDsa87Spki, pemDecode } from './keys-pkcs8.js';
import { mldsaKeyId } from './mldsa.js';
import { outputPath, readOutputFile, type BuildOutput, type ChainKeyRole } from './verify-build-layout.js';
import { checkFailed, failureOf, type StageFailure } from './verify-build-row.js';

/** A key of the chain, or the failure that makes it untrusted. */
export interface ChainKey {
  role: ChainKeyRole;
  file: string;
  /** Raw 2,592-byte ML-DSA-87 public key, when the file parsed. */
  publicKey?: Uint8Array;
  keyId?: Buffer;
  /** Parsed certificate of a stage key, when the build names one; `failure` is set when it fails a check. */
  certificate?: KeyCertificate;
  /** Why the key cannot be trusted: unreadable, invalid, or (stage keys) a certificate that fails its checks. */
  failure?: StageFailure;
}

export interface TrustAnchor {
  rootKey: {
    /** Lowercase hex key id, when the key could be read. */
    keyId?: string;
    file: string;
    /** True when --root-key pinned the key; false when the folder's own key was used. */
    pinned: boolean;
  };
  /** Absent when the build has no vbmeta and no --avb-key was given. */
  avbKey?: {
    /** SHA-256 of the AVB public key blob, lowercase hex. */
    sha256?: string;
    file: string;
    pinned: boolean;
  };
}

/** Decodes an ML-DSA-87 SubjectPublicKeyInfo PEM file; throws INPUT_INVALID naming `file`. */
export function decodeMlDsaPublicKeyPem(bytes: Uint8Array, file: string): Uint8Array {
  try {
    const { label, der } = pemDecode(Buffer.from(bytes).toString('latin1'));
    if (label !== 'PUBLIC KEY') throw new DerError(`the PEM block is '${label}', expected 'PUBLIC KEY'`);
    return decodeMlDsa87Spki(der);
  } catch (error) {
    if (!(error instanceof DerError)) throw error;
    throw new QwamosError('INPUT_INVALID', `invalid public key (${file}: ${error.message})`, { data: { reason: `invalid public key (${file}: ${error.message})` } });
  }
}

/**
 * Loads the root key: the --root-key file when given, or the folder's own
 * key. A problem with a pinned file throws (exit status 2), because the
 * caller's input is wrong. A problem with the folder's key is recorded as
 * the key's failure, because the build output is broken.
 */
export async function loadRootKey(build: BuildOutput, pinnedFile: string | undefined): Promise<ChainKey> {
  if (pinnedFile !== undefined) {
    const bytes = await readFile(pinnedFile).catch((error: NodeJS.ErrnoException) => {
      throw new QwamosError(error.code === 'ENOENT' ? 'INPUT_NOT_FOUND' : 'INPUT_INVALID', `--root-key ${pinnedFile} cannot be read (${error.code ?? error.message}); pass the root public key (SPKI PEM) of the product`);
    });
    const publicKey = decodeMlDsaPublicKeyPem(bytes, pinnedFile);
    return { role: 'root', file: pinnedFile, publicKey, keyId: mldsaKeyId(publicKey) };
  }
  return loadFolderKey(build, 'root');
}

async function loadFolderKey(build: BuildOutput, role: ChainKeyRole): Promise<ChainKey> {
  const name = build.chain.keys[role];
  const key: ChainKey = { role, file: outputPath(build, name) };
  try {
    key.publicKey = decodeMlDsaPublicKeyPem(await readOutputFile(build, name), key.file);
    key.keyId = mldsaKeyId(key.publicKey);
  } catch (error) {
    if (!(error instanceof QwamosError)) throw error;
    key.failure = failureOf(error);
  }
  return key;
}

/**
 * Loads the key of a stage role and checks its certificate against the
 * root key: the root signature, the purpose, the issuer and that the
 * subject key id is the id of the .pub file's key. A build that names no
 * certificate (phone builds) leaves the key uncertified, and the boot
 * chain's own rule remains: the previous stage's manifest must list it.
 */
export async function loadStageKey(build: BuildOutput, role: Exclude<ChainKeyRole, 'root'>, root: ChainKey): Promise<ChainKey> {
  const key = await loadFolderKey(build, role);
  const certificateName = build.chain.keys[`${role}-certificate`];
  if (key.failure !== undefined || certificateName === undefined) return key;

  const certificateFile = outputPath(build, certificateName);
  const invalid = (problem: string): StageFailure => ({ kind: 'certificate invalid', reason: `certificate invalid (${certificateFile}: ${problem})` });
  try {
    key.certificate = parseCertificate(new Uint8Array(await readOutputFile(build, certificateName)));
  } catch (error) {
    if (error instanceof CertificateError) key.failure = invalid(error.message);
    else if (error instanceof QwamosError) key.failure = failureOf(error);
    else throw error;
    return key;
  }

  const certificate = key.certificate;
  const keyId = key.keyId!.toString('hex');
  if (certificate.purpose !== role) key.failure = invalid(`certifies a ${certificate.purpose} key, expected ${role}`);
  else if (certificate.subjectKeyId !== keyId) key.failure = invalid(`certifies key ${certificate.subjectKeyId}, but ${key.file} has key id ${keyId}`);
  else if (root.keyId === undefined || root.publicKey === undefined) key.failure = invalid('the root key is not available to check it');
  else if (certificate.issuerKeyId !== root.keyId.toString('hex')) key.failure = invalid(`issued by key ${certificate.issuerKeyId}, not by the root key ${root.keyId.toString('hex')}`);
  else if (!verifyCertificateSignature(certificate, root.publicKey)) key.failure = invalid('the root key signature does not verify');
  return key;
}

/** The AVB public key blob: the --avb-key file (blob or RSA PEM) when given, else the file the chain names. */
export interface AvbTrust {
  file: string;
  pinned: boolean;
  blob?: Buffer;
  failure?: StageFailure;
}

/** Loads the AVB key; a problem with a pinned file throws (exit status 2), one with the folder's file is recorded. */
export async function loadAvbKey(build: BuildOutput, pinnedFile: string | undefined): Promise<AvbTrust | undefined> {
  if (pinnedFile !== undefined) {
    const bytes = await readFile(pinnedFile).catch((error: NodeJS.ErrnoException) => {
      throw new QwamosError(error.code === 'ENOENT' ? 'INPUT_NOT_FOUND' : 'INPUT_INVALID', `--avb-key ${pinnedFile} cannot be read (${error.code ?? error.message}); pass the AVB public key blob (avb_pubkey.bin) or the RSA public key PEM`);
    });
    try {
      return { file: pinnedFile, pinned: true, blob: decodeAvbKeyFile(bytes, pinnedFile) };
    } catch (error) {
      if (!(error instanceof QwamosError)) throw error;
      throw new QwamosError('INPUT_INVALID', `--avb-key: ${failureOf(error).reason}; pass the AVB public key blob (avb_pubkey.bin) or the RSA public key PEM`);
    }
  }

  const vbmeta = build.chain.vbmeta;
  if (vbmeta === undefined) return undefined;
  const trust: AvbTrust = { file: outputPath(build, vbmeta.publicKey), pinned: false };
  try {
    trust.blob = decodeAvbKeyFile(await readOutputFile(build, vbmeta.publicKey), trust.file);
  } catch (error) {
    if (!(error instanceof QwamosError)) throw error;
    trust.failure = failureOf(error);
  }
  return trust;
}

function decodeAvbKeyFile(bytes: Buffer, file: string): Buffer {
  try {
    if (bytes.subarray(0, 11).toString('latin1') === '-----BEGIN ') return encodeAvbPublicKey(bytes.toString('latin1'));
    decodeAvbPublicKey(bytes);
    return bytes;
  } catch (error) {
    if (!(error instanceof QwamosError)) throw error;
    return checkFailed(`invalid public key (${file}: ${error.message})`);
  }
}

export function trustAnchorOf(root: ChainKey, rootPinned: boolean, avb: AvbTrust | undefined): TrustAnchor {
  return {
    rootKey: { ...(root.keyId ? { keyId: root.keyId.toString('hex') } : {}), file: root.file, pinned: rootPinned },
    ...(avb === undefined ? {} : {
      avbKey: { ...(avb.blob ? { sha256: createHash('sha256').update(avb.blob).digest('hex') } : {}), file: avb.file, pinned: avb.pinned },
    }),
  };
}
