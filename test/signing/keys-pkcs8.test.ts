import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { DerError } from '../../signing/keys-der.js';
import {
  decodeMlDsa87Pkcs8,
  decodeMlDsa87Spki,
  encodeMlDsa87Pkcs8,
  keyIdOfSpki,
  mlDsa87KeyPair,
  pemDecode,
  pemEncode,
  spkiDer,
} from '../../signing/keys-pkcs8.js';
import { mldsaKeyId } from '../../signing/mldsa.js';

/** Seed 0x00, 0x01, ..., 0x1f: the seed of the RFC 9881 Appendix C examples. */
const RFC_SEED = Uint8Array.from({ length: 32 }, (_, i) => i);

/** RFC 9881 Appendix C.1.3.1: the ML-DSA-87 private key in the seed form, base64 of the DER. */
const RFC_ML_DSA_87_SEED_KEY = 'MDQCAQAwCwYJYIZIAWUDBAMTBCKAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f';

/** SHA-256 of the DER of the RFC 9881 Appendix C ML-DSA-87 example public key (the key of RFC_SEED). */
const RFC_ML_DSA_87_SPKI_SHA256 = '07e57c4f14dbad1267f621ec3777b4e2e6c4fbc4c22fbb87510ff8e0b3c6a642';

function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s/g, ''), 'hex'));
}

function expectDerError(action: () => unknown, message: string | RegExp): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DerError);
  expect((caught as Error).message).toMatch(message);
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-pkcs8-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('ML-DSA-87 PKCS#8 seed form', () => {
  it('matches the RFC 9881 example bytes', () => {
    const der = encodeMlDsa87Pkcs8(RFC_SEED);
    expect(Buffer.from(der).toString('base64')).toBe(RFC_ML_DSA_87_SEED_KEY);
  });

  it('starts with the RFC 9881 structure prefix', () => {
    const der = encodeMlDsa87Pkcs8(randomBytes(32));
    // SEQUENCE(52) { INTEGER 0, SEQUENCE { OID 2.16.840.1.101.3.4.3.19 }, OCTET STRING(34) { [0](32) seed } }
    const prefix = hex('3034 020100 300b 0609 608648016503040313 0422 8020');
    expect(der.length).toBe(54);
    expect(Buffer.from(der.subarray(0, prefix.length)).toString('hex')).toBe(Buffer.from(prefix).toString('hex'));
  });

  it('round trips a random seed', () => {
    const seed = randomBytes(32);
    expect(Buffer.from(decodeMlDsa87Pkcs8(encodeMlDsa87Pkcs8(seed))).equals(seed)).toBe(true);
  });

  it('decodes the RFC 9881 example', () => {
    const seed = decodeMlDsa87Pkcs8(new Uint8Array(Buffer.from(RFC_ML_DSA_87_SEED_KEY, 'base64')));
    expect(Buffer.from(seed).equals(Buffer.from(RFC_SEED))).toBe(true);
  });

  it('parses with openssl asn1parse', async () => {
    const file = path.join(scratch, 'seed.der');
    await writeFile(file, encodeMlDsa87Pkcs8(RFC_SEED));
    const { stdout } = await runTool('openssl', ['asn1parse', '-inform', 'DER', '-in', file]);
    expect(stdout).toMatch(/INTEGER\s+:00/);
    expect(stdout).toContain('OBJECT            :2.16.840.1.101.3.4.3.19');
    expect(stdout).toMatch(/l=\s*34 prim: OCTET STRING/);
  });

  it('rejects trailing bytes', () => {
    const der = encodeMlDsa87Pkcs8(RFC_SEED);
    expectDerError(() => decodeMlDsa87Pkcs8(Uint8Array.of(...der, 0)), /1 bytes follow the end/);
  });

  it('rejects a truncated key', () => {
    const der = encodeMlDsa87Pkcs8(RFC_SEED);
    expectDerError(() => decodeMlDsa87Pkcs8(der.subarray(0, 40)), /truncated/);
  });

  it('rejects another algorithm OID', () => {
    const der = encodeMlDsa87Pkcs8(RFC_SEED);
    der[17] = 0x12; // last OID byte: ML-DSA-65
    expectDerError(() => decodeMlDsa87Pkcs8(der), /ML-DSA-65 \(2\.16\.840\.1\.101\.3\.4\.3\.18\), expected ML-DSA-87/);
  });

  it('rejects the expandedKey choice', () => {
    const der = hex('3082 1338 020100 300b 0609 608648016503040313 0482 1324 0482 1320');
    const key = Uint8Array.of(...der, ...new Uint8Array(4896));
    expectDerError(() => decodeMlDsa87Pkcs8(key), /expandedKey form/);
  });

  it('rejects the both choice', () => {
    const inner = Uint8Array.of(...hex('3082 1346 0420'), ...RFC_SEED, ...hex('0482 1320'), ...new Uint8Array(4896));
    const key = Uint8Array.of(...hex('3082 135e 020100 300b 0609 608648016503040313 0482 134a'), ...inner);
    expectDerError(() => decodeMlDsa87Pkcs8(key), /"both" form/);
  });

  it('rejects a 31-byte seed', () => {
    const key = Uint8Array.of(...hex('3033 020100 300b 0609 608648016503040313 0421 801f'), ...RFC_SEED.subarray(0, 31));
    expectDerError(() => decodeMlDsa87Pkcs8(key), /seed is 31 bytes, expected 32/);
  });

  it('rejects version 1', () => {
    const der = encodeMlDsa87Pkcs8(RFC_SEED);
    der[4] = 1;
    expectDerError(() => decodeMlDsa87Pkcs8(der), /version must be 0/);
  });

  it('rejects NULL algorithm parameters', () => {
    const key = Uint8Array.of(...hex('3036 020100 300d 0609 608648016503040313 0500 0422 8020'), ...RFC_SEED);
    expectDerError(() => decodeMlDsa87Pkcs8(key), /parameters must be absent/);
  });

  it('rejects a non-minimal length', () => {
    const key = Uint8Array.of(...hex('3081 34 020100 300b 0609 608648016503040313 0422 8020'), ...RFC_SEED);
    expectDerError(() => decodeMlDsa87Pkcs8(key), /minimal DER form/);
  });
});

describe('ML-DSA-87 SubjectPublicKeyInfo', () => {
  it('matches the RFC 9881 example public key', () => {
    const spki = spkiDer(mlDsa87KeyPair(RFC_SEED).publicKey);
    expect(spki.length).toBe(2614);
    expect(createHash('sha256').update(spki).digest('hex')).toBe(RFC_ML_DSA_87_SPKI_SHA256);
  });

  it('key id is SHA-256 of the DER', () => {
    const { publicKey } = mlDsa87KeyPair(randomBytes(32));
    const spki = spkiDer(publicKey);
    expect(keyIdOfSpki(spki)).toBe(createHash('sha256').update(spki).digest('hex'));
    expect(keyIdOfSpki(spki)).toBe(mldsaKeyId(publicKey).toString('hex'));
  });

  it('round trips through PEM', () => {
    const { publicKey } = mlDsa87KeyPair(randomBytes(32));
    const pem = pemEncode('PUBLIC KEY', spkiDer(publicKey));
    const { label, der } = pemDecode(pem);
    expect(label).toBe('PUBLIC KEY');
    expect(Buffer.from(decodeMlDsa87Spki(der)).equals(Buffer.from(publicKey))).toBe(true);
  });

  it('rejects an Ed25519 public key', () => {
    const ed25519 = hex('302a 3005 0603 2b6570 032100').slice();
    const spki = Uint8Array.of(...ed25519, ...new Uint8Array(32));
    expectDerError(() => decodeMlDsa87Spki(spki), /Ed25519 \(1\.3\.101\.112\), expected ML-DSA-87/);
  });
});

describe('PEM decoding', () => {
  it('rejects a missing END line', () => {
    const pem = pemEncode('PUBLIC KEY', new Uint8Array(100));
    expectDerError(() => pemDecode(pem.slice(0, pem.indexOf('-----END'))), /END PUBLIC KEY-----" line is missing/);
  });

  it('rejects invalid base64', () => {
    expectDerError(() => pemDecode('-----BEGIN PUBLIC KEY-----\nAB$C\n-----END PUBLIC KEY-----\n'), /base64 body/);
  });

  it('rejects text that is not PEM', () => {
    expectDerError(() => pemDecode('hello'), /not PEM/);
  });
});
