/**
 * NIST ACVP known answers for ML-DSA-87 (FIPS 204), vector set v1.1.0.43:
 * keyGen, deterministic sigGen and every sigVer case. The pure external
 * cases run through signing/mldsa.ts, the functions manifests use. The
 * HashML-DSA and internal-interface cases have no wrapper in signing/mldsa.ts,
 * so they run through @noble/post-quantum's internal interface, the same
 * code that the wrapper's pure ML-DSA calls.
 */
import { sha224, sha256, sha384, sha512, sha512_224, sha512_256 } from '@noble/hashes/sha2.js';
import { sha3_224, sha3_256, sha3_384, sha3_512, shake128_32, shake256_64 } from '@noble/hashes/sha3.js';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { mldsaKeyPairFromSeed, mldsaSign, mldsaVerify } from '../../signing/mldsa.js';
import { readAcvpGroups, type AcvpGroup } from '../verifier/fixtures.js';

type Hash = ((message: Uint8Array) => Uint8Array) & { oid?: Uint8Array };

/** Pre-hash functions by ACVP name; SHAKE output lengths are the ones FIPS 204 section 5.4 fixes. */
const PRE_HASHES: Record<string, Hash> = {
  'SHA2-224': sha224,
  'SHA2-256': sha256,
  'SHA2-384': sha384,
  'SHA2-512': sha512,
  'SHA2-512/224': sha512_224,
  'SHA2-512/256': sha512_256,
  'SHA3-224': sha3_224,
  'SHA3-256': sha3_256,
  'SHA3-384': sha3_384,
  'SHA3-512': sha3_512,
  'SHAKE-128': shake128_32,
  'SHAKE-256': shake256_64,
};

function bytes(hex: unknown): Uint8Array {
  return Uint8Array.from(Buffer.from(String(hex), 'hex'));
}

function hex(value: Uint8Array): string {
  return Buffer.from(value).toString('hex').toUpperCase();
}

/** Formats the HashML-DSA message M' = 1 || len(ctx) || ctx || OID(PH) || PH(M) (FIPS 204 Algorithm 4). */
function preHashMessage(test: Record<string, unknown>): Uint8Array {
  const hash = PRE_HASHES[String(test.hashAlg)];
  if (hash?.oid === undefined) throw new Error(`no pre-hash function for ${String(test.hashAlg)}`);
  const context = bytes(test.context);
  return Uint8Array.from(Buffer.concat([Buffer.from([1, context.length]), context, hash.oid, hash(bytes(test.message))]));
}

function groupName(group: AcvpGroup): string {
  return `tg ${group.tgId} ${group.signatureInterface} ${group.preHash ?? ''}${group.externalMu ? 'externalMu' : ''}`;
}

let keyGen: AcvpGroup[];
let sigGen: AcvpGroup[];
let sigVer: AcvpGroup[];

beforeAll(async () => {
  [keyGen, sigGen, sigVer] = await Promise.all([
    readAcvpGroups('ML-DSA-keyGen-FIPS204'),
    readAcvpGroups('ML-DSA-sigGen-FIPS204'),
    readAcvpGroups('ML-DSA-sigVer-FIPS204'),
  ]);
});

describe('ACVP ML-DSA-87 keyGen', () => {
  it('derives every expected key pair', () => {
    const tests = keyGen.flatMap((group) => group.tests);
    expect(tests).toHaveLength(25);

    for (const test of tests) {
      const { publicKey, secretKey } = mldsaKeyPairFromSeed(bytes(test.seed));
      expect(hex(publicKey), `tcId ${test.tcId} pk`).toBe(test.pk);
      expect(hex(secretKey), `tcId ${test.tcId} sk`).toBe(test.sk);
    }
  });
});

describe('ACVP ML-DSA-87 deterministic sigGen', () => {
  it('reproduces pure external signatures through mldsaSign', () => {
    const groups = sigGen.filter((group) => group.deterministic && group.signatureInterface === 'external' && group.preHash === 'pure');
    expect(groups).toHaveLength(1);

    for (const test of groups.flatMap((group) => group.tests)) {
      const signature = mldsaSign(bytes(test.sk), bytes(test.message), bytes(test.context));
      expect(hex(signature), `tcId ${test.tcId}`).toBe(test.signature);
    }
  });

  it('reproduces HashML-DSA and internal signatures', () => {
    const groups = sigGen.filter((group) => group.deterministic && !(group.signatureInterface === 'external' && group.preHash === 'pure'));
    expect(groups).toHaveLength(3);

    for (const group of groups) {
      for (const test of group.tests) {
        const secretKey = bytes(test.sk);
        let signature: Uint8Array;
        if (group.signatureInterface === 'external') {
          signature = ml_dsa87.internal.sign(preHashMessage(test), secretKey, { extraEntropy: false });
        } else if (group.externalMu) {
          signature = ml_dsa87.internal.sign(bytes(test.mu), secretKey, { extraEntropy: false, externalMu: true });
        } else {
          signature = ml_dsa87.internal.sign(bytes(test.message), secretKey, { extraEntropy: false });
        }
        expect(hex(signature), `${groupName(group)} tcId ${test.tcId}`).toBe(test.signature);
      }
    }
  });
});

describe('ACVP ML-DSA-87 sigVer', () => {
  it('covers 60 cases with both outcomes', () => {
    const tests = sigVer.flatMap((group) => group.tests);
    expect(tests).toHaveLength(60);
    expect(tests.filter((test) => test.testPassed === true).length).toBeGreaterThan(0);
    expect(tests.filter((test) => test.testPassed === false).length).toBeGreaterThan(0);
  });

  it('matches every pure external case through mldsaVerify', () => {
    const group = sigVer.find((candidate) => candidate.signatureInterface === 'external' && candidate.preHash === 'pure');
    expect(group?.tests).toHaveLength(15);

    for (const test of group?.tests ?? []) {
      const valid = mldsaVerify(bytes(test.pk), bytes(test.message), bytes(test.signature), bytes(test.context));
      expect(valid, `tcId ${test.tcId}`).toBe(test.testPassed);
    }
  });

  it('matches every HashML-DSA and internal case', () => {
    const groups = sigVer.filter((group) => !(group.signatureInterface === 'external' && group.preHash === 'pure'));
    expect(groups.flatMap((group) => group.tests)).toHaveLength(45);

    for (const group of groups) {
      for (const test of group.tests) {
        const publicKey = bytes(test.pk);
        const signature = bytes(test.signature);
        let valid: boolean;
        if (group.signatureInterface === 'external') {
          valid = ml_dsa87.internal.verify(signature, preHashMessage(test), publicKey);
        } else if (group.externalMu) {
          valid = ml_dsa87.internal.verify(signature, bytes(test.mu), publicKey, { externalMu: true });
        } else {
          valid = ml_dsa87.internal.verify(signature, bytes(test.message), publicKey);
        }
        expect(valid, `${groupName(group)} tcId ${test.tcId}`).toBe(test.testPassed);
      }
    }
  });
});
