import { createCipheriv, createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { runTool } from '../../core/exec.js';
import { formatDmModCreate, formatVerityTable } from '../../images/verity-dm.js';
import { appendHashTree, appendHashTreeInPlace, deriveVeritySalt, type VerityImage } from '../../images/verity-image.js';
import { computeHashTreeParallel } from '../../images/verity-parallel.js';
import { computeHashTree, hashTreeLayout, type HashTreeParams, type VerityHashAlgorithm } from '../../images/verity.js';

let folder: string;

beforeAll(async () => {
  folder = await mkdtemp(path.join(tmpdir(), 'qwamos-verity-test-'));
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

/** Returns `size` pseudo-random bytes that depend only on `seed` (AES-128-CTR keystream). */
function testData(size: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

function params(hashAlgorithm: VerityHashAlgorithm, salt: Buffer, dataBlockSize = 4096, hashBlockSize = 4096): HashTreeParams {
  return { hashAlgorithm, dataBlockSize, hashBlockSize, salt };
}

function saltArgument(salt: Uint8Array): string {
  return salt.length === 0 ? '-' : Buffer.from(salt).toString('hex');
}

/** Runs `veritysetup format --no-superblock` on `data` and returns the root digest and the hash device contents. */
async function veritysetupFormat(name: string, data: Buffer, treeParams: HashTreeParams): Promise<{ root: string; tree: Buffer }> {
  const dataPath = path.join(folder, `${name}.data`);
  const hashPath = path.join(folder, `${name}.hash`);
  await writeFile(dataPath, data);

  const { stdout } = await runTool('veritysetup', [
    'format', dataPath, hashPath,
    '--no-superblock', '--format=1',
    `--hash=${treeParams.hashAlgorithm}`,
    `--data-block-size=${treeParams.dataBlockSize}`,
    `--hash-block-size=${treeParams.hashBlockSize}`,
    `--salt=${saltArgument(treeParams.salt)}`,
  ]);
  const root = /Root hash:\s+([0-9a-f]+)/.exec(stdout)?.[1];
  if (root === undefined) throw new Error(`veritysetup format printed no root hash:\n${stdout}`);
  return { root, tree: await readFile(hashPath) };
}

/** Runs `veritysetup verify` on an image with the tree appended at image.hashOffset; throws COMMAND_FAILED on a mismatch. */
async function veritysetupVerify(imagePath: string, image: VerityImage): Promise<void> {
  await runTool('veritysetup', [
    'verify', imagePath, imagePath, image.rootDigest.toString('hex'),
    '--no-superblock', '--format=1',
    `--hash=${image.hashAlgorithm}`,
    `--data-block-size=${image.dataBlockSize}`,
    `--hash-block-size=${image.hashBlockSize}`,
    `--salt=${saltArgument(image.salt)}`,
    `--data-blocks=${image.dataBlocks}`,
    `--hash-offset=${image.hashOffset}`,
  ]);
}

async function rejection(promise: Promise<unknown>): Promise<QwamosError> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(QwamosError);
  return error as QwamosError;
}

describe('computeHashTree against veritysetup format', () => {
  const cases: Array<{ name: string; blocks: number; treeParams: HashTreeParams }> = [
    { name: 'sha256', blocks: 300, treeParams: params('sha256', Buffer.from('5a17', 'hex')) },
    { name: 'sha1', blocks: 300, treeParams: params('sha1', Buffer.from('00112233445566778899', 'hex')) },
    { name: 'sha512', blocks: 300, treeParams: params('sha512', testData(64, 'sha512 salt')) },
    { name: 'empty salt', blocks: 129, treeParams: params('sha256', Buffer.alloc(0)) },
    { name: 'data 1024 hash 4096', blocks: 1000, treeParams: params('sha256', Buffer.from('01', 'hex'), 1024, 4096) },
    { name: 'data 4096 hash 512', blocks: 40, treeParams: params('sha512', Buffer.from('02', 'hex'), 4096, 512) },
  ];

  for (const { name, blocks, treeParams } of cases) {
    it(`matches tree and root: ${name}`, async () => {
      const data = testData(blocks * treeParams.dataBlockSize, name);
      const reference = await veritysetupFormat(name.replace(/ /g, '-'), data, treeParams);

      const result = await computeHashTree(data, treeParams);

      expect(result.rootDigest.toString('hex')).toBe(reference.root);
      expect(result.tree.length).toBe(reference.tree.length);
      expect(result.tree.equals(reference.tree)).toBe(true);
      expect(result.dataBlocks).toBe(blocks);
    });
  }

  it('handles one data block with an empty tree', async () => {
    const salt = Buffer.from('c0ffee', 'hex');
    const data = testData(4096, 'one block');
    const reference = await veritysetupFormat('one-block', data, params('sha256', salt));

    const result = await computeHashTree(data, params('sha256', salt));

    expect(reference.tree.length).toBe(0);
    expect(result.tree.length).toBe(0);
    expect(result.levelOffsets).toEqual([]);
    expect(result.rootDigest.toString('hex')).toBe(reference.root);
    expect(result.rootDigest.equals(createHash('sha256').update(salt).update(data).digest())).toBe(true);
  });

  it('handles 16,385 blocks, one past a full level', async () => {
    const treeParams = params('sha256', Buffer.from('4001', 'hex'));
    const data = testData(16_385 * 4096, 'level boundary');
    const reference = await veritysetupFormat('boundary', data, treeParams);

    const result = await computeHashTree(data, treeParams);

    // 16,385 digests of 32 bytes fill 128 hash blocks plus one digest: 129, then 2, then 1 block.
    expect(hashTreeLayout(16_385, treeParams).levelBlocks).toEqual([129, 2, 1]);
    expect(result.tree.length).toBe(132 * 4096);
    expect(result.rootDigest.toString('hex')).toBe(reference.root);
    expect(result.tree.equals(reference.tree)).toBe(true);
  });

  it('stores levels top first', async () => {
    const treeParams = params('sha256', Buffer.from('aa', 'hex'));
    const data = testData(200 * 4096, 'level order');

    const result = await computeHashTree(data, treeParams);

    // 200 blocks: level 0 has 2 hash blocks, level 1 (the top) has 1.
    expect(result.levelOffsets).toEqual([4096, 0]);
    expect(result.levelSizes).toEqual([8192, 4096]);
    const firstLeaf = createHash('sha256').update(treeParams.salt).update(data.subarray(0, 4096)).digest();
    expect(result.tree.subarray(4096, 4096 + 32).equals(firstLeaf)).toBe(true);
    const rootFromTop = createHash('sha256').update(treeParams.salt).update(result.tree.subarray(0, 4096)).digest();
    expect(result.rootDigest.equals(rootFromTop)).toBe(true);
  });
});

describe('streaming and parallel hashing', () => {
  const treeParams = params('sha256', Buffer.from('0f0f', 'hex'));
  const data = testData(3001 * 4096, 'streaming');
  let dataPath: string;

  beforeAll(async () => {
    dataPath = path.join(folder, 'streaming.img');
    await writeFile(dataPath, Buffer.concat([data, Buffer.from('trailing bytes beyond length')]));
  });

  it('file source matches memory source', async () => {
    const fromMemory = await computeHashTree(data, treeParams);
    const fromFile = await computeHashTree({ path: dataPath, length: data.length }, treeParams);

    expect(fromFile.rootDigest.equals(fromMemory.rootDigest)).toBe(true);
    expect(fromFile.tree.equals(fromMemory.tree)).toBe(true);
  });

  for (const workers of [1, 2, 3]) {
    it(`${workers} worker threads match one thread`, async () => {
      const fromMemory = await computeHashTree(data, treeParams);
      const parallelFile = await computeHashTreeParallel({ path: dataPath, length: data.length }, treeParams, { workers });
      const parallelMemory = await computeHashTreeParallel(data, treeParams, { workers });

      expect(parallelFile.tree.equals(fromMemory.tree)).toBe(true);
      expect(parallelFile.rootDigest.equals(fromMemory.rootDigest)).toBe(true);
      expect(parallelMemory.tree.equals(fromMemory.tree)).toBe(true);
      expect(parallelMemory.rootDigest.equals(fromMemory.rootDigest)).toBe(true);
    });
  }

  it('parallel hashing leaves memory source intact', async () => {
    const before = createHash('sha256').update(data).digest('hex');

    await computeHashTreeParallel(data, treeParams, { workers: 2 });

    expect(data.length).toBe(3001 * 4096);
    expect(createHash('sha256').update(data).digest('hex')).toBe(before);
  });

  it('parallel sha1 matches veritysetup', async () => {
    const sha1Params = params('sha1', Buffer.from('5eed', 'hex'));
    const reference = await veritysetupFormat('parallel-sha1', data, sha1Params);

    const result = await computeHashTreeParallel(data, sha1Params, { workers: 2 });

    expect(result.rootDigest.toString('hex')).toBe(reference.root);
    expect(result.tree.equals(reference.tree)).toBe(true);
  });
});

describe('file sources against veritysetup format', () => {
  // A file is hashed in place: the salt is written over the end of the previous block in the read buffer.
  // These cases vary the salt length against the block size, and each file spans two 4 MiB read chunks.
  const cases: Array<{ name: string; blocks: number; treeParams: HashTreeParams }> = [
    { name: '256-byte salt, 512-byte blocks', blocks: 9000, treeParams: params('sha256', testData(256, 'long salt'), 512, 4096) },
    { name: 'empty salt', blocks: 1500, treeParams: params('sha512', Buffer.alloc(0)) },
    { name: 'sha1, odd salt length', blocks: 1100, treeParams: params('sha1', Buffer.from('0102030405', 'hex')) },
  ];

  for (const { name, blocks, treeParams } of cases) {
    it(`matches tree and root: ${name}`, async () => {
      const data = testData(blocks * treeParams.dataBlockSize, name);
      const fileName = `file-${name.replace(/[ ,]+/g, '-')}`;
      const reference = await veritysetupFormat(fileName, data, treeParams);
      const dataPath = path.join(folder, `${fileName}.img`);
      await writeFile(dataPath, data);

      const oneThread = await computeHashTree({ path: dataPath }, treeParams);
      const twoWorkers = await computeHashTreeParallel({ path: dataPath }, treeParams, { workers: 2 });

      expect(oneThread.rootDigest.toString('hex')).toBe(reference.root);
      expect(oneThread.tree.equals(reference.tree)).toBe(true);
      expect(twoWorkers.rootDigest.toString('hex')).toBe(reference.root);
      expect(twoWorkers.tree.equals(reference.tree)).toBe(true);
    });
  }
});

describe('appendHashTree', () => {
  it('appends a tree that veritysetup verifies', async () => {
    const imagePath = path.join(folder, 'append.img');
    const original = testData(50 * 4096 + 100, 'append');
    await writeFile(imagePath, original);

    const image = await appendHashTree(imagePath, { saltLabel: 'system' });

    expect(image.dataBlocks).toBe(51);
    expect(image.hashOffset).toBe(51 * 4096);
    expect(image.treeSize).toBe(4096);
    expect(image.salt.equals(await deriveVeritySalt(Buffer.concat([original, Buffer.alloc(4096 - 100)]), 'system'))).toBe(true);
    const written = await readFile(imagePath);
    expect(written.length).toBe(image.hashOffset + image.treeSize);
    expect(written.subarray(0, original.length).equals(original)).toBe(true);
    expect(written.subarray(original.length, image.hashOffset).every((byte) => byte === 0)).toBe(true);
    await veritysetupVerify(imagePath, image);
  });

  it('root equals veritysetup format root', async () => {
    const imagePath = path.join(folder, 'append-root.img');
    const original = testData(130 * 4096, 'append root');
    await writeFile(imagePath, original);
    const salt = Buffer.from('abcdef', 'hex');

    const image = await appendHashTree(imagePath, { output: path.join(folder, 'append-root.verity.img'), salt });
    const reference = await veritysetupFormat('append-root', original, params('sha256', salt));

    expect(image.rootDigest.toString('hex')).toBe(reference.root);
    expect((await readFile(imagePath)).equals(original)).toBe(true);
    const written = await readFile(path.join(folder, 'append-root.verity.img'));
    expect(written.subarray(image.hashOffset).equals(reference.tree)).toBe(true);
  });

  it('in-place variant matches the copying one', async () => {
    const original = testData(77 * 4096 + 5, 'in place');
    const copiedPath = path.join(folder, 'copied.img');
    const inPlacePath = path.join(folder, 'in-place.img');
    await writeFile(copiedPath, original);
    await writeFile(inPlacePath, original);

    const copied = await appendHashTree(copiedPath, { saltLabel: 'system' });
    const inPlace = await appendHashTreeInPlace(inPlacePath, { saltLabel: 'system' });

    expect(inPlace).toEqual(copied);
    expect((await readFile(inPlacePath)).equals(await readFile(copiedPath))).toBe(true);
    await veritysetupVerify(inPlacePath, inPlace);
  });

  it('veritysetup rejects a flipped data byte', async () => {
    const imagePath = path.join(folder, 'flip-data.img');
    await writeFile(imagePath, testData(20 * 4096, 'flip data'));
    const image = await appendHashTree(imagePath, { saltLabel: 'system' });
    await veritysetupVerify(imagePath, image);

    const bytes = await readFile(imagePath);
    bytes[12_345] = (bytes[12_345] as number) ^ 0x01;
    await writeFile(imagePath, bytes);

    const error = await rejection(veritysetupVerify(imagePath, image));
    expect(error.code).toBe('COMMAND_FAILED');
  });

  it('veritysetup rejects a flipped tree byte', async () => {
    const imagePath = path.join(folder, 'flip-tree.img');
    await writeFile(imagePath, testData(20 * 4096, 'flip tree'));
    const image = await appendHashTree(imagePath, { saltLabel: 'system' });

    const bytes = await readFile(imagePath);
    bytes[image.hashOffset + 5] = (bytes[image.hashOffset + 5] as number) ^ 0x80;
    await writeFile(imagePath, bytes);

    const error = await rejection(veritysetupVerify(imagePath, image));
    expect(error.code).toBe('COMMAND_FAILED');
  });

  it('verifies with sha512 and one block', async () => {
    const imagePath = path.join(folder, 'one-block.img');
    await writeFile(imagePath, testData(1000, 'one block image'));

    const image = await appendHashTree(imagePath, { hashAlgorithm: 'sha512', saltLabel: 'vendor' });

    expect(image.treeSize).toBe(0);
    expect((await stat(imagePath)).size).toBe(4096);
    await veritysetupVerify(imagePath, image);
  });

  it('rejects a missing image', async () => {
    const missing = path.join(folder, 'missing.img');
    const error = await rejection(appendHashTree(missing));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain(missing);
  });

  it('rejects an empty image', async () => {
    const empty = path.join(folder, 'empty.img');
    await writeFile(empty, Buffer.alloc(0));
    const error = await rejection(appendHashTree(empty));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain(`${empty} is empty`);
  });
});

describe('deriveVeritySalt', () => {
  const data = testData(8 * 4096, 'salt');

  it('repeats for the same data and label', async () => {
    const first = await deriveVeritySalt(data, 'system');
    const second = await deriveVeritySalt(Buffer.from(data), 'system');
    expect(first.length).toBe(32);
    expect(first.equals(second)).toBe(true);
  });

  it('changes with label or data', async () => {
    const base = await deriveVeritySalt(data, 'system');
    const otherLabel = await deriveVeritySalt(data, 'vendor');
    const changed = Buffer.from(data);
    changed[0] = (changed[0] as number) ^ 1;
    const otherData = await deriveVeritySalt(changed, 'system');
    expect(otherLabel.equals(base)).toBe(false);
    expect(otherData.equals(base)).toBe(false);
  });

  it('file source matches memory source', async () => {
    const filePath = path.join(folder, 'salt.img');
    await writeFile(filePath, Buffer.concat([data, Buffer.from('ignored tail')]));
    const fromFile = await deriveVeritySalt({ path: filePath, length: data.length }, 'system');
    expect(fromFile.equals(await deriveVeritySalt(data, 'system'))).toBe(true);
  });

  it('rejects an empty label', async () => {
    const error = await rejection(deriveVeritySalt(data, ''));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('salt label ""');
  });
});

describe('dm-mod.create argument', () => {
  it('describes a device that veritysetup verifies', async () => {
    const imagePath = path.join(folder, 'dm.img');
    await writeFile(imagePath, testData(300 * 4096, 'dm table'));
    const image = await appendHashTree(imagePath, { saltLabel: 'system' });

    const argument = formatDmModCreate(image, { name: 'system' });

    const match = /^dm-mod\.create="system,,,ro,(.*)"$/.exec(argument);
    expect(match).not.toBeNull();
    const fields = (match?.[1] ?? '').split(' ');
    expect(fields.slice(0, 6)).toEqual(['0', String(300 * 8), 'verity', '1', '/dev/vda', '/dev/vda']);
    expect(fields.length).toBe(13);
    const [dataBlockSize, hashBlockSize, dataBlocks, hashStartBlock, algorithm, root, salt] = fields.slice(6);

    // Feed the table's own numbers back to veritysetup.
    await runTool('veritysetup', [
      'verify', imagePath, imagePath, root ?? '',
      '--no-superblock', '--format=1', `--hash=${algorithm}`,
      `--data-block-size=${dataBlockSize}`, `--hash-block-size=${hashBlockSize}`,
      `--data-blocks=${dataBlocks}`, `--hash-offset=${Number(hashStartBlock) * Number(hashBlockSize)}`,
      `--salt=${salt}`,
    ]);
    expect(Number(hashStartBlock)).toBe(300);
  });

  it('formats optional parameters, minor and uuid', () => {
    const image: VerityImage = {
      rootDigest: Buffer.alloc(32, 0xab), salt: Buffer.alloc(0), hashAlgorithm: 'sha256',
      dataBlockSize: 4096, hashBlockSize: 4096, dataBlocks: 10, hashOffset: 40960, treeSize: 4096,
    };

    const argument = formatDmModCreate(image, { name: 'root', uuid: 'qwamos-root', minor: 0, dataDevice: '254:0', optionalParams: ['panic_on_corruption'] });

    expect(argument).toBe(`dm-mod.create="root,qwamos-root,0,ro,0 80 verity 1 254:0 254:0 4096 4096 10 10 sha256 ${'ab'.repeat(32)} - 1 panic_on_corruption"`);
  });

  it('rejects a name with a comma', () => {
    const image: VerityImage = {
      rootDigest: Buffer.alloc(32), salt: Buffer.alloc(1), hashAlgorithm: 'sha256',
      dataBlockSize: 4096, hashBlockSize: 4096, dataBlocks: 1, hashOffset: 4096, treeSize: 0,
    };
    expect(() => formatDmModCreate(image, { name: 'sys,tem' })).toThrow(/device-mapper name "sys,tem"/);
  });

  it('rejects a misaligned hash offset', () => {
    const image: VerityImage = {
      rootDigest: Buffer.alloc(32), salt: Buffer.alloc(1), hashAlgorithm: 'sha256',
      dataBlockSize: 512, hashBlockSize: 4096, dataBlocks: 3, hashOffset: 1536, treeSize: 4096,
    };
    expect(() => formatVerityTable(image)).toThrow(/hash offset 1536 is not a multiple of the hash block size 4096/);
  });
});

describe('hash tree input checks', () => {
  const salt = Buffer.from('01', 'hex');

  it('rejects data that is not whole blocks', async () => {
    const error = await rejection(computeHashTree(Buffer.alloc(5000), params('sha256', salt)));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('5000 bytes, not a whole non-zero number of 4096-byte data blocks');
  });

  it('rejects empty data', async () => {
    const error = await rejection(computeHashTree(Buffer.alloc(0), params('sha256', salt)));
    expect(error.message).toContain('0 bytes');
  });

  it('rejects an unknown algorithm', async () => {
    const error = await rejection(computeHashTree(Buffer.alloc(4096), params('md5' as VerityHashAlgorithm, salt)));
    expect(error.message).toContain('hash algorithm "md5" is not supported');
  });

  it('rejects a block size that is not a power of two', async () => {
    const error = await rejection(computeHashTree(Buffer.alloc(6000), params('sha256', salt, 3000)));
    expect(error.message).toContain('dataBlockSize 3000 is invalid');
  });

  it('rejects a salt over 256 bytes', async () => {
    const error = await rejection(computeHashTree(Buffer.alloc(4096), params('sha256', Buffer.alloc(257))));
    expect(error.message).toContain('at most 256 bytes, got 257 bytes');
  });

  it('rejects a missing file', async () => {
    const missing = path.join(folder, 'no-such.img');
    const error = await rejection(computeHashTree({ path: missing }, params('sha256', salt)));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain(missing);
  });

  it('rejects a length past the end of the file', async () => {
    const short = path.join(folder, 'short.img');
    await writeFile(short, Buffer.alloc(4096));
    const error = await rejection(computeHashTree({ path: short, length: 8192 }, params('sha256', salt)));
    expect(error.message).toContain(`${short} is 4096 bytes, shorter than the requested length 8192`);
  });

  it('rejects zero worker threads', async () => {
    const error = await rejection(computeHashTreeParallel(Buffer.alloc(4096), params('sha256', salt), { workers: 0 }));
    expect(error.message).toContain('worker count 0 is invalid');
  });
});
