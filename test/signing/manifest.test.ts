import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { QwamosError } from '../../core/errors.js';
import { manifestSignatureContext, MANIFEST_HEADER_SIZE, OFFSET, type UnsignedManifest } from '../../signing/manifest.js';
import { createCounterStore, decodeCounterStore, encodeCounterStore, readCounterStore } from '../../signing/manifest-counters.js';
import { encodeSignedPart } from '../../signing/manifest-encode.js';
import { hashImage } from '../../signing/manifest-image.js';
import { parseManifest } from '../../signing/manifest-parse.js';
import { signManifest } from '../../signing/manifest-sign.js';
import { checkNextStageSigner, verifyManifest } from '../../signing/manifest-verify.js';
import { localMldsaSigner, mldsaKeyId, mldsaSign, mldsaSubjectPublicKeyInfo, mldsaVerify } from '../../signing/mldsa.js';
import { deterministicBytes, signWithTestKey, testKeyPair, unsignedManifest, writePlainImage, writeVerityImage } from '../verifier/fixtures.js';

let scratch: string;
let plain: UnsignedManifest;
let verityManifest: UnsignedManifest;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-manifest-'));
  plain = unsignedManifest({
    ...(await writePlainImage(path.join(scratch, 'plain.img'), 70_000)),
    nextStageKeyIds: [mldsaKeyId(testKeyPair('next-a').publicKey), mldsaKeyId(testKeyPair('next-b').publicKey)],
  });
  verityManifest = unsignedManifest({ ...(await writeVerityImage(path.join(scratch, 'verity.img'), { dataBlocks: 300 })), stage: 'vendor' });
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Runs `action` and returns the QwamosError it throws. */
function errorOf(action: () => unknown): QwamosError {
  try {
    action();
  } catch (error) {
    if (error instanceof QwamosError) return error;
    throw error;
  }
  throw new Error('expected a QwamosError');
}

async function asyncErrorOf(action: () => Promise<unknown>): Promise<QwamosError> {
  const error = await action().then(() => undefined, (caught: unknown) => caught);
  if (error instanceof QwamosError) return error;
  throw new Error(`expected a QwamosError, got ${String(error)}`);
}

describe('mldsaKeyId', () => {
  it('hashes SubjectPublicKeyInfo DER that openssl decodes', async () => {
    const { publicKey } = testKeyPair('root');
    const derFile = path.join(scratch, 'root.spki.der');
    await writeFile(derFile, mldsaSubjectPublicKeyInfo(publicKey));

    const { stdout } = await runTool('openssl', ['asn1parse', '-inform', 'DER', '-in', derFile]);
    const { stdout: sha256 } = await runTool('sha256sum', [derFile]);

    expect(stdout).toMatch(/OBJECT\s+:(2\.16\.840\.1\.101\.3\.4\.3\.19|ML-DSA-87)/);
    expect(stdout).toMatch(/BIT STRING/);
    expect(stdout).toMatch(/d=0\s+hl=4 l=2610 cons: SEQUENCE/);
    expect(stdout).toMatch(/d=1\s+hl=4 l=2593 prim: BIT STRING/);
    expect(mldsaKeyId(publicKey).toString('hex')).toBe(sha256.split(' ')[0]);
  });

  it('rejects a key of the wrong size', () => {
    const error = errorOf(() => mldsaKeyId(new Uint8Array(2591)));

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('public key has 2591 bytes, but an ML-DSA-87 public key has 2592');
  });
});

describe('signManifest', () => {
  it('round-trips a plain manifest through parseManifest', async () => {
    const bytes = await signWithTestKey(plain);

    const parsed = parseManifest(bytes);

    expect(parsed.stage).toBe('system');
    expect(parsed.deviceProfile).toBe('qemu-virt');
    expect(parsed.imageSize).toBe(70_000n);
    expect(Buffer.from(parsed.imageSha512)).toEqual(Buffer.from(plain.imageSha512));
    expect(parsed.rollbackIndex).toBe(5n);
    expect(parsed.rollbackIndexLocation).toBe(1);
    expect(parsed.nextStageKeyIds.map((id) => Buffer.from(id).toString('hex'))).toEqual(plain.nextStageKeyIds.map((id) => Buffer.from(id).toString('hex')));
    expect(Buffer.from(parsed.signerKeyId)).toEqual(mldsaKeyId(testKeyPair('root').publicKey));
    expect(parsed.verity).toBeUndefined();
    expect(bytes.length).toBe(MANIFEST_HEADER_SIZE + 'system'.length + 'qemu-virt'.length + 64 + 4627);
  });

  it('round-trips the verity parameters', async () => {
    const bytes = await signWithTestKey(verityManifest);

    const parsed = parseManifest(bytes);

    expect(parsed.verity?.hashAlgorithm).toBe('sha256');
    expect(parsed.verity?.dataBlockCount).toBe(300n);
    expect(parsed.verity?.hashTreeOffset).toBe(300n * 4096n);
    expect(Buffer.from(parsed.verity?.rootDigest ?? [])).toEqual(Buffer.from(verityManifest.verity?.rootDigest ?? [1]));
    expect(Buffer.from(parsed.verity?.salt ?? [])).toEqual(Buffer.from(verityManifest.verity?.salt ?? [1]));
  });

  it('produces identical bytes when signed twice', async () => {
    const first = await signWithTestKey(plain);
    const second = await signWithTestKey(plain);

    expect(second.equals(first)).toBe(true);
  });

  it('signs with a context that names the stage', async () => {
    const { publicKey } = testKeyPair('root');
    const parsed = parseManifest(await signWithTestKey(plain));

    expect(manifestSignatureContext('system').toString()).toBe('qwamos/stage-manifest/v1/system');
    expect(mldsaVerify(publicKey, parsed.signedBytes, parsed.signature, manifestSignatureContext('system'))).toBe(true);
    expect(mldsaVerify(publicKey, parsed.signedBytes, parsed.signature, manifestSignatureContext('boot'))).toBe(false);
    expect(mldsaVerify(publicKey, parsed.signedBytes, parsed.signature, new Uint8Array(0))).toBe(false);
  });

  it('accepts an external signer that returns a valid signature', async () => {
    const { publicKey, secretKey } = testKeyPair('root');
    const requests: Array<{ message: Uint8Array; context: string }> = [];
    const external = async (message: Uint8Array, context: Uint8Array): Promise<Uint8Array> => {
      requests.push({ message, context: Buffer.from(context).toString() });
      return mldsaSign(secretKey, message, context);
    };

    const bytes = await signManifest(plain, external, publicKey);

    expect(bytes.equals(await signWithTestKey(plain))).toBe(true);
    expect(requests).toHaveLength(1);
    expect(requests[0]?.context).toBe('qwamos/stage-manifest/v1/system');
  });

  it('rejects a signer that holds another key', async () => {
    const error = await asyncErrorOf(() => signManifest(plain, localMldsaSigner(testKeyPair('other').secretKey), testKeyPair('root').publicKey));

    expect(error.code).toBe('VERIFY_FAILED');
    expect(error.message).toContain('does not verify with public key');
  });

  it('rejects a signer that returns a short signature', async () => {
    const error = await asyncErrorOf(() => signManifest(plain, async () => new Uint8Array(100), testKeyPair('root').publicKey));

    expect(error.code).toBe('VERIFY_FAILED');
  });
});

describe('encodeSignedPart input checks', () => {
  const keyId = new Uint8Array(32);
  const cases: Array<[string, Partial<UnsignedManifest>, string, string]> = [
    ['stage name with capitals', { stage: 'System' }, 'INPUT_INVALID', "stage name 'System' is invalid"],
    ['stage name over 32 bytes', { stage: 'a'.repeat(33) }, 'INPUT_INVALID', 'use 1 to 32 of a-z 0-9 _ -'],
    ['empty device profile', { deviceProfile: '' }, 'INPUT_INVALID', "device profile id '' is invalid"],
    ['nine next-stage keys', { nextStageKeyIds: Array.from({ length: 9 }, (_, i) => new Uint8Array(32).fill(i)) }, 'LIMIT_EXCEEDED', '9 next-stage key ids given'],
    ['short next-stage key id', { nextStageKeyIds: [new Uint8Array(31)] }, 'INPUT_INVALID', 'next-stage key id 0 has 31 bytes'],
    ['short image digest', { imageSha512: new Uint8Array(32) }, 'INPUT_INVALID', 'image SHA-512 has 32 bytes'],
    ['rollback location 32', { rollbackIndexLocation: 32 }, 'INPUT_INVALID', 'rollback index location 32 is out of range'],
    ['negative rollback index', { rollbackIndex: -1n }, 'INPUT_INVALID', 'rollback index -1 is not an unsigned 64-bit integer'],
    ['zero image size', { imageSize: 0n }, 'INPUT_INVALID', 'invalid field (image size is 0)'],
    ['duplicate next-stage keys', { nextStageKeyIds: [new Uint8Array(32), new Uint8Array(32)] }, 'INPUT_INVALID', 'invalid field (duplicate next-stage key id)'],
  ];

  for (const [name, fields, code, message] of cases) {
    it(`rejects ${name}`, () => {
      const error = errorOf(() => encodeSignedPart({ ...plain, ...fields }, keyId));

      expect(error.code).toBe(code);
      expect(error.message).toContain(message);
    });
  }

  it('rejects a hash tree that overlaps the data', () => {
    const verity = { ...verityManifest.verity!, hashTreeOffset: 4096n };

    const error = errorOf(() => encodeSignedPart({ ...verityManifest, verity }, keyId));

    expect(error.message).toContain('invalid field (verity hash tree offset 4096 overlaps the data area)');
  });

  it('rejects a root digest of the wrong size', () => {
    const verity = { ...verityManifest.verity!, hashAlgorithm: 'sha512' as const };

    const error = errorOf(() => encodeSignedPart({ ...verityManifest, verity }, keyId));

    expect(error.message).toContain('verity root digest (sha512) has 32 bytes; it must have 64');
  });

  it('rejects a salt over 256 bytes', () => {
    const verity = { ...verityManifest.verity!, salt: new Uint8Array(257) };

    const error = errorOf(() => encodeSignedPart({ ...verityManifest, verity }, keyId));

    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toContain('verity salt has 257 bytes');
  });
});

describe('verifyManifest', () => {
  let signed: Buffer;
  const trust = () => ({ stage: 'system', publicKeys: [testKeyPair('other').publicKey, testKeyPair('root').publicKey] });

  beforeAll(async () => {
    signed = await signWithTestKey(plain);
  });

  it('returns the manifest when the signature is valid', () => {
    expect(verifyManifest(signed, trust()).rollbackIndex).toBe(5n);
  });

  it('rejects a manifest for another stage', () => {
    const error = errorOf(() => verifyManifest(signed, { ...trust(), stage: 'boot' }));

    expect(error.code).toBe('VERIFY_FAILED');
    expect(error.message).toBe('verification failed: boot: stage mismatch (manifest is for system)');
  });

  it('rejects a manifest for another device', () => {
    const error = errorOf(() => verifyManifest(signed, { ...trust(), deviceProfile: 'pixel-6' }));

    expect(error.message).toBe('verification failed: system: wrong device profile (manifest is for qemu-virt)');
  });

  it('rejects a signer that is not trusted', () => {
    const error = errorOf(() => verifyManifest(signed, { ...trust(), publicKeys: [testKeyPair('other').publicKey] }));

    expect(error.message).toBe('verification failed: system: unknown key');
  });

  it('rejects a changed signed field', () => {
    const tampered = Buffer.from(signed);
    tampered.writeBigUInt64BE(6n, OFFSET.rollbackIndex);

    const error = errorOf(() => verifyManifest(tampered, trust()));

    expect(error.message).toBe('verification failed: system: bad signature');
  });

  it('rejects a changed signature byte', () => {
    const tampered = Buffer.from(signed);
    tampered[tampered.length - 100] = (tampered[tampered.length - 100] ?? 0) ^ 0x40;

    const error = errorOf(() => verifyManifest(tampered, trust()));

    expect(error.data.reason).toBe('bad signature');
  });

  it('checks the next-stage signer against the parent', async () => {
    const parent = verifyManifest(signed, trust());
    const allowedChild = parseManifest(await signWithTestKey({ ...plain, stage: 'apps' }, 'next-b'));
    const otherChild = parseManifest(await signWithTestKey({ ...plain, stage: 'apps' }, 'other'));

    expect(() => checkNextStageSigner(parent, allowedChild)).not.toThrow();
    const error = errorOf(() => checkNextStageSigner(parent, otherChild));
    expect(error.message).toContain('verification failed: apps: key not allowed (signer ');
  });
});

describe('hashImage', () => {
  it('matches sha512sum', async () => {
    const file = path.join(scratch, 'plain.img');
    const { stdout } = await runTool('sha512sum', [file]);

    const { imageSha512, imageSize } = await hashImage(file);

    expect(Buffer.from(imageSha512).toString('hex')).toBe(stdout.split(' ')[0]);
    expect(imageSize).toBe(70_000n);
  });

  it('hashes only the requested span', async () => {
    const file = path.join(scratch, 'plain.img');
    const expected = createHash('sha512').update((await readFile(file)).subarray(0, 1000)).digest();

    const { imageSha512 } = await hashImage(file, 1000n);

    expect(Buffer.from(imageSha512)).toEqual(expected);
  });
});

describe('counter store', () => {
  it('round-trips the counters', () => {
    const counters = Array.from({ length: 32 }, (_, i) => BigInt(i) * 1000n);
    counters[31] = (1n << 64n) - 1n;

    expect(decodeCounterStore(encodeCounterStore(counters))).toEqual(counters);
  });

  it('writes a 4096-byte store file with zero counters', async () => {
    const file = path.join(scratch, 'counters.img');
    await createCounterStore(file);

    expect((await readFile(file)).length).toBe(4096);
    expect(await readCounterStore(file)).toEqual(new Array(32).fill(0n));
  });

  const record = () => encodeCounterStore(new Array<bigint>(32).fill(3n));
  const cases: Array<[string, () => Buffer, string]> = [
    ['short record', () => record().subarray(0, 303), 'counter store invalid (303 bytes, needs 304)'],
    ['zeroed store', () => Buffer.alloc(304), 'counter store invalid (bad magic)'],
    ['version 2', () => { const r = record(); r.writeUInt32BE(2, 8); return r; }, 'counter store invalid (unsupported version 2)'],
    ['16 slots', () => { const r = record(); r.writeUInt32BE(16, 12); return r; }, 'counter store invalid (slot count 16, expected 32)'],
    ['changed counter', () => { const r = record(); r[23] = 2; return r; }, 'counter store invalid (checksum mismatch)'],
  ];
  for (const [name, bytes, reason] of cases) {
    it(`rejects a ${name}`, () => {
      const error = errorOf(() => decodeCounterStore(bytes()));

      expect(error.code).toBe('VERIFY_FAILED');
      expect(error.data.reason).toBe(reason);
    });
  }

  it('rejects a missing store file', async () => {
    const error = await asyncErrorOf(() => readCounterStore(path.join(scratch, 'missing.img')));

    expect(error.code).toBe('INPUT_NOT_FOUND');
  });

  it('encodes fixed bytes for fixed counters', () => {
    const bytes = encodeCounterStore(new Array<bigint>(32).fill(0n));

    expect(bytes.subarray(0, 16).toString('hex')).toBe(`${Buffer.from('QWAMOSRB').toString('hex')}0000000100000020`);
    expect(bytes.subarray(272).toString('hex')).toBe(createHash('sha256').update(bytes.subarray(0, 272)).digest('hex'));
  });
});

