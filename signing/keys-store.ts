/**
 * The key store: one folder per product containing its root ML-DSA-87 key, the
 * two stage-signing keys that the root key certifies, the RSA-4096 AVB key,
 * and the index `keys.yaml`. Loading checks every public key, key id and
 * certificate but decrypts no private key (see keys-private.ts).
 *
 * Files in the folder (mode 0700), with a `dev-` prefix on dev keys:
 *   keys.yaml                 index, written last when the store is created
 *   PURPOSE.key.pem           ENCRYPTED PRIVATE KEY (keys-encrypt.ts), mode 0600
 *   PURPOSE.pub.pem           PUBLIC KEY, SubjectPublicKeyInfo
 *   PURPOSE.cert              stage-key certificate (keys-cert.ts), stage keys only
 *   rollback-ledger.json      last signed rollback indexes (ledger.ts)
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { QwamosError } from '../core/errors.js';
import { CertificateError, type KeyCertificate, parseCertificate, verifyCertificateSignature } from './keys-cert.js';
import { DerError } from './keys-der.js';
import { algorithmName, decodeMlDsa87Spki, keyIdOfSpki, OID_ML_DSA_87, OID_RSA_ENCRYPTION, pemDecode, spkiAlgorithm } from './keys-pkcs8.js';

export type KeyPurpose = 'root' | 'system-stage' | 'guest-stage' | 'avb';
export type KeyAlgorithm = 'ML-DSA-87' | 'RSA-4096';

export const KEY_PURPOSES: readonly KeyPurpose[] = ['root', 'system-stage', 'guest-stage', 'avb'];

/** Algorithm that each purpose requires. */
export const PURPOSE_ALGORITHMS: Record<KeyPurpose, KeyAlgorithm> = {
  root: 'ML-DSA-87',
  'system-stage': 'ML-DSA-87',
  'guest-stage': 'ML-DSA-87',
  avb: 'RSA-4096',
};

export const KEYS_INDEX_FILE = 'keys.yaml';
export const KEYS_INDEX_FORMAT = 'qwamos-keys-v1';
export const DEV_FILE_PREFIX = 'dev-';

export const RSA_MODULUS_BITS = 4096;
export const RSA_PUBLIC_EXPONENT = 65537;

/** One key of the store, with its public parts loaded and checked. */
export interface StoredKey {
  /** Lowercase hex SHA-256 of the SubjectPublicKeyInfo DER. */
  id: string;
  algorithm: KeyAlgorithm;
  purpose: KeyPurpose;
  /** Creation time, ISO 8601 UTC. */
  created: string;
  dev: boolean;
  /** Absolute path, or undefined when the private key is kept elsewhere (an HSM or offline machine). */
  privateKeyFile: string | undefined;
  publicKeyFile: string;
  certificateFile: string | undefined;
  /** SubjectPublicKeyInfo DER. */
  publicKeySpki: Uint8Array;
  /** Root-signed certificate; stage keys only. */
  certificate: KeyCertificate | undefined;
}

export interface KeyStore {
  dir: string;
  keys: StoredKey[];
  /** Passphrase of the release keys; read from QWAMOS_KEY_PASSPHRASE or a prompt when first needed. */
  passphrase: string | undefined;
}

/** One entry of keys.yaml as written, with file names relative to the store folder. */
export interface IndexEntry {
  purpose: KeyPurpose;
  id: string;
  algorithm: KeyAlgorithm;
  created: string;
  dev: boolean;
  privateKey?: string;
  publicKey: string;
  certificate?: string;
}

export function keyFileNames(purpose: KeyPurpose, dev: boolean): { privateKey: string; publicKey: string; certificate?: string } {
  const prefix = dev ? DEV_FILE_PREFIX : '';
  const names = { privateKey: `${prefix}${purpose}.key.pem`, publicKey: `${prefix}${purpose}.pub.pem` };
  return purpose === 'system-stage' || purpose === 'guest-stage' ? { ...names, certificate: `${prefix}${purpose}.cert` } : names;
}

// --- Index ---

function invalidIndex(indexPath: string, problem: string): QwamosError {
  return new QwamosError('INPUT_INVALID', `${indexPath}: ${problem}; recreate the store with 'qwamos-build keys generate' or restore keys.yaml from a backup`);
}

function requireString(entry: Record<string, unknown>, field: string, where: string, indexPath: string): string {
  const value = entry[field];
  if (typeof value !== 'string' || value === '') throw invalidIndex(indexPath, `${where}: field '${field}' must be a non-empty string`);
  return value;
}

function optionalFileName(entry: Record<string, unknown>, field: string, where: string, indexPath: string): string | undefined {
  if (entry[field] === undefined || entry[field] === null) return undefined;
  const name = requireString(entry, field, where, indexPath);
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) throw invalidIndex(indexPath, `${where}: '${field}: ${name}' must be a plain file name inside the key folder`);
  return name;
}

function parseIndexEntry(value: unknown, index: number, indexPath: string): IndexEntry {
  const where = `keys[${index}]`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidIndex(indexPath, `${where} must be a mapping`);
  const entry = value as Record<string, unknown>;

  const purpose = requireString(entry, 'purpose', where, indexPath);
  if (!KEY_PURPOSES.includes(purpose as KeyPurpose)) throw invalidIndex(indexPath, `${where}: purpose '${purpose}' is not one of ${KEY_PURPOSES.join(', ')}`);
  const algorithm = requireString(entry, 'algorithm', where, indexPath);
  const expected = PURPOSE_ALGORITHMS[purpose as KeyPurpose];
  if (algorithm !== expected) throw invalidIndex(indexPath, `${where}: the ${purpose} key has algorithm '${algorithm}', but the ${purpose} key must be ${expected}`);

  const id = requireString(entry, 'id', where, indexPath);
  if (!/^[0-9a-f]{64}$/.test(id)) throw invalidIndex(indexPath, `${where}: id must be 64 lowercase hex digits`);
  const created = requireString(entry, 'created', where, indexPath);
  if (Number.isNaN(Date.parse(created))) throw invalidIndex(indexPath, `${where}: created '${created}' is not an ISO 8601 time`);
  if (typeof entry.dev !== 'boolean') throw invalidIndex(indexPath, `${where}: field 'dev' must be true or false`);

  const publicKey = optionalFileName(entry, 'publicKey', where, indexPath);
  if (publicKey === undefined) throw invalidIndex(indexPath, `${where}: field 'publicKey' is missing`);
  return {
    purpose: purpose as KeyPurpose,
    id,
    algorithm: algorithm as KeyAlgorithm,
    created,
    dev: entry.dev,
    privateKey: optionalFileName(entry, 'privateKey', where, indexPath),
    publicKey,
    certificate: optionalFileName(entry, 'certificate', where, indexPath),
  };
}

async function readIndex(dir: string): Promise<IndexEntry[]> {
  const indexPath = path.join(dir, KEYS_INDEX_FILE);
  const text = await readFile(indexPath, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `no key store in ${dir}: ${KEYS_INDEX_FILE} is missing; create one with 'qwamos-build keys generate --dir ${dir}'`);
    }
    throw error;
  });

  const document = parseDocument(text);
  if (document.errors.length > 0) throw invalidIndex(indexPath, `invalid YAML: ${document.errors[0]?.message ?? 'parse error'}`);
  const root = document.toJS() as Record<string, unknown> | null;
  if (root?.format !== KEYS_INDEX_FORMAT) throw invalidIndex(indexPath, `field 'format' must be '${KEYS_INDEX_FORMAT}'`);
  if (!Array.isArray(root.keys)) throw invalidIndex(indexPath, `field 'keys' must be a list`);

  const entries = root.keys.map((value, index) => parseIndexEntry(value, index, indexPath));
  for (const purpose of KEY_PURPOSES) {
    const count = entries.filter((entry) => entry.purpose === purpose).length;
    if (count !== 1) throw invalidIndex(indexPath, `it lists ${count} ${purpose} keys; a store has exactly one`);
  }
  return entries;
}

/** Returns the YAML text of keys.yaml for `entries`. */
export function formatIndex(entries: readonly IndexEntry[]): string {
  const lines = [
    '# qwamos-build key store index; see docs/keys.md.',
    '# id: SHA-256 of the public key SubjectPublicKeyInfo DER.',
    `format: ${KEYS_INDEX_FORMAT}`,
    'keys:',
  ];
  for (const entry of entries) {
    lines.push(`  - purpose: ${entry.purpose}`, `    id: ${entry.id}`, `    algorithm: ${entry.algorithm}`, `    created: '${entry.created}'`, `    dev: ${entry.dev}`);
    if (entry.privateKey) lines.push(`    privateKey: ${entry.privateKey}`);
    lines.push(`    publicKey: ${entry.publicKey}`);
    if (entry.certificate) lines.push(`    certificate: ${entry.certificate}`);
  }
  return `${lines.join('\n')}\n`;
}

// --- Public keys and certificates ---

async function readKeyFile(file: string, purpose: KeyPurpose, kind: string): Promise<Buffer> {
  return readFile(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `${kind} of the ${purpose} key is missing: ${file}; restore it from a backup or recreate the key store`);
    throw error;
  });
}

async function loadPublicKey(file: string, entry: IndexEntry): Promise<Uint8Array> {
  const text = (await readKeyFile(file, entry.purpose, 'public key file')).toString('utf8');
  const corrupt = (problem: string): QwamosError => new QwamosError('INPUT_INVALID', `corrupt public key file ${file}: ${problem}`);

  let spki: Uint8Array;
  try {
    const { label, der } = pemDecode(text);
    if (label !== 'PUBLIC KEY') throw new DerError(`PEM label is '${label}', expected 'PUBLIC KEY'`);
    spki = der;
    const oid = spkiAlgorithm(spki);
    const expectedOid = entry.algorithm === 'ML-DSA-87' ? OID_ML_DSA_87 : OID_RSA_ENCRYPTION;
    if (oid !== expectedOid) {
      throw new QwamosError('INPUT_INVALID', `${file} contains an ${algorithmName(oid)} public key, but the ${entry.purpose} key must be ${entry.algorithm}; put the ${entry.purpose} public key there`);
    }
    if (entry.algorithm === 'ML-DSA-87') decodeMlDsa87Spki(spki);
  } catch (error) {
    if (error instanceof DerError) throw corrupt(error.message);
    throw error;
  }

  if (entry.algorithm === 'RSA-4096') checkRsaPublicKey(spki, file);
  const id = keyIdOfSpki(spki);
  if (id !== entry.id) {
    throw new QwamosError('INPUT_INVALID', `${file} has key id ${id}, but keys.yaml lists the ${entry.purpose} key as ${entry.id}; the file was replaced or keys.yaml edited by hand`);
  }
  return spki;
}

function checkRsaPublicKey(spki: Uint8Array, file: string): void {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch (error) {
    throw new QwamosError('INPUT_INVALID', `corrupt public key file ${file}: ${(error as Error).message}`);
  }

  const details = key.asymmetricKeyDetails ?? {};
  if (details.modulusLength !== RSA_MODULUS_BITS || details.publicExponent !== BigInt(RSA_PUBLIC_EXPONENT)) {
    throw new QwamosError('INPUT_INVALID', `${file} contains a ${details.modulusLength}-bit RSA key with exponent ${details.publicExponent}; the AVB key must be RSA-${RSA_MODULUS_BITS} with exponent ${RSA_PUBLIC_EXPONENT}`);
  }
}

async function loadCertificate(file: string, entry: IndexEntry, root: IndexEntry, rootPublicKey: Uint8Array): Promise<KeyCertificate> {
  const bytes = await readKeyFile(file, entry.purpose, 'certificate');

  let certificate: KeyCertificate;
  try {
    certificate = parseCertificate(new Uint8Array(bytes));
  } catch (error) {
    if (error instanceof CertificateError) throw new QwamosError('INPUT_INVALID', `corrupt certificate ${file}: ${error.message}`);
    throw error;
  }

  if (certificate.subjectKeyId !== entry.id || certificate.purpose !== entry.purpose) {
    throw new QwamosError('INPUT_INVALID', `${file} certifies the ${certificate.purpose} key ${certificate.subjectKeyId}, but keys.yaml lists it for the ${entry.purpose} key ${entry.id}; put the ${entry.purpose} certificate there`);
  }
  if (certificate.issuerKeyId !== root.id) {
    throw new QwamosError('VERIFY_FAILED', `${file} was issued by key ${certificate.issuerKeyId}, not by this store's root key ${root.id}`);
  }
  if (certificate.dev !== entry.dev) {
    throw new QwamosError('INPUT_INVALID', `${file} marks the key as ${certificate.dev ? 'dev' : 'release'}, but keys.yaml marks it as ${entry.dev ? 'dev' : 'release'}`);
  }
  if (!verifyCertificateSignature(certificate, rootPublicKey)) {
    throw new QwamosError('VERIFY_FAILED', `the root key signature on ${file} is invalid; the certificate was modified or signed by another key`);
  }
  return certificate;
}

async function checkPrivateKeyMode(file: string, purpose: KeyPurpose): Promise<void> {
  const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `private key of the ${purpose} key is missing: ${file}; restore it, or remove 'privateKey' from keys.yaml and sign with --signer`);
    throw error;
  });
  if ((info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
    throw new QwamosError('INPUT_INVALID', `private key file ${file} has mode ${mode}, so other users can read it; run: chmod 600 ${file}`);
  }
}

function checkDevMarks(entries: readonly IndexEntry[], indexPath: string): void {
  for (const entry of entries) {
    const names = [entry.privateKey, entry.publicKey, entry.certificate].filter((name): name is string => name !== undefined);
    if (!entry.dev && names.some((name) => name.startsWith(DEV_FILE_PREFIX))) {
      throw invalidIndex(indexPath, `the ${entry.purpose} key is marked release but its files are named ${DEV_FILE_PREFIX}*, which marks dev keys`);
    }
  }
  if (new Set(entries.map((entry) => entry.dev)).size > 1) {
    throw invalidIndex(indexPath, 'it mixes dev and release keys; a store contains only dev keys or only release keys');
  }
}

/**
 * Loads and checks the key store in `dir`: index, public keys, key ids,
 * certificates and private key file modes. Decrypts nothing; `passphrase`
 * is kept for later decryption of release keys.
 */
export async function loadKeyStore(dir: string, options: { passphrase?: string } = {}): Promise<KeyStore> {
  const absolute = path.resolve(dir);
  const entries = await readIndex(absolute);
  checkDevMarks(entries, path.join(absolute, KEYS_INDEX_FILE));

  const rootEntry = entries.find((entry) => entry.purpose === 'root') as IndexEntry;
  const rootSpki = await loadPublicKey(path.join(absolute, rootEntry.publicKey), rootEntry);
  const rootPublicKey = decodeMlDsa87Spki(rootSpki);

  const keys: StoredKey[] = [];
  for (const entry of entries) {
    const publicKeyFile = path.join(absolute, entry.publicKey);
    const privateKeyFile = entry.privateKey ? path.join(absolute, entry.privateKey) : undefined;
    const certificateFile = entry.certificate ? path.join(absolute, entry.certificate) : undefined;
    const isStage = entry.purpose === 'system-stage' || entry.purpose === 'guest-stage';
    if (isStage && !certificateFile) throw invalidIndex(path.join(absolute, KEYS_INDEX_FILE), `the ${entry.purpose} key has no 'certificate' file`);

    const publicKeySpki = entry === rootEntry ? rootSpki : await loadPublicKey(publicKeyFile, entry);
    if (privateKeyFile) await checkPrivateKeyMode(privateKeyFile, entry.purpose);
    const certificate = isStage && certificateFile ? await loadCertificate(certificateFile, entry, rootEntry, rootPublicKey) : undefined;

    keys.push({ ...entry, privateKeyFile, publicKeyFile, certificateFile, publicKeySpki, certificate });
  }
  return { dir: absolute, keys, passphrase: options.passphrase };
}

/** Returns the key of `purpose`; every loaded store has exactly one per purpose. */
export function getKey(store: KeyStore, purpose: KeyPurpose): StoredKey {
  const key = store.keys.find((candidate) => candidate.purpose === purpose);
  if (!key) {
    throw new QwamosError('USAGE', `unknown key purpose '${purpose}'; use one of ${KEY_PURPOSES.join(', ')}`);
  }
  return key;
}

/** Throws when the store contains dev keys, naming each one and the fix. Release builds call this. */
export function requireReleaseKeys(store: KeyStore): void {
  const devKeys = store.keys.filter((key) => key.dev);
  if (devKeys.length === 0) return;

  throw new QwamosError('INPUT_INVALID', `a release build cannot use dev keys, and ${store.dir} contains ${devKeys.length}: ${devKeys.map((key) => key.purpose).join(', ')}; create release keys with 'qwamos-build keys generate --dir NEW_DIR' and build with that folder`, {
    details: devKeys.map((key) => `${key.purpose} ${key.algorithm} ${key.id} (${path.basename(key.publicKeyFile)})`),
    data: { devKeys: devKeys.map((key) => ({ purpose: key.purpose, id: key.id })) },
  });
}
