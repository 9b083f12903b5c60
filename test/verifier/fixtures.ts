/**
 * Shared test data for the stage manifest and qwamos-verify tests: fixed
 * test keys, images, verity images made by veritysetup, signed manifests,
 * a seeded PRNG and the ACVP vector reader.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { runTool } from '../../core/exec.js';
import type { UnsignedManifest, VerityHashAlgorithm, VerityParameters } from '../../signing/manifest.js';
import { hashImage } from '../../signing/manifest-image.js';
import { signManifest } from '../../signing/manifest-sign.js';
import { localMldsaSigner, mldsaKeyPairFromSeed, type MldsaKeyPair } from '../../signing/mldsa.js';

export const ACVP_DIR = path.resolve(process.cwd(), '../shared/test-vectors/acvp-ml-dsa');

const keyPairs = new Map<string, MldsaKeyPair>();

/** Returns a fixed ML-DSA-87 key pair for `name`, derived from SHA-256 of the name. */
export function testKeyPair(name: string): MldsaKeyPair {
  let keyPair = keyPairs.get(name);
  if (keyPair === undefined) {
    keyPair = mldsaKeyPairFromSeed(createHash('sha256').update(`qwamos test key ${name}`).digest());
    keyPairs.set(name, keyPair);
  }
  return keyPair;
}

/** Returns `size` pseudo-random bytes fixed by `seed` (AES-256-CTR keystream). */
export function deterministicBytes(size: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}

/** Writes a plain image of `size` bytes and returns the unsigned manifest fields that describe it. */
export async function writePlainImage(file: string, size: number, seed = 'plain image'): Promise<{ imageSize: bigint; imageSha512: Uint8Array }> {
  await writeFile(file, deterministicBytes(size, seed));
  return hashImage(file);
}

export interface VerityImage {
  imageSize: bigint;
  imageSha512: Uint8Array;
  verity: VerityParameters;
}

/**
 * Writes `dataBlocks` blocks of 4096 bytes to `file` and appends a hash
 * tree with `veritysetup format` (format 1, no superblock). The root digest
 * and salt come from veritysetup's output.
 */
export async function writeVerityImage(file: string, options: { dataBlocks: number; hashAlgorithm?: VerityHashAlgorithm; salt?: Buffer }): Promise<VerityImage> {
  const blockSize = 4096;
  const hashAlgorithm = options.hashAlgorithm ?? 'sha256';
  const salt = options.salt ?? Buffer.from('a1b2c3d4e5f60718293a4b5c6d7e8f90', 'hex');
  const dataSize = options.dataBlocks * blockSize;
  await writeFile(file, deterministicBytes(dataSize, `verity image ${options.dataBlocks}`));

  const { stdout } = await runTool('veritysetup', [
    'format', file, file,
    '--format=1',
    '--no-superblock',
    `--hash=${hashAlgorithm}`,
    `--data-blocks=${options.dataBlocks}`,
    `--data-block-size=${blockSize}`,
    `--hash-block-size=${blockSize}`,
    `--hash-offset=${dataSize}`,
    `--salt=${salt.length === 0 ? '-' : salt.toString('hex')}`,
  ]);
  const rootHex = /Root hash:\s*([0-9a-f]+)/.exec(stdout)?.[1];
  if (rootHex === undefined) throw new Error(`veritysetup printed no root hash:\n${stdout}`);

  const { imageSize, imageSha512 } = await hashImage(file);
  return {
    imageSize,
    imageSha512,
    verity: {
      hashAlgorithm,
      dataBlockSize: blockSize,
      hashBlockSize: blockSize,
      dataBlockCount: BigInt(options.dataBlocks),
      hashTreeOffset: BigInt(dataSize),
      rootDigest: Buffer.from(rootHex, 'hex'),
      salt,
    },
  };
}

/** Returns an unsigned manifest for `stage` with test values, overridden by `fields`. */
export function unsignedManifest(fields: Partial<UnsignedManifest> & Pick<UnsignedManifest, 'imageSize' | 'imageSha512'>): UnsignedManifest {
  return {
    stage: 'system',
    deviceProfile: 'qemu-virt',
    rollbackIndexLocation: 1,
    rollbackIndex: 5n,
    nextStageKeyIds: [],
    ...fields,
  };
}

/** Signs `unsigned` with the test key `keyName` in this process. */
export async function signWithTestKey(unsigned: UnsignedManifest, keyName = 'root'): Promise<Buffer> {
  const { publicKey, secretKey } = testKeyPair(keyName);
  return signManifest(unsigned, localMldsaSigner(secretKey), publicKey);
}

/** Writes the raw public key of test key `keyName` to `file`. */
export async function writePublicKey(file: string, keyName = 'root'): Promise<string> {
  await writeFile(file, testKeyPair(keyName).publicKey);
  return file;
}

/** Mulberry32: a small seeded PRNG returning integers in [0, 2^32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** One ACVP test group with its test cases, prompt and expected results merged by tcId. */
export interface AcvpGroup {
  tgId: number;
  parameterSet: string;
  signatureInterface?: string;
  preHash?: string;
  externalMu?: boolean;
  deterministic?: boolean;
  tests: Array<Record<string, string | number | boolean>>;
}

async function readGzipJson(file: string): Promise<{ testGroups: Array<Record<string, unknown>> }> {
  return JSON.parse(gunzipSync(await readFile(file)).toString('utf8'));
}

/** Reads the ML-DSA-87 groups of one ACVP vector set (such as ML-DSA-sigVer-FIPS204), prompts merged with results. */
export async function readAcvpGroups(vectorSet: string): Promise<AcvpGroup[]> {
  const prompt = await readGzipJson(path.join(ACVP_DIR, vectorSet, 'prompt.json.gz'));
  const results = await readGzipJson(path.join(ACVP_DIR, vectorSet, 'expectedResults.json.gz'));
  const resultById = new Map<number, Record<string, unknown>>();
  for (const group of results.testGroups) {
    for (const test of group.tests as Array<Record<string, unknown>>) resultById.set(test.tcId as number, test);
  }

  return prompt.testGroups
    .filter((group) => group.parameterSet === 'ML-DSA-87')
    .map((group) => ({
      ...(group as unknown as AcvpGroup),
      tests: (group.tests as Array<Record<string, string | number | boolean>>).map((test) => ({
        ...test,
        ...(resultById.get(test.tcId as number) as Record<string, string | number | boolean>),
      })),
    }));
}
