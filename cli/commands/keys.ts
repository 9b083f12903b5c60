/**
 * `qwamos-build keys generate` and `qwamos-build keys list`: create a
 * product's signing keys and show what a key store contains.
 */
import { type Command, formatTable, parseCommandArgs, printJson } from '../command.js';
import { QwamosError } from '../../core/errors.js';
import { DEFAULT_VALIDITY_DAYS, generateKeyStore } from '../../signing/keys-generate.js';
import { DEV_PASSPHRASE, PASSPHRASE_ENV, readPassphrase } from '../../signing/keys-passphrase.js';
import { type KeyStore, loadKeyStore, type StoredKey } from '../../signing/keys-store.js';

function describeKey(key: StoredKey): Record<string, unknown> {
  return {
    id: key.id,
    algorithm: key.algorithm,
    purpose: key.purpose,
    created: key.created,
    dev: key.dev,
    validUntil: key.certificate ? new Date(key.certificate.notAfter * 1000).toISOString() : null,
    privateKeyFile: key.privateKeyFile ?? null,
    publicKeyFile: key.publicKeyFile,
    certificateFile: key.certificateFile ?? null,
  };
}

function keyTable(store: KeyStore): string {
  const rows = store.keys.map((key) => [
    key.id,
    key.algorithm,
    key.purpose,
    key.created,
    key.dev ? 'dev' : 'release',
    key.certificate ? new Date(key.certificate.notAfter * 1000).toISOString().slice(0, 10) : '-',
  ]);
  return formatTable(['ID (SHA-256 OF PUBLIC KEY)', 'ALGORITHM', 'PURPOSE', 'CREATED', 'TYPE', 'CERT VALID UNTIL'], rows);
}

function requireDir(command: string, dir: string | undefined): string {
  if (!dir) throw new QwamosError('USAGE', `${command}: --dir DIR is required; run 'qwamos-build ${command} --help' for the options`);
  return dir;
}

export const keysGenerateCommand: Command = {
  name: ['keys', 'generate'],
  summary: 'create the root, stage-signing and AVB keys of a product',
  help: `Usage: qwamos-build keys generate --dir DIR [--dev] [--validity-days DAYS] [--json]

Creates a key store in DIR (mode 0700): a root ML-DSA-87 key, ML-DSA-87
stage-signing keys for the system image and for guest images (certified by
the root key), and an RSA-4096 key for AVB. Private keys are PKCS#8 files
encrypted with scrypt and AES-256-GCM, mode 0600. Fails if DIR already
contains a key store.

Options:
  --dir DIR              key store folder (created when missing)
  --dev                  create dev keys: files named dev-*, encrypted with the
                         public dev passphrase '${DEV_PASSPHRASE}';
                         release builds reject them
  --validity-days DAYS   validity of the stage-key certificates in days
                         (default ${DEFAULT_VALIDITY_DAYS})
  --json                 print the created keys as JSON

Release keys take their passphrase (at least 12 characters) from the
environment variable ${PASSPHRASE_ENV}, or from a prompt on a terminal.`,

  async run(argv) {
    const { values } = parseCommandArgs('keys generate', argv, {
      dir: { type: 'string' },
      dev: { type: 'boolean', default: false },
      'validity-days': { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    const dir = requireDir('keys generate', values.dir);

    const validityText = values['validity-days'];
    const validityDays = validityText === undefined ? undefined : Number(validityText);
    if (validityText !== undefined && !/^\d+$/.test(validityText)) {
      throw new QwamosError('USAGE', `keys generate: --validity-days '${validityText}' is not a whole number of days`);
    }

    const passphrase = values.dev ? undefined : await readPassphrase(`the new release keys in ${dir}`, { confirm: true });
    const store = await generateKeyStore(dir, { dev: values.dev, passphrase, validityDays });

    if (values.json) {
      printJson({ ok: true, dir: store.dir, keys: store.keys.map(describeKey) });
      return 0;
    }
    const kind = values.dev ? `dev keys (public passphrase '${DEV_PASSPHRASE}'; release builds reject them)` : 'release keys';
    process.stdout.write(`Created ${kind} in ${store.dir}:\n${keyTable(store)}\n`);
    if (!values.dev) process.stdout.write('Back up this folder and its passphrase; lost keys cannot sign updates that devices accept.\n');
    return 0;
  },
};

export const keysListCommand: Command = {
  name: ['keys', 'list'],
  summary: 'show the keys of a key store and check their certificates',
  help: `Usage: qwamos-build keys list --dir DIR [--json]

Shows each key's id (SHA-256 of its SubjectPublicKeyInfo DER), algorithm,
purpose, creation time, dev or release, and the end of its certificate's
validity. Checks public keys, key ids and the root key's signatures on the
stage-key certificates; decrypts no private key.

Options:
  --dir DIR   key store folder
  --json      print the keys as JSON`,

  async run(argv) {
    const { values } = parseCommandArgs('keys list', argv, {
      dir: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    const store = await loadKeyStore(requireDir('keys list', values.dir));

    if (values.json) {
      printJson({ ok: true, dir: store.dir, keys: store.keys.map(describeKey) });
      return 0;
    }
    process.stdout.write(`${keyTable(store)}\n`);
    return 0;
  },
};

export const KEYS_COMMANDS: Command[] = [keysGenerateCommand, keysListCommand];
