import { createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { DerError } from '../../signing/keys-der.js';
import {
  decryptPrivateKey,
  encryptPrivateKey,
  KeyDecryptionError,
  readScryptParameters,
  scryptLog2NFor,
  TEST_SCRYPT_ENV,
} from '../../signing/keys-encrypt.js';
import { encodeMlDsa87Pkcs8, pemDecode, pemEncode } from '../../signing/keys-pkcs8.js';

const PASSPHRASE = 'correct horse battery staple';
const LOW_COST = 14;

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-encrypt-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});
afterEach(() => {
  delete process.env[TEST_SCRYPT_ENV];
});

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const result = await promise.then(() => undefined, (error: unknown) => error);
  expect(result).toBeInstanceOf(Error);
  return result as Error;
}

/** Parses `openssl asn1parse` output into its primitive values, in order. */
async function opensslFields(der: Uint8Array): Promise<string[]> {
  const file = path.join(scratch, `parse-${randomBytes(4).toString('hex')}.der`);
  await writeFile(file, der);
  const { stdout } = await runTool('openssl', ['asn1parse', '-inform', 'DER', '-in', file]);
  return stdout.split('\n').filter((line) => line.includes('prim:')).map((line) => line.replace(/^.*prim:\s*/, '').trim());
}

describe('PBES2 scrypt AES-256-GCM container', () => {
  it('round trips a key', async () => {
    const pkcs8 = encodeMlDsa87Pkcs8(randomBytes(32));
    const encrypted = await encryptPrivateKey(pkcs8, PASSPHRASE, LOW_COST);
    const decrypted = await decryptPrivateKey(encrypted, PASSPHRASE);
    expect(Buffer.from(decrypted).equals(Buffer.from(pkcs8))).toBe(true);
  });

  it('rejects a wrong passphrase', async () => {
    const encrypted = await encryptPrivateKey(encodeMlDsa87Pkcs8(randomBytes(32)), PASSPHRASE, LOW_COST);
    const error = await rejection(decryptPrivateKey(encrypted, 'wrong passphrase'));
    expect(error).toBeInstanceOf(KeyDecryptionError);
  });

  it('rejects a modified ciphertext', async () => {
    const encrypted = await encryptPrivateKey(encodeMlDsa87Pkcs8(randomBytes(32)), PASSPHRASE, LOW_COST);
    encrypted[encrypted.length - 20] = (encrypted[encrypted.length - 20] ?? 0) ^ 0x01;
    const error = await rejection(decryptPrivateKey(encrypted, PASSPHRASE));
    expect(error).toBeInstanceOf(KeyDecryptionError);
  });

  it('rejects a truncated file', async () => {
    const encrypted = await encryptPrivateKey(encodeMlDsa87Pkcs8(randomBytes(32)), PASSPHRASE, LOW_COST);
    const error = await rejection(decryptPrivateKey(encrypted.subarray(0, encrypted.length - 10), PASSPHRASE));
    expect(error).toBeInstanceOf(DerError);
    expect(error.message).toMatch(/truncated/);
  });

  it('names the algorithms openssl reads', async () => {
    const encrypted = await encryptPrivateKey(encodeMlDsa87Pkcs8(randomBytes(32)), PASSPHRASE, LOW_COST);
    const fields = await opensslFields(encrypted);
    expect(fields[0]).toBe('OBJECT            :PBES2');
    expect(fields[1]).toBe('OBJECT            :scrypt');
    expect(fields[3]).toBe('INTEGER           :4000'); // N = 2^14
    expect(fields[4]).toBe('INTEGER           :08'); // r
    expect(fields[5]).toBe('INTEGER           :01'); // p
    expect(fields[6]).toBe('OBJECT            :aes-256-gcm');
    expect(fields[8]).toBe('INTEGER           :10'); // 16-byte tag
  });

  it('decrypts with openssl scrypt and node AES-GCM', async () => {
    const pkcs8 = encodeMlDsa87Pkcs8(randomBytes(32));
    const encrypted = await encryptPrivateKey(pkcs8, PASSPHRASE, LOW_COST);
    const fields = await opensslFields(encrypted);
    const octets = (field: string | undefined): Buffer => Buffer.from((field ?? '').replace(/^.*\[HEX DUMP\]:/, ''), 'hex');
    const salt = octets(fields[2]);
    const nonce = octets(fields[7]);
    const data = octets(fields[9]);

    const { stdout } = await runTool('openssl', [
      'kdf', '-keylen', '32',
      '-kdfopt', `pass:${PASSPHRASE}`,
      '-kdfopt', `hexsalt:${salt.toString('hex')}`,
      '-kdfopt', 'n:16384', '-kdfopt', 'r:8', '-kdfopt', 'p:1',
      'SCRYPT',
    ]);
    const key = Buffer.from(stdout.trim().replace(/:/g, ''), 'hex');

    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAuthTag(data.subarray(data.length - 16));
    const plain = Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]);
    expect(plain.equals(Buffer.from(pkcs8))).toBe(true);
  });

  it('reads the scrypt parameters openssl writes', async () => {
    const rsaFile = path.join(scratch, 'rsa.pem');
    const encryptedFile = path.join(scratch, 'rsa-scrypt-cbc.pem');
    await runTool('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', rsaFile]);
    await runTool('openssl', ['pkcs8', '-topk8', '-in', rsaFile, '-v2', 'aes-256-cbc', '-scrypt', '-passout', 'pass:abc', '-out', encryptedFile]);
    const { label, der } = pemDecode(await readFile(encryptedFile, 'utf8'));

    expect(label).toBe('ENCRYPTED PRIVATE KEY');
    const parameters = readScryptParameters(der);
    expect(parameters.cost).toBe(16384);
    expect(parameters.blockSize).toBe(8);
    expect(parameters.parallelization).toBe(1);
  });

  it('rejects the AES-256-CBC cipher', async () => {
    const rsaFile = path.join(scratch, 'rsa2.pem');
    const encryptedFile = path.join(scratch, 'rsa2-scrypt-cbc.pem');
    await runTool('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', rsaFile]);
    await runTool('openssl', ['pkcs8', '-topk8', '-in', rsaFile, '-v2', 'aes-256-cbc', '-scrypt', '-passout', 'pass:abc', '-out', encryptedFile]);
    const { der } = pemDecode(await readFile(encryptedFile, 'utf8'));

    const error = await rejection(decryptPrivateKey(der, 'abc'));
    expect(error).toBeInstanceOf(DerError);
    expect(error.message).toContain('cipher is 2.16.840.1.101.3.4.1.42; only AES-256-GCM (2.16.840.1.101.3.4.1.46) is supported');
  });

  it('rejects a cost below the minimum', async () => {
    const encrypted = await encryptPrivateKey(encodeMlDsa87Pkcs8(randomBytes(32)), PASSPHRASE, LOW_COST);
    const error = await rejection(decryptPrivateKey(encrypted, PASSPHRASE, 17));
    expect(error.message).toBe('scrypt cost N=16384 is below the required 2^17');
  });

  it('writes the release cost by default', async () => {
    const encrypted = await encryptPrivateKey(encodeMlDsa87Pkcs8(randomBytes(32)), PASSPHRASE);
    expect(readScryptParameters(encrypted).cost).toBe(2 ** 17);
    const pem = pemEncode('ENCRYPTED PRIVATE KEY', encrypted);
    expect(pem.startsWith('-----BEGIN ENCRYPTED PRIVATE KEY-----\n')).toBe(true);
  });
});

describe('scrypt cost selection', () => {
  it('ignores the test variable for release keys', () => {
    process.env[TEST_SCRYPT_ENV] = '14';
    expect(scryptLog2NFor('release')).toBe(17);
  });

  it('applies the test variable to dev keys', () => {
    process.env[TEST_SCRYPT_ENV] = '14';
    expect(scryptLog2NFor('dev')).toBe(14);
  });

  it('rejects a test cost below 2^14', () => {
    process.env[TEST_SCRYPT_ENV] = '13';
    expect(() => scryptLog2NFor('dev')).toThrow(`${TEST_SCRYPT_ENV}=13 is invalid; set an integer from 14 to 17 or unset it`);
  });

  it('uses 2^17 for dev keys by default', () => {
    expect(scryptLog2NFor('dev')).toBe(17);
  });
});
