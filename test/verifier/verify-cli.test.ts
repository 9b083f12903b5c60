/**
 * qwamos-verify end to end: manifests signed with @noble/post-quantum,
 * images from veritysetup, a counter store file. Every failing case also
 * runs through the TypeScript verifyStage, which must give the same reason.
 * The dm-verity values the verifier prints are fed to `veritysetup verify`.
 */
import { copyFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { QwamosError } from '../../core/errors.js';
import { manifestSignatureContext, OFFSET, type UnsignedManifest } from '../../signing/manifest.js';
import { createCounterStore, readCounterStore } from '../../signing/manifest-counters.js';
import { encodeSignedPart } from '../../signing/manifest-encode.js';
import { verifyStage, type StageCheck } from '../../signing/manifest-verify.js';
import { mldsaKeyId, mldsaSign } from '../../signing/mldsa.js';
import { buildVerifier } from '../../signing/verifier-build.js';
import { seededRandom, signWithTestKey, testKeyPair, unsignedManifest, writePlainImage, writePublicKey, writeVerityImage, type VerityImage } from './fixtures.js';

/** Crosses the verifier's 1 MiB read chunk and ends in a partial SHA-512 block. */
const PLAIN_IMAGE_SIZE = 2 * 1024 * 1024 + 100;

let scratch: string;
let verifier: string;
let sanitizedVerifier: string;
let rootKey: string;
let otherKey: string;
let plainImage: string;
let plainUnsigned: UnsignedManifest;
let plainManifest: string;
let verityImage: VerityImage;

function file(name: string): string {
  return path.join(scratch, name);
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-verify-cli-'));
  verifier = await buildVerifier({ target: 'host', outDir: path.join(scratch, 'static') });
  sanitizedVerifier = await buildVerifier({ target: 'host', outDir: path.join(scratch, 'asan'), sanitize: true });

  rootKey = await writePublicKey(file('root.pub'), 'root');
  otherKey = await writePublicKey(file('other.pub'), 'other');
  plainImage = file('system.img');
  plainUnsigned = unsignedManifest(await writePlainImage(plainImage, PLAIN_IMAGE_SIZE));
  plainManifest = file('system.manifest');
  await writeFile(plainManifest, await signWithTestKey(plainUnsigned));

  verityImage = await writeVerityImage(file('vendor.img'), { dataBlocks: 600 });
  await writeFile(file('vendor.manifest'), await signWithTestKey(unsignedManifest({ ...verityImage, stage: 'vendor', rollbackIndexLocation: 2 })));
}, 120_000);

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

interface Run {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

async function runVerifier(args: string[], program = verifier): Promise<Run> {
  const result = await execa(program, args, { reject: false, stripFinalNewline: false });
  return { exitCode: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Parses the verifier's KEY=VALUE output, removing the quotes around values. */
function outputValues(stdout: string): Record<string, string> {
  return Object.fromEntries(stdout.trim().split('\n').map((line) => {
    const [key, ...rest] = line.split('=');
    return [key ?? '', rest.join('=').replace(/^'(.*)'$/, '$1')];
  }));
}

interface Scenario {
  stage: string;
  manifest: string;
  image: string;
  keys: string[];
  counters?: string;
  deviceProfile?: string;
  verityOnly?: boolean;
}

function argsOf(scenario: Scenario): string[] {
  return [
    '--stage', scenario.stage,
    '--manifest', scenario.manifest,
    '--image', scenario.image,
    ...scenario.keys.flatMap((key) => ['--pubkey', key]),
    ...(scenario.counters ? ['--counters', scenario.counters] : ['--no-counters']),
    ...(scenario.deviceProfile ? ['--device-profile', scenario.deviceProfile] : []),
    ...(scenario.verityOnly ? ['--verity-only'] : []),
  ];
}

/** Runs the TypeScript verifier on `scenario` and returns its failure reason, or 'ok'. */
async function reasonInTypeScript(scenario: Scenario): Promise<string> {
  const check: StageCheck = {
    stage: scenario.stage,
    publicKeys: await Promise.all(scenario.keys.map((key) => readFile(key))),
    imagePath: scenario.image,
    ...(scenario.counters ? { countersPath: scenario.counters } : {}),
    ...(scenario.deviceProfile ? { deviceProfile: scenario.deviceProfile } : {}),
    verityOnly: scenario.verityOnly === true,
  };
  try {
    await verifyStage(await readFile(scenario.manifest), check);
    return 'ok';
  } catch (error) {
    if (error instanceof QwamosError && typeof error.data.reason === 'string') return error.data.reason;
    throw error;
  }
}

function plainScenario(fields: Partial<Scenario> = {}): Scenario {
  return { stage: 'system', manifest: plainManifest, image: plainImage, keys: [rootKey], ...fields };
}

async function freshCounters(name: string, slot1 = 0n): Promise<string> {
  const counters = new Array<bigint>(32).fill(0n);
  counters[1] = slot1;
  await createCounterStore(file(name), { counters });
  return file(name);
}

/** XORs the byte at `index` with `mask`. */
function flip(bytes: Buffer, index: number, mask: number): void {
  bytes[index] = (bytes[index] ?? 0) ^ mask;
}

async function damagedCopy(source: string, name: string, change: (bytes: Buffer) => void): Promise<string> {
  const bytes = await readFile(source);
  change(bytes);
  await writeFile(file(name), bytes);
  return file(name);
}

describe('qwamos-verify on a plain image', () => {
  it('verifies, prints the checked values and raises the counter', async () => {
    const counters = await freshCounters('raise.counters');

    const run = await runVerifier(argsOf(plainScenario({ counters, deviceProfile: 'qemu-virt' })));

    expect(run.stderr).toBe('qwamos: verified system: rollback index 5\n');
    expect(run.exitCode).toBe(0);
    const values = outputValues(run.stdout);
    expect(values.QWAMOS_STAGE).toBe('system');
    expect(values.QWAMOS_ROLLBACK_INDEX).toBe('5');
    expect(values.QWAMOS_SIGNER_KEY_ID).toBe(mldsaKeyId(testKeyPair('root').publicKey).toString('hex'));
    expect(values.QWAMOS_IMAGE_SIZE).toBe(String(PLAIN_IMAGE_SIZE));
    expect(values.QWAMOS_VERITY).toBe('0');
    const stored = await readCounterStore(counters);
    expect(stored[1]).toBe(5n);
    expect(stored.filter((value) => value !== 0n)).toHaveLength(1);
  });

  it('leaves an equal counter untouched', async () => {
    const counters = await freshCounters('equal.counters', 5n);
    const before = await readFile(counters);

    const run = await runVerifier(argsOf(plainScenario({ counters })));

    expect(run.exitCode).toBe(0);
    expect((await readFile(counters)).equals(before)).toBe(true);
  });

  it('picks the signer among several keys', async () => {
    const run = await runVerifier(argsOf(plainScenario({ keys: [otherKey, rootKey] })));

    expect(run.exitCode).toBe(0);
  });

  it('does not raise the counter when the image fails', async () => {
    const counters = await freshCounters('no-raise.counters');
    const image = await damagedCopy(plainImage, 'late-change.img', (bytes) => flip(bytes, PLAIN_IMAGE_SIZE - 1, 1));

    const run = await runVerifier(argsOf(plainScenario({ counters, image })));

    expect(run.stderr).toBe('qwamos: verification failed: system: digest mismatch\n');
    expect((await readCounterStore(counters))[1]).toBe(0n);
  });

  it('rejects a signature made with the context of another stage', async () => {
    const { secretKey, publicKey } = testKeyPair('root');
    const signedPart = encodeSignedPart(plainUnsigned, mldsaKeyId(publicKey));
    const bootSignature = mldsaSign(secretKey, signedPart, manifestSignatureContext('boot'));
    const manifest = file('boot-context.manifest');
    await writeFile(manifest, Buffer.concat([signedPart, bootSignature]));

    const run = await runVerifier(argsOf(plainScenario({ manifest })));

    expect(run.stderr).toBe('qwamos: verification failed: system: bad signature\n');
  });
});

describe('qwamos-verify failures', () => {
  const cases: Array<[string, () => Promise<Scenario>, string]> = [
    ['a rolled-back image', async () => plainScenario({ counters: await freshCounters('rollback.counters', 6n) }), 'rollback (index 5 < stored 6)'],
    ['a changed image byte', async () => plainScenario({ image: await damagedCopy(plainImage, 'changed.img', (b) => flip(b, 1_048_576, 0x80)) }), 'digest mismatch'],
    ['a short image', async () => {
      await copyFile(plainImage, file('short.img'));
      await truncate(file('short.img'), PLAIN_IMAGE_SIZE - 1);
      return plainScenario({ image: file('short.img') });
    }, `image too small (${PLAIN_IMAGE_SIZE - 1} < ${PLAIN_IMAGE_SIZE} bytes)`],
    ['an untrusted signer', async () => plainScenario({ keys: [otherKey] }), 'unknown key'],
    ['a changed signature', async () => plainScenario({ manifest: await damagedCopy(plainManifest, 'sig.manifest', (b) => flip(b, b.length - 7, 4)) }), 'bad signature'],
    ['a changed rollback index', async () => plainScenario({ manifest: await damagedCopy(plainManifest, 'index.manifest', (b) => b.writeBigUInt64BE(9n, OFFSET.rollbackIndex)) }), 'bad signature'],
    ['a manifest of another stage', async () => plainScenario({ stage: 'vendor' }), 'stage mismatch (manifest is for system)'],
    ['a manifest of another device', async () => plainScenario({ deviceProfile: 'pixel-6' }), 'wrong device profile (manifest is for qemu-virt)'],
    ['a truncated manifest', async () => {
      await copyFile(plainManifest, file('cut.manifest'));
      await truncate(file('cut.manifest'), 200);
      return plainScenario({ manifest: file('cut.manifest') });
    }, 'truncated manifest (200 bytes, header is 256)'],
    ['a future format version', async () => plainScenario({ manifest: await damagedCopy(plainManifest, 'v2.manifest', (b) => b.writeUInt32BE(2, OFFSET.formatVersion)) }), 'unsupported format version 2'],
    ['an oversized stage name', async () => plainScenario({ manifest: await damagedCopy(plainManifest, 'big-name.manifest', (b) => { b[OFFSET.stageNameSize] = 255; }) }), 'oversized field (stage name size 255 > 32)'],
    ['a zeroed counter store', async () => {
      await writeFile(file('zero.counters'), Buffer.alloc(4096));
      return plainScenario({ counters: file('zero.counters') });
    }, 'counter store invalid (bad magic)'],
    ['--verity-only on a plain image', async () => plainScenario({ verityOnly: true }), 'not a verity image'],
    ['a changed verity root block', async () => ({
      stage: 'vendor',
      manifest: file('vendor.manifest'),
      image: await damagedCopy(file('vendor.img'), 'vendor-root.img', (b) => flip(b, 600 * 4096 + 10, 1)),
      keys: [rootKey],
      verityOnly: true,
    }), 'verity root hash mismatch'],
    ['a changed verity data block, full check', async () => ({
      stage: 'vendor',
      manifest: file('vendor.manifest'),
      image: await damagedCopy(file('vendor.img'), 'vendor-data.img', (b) => flip(b, 5 * 4096, 1)),
      keys: [rootKey],
    }), 'digest mismatch'],
  ];

  for (const [name, setup, reason] of cases) {
    it(`rejects ${name} in C and TypeScript`, async () => {
      const scenario = await setup();
      const counterBytes = scenario.counters ? await readFile(scenario.counters) : undefined;

      const run = await runVerifier(argsOf(scenario));

      expect(run.stderr).toBe(`qwamos: verification failed: ${scenario.stage}: ${reason}\n`);
      expect(run.exitCode).toBe(1);
      expect(run.stdout).toBe('');
      if (scenario.counters && counterBytes) expect((await readFile(scenario.counters)).equals(counterBytes)).toBe(true);
      expect(await reasonInTypeScript(scenario)).toBe(reason);
    });
  }

  it('names a missing manifest', async () => {
    const run = await runVerifier(argsOf(plainScenario({ manifest: file('missing.manifest') })));

    expect(run.stderr).toBe(`qwamos: verification failed: system: cannot read manifest (${file('missing.manifest')}: No such file or directory)\n`);
    expect(run.exitCode).toBe(1);
  });

  it('rejects a public key of the wrong size', async () => {
    await writeFile(file('short.pub'), Buffer.alloc(100));

    const run = await runVerifier(argsOf(plainScenario({ keys: [file('short.pub')] })));

    expect(run.stderr).toBe(`qwamos: verification failed: system: invalid public key (${file('short.pub')}: 100 bytes, expected 2592)\n`);
  });

  const usageCases: Array<[string, string[], string]> = [
    ['no counter choice', ['--stage', 'system', '--manifest', 'm', '--image', 'i', '--pubkey', 'k'], 'system: invalid arguments (give exactly one of --counters and --no-counters)'],
    ['unknown option', ['--stage', 'system', '--fast'], 'system: invalid arguments (unknown option or missing value: --fast)'],
    ['missing stage', ['--manifest', 'm'], 'unknown: invalid arguments (--stage is required)'],
    ['invalid stage name', ['--stage', 'System'], 'unknown: invalid arguments (--stage must be 1 to 32 of a-z 0-9 _ -, starting with a letter or digit)'],
    ['stray argument', ['--stage', 'system', 'extra'], 'system: invalid arguments (unexpected argument extra)'],
  ];
  for (const [name, args, message] of usageCases) {
    it(`exits 2 on ${name}`, async () => {
      const run = await runVerifier(args);

      expect(run.stderr).toBe(`qwamos: verification failed: ${message}\n`);
      expect(run.exitCode).toBe(2);
    });
  }

  it('prints help on --help', async () => {
    const run = await runVerifier(['--help']);

    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain('usage: qwamos-verify --stage NAME');
  });
});

describe('qwamos-verify on a dm-verity image', () => {
  /** Runs `veritysetup verify` with the values qwamos-verify printed. */
  async function veritysetupVerify(values: Record<string, string>, image: string): Promise<void> {
    await runTool('veritysetup', [
      'verify', image, image, values.QWAMOS_VERITY_ROOT_HASH ?? '',
      '--format=1',
      '--no-superblock',
      `--hash=${values.QWAMOS_VERITY_HASH_ALGORITHM}`,
      `--data-blocks=${values.QWAMOS_VERITY_DATA_BLOCKS}`,
      `--data-block-size=${values.QWAMOS_VERITY_DATA_BLOCK_SIZE}`,
      `--hash-block-size=${values.QWAMOS_VERITY_HASH_BLOCK_SIZE}`,
      `--hash-offset=${values.QWAMOS_VERITY_HASH_OFFSET}`,
      `--salt=${values.QWAMOS_VERITY_SALT}`,
    ]);
  }

  it('prints values that veritysetup verify accepts', async () => {
    const image = file('vendor.img');

    const run = await runVerifier(argsOf({ stage: 'vendor', manifest: file('vendor.manifest'), image, keys: [rootKey], verityOnly: true }));

    expect(run.exitCode).toBe(0);
    const values = outputValues(run.stdout);
    expect(values.QWAMOS_VERITY).toBe('1');
    expect(values.QWAMOS_VERITY_ROOT_HASH).toBe(Buffer.from(verityImage.verity.rootDigest).toString('hex'));
    expect(values.QWAMOS_VERITY_SALT).toBe(Buffer.from(verityImage.verity.salt).toString('hex'));
    const root = values.QWAMOS_VERITY_ROOT_HASH;
    const salt = values.QWAMOS_VERITY_SALT;
    expect(values.QWAMOS_VERITY_TABLE).toBe(`0 ${600 * 8} verity 1 ${image} ${image} 4096 4096 600 600 sha256 ${root} ${salt}`);
    await veritysetupVerify(values, image);
  });

  it('accepts a changed data block with --verity-only, which veritysetup rejects', async () => {
    const image = await damagedCopy(file('vendor.img'), 'vendor-data-only.img', (b) => flip(b, 7 * 4096, 1));

    const run = await runVerifier(argsOf({ stage: 'vendor', manifest: file('vendor.manifest'), image, keys: [rootKey], verityOnly: true }));

    // dm-verity checks data blocks when they are read; the verifier checks only the root block here.
    expect(run.exitCode).toBe(0);
    await expect(veritysetupVerify(outputValues(run.stdout), image)).rejects.toThrow(QwamosError);
  });

  it('verifies a sha512 tree with an empty salt', async () => {
    const image = file('apps.img');
    const sha512Image = await writeVerityImage(image, { dataBlocks: 130, hashAlgorithm: 'sha512', salt: Buffer.alloc(0) });
    await writeFile(file('apps.manifest'), await signWithTestKey(unsignedManifest({ ...sha512Image, stage: 'apps' })));

    const run = await runVerifier(argsOf({ stage: 'apps', manifest: file('apps.manifest'), image, keys: [rootKey] }));

    expect(run.exitCode).toBe(0);
    const values = outputValues(run.stdout);
    expect(values.QWAMOS_VERITY_SALT).toBe('-');
    expect(values.QWAMOS_VERITY_TABLE).toMatch(/ sha512 [0-9a-f]{128} -$/);
    await veritysetupVerify(values, image);
  });

  it('rejects an image path the dm table cannot carry', async () => {
    await copyFile(file('vendor.img'), file('vendor copy.img'));

    const run = await runVerifier(argsOf({ stage: 'vendor', manifest: file('vendor.manifest'), image: file('vendor copy.img'), keys: [rootKey], verityOnly: true }));

    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('invalid arguments (--image path must use only');
  });
});

describe('qwamos-verify fuzzing', () => {
  it('agrees with TypeScript on 150 mutated manifests under sanitizers', async () => {
    const random = seededRandom(0xc0ffee);
    const original = await readFile(plainManifest);
    const mismatches: string[] = [];

    for (let i = 0; i < 150; i++) {
      const bytes = Buffer.from(original);
      const flips = 1 + (random() % 3);
      for (let flip = 0; flip < flips; flip++) {
        const index = random() % 3 === 0 ? random() % bytes.length : random() % 400;
        bytes[index] = random() % 256;
      }
      const manifest = file('fuzz.manifest');
      await writeFile(manifest, bytes.subarray(0, random() % 10 === 0 ? random() % bytes.length : bytes.length));
      const scenario = plainScenario({ manifest });

      const run = await runVerifier(argsOf(scenario), sanitizedVerifier);
      const expected = await reasonInTypeScript(scenario);

      const actual = run.exitCode === 0 ? 'ok' : run.stderr.replace(/^qwamos: verification failed: system: (.*)\n$/, '$1');
      if (actual !== expected || (run.exitCode !== 0 && run.exitCode !== 1)) mismatches.push(`#${i}: exit ${run.exitCode}, C '${run.stderr.trim()}', TypeScript '${expected}'`);
    }

    expect(mismatches.slice(0, 5)).toEqual([]);
  }, 60_000);
});
