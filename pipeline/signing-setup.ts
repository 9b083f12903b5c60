/**
 * The keys a build signs with: the key store folder, dev keys created on
 * first use, release checks, and signers (local keys or an external
 * program such as an HSM front end).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { encodeAvbPublicKey } from '../signing/avb-key.js';
import { decodeMlDsa87Spki, pemEncode } from '../signing/keys-pkcs8.js';
import { createDevKeysIfMissing } from '../signing/keys-generate.js';
import { makeSigner, type Signer } from '../signing/keys-signer.js';
import { getKey, loadKeyStore, requireReleaseKeys, type KeyStore, type StoredKey } from '../signing/keys-store.js';
import { DEV_PASSPHRASE } from '../signing/keys-passphrase.js';

export interface SigningSetupOptions {
  /** Key store folder; default CACHE/keys/dev, created with dev keys when missing. */
  keysDir?: string;
  cacheDir: string;
  release: boolean;
  /** External signing program (--signer). */
  signerCommand?: string;
  /** Called once when dev keys were created. */
  onDevKeysCreated?(dir: string): void;
}

export interface SigningSetup {
  store: KeyStore;
  root: StoredKey;
  systemStage: StoredKey;
  guestStage: StoredKey;
  avb: StoredKey;
  signer(purpose: 'root' | 'system-stage' | 'avb'): Signer;
}

export function defaultDevKeysDir(cacheDir: string): string {
  return path.join(cacheDir, 'keys', 'dev');
}

/** Returns the raw ML-DSA-87 public key of a stored key. */
export function rawMldsaPublicKey(key: StoredKey): Uint8Array {
  return decodeMlDsa87Spki(key.publicKeySpki);
}

export async function setUpSigning(options: SigningSetupOptions): Promise<SigningSetup> {
  let keysDir = options.keysDir;
  if (keysDir === undefined) {
    if (options.release) {
      throw new QwamosError('USAGE', 'build --release needs --keys DIR with release keys; create them with: qwamos-build keys generate --dir DIR');
    }
    keysDir = defaultDevKeysDir(options.cacheDir);
    const { created, dir } = await createDevKeysIfMissing(keysDir);
    if (created) options.onDevKeysCreated?.(dir);
  }

  const probe = await loadKeyStore(keysDir);
  const dev = probe.keys.every((key) => key.dev);
  const store = dev ? await loadKeyStore(keysDir, { passphrase: DEV_PASSPHRASE }) : probe;
  if (options.release) requireReleaseKeys(store);

  const signerOptions = options.signerCommand === undefined ? {} : { externalCommand: options.signerCommand };
  return {
    store,
    root: getKey(store, 'root'),
    systemStage: getKey(store, 'system-stage'),
    guestStage: getKey(store, 'guest-stage'),
    avb: getKey(store, 'avb'),
    signer: (purpose) => makeSigner(store, purpose, signerOptions),
  };
}

/** Path, inside a build output folder, of the AVB public key blob that boot-test and verify trust. */
export const AVB_PUBLIC_KEY_FILE = 'keys/avb_pubkey.bin';

/** Public halves of the signing keys, published beside the images for `verify`. */
export async function publicKeyFiles(signing: SigningSetup): Promise<Record<string, Uint8Array | string>> {
  const avbPem = await readFile(signing.avb.publicKeyFile, 'utf8');
  const files: Record<string, Uint8Array | string> = {
    'keys/root.pub': pemEncode('PUBLIC KEY', signing.root.publicKeySpki),
    'keys/system-stage.pub': pemEncode('PUBLIC KEY', signing.systemStage.publicKeySpki),
    'keys/guest-stage.pub': pemEncode('PUBLIC KEY', signing.guestStage.publicKeySpki),
    [AVB_PUBLIC_KEY_FILE]: encodeAvbPublicKey(avbPem),
  };
  for (const key of [signing.systemStage, signing.guestStage]) {
    if (key.certificateFile) files[`keys/${key.purpose}.cert`] = await readFile(key.certificateFile);
  }
  return files;
}
