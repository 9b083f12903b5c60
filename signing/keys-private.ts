/**
 * Decryption of a stored private key, with the checks that turn every
 * wrong, truncated or mismatched key file into an error naming the file.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { QwamosError } from '../core/errors.js';
import { DerError } from './keys-der.js';
import { decryptPrivateKey, KeyDecryptionError, MIN_SCRYPT_LOG2N, RELEASE_SCRYPT_LOG2N } from './keys-encrypt.js';
import { DEV_PASSPHRASE, PASSPHRASE_ENV, readPassphrase } from './keys-passphrase.js';
import { algorithmName, decodeMlDsa87Pkcs8, decodeMlDsa87Spki, mlDsa87KeyPair, OID_ML_DSA_87, OID_RSA_ENCRYPTION, pemDecode, pkcs8Algorithm } from './keys-pkcs8.js';
import type { KeyStore, StoredKey } from './keys-store.js';

export type DecryptedKey =
  | { algorithm: 'ML-DSA-87'; secretKey: Uint8Array; publicKey: Uint8Array }
  | { algorithm: 'RSA-4096'; privateKey: KeyObject };

export const ENCRYPTED_PRIVATE_KEY_LABEL = 'ENCRYPTED PRIVATE KEY';

async function passphraseFor(store: KeyStore, key: StoredKey): Promise<string> {
  if (key.dev) return DEV_PASSPHRASE;
  store.passphrase ??= await readPassphrase(`the release keys in ${store.dir}`);
  return store.passphrase;
}

/** Reads the PEM file and returns the EncryptedPrivateKeyInfo DER inside. */
async function readEncryptedKey(file: string): Promise<Uint8Array> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `private key file ${file} is missing; restore it from a backup`);
    throw error;
  });
  try {
    const { label, der } = pemDecode(text);
    if (label === 'PRIVATE KEY' || label === 'RSA PRIVATE KEY') {
      throw new QwamosError('INPUT_INVALID', `${file} contains an unencrypted private key ('${label}'); the key store accepts only '${ENCRYPTED_PRIVATE_KEY_LABEL}' files`);
    }
    if (label !== ENCRYPTED_PRIVATE_KEY_LABEL) throw new DerError(`PEM label is '${label}', expected '${ENCRYPTED_PRIVATE_KEY_LABEL}'`);
    return der;
  } catch (error) {
    if (error instanceof DerError) throw new QwamosError('INPUT_INVALID', `corrupt or truncated key file ${file}: ${error.message}`);
    throw error;
  }
}

function wrongType(file: string, key: StoredKey, oid: string): QwamosError {
  return new QwamosError('INPUT_INVALID', `${file} contains an ${algorithmName(oid)} private key, but the ${key.purpose} key must be ${key.algorithm}; put the ${key.purpose} private key there`);
}

function decodeMlDsa(pkcs8: Uint8Array, file: string, key: StoredKey): DecryptedKey {
  let seed: Uint8Array;
  try {
    seed = decodeMlDsa87Pkcs8(pkcs8);
  } catch (error) {
    if (error instanceof DerError) throw new QwamosError('INPUT_INVALID', `invalid ML-DSA-87 private key in ${file}: ${error.message}`);
    throw error;
  }

  const pair = mlDsa87KeyPair(seed);
  seed.fill(0);
  if (!Buffer.from(pair.publicKey).equals(Buffer.from(decodeMlDsa87Spki(key.publicKeySpki)))) {
    throw new QwamosError('INPUT_INVALID', `the private key in ${file} does not match the public key ${key.publicKeyFile} (key id ${key.id})`);
  }
  return { algorithm: 'ML-DSA-87', secretKey: pair.secretKey, publicKey: pair.publicKey };
}

function decodeRsa(pkcs8: Uint8Array, file: string, key: StoredKey): DecryptedKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' });
  } catch (error) {
    throw new QwamosError('INPUT_INVALID', `invalid RSA private key in ${file}: ${(error as Error).message}`);
  }

  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  if (!spki.equals(Buffer.from(key.publicKeySpki))) {
    throw new QwamosError('INPUT_INVALID', `the private key in ${file} does not match the public key ${key.publicKeyFile} (key id ${key.id})`);
  }
  return { algorithm: 'RSA-4096', privateKey };
}

/**
 * Decrypts the private key of `key` and checks that it is of the expected
 * algorithm and matches the stored public key. Release keys must use the
 * release scrypt cost (N >= 2^17); dev keys at least 2^14.
 */
export async function decryptStoredKey(store: KeyStore, key: StoredKey): Promise<DecryptedKey> {
  const file = key.privateKeyFile;
  if (!file) {
    throw new QwamosError('INPUT_NOT_FOUND', `the key store ${store.dir} has no private key for the ${key.purpose} key ${key.id}; sign with --signer COMMAND (an HSM or offline signer) or restore the private key file`);
  }

  const encrypted = await readEncryptedKey(file);
  const passphrase = await passphraseFor(store, key);

  let pkcs8: Uint8Array;
  try {
    pkcs8 = await decryptPrivateKey(encrypted, passphrase, key.dev ? MIN_SCRYPT_LOG2N : RELEASE_SCRYPT_LOG2N);
  } catch (error) {
    if (error instanceof KeyDecryptionError) {
      if (!key.dev) store.passphrase = undefined;
      const fix = key.dev ? 'dev keys use the fixed dev passphrase, so the file is damaged; restore it or recreate the dev keys' : `check ${PASSPHRASE_ENV} or the passphrase you typed`;
      throw new QwamosError('INPUT_INVALID', `wrong passphrase or corrupt key file: ${file}; ${fix}`);
    }
    if (error instanceof DerError) throw new QwamosError('INPUT_INVALID', `corrupt or truncated key file ${file}: ${error.message}`);
    throw error;
  }

  let oid: string;
  try {
    oid = pkcs8Algorithm(pkcs8);
  } catch (error) {
    if (error instanceof DerError) throw new QwamosError('INPUT_INVALID', `invalid PKCS#8 private key in ${file}: ${error.message}`);
    throw error;
  }

  const expectedOid = key.algorithm === 'ML-DSA-87' ? OID_ML_DSA_87 : OID_RSA_ENCRYPTION;
  if (oid !== expectedOid) throw wrongType(file, key, oid);
  const decrypted = key.algorithm === 'ML-DSA-87' ? decodeMlDsa(pkcs8, file, key) : decodeRsa(pkcs8, file, key);
  pkcs8.fill(0);
  return decrypted;
}
