/**
 * Creation of a key store: the root ML-DSA-87 key, the system-stage and
 * guest-stage ML-DSA-87 keys with root-signed certificates, and the
 * RSA-4096 AVB key, each private key encrypted at rest.
 */
import { generateKeyPair, randomBytes } from 'node:crypto';
import { chmod, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeFileAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { type CertifiedPurpose, issueCertificate } from './keys-cert.js';
import { encryptPrivateKey, scryptLog2NFor } from './keys-encrypt.js';
import { withLockFile } from './keys-lock.js';
import { DEV_PASSPHRASE, MIN_RELEASE_PASSPHRASE_LENGTH } from './keys-passphrase.js';
import { encodeMlDsa87Pkcs8, keyIdOfSpki, mlDsa87KeyPair, ML_DSA_87_SEED_LENGTH, pemEncode, spkiDer } from './keys-pkcs8.js';
import { ENCRYPTED_PRIVATE_KEY_LABEL } from './keys-private.js';
import {
  formatIndex,
  type IndexEntry,
  type KeyPurpose,
  type KeyStore,
  keyFileNames,
  KEYS_INDEX_FILE,
  loadKeyStore,
  PURPOSE_ALGORITHMS,
  RSA_MODULUS_BITS,
  RSA_PUBLIC_EXPONENT,
} from './keys-store.js';

/** Default validity of stage-key certificates: 3,650 days (about 10 years). */
export const DEFAULT_VALIDITY_DAYS = 3650;

const LOCK_FILE = '.keys.lock';

export interface GenerateOptions {
  /** Create dev keys: `dev-` file names, the public dev passphrase, and the dev flag in certificates. */
  dev: boolean;
  /** Passphrase for release keys; ignored for dev keys. */
  passphrase?: string;
  /** Days that stage-key certificates stay valid. */
  validityDays?: number;
  /** Creation time; defaults to now. */
  now?: Date;
}

interface NewKey {
  entry: IndexEntry;
  pkcs8: Uint8Array;
  spki: Uint8Array;
  certificate?: Uint8Array;
}

function isoSeconds(time: Date): string {
  return time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function newEntry(purpose: KeyPurpose, spki: Uint8Array, dev: boolean, created: string): IndexEntry {
  return { purpose, id: keyIdOfSpki(spki), algorithm: PURPOSE_ALGORITHMS[purpose], created, dev, ...keyFileNames(purpose, dev) };
}

function newMlDsaKey(purpose: KeyPurpose, dev: boolean, created: string): NewKey & { secretKey: Uint8Array } {
  const seed = randomBytes(ML_DSA_87_SEED_LENGTH);
  const pair = mlDsa87KeyPair(seed);
  const spki = spkiDer(pair.publicKey);
  const pkcs8 = encodeMlDsa87Pkcs8(seed);
  seed.fill(0);
  return { entry: newEntry(purpose, spki, dev, created), pkcs8, spki, secretKey: pair.secretKey };
}

async function newRsaKey(dev: boolean, created: string): Promise<NewKey> {
  const pair = await promisify(generateKeyPair)('rsa', { modulusLength: RSA_MODULUS_BITS, publicExponent: RSA_PUBLIC_EXPONENT });
  const spki = new Uint8Array(pair.publicKey.export({ type: 'spki', format: 'der' }));
  const pkcs8 = new Uint8Array(pair.privateKey.export({ type: 'pkcs8', format: 'der' }));
  return { entry: newEntry('avb', spki, dev, created), pkcs8, spki };
}

function certify(key: NewKey, root: NewKey & { secretKey: Uint8Array }, options: { dev: boolean; now: Date; validityDays: number }): void {
  const notBefore = Math.floor(options.now.getTime() / 1000);
  key.certificate = issueCertificate(
    {
      purpose: key.entry.purpose as CertifiedPurpose,
      dev: options.dev,
      subjectKeyId: key.entry.id,
      issuerKeyId: root.entry.id,
      notBefore,
      notAfter: notBefore + options.validityDays * 86_400,
    },
    root.secretKey,
  );
}

async function writeKeyFiles(dir: string, key: NewKey, passphrase: string, log2N: number): Promise<void> {
  const { entry } = key;
  const encrypted = await encryptPrivateKey(key.pkcs8, passphrase, log2N);
  key.pkcs8.fill(0);

  await writeFileAtomic(path.join(dir, entry.privateKey as string), pemEncode(ENCRYPTED_PRIVATE_KEY_LABEL, encrypted), 0o600);
  await writeFileAtomic(path.join(dir, entry.publicKey), pemEncode('PUBLIC KEY', key.spki), 0o644);
  if (key.certificate && entry.certificate) await writeFileAtomic(path.join(dir, entry.certificate), key.certificate, 0o644);
}

async function indexExists(dir: string): Promise<boolean> {
  return stat(path.join(dir, KEYS_INDEX_FILE)).then(() => true, () => false);
}

function checkOptions(options: GenerateOptions): { passphrase: string; validityDays: number } {
  const validityDays = options.validityDays ?? DEFAULT_VALIDITY_DAYS;
  if (!Number.isInteger(validityDays) || validityDays < 1 || validityDays > 36_500) {
    throw new QwamosError('USAGE', `certificate validity of ${validityDays} days is invalid; give a whole number of days from 1 to 36500`);
  }
  if (options.dev) return { passphrase: DEV_PASSPHRASE, validityDays };

  const passphrase = options.passphrase ?? '';
  if ([...passphrase].length < MIN_RELEASE_PASSPHRASE_LENGTH) {
    throw new QwamosError('USAGE', `the passphrase for release keys must have at least ${MIN_RELEASE_PASSPHRASE_LENGTH} characters`);
  }
  return { passphrase, validityDays };
}

/** Creates all keys in `dir` (created with mode 0700) and writes keys.yaml last. Throws when `dir` already has a key store. */
async function createKeys(dir: string, options: GenerateOptions, passphrase: string, validityDays: number): Promise<void> {
  const now = options.now ?? new Date();
  const created = isoSeconds(now);
  const log2N = scryptLog2NFor(options.dev ? 'dev' : 'release');

  const root = newMlDsaKey('root', options.dev, created);
  const stages = (['system-stage', 'guest-stage'] as const).map((purpose) => newMlDsaKey(purpose, options.dev, created));
  for (const stage of stages) certify(stage, root, { dev: options.dev, now, validityDays });
  const avb = await newRsaKey(options.dev, created);
  root.secretKey.fill(0);

  // One key at a time: each scrypt run needs 128 MiB at the release cost.
  const keys = [root, ...stages, avb];
  for (const key of keys) await writeKeyFiles(dir, key, passphrase, log2N);
  for (const stage of stages) stage.secretKey.fill(0);
  await writeFileAtomic(path.join(dir, KEYS_INDEX_FILE), formatIndex(keys.map((key) => key.entry)), 0o644);
}

async function prepareFolder(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/**
 * Creates a key store in `dir`. Release keys need `options.passphrase`
 * (at least 12 characters); dev keys use the public dev passphrase.
 */
export async function generateKeyStore(dir: string, options: GenerateOptions): Promise<KeyStore> {
  const absolute = path.resolve(dir);
  const { passphrase, validityDays } = checkOptions(options);
  await prepareFolder(absolute);

  await withLockFile(path.join(absolute, LOCK_FILE), async () => {
    if (await indexExists(absolute)) {
      throw new QwamosError('INPUT_INVALID', `${absolute} already contains a key store (${KEYS_INDEX_FILE}); choose another --dir, or move that folder away first`);
    }
    await createKeys(absolute, options, passphrase, validityDays);
  });
  return loadKeyStore(absolute, { passphrase: options.dev ? undefined : passphrase });
}

/**
 * Creates dev keys in `dir` unless it already contains a key store (dev or
 * release). The default build calls this and reports `created`.
 */
export async function createDevKeysIfMissing(dir: string): Promise<{ created: boolean; dir: string }> {
  const absolute = path.resolve(dir);
  if (await indexExists(absolute)) return { created: false, dir: absolute };

  await prepareFolder(absolute);
  const created = await withLockFile(path.join(absolute, LOCK_FILE), async () => {
    if (await indexExists(absolute)) return false;
    await createKeys(absolute, { dev: true }, DEV_PASSPHRASE, DEFAULT_VALIDITY_DAYS);
    return true;
  });
  return { created, dir: absolute };
}
