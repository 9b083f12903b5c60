import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runTool } from '../../core/exec.js';
import { QwamosError } from '../../core/errors.js';
import { derBitString, derOid, derSequence } from '../../signing/keys-der.js';
import { encryptPrivateKey, TEST_SCRYPT_ENV } from '../../signing/keys-encrypt.js';
import { createDevKeysIfMissing, generateKeyStore } from '../../signing/keys-generate.js';
import { PASSPHRASE_ENV } from '../../signing/keys-passphrase.js';
import { encodeMlDsa87Pkcs8, pemEncode } from '../../signing/keys-pkcs8.js';
import { decryptStoredKey } from '../../signing/keys-private.js';
import { makeSigner } from '../../signing/keys-signer.js';
import { getKey, type KeyStore, loadKeyStore, requireReleaseKeys } from '../../signing/keys-store.js';

const RELEASE_PASSPHRASE = 'release passphrase for tests';

let scratch: string;
let devDir: string;
let releaseDir: string;
let devStore: KeyStore;

beforeAll(async () => {
  process.env[TEST_SCRYPT_ENV] = '14';
  delete process.env[PASSPHRASE_ENV];
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-keystore-'));
  devDir = path.join(scratch, 'dev');
  releaseDir = path.join(scratch, 'release');
  devStore = await generateKeyStore(devDir, { dev: true });
  await generateKeyStore(releaseDir, { dev: false, passphrase: RELEASE_PASSPHRASE });
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Copies the dev store into a fresh folder that a test may damage. */
async function copyOfDevStore(): Promise<string> {
  const dir = path.join(scratch, `copy-${randomBytes(4).toString('hex')}`);
  await cp(devDir, dir, { recursive: true });
  return dir;
}

async function rejection(promise: Promise<unknown>): Promise<QwamosError> {
  const result = await promise.then(() => undefined, (error: unknown) => error);
  expect(result).toBeInstanceOf(QwamosError);
  return result as QwamosError;
}

function pemBody(text: string): Buffer {
  return Buffer.from(text.replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, ''), 'base64');
}

describe('key store generation', () => {
  it('writes the expected files', async () => {
    expect((await readdir(devDir)).sort()).toEqual([
      'dev-avb.key.pem', 'dev-avb.pub.pem',
      'dev-guest-stage.cert', 'dev-guest-stage.key.pem', 'dev-guest-stage.pub.pem',
      'dev-root.key.pem', 'dev-root.pub.pem',
      'dev-system-stage.cert', 'dev-system-stage.key.pem', 'dev-system-stage.pub.pem',
      'keys.yaml',
    ]);
    expect((await readdir(releaseDir)).filter((name) => name.startsWith('dev-'))).toEqual([]);
  });

  it('sets mode 0600 on private keys', async () => {
    for (const dir of [devDir, releaseDir]) {
      for (const name of (await readdir(dir)).filter((file) => file.endsWith('.key.pem'))) {
        expect({ name, mode: (await stat(path.join(dir, name))).mode & 0o777 }).toEqual({ name, mode: 0o600 });
      }
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
    }
  });

  it('indexes four keys with metadata', async () => {
    const index = parse(await readFile(path.join(devDir, 'keys.yaml'), 'utf8')) as { keys: Record<string, unknown>[] };
    expect(index.keys.map((key) => [key.purpose, key.algorithm, key.dev])).toEqual([
      ['root', 'ML-DSA-87', true],
      ['system-stage', 'ML-DSA-87', true],
      ['guest-stage', 'ML-DSA-87', true],
      ['avb', 'RSA-4096', true],
    ]);
    expect(index.keys[1]?.certificate).toBe('dev-system-stage.cert');
    expect(Date.parse(String(index.keys[0]?.created))).not.toBeNaN();
  });

  it('key id is SHA-256 of the public key DER', async () => {
    for (const key of devStore.keys) {
      const der = pemBody(await readFile(key.publicKeyFile, 'utf8'));
      expect({ purpose: key.purpose, id: key.id }).toEqual({ purpose: key.purpose, id: createHash('sha256').update(der).digest('hex') });
    }
  });

  it('AVB key id matches openssl', async () => {
    const avb = getKey(devStore, 'avb');
    const derFile = path.join(scratch, 'avb-pub.der');
    await runTool('openssl', ['pkey', '-pubin', '-in', avb.publicKeyFile, '-outform', 'DER', '-out', derFile]);
    expect(createHash('sha256').update(await readFile(derFile)).digest('hex')).toBe(avb.id);
    const { stdout } = await runTool('openssl', ['pkey', '-pubin', '-in', avb.publicKeyFile, '-noout', '-text']);
    expect(stdout).toContain('Public-Key: (4096 bit)');
    expect(stdout).toContain('Exponent: 65537 (0x10001)');
  });

  it('rejects an existing key store', async () => {
    const error = await rejection(generateKeyStore(devDir, { dev: true }));
    expect(error.message).toBe(`${devDir} already contains a key store (keys.yaml); choose another --dir, or move that folder away first`);
  });

  it('rejects a short release passphrase', async () => {
    const error = await rejection(generateKeyStore(path.join(scratch, 'short'), { dev: false, passphrase: 'short' }));
    expect(error.message).toBe('the passphrase for release keys must have at least 12 characters');
  });

  it('creates dev keys only once', async () => {
    const dir = path.join(scratch, 'auto-dev');
    expect((await createDevKeysIfMissing(dir)).created).toBe(true);
    expect((await createDevKeysIfMissing(dir)).created).toBe(false);
    expect((await loadKeyStore(dir)).keys.every((key) => key.dev)).toBe(true);
    expect((await createDevKeysIfMissing(releaseDir)).created).toBe(false);
  });
});

describe('key store loading', () => {
  it('verifies the stage certificates', async () => {
    const store = await loadKeyStore(devDir);
    const root = getKey(store, 'root');
    for (const purpose of ['system-stage', 'guest-stage'] as const) {
      const certificate = getKey(store, purpose).certificate;
      expect(certificate?.issuerKeyId).toBe(root.id);
      expect(certificate?.subjectKeyId).toBe(getKey(store, purpose).id);
      expect(certificate?.dev).toBe(true);
    }
  });

  it('decrypts dev keys without a passphrase', async () => {
    const decrypted = await decryptStoredKey(devStore, getKey(devStore, 'system-stage'));
    expect(decrypted.algorithm).toBe('ML-DSA-87');
  });

  it('decrypts release keys with the passphrase', async () => {
    process.env[PASSPHRASE_ENV] = RELEASE_PASSPHRASE;
    try {
      const store = await loadKeyStore(releaseDir);
      const decrypted = await decryptStoredKey(store, getKey(store, 'avb'));
      expect(decrypted.algorithm).toBe('RSA-4096');
    } finally {
      delete process.env[PASSPHRASE_ENV];
    }
  });

  it('rejects a wrong passphrase', async () => {
    const store = await loadKeyStore(releaseDir, { passphrase: 'not the passphrase' });
    const key = getKey(store, 'root');
    const error = await rejection(decryptStoredKey(store, key));
    expect(error.message).toBe(`wrong passphrase or corrupt key file: ${key.privateKeyFile}; check ${PASSPHRASE_ENV} or the passphrase you typed`);
  });

  it('signer retries after a wrong passphrase', async () => {
    const store = await loadKeyStore(releaseDir, { passphrase: 'not the passphrase' });
    const sign = makeSigner(store, 'avb');
    const first = await rejection(sign(randomBytes(10)));
    expect(first.message).toContain('wrong passphrase or corrupt key file');

    process.env[PASSPHRASE_ENV] = RELEASE_PASSPHRASE;
    try {
      expect((await sign(randomBytes(10))).length).toBe(512);
    } finally {
      delete process.env[PASSPHRASE_ENV];
    }
  });

  it('rejects a missing passphrase without a terminal', async () => {
    const store = await loadKeyStore(releaseDir);
    const error = await rejection(decryptStoredKey(store, getKey(store, 'root')));
    expect(error.code).toBe('USAGE');
    expect(error.message).toBe(`a passphrase is needed for the release keys in ${releaseDir}; set ${PASSPHRASE_ENV} or run on a terminal to be prompted`);
  });

  it('rejects a release key at test cost', async () => {
    const dir = path.join(scratch, 'weak-release');
    await cp(releaseDir, dir, { recursive: true });
    const store = await loadKeyStore(dir, { passphrase: RELEASE_PASSPHRASE });
    const key = getKey(store, 'root');
    const weak = await encryptPrivateKey(encodeMlDsa87Pkcs8(randomBytes(32)), RELEASE_PASSPHRASE, 14);
    await writeFile(key.privateKeyFile as string, pemEncode('ENCRYPTED PRIVATE KEY', weak), { mode: 0o600 });

    const error = await rejection(decryptStoredKey(store, key));
    expect(error.message).toBe(`corrupt or truncated key file ${key.privateKeyFile}: scrypt cost N=16384 is below the required 2^17`);
  });

  it('rejects a truncated private key', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-root.key.pem');
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, 200));
    const store = await loadKeyStore(dir);

    const error = await rejection(decryptStoredKey(store, getKey(store, 'root')));
    expect(error.message).toBe(`corrupt or truncated key file ${file}: "-----END ENCRYPTED PRIVATE KEY-----" line is missing (truncated file)`);
  });

  it('rejects a key file cut inside the DER', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-root.key.pem');
    const der = pemBody(await readFile(file, 'utf8'));
    await writeFile(file, pemEncode('ENCRYPTED PRIVATE KEY', der.subarray(0, der.length - 30)));
    const store = await loadKeyStore(dir);

    const error = await rejection(decryptStoredKey(store, getKey(store, 'root')));
    expect(error.message).toMatch(new RegExp(`^corrupt or truncated key file ${file}: element at byte 0 declares \\d+ content bytes but only \\d+ follow \\(truncated\\)$`));
  });

  it('rejects a corrupt private key', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-system-stage.key.pem');
    const der = pemBody(await readFile(file, 'utf8'));
    der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0xff;
    await writeFile(file, pemEncode('ENCRYPTED PRIVATE KEY', der));
    const store = await loadKeyStore(dir);

    const error = await rejection(decryptStoredKey(store, getKey(store, 'system-stage')));
    expect(error.message).toBe(`wrong passphrase or corrupt key file: ${file}; dev keys use the fixed dev passphrase, so the file is damaged; restore it or recreate the dev keys`);
  });

  it('rejects an unencrypted private key', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-root.key.pem');
    await writeFile(file, pemEncode('PRIVATE KEY', encodeMlDsa87Pkcs8(randomBytes(32))));
    const store = await loadKeyStore(dir);

    const error = await rejection(decryptStoredKey(store, getKey(store, 'root')));
    expect(error.message).toBe(`${file} contains an unencrypted private key ('PRIVATE KEY'); the key store accepts only 'ENCRYPTED PRIVATE KEY' files`);
  });

  it('rejects an RSA private key for ML-DSA', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-system-stage.key.pem');
    await copyFile(path.join(dir, 'dev-avb.key.pem'), file);
    const store = await loadKeyStore(dir);

    const error = await rejection(decryptStoredKey(store, getKey(store, 'system-stage')));
    expect(error.message).toBe(`${file} contains an RSA (1.2.840.113549.1.1.1) private key, but the system-stage key must be ML-DSA-87; put the system-stage private key there`);
  });

  it('rejects an ML-DSA private key for AVB', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-avb.key.pem');
    await copyFile(path.join(dir, 'dev-root.key.pem'), file);
    const store = await loadKeyStore(dir);

    const error = await rejection(decryptStoredKey(store, getKey(store, 'avb')));
    expect(error.message).toBe(`${file} contains an ML-DSA-87 (2.16.840.1.101.3.4.3.19) private key, but the avb key must be RSA-4096; put the avb private key there`);
  });

  it('rejects another key of the right type', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-guest-stage.key.pem');
    await copyFile(path.join(dir, 'dev-system-stage.key.pem'), file);
    const store = await loadKeyStore(dir);

    const error = await rejection(decryptStoredKey(store, getKey(store, 'guest-stage')));
    expect(error.message).toBe(`the private key in ${file} does not match the public key ${path.join(dir, 'dev-guest-stage.pub.pem')} (key id ${getKey(store, 'guest-stage').id})`);
  });

  it('rejects an RSA public key for ML-DSA', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-system-stage.pub.pem');
    await copyFile(path.join(dir, 'dev-avb.pub.pem'), file);

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toBe(`${file} contains an RSA (1.2.840.113549.1.1.1) public key, but the system-stage key must be ML-DSA-87; put the system-stage public key there`);
  });

  it('rejects a corrupt RSA public key', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-avb.pub.pem');
    const spki = derSequence(derSequence(derOid('1.2.840.113549.1.1.1'), Uint8Array.of(0x05, 0x00)), derBitString(randomBytes(40)));
    await writeFile(file, pemEncode('PUBLIC KEY', spki));

    const error = await rejection(loadKeyStore(dir));
    expect(error.message.startsWith(`corrupt public key file ${file}: `)).toBe(true);
  });

  it('rejects an RSA-2048 AVB key', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-avb.pub.pem');
    const testKey = path.resolve(process.cwd(), '../shared/test-vectors/avb/testkey_rsa2048.pem');
    await runTool('openssl', ['pkey', '-in', testKey, '-pubout', '-out', file]);

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toBe(`${file} contains a 2048-bit RSA key with exponent 65537; the AVB key must be RSA-4096 with exponent 65537`);
  });

  it('rejects a replaced public key', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-guest-stage.pub.pem');
    await copyFile(path.join(dir, 'dev-system-stage.pub.pem'), file);

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toMatch(/^.*dev-guest-stage\.pub\.pem has key id [0-9a-f]{64}, but keys\.yaml lists the guest-stage key as [0-9a-f]{64}; the file was replaced or keys\.yaml edited by hand$/);
  });

  it('rejects a certificate of the wrong purpose', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-system-stage.cert');
    await copyFile(path.join(dir, 'dev-guest-stage.cert'), file);

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toBe(`${file} certifies the guest-stage key ${getKey(devStore, 'guest-stage').id}, but keys.yaml lists it for the system-stage key ${getKey(devStore, 'system-stage').id}; put the system-stage certificate there`);
  });

  it('rejects a modified certificate', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-system-stage.cert');
    const bytes = await readFile(file);
    bytes[95] = (bytes[95] ?? 0) ^ 0x01; // last byte of "not after"
    await writeFile(file, bytes);

    const error = await rejection(loadKeyStore(dir));
    expect(error.code).toBe('VERIFY_FAILED');
    expect(error.message).toBe(`the root key signature on ${file} is invalid; the certificate was modified or signed by another key`);
  });

  it('rejects a certificate from another root', async () => {
    const dir = await copyOfDevStore();
    await copyFile(path.join(releaseDir, 'system-stage.cert'), path.join(dir, 'dev-system-stage.cert'));

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toMatch(/dev-system-stage\.cert certifies the system-stage key [0-9a-f]{64}, but keys\.yaml lists it for the system-stage key/);
  });

  it('rejects a truncated certificate', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-guest-stage.cert');
    await writeFile(file, (await readFile(file)).subarray(0, 100));

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toBe(`corrupt certificate ${file}: certificate is 100 bytes, expected 4723`);
  });

  it('rejects a readable private key file', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'dev-root.key.pem');
    await chmod(file, 0o644);

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toBe(`private key file ${file} has mode 0644, so other users can read it; run: chmod 600 ${file}`);
  });

  it('rejects a missing index', async () => {
    const dir = path.join(scratch, 'empty');
    const error = await rejection(loadKeyStore(dir));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toBe(`no key store in ${dir}: keys.yaml is missing; create one with 'qwamos-build keys generate --dir ${dir}'`);
  });

  it('rejects an index marking dev files release', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'keys.yaml');
    await writeFile(file, (await readFile(file, 'utf8')).replaceAll('dev: true', 'dev: false'));

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toBe(`${file}: the root key is marked release but its files are named dev-*, which marks dev keys; recreate the store with 'qwamos-build keys generate' or restore keys.yaml from a backup`);
  });

  it('rejects an index with a path outside the folder', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'keys.yaml');
    await writeFile(file, (await readFile(file, 'utf8')).replace('publicKey: dev-root.pub.pem', 'publicKey: ../dev-root.pub.pem'));

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toContain(`keys[0]: 'publicKey: ../dev-root.pub.pem' must be a plain file name inside the key folder`);
  });

  it('rejects an AVB key of the wrong algorithm in the index', async () => {
    const dir = await copyOfDevStore();
    const file = path.join(dir, 'keys.yaml');
    await writeFile(file, (await readFile(file, 'utf8')).replace('algorithm: RSA-4096', 'algorithm: ML-DSA-87'));

    const error = await rejection(loadKeyStore(dir));
    expect(error.message).toContain(`keys[3]: the avb key has algorithm 'ML-DSA-87', but the avb key must be RSA-4096`);
  });
});

describe('release key check', () => {
  it('rejects dev keys naming each', async () => {
    let caught: unknown;
    try {
      requireReleaseKeys(devStore);
    } catch (error) {
      caught = error;
    }
    const error = caught as QwamosError;
    expect(error).toBeInstanceOf(QwamosError);
    expect(error.message).toBe(`a release build cannot use dev keys, and ${devDir} contains 4: root, system-stage, guest-stage, avb; create release keys with 'qwamos-build keys generate --dir NEW_DIR' and build with that folder`);
    expect(error.details).toHaveLength(4);
    expect(error.details[0]).toBe(`root ML-DSA-87 ${getKey(devStore, 'root').id} (dev-root.pub.pem)`);
  });

  it('accepts release keys', async () => {
    expect(() => requireReleaseKeys({ dir: releaseDir, keys: [], passphrase: undefined })).not.toThrow();
    const store = await loadKeyStore(releaseDir);
    expect(() => requireReleaseKeys(store)).not.toThrow();
    expect(store.keys.every((key) => !key.dev && key.certificate?.dev !== true)).toBe(true);
  });
});
