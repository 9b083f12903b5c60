/**
 * The C and TypeScript manifest parsers on bad input: a table of damaged
 * manifests with the exact reason each parser must give, then bounded
 * mutation fuzzing that feeds both parsers the same inputs. The C parser
 * runs under AddressSanitizer and UndefinedBehaviorSanitizer, so a memory
 * error or undefined behaviour aborts the driver and fails the test.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { QwamosError } from '../../core/errors.js';
import { MANIFEST_MAX_SIZE, OFFSET } from '../../signing/manifest.js';
import { parseManifest } from '../../signing/manifest-parse.js';
import { mldsaKeyId } from '../../signing/mldsa.js';
import { buildVerifierTestPrograms, type VerifierTestPrograms } from '../../signing/verifier-build.js';
import { seededRandom, signWithTestKey, testKeyPair, unsignedManifest, writePlainImage, writeVerityImage } from './fixtures.js';

const FUZZ_SEED = 0x5eed_2025;
const FUZZ_COUNT = 2000;
/** The C driver accepts records up to twice the manifest size limit. */
const RECORD_MAX = MANIFEST_MAX_SIZE * 2;

let scratch: string;
let programs: VerifierTestPrograms;
let plain: Buffer;
let verity: Buffer;
let verity512: Buffer;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-parser-'));
  programs = await buildVerifierTestPrograms({ target: 'host', outDir: scratch, sanitize: true });

  const keyIds = [mldsaKeyId(testKeyPair('next-a').publicKey), mldsaKeyId(testKeyPair('next-b').publicKey)];
  plain = await signWithTestKey(unsignedManifest({ ...(await writePlainImage(path.join(scratch, 'plain.img'), 5000)), nextStageKeyIds: keyIds }));
  verity = await signWithTestKey(unsignedManifest({ ...(await writeVerityImage(path.join(scratch, 'verity.img'), { dataBlocks: 40 })), stage: 'vendor' }));
  verity512 = await signWithTestKey(unsignedManifest({
    ...(await writeVerityImage(path.join(scratch, 'verity512.img'), { dataBlocks: 200, hashAlgorithm: 'sha512', salt: Buffer.alloc(0) })),
    stage: 'vm-images',
  }));
}, 120_000);

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Runs the C parser over `records` in one process and returns one output line per record. */
async function parseInC(records: Buffer[]): Promise<string[]> {
  const framed = records.flatMap((record) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(record.length);
    return [length, record];
  });
  const { stdout, stderr } = await runTool(programs.parse, [], { input: Buffer.concat(framed), env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1' } as Record<string, string> });
  expect(stderr).toBe('');
  return stdout === '' ? [] : stdout.split('\n');
}

/** Returns the TypeScript parser's result in the C driver's words. */
function parseInTypeScript(record: Buffer): string {
  try {
    return `ok ${parseManifest(record).stage}`;
  } catch (error) {
    if (error instanceof QwamosError && typeof error.data.reason === 'string') return `error ${error.data.reason}`;
    throw error;
  }
}

function edit(base: () => Buffer, change: (bytes: Buffer) => void): () => Buffer {
  return () => {
    const bytes = Buffer.from(base());
    change(bytes);
    return bytes;
  };
}

describe('manifest parsers on damaged manifests', () => {
  const p = () => plain;
  const v = () => verity;
  // plain: 256-byte header, "system" (6), "qemu-virt" (9), two key ids (64): signed size 335, file 4962.
  // verity: header, "vendor" (6), "qemu-virt" (9), 16-byte salt: signed size 287, file 4914; image 40 data blocks.
  const cases: Array<[string, () => Buffer, string]> = [
    ['valid plain manifest', p, 'ok system'],
    ['valid verity manifest', v, 'ok vendor'],
    ['valid sha512 verity manifest', () => verity512, 'ok vm-images'],
    ['empty file', () => Buffer.alloc(0), 'error truncated manifest (0 bytes, header is 256)'],
    ['magic only', () => plain.subarray(0, 8), 'error truncated manifest (8 bytes, header is 256)'],
    ['cut inside the header', () => plain.subarray(0, 100), 'error truncated manifest (100 bytes, header is 256)'],
    ['cut inside the stage name', () => plain.subarray(0, 260), 'error length out of bounds (stage name ends at byte 262, manifest has 260)'],
    ['cut inside the key ids', () => plain.subarray(0, 300), 'error length out of bounds (next-stage key ids ends at byte 335, manifest has 300)'],
    ['cut inside the signature', () => plain.subarray(0, plain.length - 1), 'error truncated manifest (signature ends at byte 4962, manifest has 4961)'],
    ['one byte appended', () => Buffer.concat([plain, Buffer.from([0])]), 'error trailing data (signature ends at byte 4962, manifest has 4963)'],
    ['over the size limit', () => Buffer.concat([plain, Buffer.alloc(MANIFEST_MAX_SIZE + 1 - plain.length)]), 'error manifest too large (8193 bytes, limit 8192)'],
    ['bad magic', edit(p, (b) => { b[0] = 0x71; }), 'error bad magic'],
    ['format version 2', edit(p, (b) => b.writeUInt32BE(2, OFFSET.formatVersion)), 'error unsupported format version 2'],
    ['format version 0', edit(p, (b) => b.writeUInt32BE(0, OFFSET.formatVersion)), 'error unsupported format version 0'],
    ['format version 2 in a short file', edit(() => plain.subarray(0, 20), (b) => b.writeUInt32BE(2, OFFSET.formatVersion)), 'error unsupported format version 2'],
    ['unknown flag', edit(p, (b) => b.writeUInt32BE(0x80000000, OFFSET.flags)), 'error invalid field (unknown flags 0x80000000)'],
    ['reserved byte set', edit(p, (b) => { b[OFFSET.reservedByte] = 1; }), 'error invalid field (reserved bytes not zero)'],
    ['reserved tail set', edit(p, (b) => { b[255] = 1; }), 'error invalid field (reserved bytes not zero)'],
    ['signature size 4626', edit(p, (b) => b.writeUInt32BE(4626, OFFSET.signatureSize)), 'error invalid field (signature size 4626, expected 4627)'],
    ['empty stage name', edit(p, (b) => { b[OFFSET.stageNameSize] = 0; }), 'error invalid field (stage name is empty)'],
    ['stage name size 200', edit(p, (b) => { b[OFFSET.stageNameSize] = 200; }), 'error oversized field (stage name size 200 > 32)'],
    ['empty device profile', edit(p, (b) => { b[OFFSET.deviceProfileSize] = 0; }), 'error invalid field (device profile id is empty)'],
    ['device profile size 65', edit(p, (b) => { b[OFFSET.deviceProfileSize] = 65; }), 'error oversized field (device profile id size 65 > 64)'],
    ['nine next-stage keys', edit(p, (b) => { b[OFFSET.nextKeyIdCount] = 9; }), 'error oversized field (next-stage key id count 9 > 8)'],
    ['key count past the signed size', edit(p, (b) => { b[OFFSET.nextKeyIdCount] = 8; }), 'error invalid field (signed size 335, fields end at 527)'],
    ['key count past the end of a cut file', edit(() => plain.subarray(0, 400), (b) => { b[OFFSET.nextKeyIdCount] = 8; }), 'error length out of bounds (next-stage key ids ends at byte 527, manifest has 400)'],
    ['signed size too large', edit(p, (b) => b.writeUInt32BE(0xffffffff, OFFSET.signedSize)), 'error invalid field (signed size 4294967295, fields end at 335)'],
    ['rollback location 32', edit(p, (b) => b.writeUInt32BE(32, OFFSET.rollbackIndexLocation)), 'error invalid field (rollback index location 32, maximum 31)'],
    ['image size 0', edit(p, (b) => b.writeBigUInt64BE(0n, OFFSET.imageSize)), 'error invalid field (image size is 0)'],
    ['verity field without the flag', edit(p, (b) => b.writeUInt32BE(1, OFFSET.verityAlgorithm)), 'error invalid field (verity fields set without the verity flag)'],
    ['verity algorithm 3', edit(v, (b) => b.writeUInt32BE(3, OFFSET.verityAlgorithm)), 'error invalid field (verity hash algorithm 3)'],
    ['verity data block size 4095', edit(v, (b) => b.writeUInt32BE(4095, OFFSET.verityDataBlockSize)), 'error invalid field (verity data block size 4095)'],
    ['verity hash block size 128 KiB', edit(v, (b) => b.writeUInt32BE(131072, OFFSET.verityHashBlockSize)), 'error invalid field (verity hash block size 131072)'],
    ['verity salt size 300', edit(v, (b) => b.writeUInt32BE(300, OFFSET.veritySaltSize)), 'error oversized field (verity salt size 300 > 256)'],
    ['verity salt past the signed size', edit(v, (b) => b.writeUInt32BE(256, OFFSET.veritySaltSize)), 'error invalid field (signed size 287, fields end at 527)'],
    ['one verity data block', edit(v, (b) => b.writeBigUInt64BE(1n, OFFSET.verityDataBlockCount)), 'error invalid field (verity data block count 1, minimum 2)'],
    ['verity data past the image', edit(v, (b) => b.writeBigUInt64BE(1n << 62n, OFFSET.verityDataBlockCount)), 'error invalid field (verity data area exceeds the image size)'],
    ['unaligned hash tree', edit(v, (b) => b.writeBigUInt64BE(40n * 4096n + 512n, OFFSET.verityHashTreeOffset)), `error invalid field (verity hash tree offset ${40 * 4096 + 512} is not a multiple of the hash block size)`],
    ['hash tree over the data', edit(v, (b) => b.writeBigUInt64BE(4096n, OFFSET.verityHashTreeOffset)), 'error invalid field (verity hash tree offset 4096 overlaps the data area)'],
    ['hash tree past the image', edit(v, (b) => b.writeBigUInt64BE(1n << 40n, OFFSET.verityHashTreeOffset)), 'error invalid field (verity hash tree lies outside the image)'],
    ['image smaller than a hash block', edit(v, (b) => b.writeBigUInt64BE(2048n, OFFSET.imageSize)), 'error invalid field (verity data area exceeds the image size)'],
    ['root digest padding set', edit(v, (b) => { b[OFFSET.verityRootDigest + 40] = 1; }), 'error invalid field (verity root digest padding not zero)'],
    ['capital in the stage name', edit(p, (b) => { b[256] = 0x53; }), 'error invalid field (stage name byte 0x53 at offset 256)'],
    ['stage name starting with a dash', edit(p, (b) => { b[256] = 0x2d; }), 'error invalid field (stage name byte 0x2d at offset 256)'],
    ['NUL in the stage name', edit(p, (b) => { b[258] = 0; }), 'error invalid field (stage name byte 0x00 at offset 258)'],
    ['slash in the device profile', edit(p, (b) => { b[266] = 0x2f; }), 'error invalid field (device profile id byte 0x2f at offset 266)'],
    ['duplicate next-stage key id', edit(p, (b) => { b.copy(b, 303, 271, 303); }), 'error invalid field (duplicate next-stage key id)'],
  ];

  let cOutputs: string[];
  beforeAll(async () => {
    cOutputs = await parseInC(cases.map(([, bytes]) => bytes()));
  });

  cases.forEach(([name, bytes, expected], index) => {
    it(`gives the same reason for ${name}`, () => {
      expect(parseInTypeScript(bytes()), 'TypeScript').toBe(expected);
      expect(cOutputs[index], 'C').toBe(expected);
    });
  });

  it('names the file and the fix in the TypeScript error', () => {
    try {
      parseManifest(plain.subarray(0, 100), 'out/system.manifest');
      expect.unreachable();
    } catch (error) {
      expect((error as QwamosError).code).toBe('INPUT_INVALID');
      expect((error as QwamosError).message).toBe('out/system.manifest: truncated manifest (100 bytes, header is 256); the file is cut short, padded or not a stage manifest; copy it again or sign the stage again');
    }
  });

  it('reports oversized fields as LIMIT_EXCEEDED', () => {
    const bytes = Buffer.from(plain);
    bytes[OFFSET.stageNameSize] = 33;

    expect(() => parseManifest(bytes)).toThrow(expect.objectContaining({ code: 'LIMIT_EXCEEDED' }));
  });
});

/** Header fields the fuzzer sets to edge values: offset, size in bytes. */
const FIELDS: Array<[number, 1 | 4 | 8]> = [
  [OFFSET.formatVersion, 4], [OFFSET.flags, 4], [OFFSET.signedSize, 4], [OFFSET.signatureSize, 4],
  [OFFSET.imageSize, 8], [OFFSET.rollbackIndexLocation, 4], [OFFSET.stageNameSize, 1], [OFFSET.deviceProfileSize, 1],
  [OFFSET.nextKeyIdCount, 1], [OFFSET.verityAlgorithm, 4], [OFFSET.verityDataBlockSize, 4], [OFFSET.verityHashBlockSize, 4],
  [OFFSET.veritySaltSize, 4], [OFFSET.verityDataBlockCount, 8], [OFFSET.verityHashTreeOffset, 8],
];

/**
 * Mutation operators, repeated by weight: 0 flip a bit in the first 600
 * bytes, 1 set a random byte, 2 set a header field to an edge value,
 * 3 truncate, 4 append random bytes, 5 insert or delete a byte. Operator 6,
 * padding toward the size limit, runs once in 40 steps.
 */
const OPERATOR_WEIGHTS = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 4, 5];

/** Returns one mutated copy of `base`, chosen by `random`. */
function mutate(base: Buffer, random: () => number): Buffer {
  const pick = (n: number): number => random() % n;
  let bytes = Buffer.from(base);
  const steps = 1 + pick(3);

  for (let step = 0; step < steps; step++) {
    const operator = pick(40) === 0 ? 6 : OPERATOR_WEIGHTS[pick(OPERATOR_WEIGHTS.length)];
    if (operator === 0 && bytes.length > 0) {
      const index = pick(Math.min(bytes.length, 600));
      bytes[index] = (bytes[index] ?? 0) ^ (1 << pick(8));
    } else if (operator === 1 && bytes.length > 0) {
      bytes[pick(bytes.length)] = pick(256);
    } else if (operator === 2) {
      const [offset, size] = FIELDS[pick(FIELDS.length)] ?? [0, 1];
      let current = bytes.readBigUInt64BE(offset);
      if (size === 1) current = BigInt(bytes[offset] ?? 0);
      if (size === 4) current = BigInt(bytes.readUInt32BE(offset));
      const max = (1n << BigInt(8 * size)) - 1n;
      const choices = [0n, 1n, 2n, max, max - 1n, current + 1n, current - 1n, current * 2n, BigInt(pick(70_000)), 1n << BigInt(pick(8 * size))];
      const value = ((choices[pick(choices.length)] ?? 0n) % (max + 1n) + max + 1n) % (max + 1n);
      if (size === 1) bytes[offset] = Number(value);
      else if (size === 4) bytes.writeUInt32BE(Number(value), offset);
      else bytes.writeBigUInt64BE(value, offset);
    } else if (operator === 3) {
      // Half of the cuts land in the header or variable area, where the size checks are.
      const end = pick(2) === 0 ? pick(bytes.length + 1) : Math.min(bytes.length, 200 + pick(400));
      bytes = bytes.subarray(0, end);
    } else if (operator === 4) {
      bytes = Buffer.concat([bytes, Buffer.from(Array.from({ length: 1 + pick(64) }, () => pick(256)))]);
    } else if (operator === 5 && bytes.length > 1) {
      const at = pick(bytes.length);
      bytes = pick(2) === 0 ? Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]) : Buffer.concat([bytes.subarray(0, at), Buffer.from([pick(256)]), bytes.subarray(at)]);
    } else if (operator === 6) {
      bytes = Buffer.concat([bytes, Buffer.alloc(pick(RECORD_MAX - bytes.length + 1))]);
    }
    if (bytes.length < OFFSET.reserved) break;
  }
  return bytes.subarray(0, RECORD_MAX);
}

describe('manifest parser fuzzing', () => {
  it(`gives the same result in C and TypeScript for ${FUZZ_COUNT} mutations`, async () => {
    const random = seededRandom(FUZZ_SEED);
    const bases = [plain, verity, verity512];
    const inputs = Array.from({ length: FUZZ_COUNT }, (_, i) => mutate(bases[i % bases.length] as Buffer, random));

    const cResults = await parseInC(inputs);
    const tsResults = inputs.map(parseInTypeScript);

    expect(cResults).toHaveLength(FUZZ_COUNT);
    const mismatches = tsResults.flatMap((ts, i) => (ts === cResults[i] ? [] : [`#${i}: TypeScript '${ts}', C '${cResults[i]}'`]));
    expect(mismatches.slice(0, 5)).toEqual([]);

    // The mutations must reach past the first checks: count the distinct reason names.
    const reasonNames = new Set(tsResults.map((result) => result.replace(/ \(.*$/, '').replace(/ \d+$/, '')));
    expect(reasonNames.size).toBeGreaterThanOrEqual(10);
    for (const name of ['error truncated manifest', 'error length out of bounds', 'error invalid field', 'error oversized field', 'error trailing data']) {
      expect(reasonNames, name).toContain(name);
    }
    expect(tsResults.filter((result) => result.startsWith('ok ')).length).toBeGreaterThan(0);
  }, 30_000);
});
