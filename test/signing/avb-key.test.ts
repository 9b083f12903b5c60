import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { avbFailureReason } from '../../signing/avb-errors.js';
import { AVB_ALGORITHMS, decodeAvbPublicKey, encodeAvbPublicKey, findAvbAlgorithm, loadAvbKey, pkcs1Padding } from '../../signing/avb-key.js';
import { KNOWN, captureError, keyPath, runProgram, temporaryFolder } from './avb-fixtures.js';

describe('encodeAvbPublicKey', () => {
  it('matches the avbtool known answer', async () => {
    const blob = encodeAvbPublicKey(await readFile(keyPath(2048), 'utf8'));

    expect(blob.length).toBe(KNOWN.publicKeyBlobSize);
    expect(createHash('sha256').update(blob).digest('hex')).toBe(KNOWN.publicKeyBlobSha256);
  });

  it('stores the modulus openssl reports', async () => {
    for (const bits of [2048, 4096, 8192] as const) {
      const blob = encodeAvbPublicKey(await readFile(keyPath(bits), 'utf8'));
      const openssl = await runProgram('openssl', ['rsa', '-in', keyPath(bits), '-noout', '-modulus']);

      expect(openssl.status).toBe(0);
      const modulus = openssl.stdout.trim().replace(/^Modulus=/, '').toLowerCase();
      expect(blob.readUInt32BE(0)).toBe(bits);
      expect(blob.subarray(8, 8 + bits / 8).toString('hex')).toBe(modulus);
      expect(blob.length).toBe(8 + bits / 4);
    }
  });

  it('gives n0inv with n * n0inv = -1 mod 2^32', async () => {
    const blob = encodeAvbPublicKey(await readFile(keyPath(4096), 'utf8'));
    const n = BigInt(`0x${blob.subarray(8, 8 + 512).toString('hex')}`);
    const n0inv = BigInt(blob.readUInt32BE(4));

    expect((n * n0inv + 1n) % (1n << 32n)).toBe(0n);
  });

  it('gives the same blob for private and public PEM', async () => {
    const folder = await temporaryFolder();
    const publicPem = path.join(folder, 'public.pem');
    const exported = await runProgram('openssl', ['rsa', '-in', keyPath(2048), '-pubout', '-out', publicPem]);
    expect(exported.status).toBe(0);

    const fromPublic = encodeAvbPublicKey(await readFile(publicPem, 'utf8'));
    const fromPrivate = encodeAvbPublicKey(await readFile(keyPath(2048), 'utf8'));
    expect(fromPublic.equals(fromPrivate)).toBe(true);
  });

  it('accepts PKCS#8 private keys', async () => {
    const folder = await temporaryFolder();
    const pkcs8 = path.join(folder, 'key.pk8.pem');
    const converted = await runProgram('openssl', ['pkcs8', '-topk8', '-nocrypt', '-in', keyPath(2048), '-out', pkcs8]);
    expect(converted.status).toBe(0);

    const blob = encodeAvbPublicKey(await readFile(pkcs8, 'utf8'));
    expect(createHash('sha256').update(blob).digest('hex')).toBe(KNOWN.publicKeyBlobSha256);
  });
});

describe('loadAvbKey', () => {
  it('rejects a public exponent other than 65537', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs1' }).toString();

    expect(() => loadAvbKey(pem, 'e3.pem')).toThrow(/e3\.pem has RSA public exponent 3; libavb only verifies exponent 65537/);
  });

  it('rejects a 1024-bit key', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

    expect(() => loadAvbKey(pem, 'small.pem')).toThrow(/small\.pem is a 1024-bit RSA key; AVB supports 2048, 4096 and 8192 bits/);
  });

  it('rejects an EC key', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

    expect(() => loadAvbKey(pem, 'ec.pem')).toThrow(/ec\.pem is a ec key; AVB needs an RSA key/);
  });

  it('rejects an encrypted key with a clear message', async () => {
    const folder = await temporaryFolder();
    const encrypted = path.join(folder, 'encrypted.pem');
    const result = await runProgram('openssl', ['pkcs8', '-topk8', '-in', keyPath(2048), '-out', encrypted, '-passout', 'pass:secret']);
    expect(result.status).toBe(0);

    const pem = await readFile(encrypted, 'utf8');
    expect(() => loadAvbKey(pem, encrypted)).toThrow(/it is encrypted, and encrypted PEM keys are not supported/);
  });

  it('rejects text that is no key', () => {
    const error = captureError(() => loadAvbKey('not a key', 'junk.pem'));

    expect(error).toBeInstanceOf(QwamosError);
    expect((error as QwamosError).code).toBe('INPUT_INVALID');
    expect((error as QwamosError).message).toMatch(/cannot load junk\.pem as a PEM RSA key/);
  });
});

describe('decodeAvbPublicKey', () => {
  it('round-trips the modulus', async () => {
    const pem = await readFile(keyPath(2048), 'utf8');
    const blob = encodeAvbPublicKey(pem);
    const decoded = decodeAvbPublicKey(blob);

    expect(decoded.keyBits).toBe(2048);
    expect(decoded.modulus).toBe(loadAvbKey(pem).modulus);
  });

  it('rejects a wrong rr', async () => {
    const blob = encodeAvbPublicKey(await readFile(keyPath(2048), 'utf8'));
    blob[blob.length - 1] = (blob[blob.length - 1] as number) ^ 1;

    expect(() => decodeAvbPublicKey(blob)).toThrow(/n0inv or rr does not belong to the modulus/);
  });

  it('rejects a wrong length', async () => {
    const blob = encodeAvbPublicKey(await readFile(keyPath(2048), 'utf8')).subarray(0, 500);
    const error = captureError(() => decodeAvbPublicKey(blob));

    expect(avbFailureReason(error)).toBe('public_key');
    expect((error as Error).message).toMatch(/has 500 bytes; a 2048-bit key blob has 520/);
  });
});

describe('AVB algorithms', () => {
  it('pads to the signature size with the RFC 8017 DigestInfo', () => {
    for (const algorithm of AVB_ALGORITHMS.filter((candidate) => candidate.hashName)) {
      const padding = pkcs1Padding(algorithm);
      expect(padding.length + algorithm.hashBytes).toBe(algorithm.signatureBytes);
      expect(padding.subarray(0, 2).toString('hex')).toBe('0001');
    }
  });

  it('rejects an unknown name with the list', () => {
    expect(() => findAvbAlgorithm('SHA1_RSA1024')).toThrow(/unknown AVB algorithm 'SHA1_RSA1024'; use one of NONE, SHA256_RSA2048/);
  });
});
