import { createHash } from 'node:crypto';
import { copyFile, open, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import type { AvbHashtreeDescriptor } from '../../signing/avb-descriptors.js';
import { avbFailureReason } from '../../signing/avb-errors.js';
import { FOOTER_SIZE, readFooter, readImageVbmeta } from '../../signing/avb-footer.js';
import { addHashtreeFooter, maxImageSizeForHashtreeFooter, type AddHashtreeFooterOptions } from '../../signing/avb-hashtree-footer.js';
import { verifyImage } from '../../signing/avb-verify-image.js';
import { captureRejection, runProgram, temporaryFolder, testKey } from './avb-fixtures.js';

const MIB = 1024 * 1024;
const BLOCK = 4096;

/** Writes `size` bytes whose 4096-byte blocks all differ. */
async function makeImage(folder: string, name: string, size: number): Promise<string> {
  const blocks: Buffer[] = [];
  for (let i = 0; i * BLOCK < size; i++) blocks.push(Buffer.alloc(BLOCK, createHash('sha256').update(`system:${i}`).digest()));
  const imagePath = path.join(folder, name);
  await writeFile(imagePath, Buffer.concat(blocks).subarray(0, size));
  return imagePath;
}

async function options(overrides: Partial<AddHashtreeFooterOptions> = {}): Promise<AddHashtreeFooterOptions> {
  return { partitionName: 'system', partitionSize: 4 * MIB, hashAlgorithm: 'sha256', algorithm: 'SHA256_RSA2048', key: await testKey(2048), ...overrides };
}

/** Runs the real `veritysetup verify` on the data and the tree at the descriptor's offset. */
async function veritysetupVerify(image: string, descriptor: AvbHashtreeDescriptor): Promise<{ status: number; stderr: string }> {
  return runProgram('veritysetup', [
    'verify', image, image, Buffer.from(descriptor.rootDigest).toString('hex'),
    '--no-superblock', '--format=1',
    `--hash=${descriptor.hashAlgorithm}`,
    `--data-block-size=${descriptor.dataBlockSize}`,
    `--hash-block-size=${descriptor.hashBlockSize}`,
    `--salt=${descriptor.salt.length > 0 ? Buffer.from(descriptor.salt).toString('hex') : '-'}`,
    `--data-blocks=${descriptor.imageSize / descriptor.dataBlockSize}`,
    `--hash-offset=${descriptor.treeOffset}`,
  ]);
}

async function flipFileByte(filePath: string, offset: number): Promise<void> {
  const handle = await open(filePath, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = (byte[0] as number) ^ 0x01;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

describe('addHashtreeFooter with veritysetup', () => {
  for (const hashAlgorithm of ['sha1', 'sha256', 'sha512'] as const) {
    it(`writes a ${hashAlgorithm} tree veritysetup verifies`, async () => {
      const folder = await temporaryFolder();
      const image = await makeImage(folder, 'system.img', MIB + 123);

      const { descriptor } = await addHashtreeFooter(image, await options({ hashAlgorithm }));
      expect(descriptor.imageSize).toBe(MIB + BLOCK);
      expect(descriptor.treeOffset).toBe(MIB + BLOCK);

      expect((await veritysetupVerify(image, descriptor)).status).toBe(0);
      await flipFileByte(image, 777);
      expect((await veritysetupVerify(image, descriptor)).status).not.toBe(0);
    });
  }

  it('handles 16,385 data blocks, a level-size boundary', async () => {
    const folder = await temporaryFolder();
    const image = path.join(folder, 'system.img');
    const handle = await open(image, 'w');
    await handle.truncate(16_385 * BLOCK);
    await handle.write(Buffer.from('first block'), 0, 11, 0);
    await handle.write(Buffer.from('last block'), 0, 10, 16_384 * BLOCK);
    await handle.close();

    const { descriptor } = await addHashtreeFooter(image, await options({ partitionSize: 0 }));

    // Level 0: 16,385 digests of 32 bytes = 129 blocks; level 1: 129 digests = 2 blocks; level 2: 1 block.
    expect(descriptor.treeSize).toBe((129 + 2 + 1) * BLOCK);
    expect((await veritysetupVerify(image, descriptor)).status).toBe(0);
    expect((await verifyImage(image)).descriptors[0]?.result).toBe('verified');
  });

  it('gives a one-byte image a tree of size zero', async () => {
    const folder = await temporaryFolder();
    const image = path.join(folder, 'system.img');
    await writeFile(image, Buffer.from([0x5a]));

    const { descriptor, footer } = await addHashtreeFooter(image, await options({ partitionSize: MIB, salt: Buffer.from('abcd', 'hex') }));
    const block = Buffer.alloc(BLOCK);
    block[0] = 0x5a;

    expect(descriptor.treeSize).toBe(0);
    expect(descriptor.imageSize).toBe(BLOCK);
    expect(Buffer.from(descriptor.rootDigest).equals(createHash('sha256').update(Buffer.from('abcd', 'hex')).update(block).digest())).toBe(true);
    expect(footer?.originalImageSize).toBe(1);
    expect(footer?.vbmetaOffset).toBe(BLOCK);
    expect((await veritysetupVerify(image, descriptor)).status).toBe(0);
    expect((await verifyImage(image)).descriptors[0]?.result).toBe('verified');
  });
});

describe('addHashtreeFooter layout and sizes', () => {
  it('puts data, tree, vbmeta and the footer at the partition end', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 3 * BLOCK);
    const result = await addHashtreeFooter(image, await options());
    const written = await readFile(image);

    expect(written.length).toBe(4 * MIB);
    expect(result.descriptor.treeSize).toBe(BLOCK);
    expect(result.footer).toEqual({ versionMajor: 1, versionMinor: 0, originalImageSize: 3 * BLOCK, vbmetaOffset: 4 * BLOCK, vbmetaSize: result.vbmeta.length });
    expect(written.subarray(4 * BLOCK, 4 * BLOCK + result.vbmeta.length).equals(result.vbmeta)).toBe(true);
    expect(await readFooter(image)).toEqual(result.footer);
  });

  it('puts the footer right after the vbmeta without a partition size', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 2 * BLOCK);
    const result = await addHashtreeFooter(image, await options({ partitionSize: 0 }));

    expect((await readFile(image)).length).toBe(2 * BLOCK + BLOCK + BLOCK + BLOCK);
    expect(result.footer?.vbmetaOffset).toBe(3 * BLOCK);
  });

  it('refuses a partition too small for image, tree and metadata', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', MIB);
    const error = await captureRejection(async () => addHashtreeFooter(image, await options({ partitionSize: MIB })));

    // 256 blocks need a 3-block tree: 1 MiB - 12,288 - 69,632 = 966,656.
    expect((error as QwamosError).code).toBe('LIMIT_EXCEEDED');
    expect((error as Error).message).toMatch(/^image of 1048576 bytes \(padded to 4096-byte blocks\) does not fit partition 'system' of 1048576 bytes: after room for the hash tree, vbmeta and footer the limit is 966656 bytes/);
  });

  it('computes the maximum image size as avbtool does', () => {
    // 16,384 blocks of 64 MiB need 128 + 1 tree blocks; then 64 KiB vbmeta and a 4 KiB footer block.
    expect(maxImageSizeForHashtreeFooter(64 * MIB, 'sha256')).toBe(64 * MIB - 129 * BLOCK - 69_632);
    expect(maxImageSizeForHashtreeFooter(0)).toBe(0);
  });

  it('rejects a request for FEC', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', BLOCK);
    await expect(addHashtreeFooter(image, await options({ generateFec: true }))).rejects.toThrow(/FEC generation for partition 'system' is not implemented yet; pass --do_not_generate_fec/);
  });

  it('rejects an unaligned image without a partition size', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 5000);
    await expect(addHashtreeFooter(image, await options({ partitionSize: 0 }))).rejects.toThrow(/system\.img is 5000 bytes, not a multiple of 4096/);
  });

  it('gives the same bytes twice', async () => {
    const folder = await temporaryFolder();
    const first = await makeImage(folder, 'a.img', 40_000);
    const second = path.join(folder, 'b.img');
    await copyFile(first, second);

    await addHashtreeFooter(first, await options());
    await addHashtreeFooter(second, await options());
    expect((await readFile(first)).equals(await readFile(second))).toBe(true);
  });
});

describe('addHashtreeFooter options', () => {
  it('stores no tree with noHashtree, which verification accepts only as zeroed', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 8 * BLOCK);
    const { descriptor } = await addHashtreeFooter(image, await options({ noHashtree: true }));

    expect(descriptor.treeSize).toBe(0);
    expect(descriptor.rootDigest.length).toBe(32);
    expect(avbFailureReason(await captureRejection(() => verifyImage(image)))).toBe('hashtree');
    expect((await verifyImage(image, { acceptZeroedHashtree: true })).descriptors[0]?.result).toBe('zeroed_hashtree');
  });

  it('adds the dm-verity command lines with setupAsRootfsFromKernel', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 2 * BLOCK);
    await addHashtreeFooter(image, await options({ setupAsRootfsFromKernel: true, checkAtMostOnce: true }));

    const { vbmeta } = await readImageVbmeta(image);
    expect(vbmeta.descriptors.map((descriptor) => descriptor.kind)).toEqual(['hashtree', 'kernel_cmdline', 'kernel_cmdline']);
    expect(vbmeta.header.requiredLibavbVersionMinor).toBe(1);
  });

  it('leaves the image unchanged and no staging file with doNotAppendVbmetaImage', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 5000);
    const before = await readFile(image);

    const result = await addHashtreeFooter(image, await options({ doNotAppendVbmetaImage: true, outputVbmetaImage: path.join(folder, 'system.vbmeta') }));
    expect(result.footer).toBeUndefined();
    expect((await readFile(image)).equals(before)).toBe(true);
    expect((await readdir(folder)).sort()).toEqual(['system.img', 'system.vbmeta']);
  });
});

describe('verifyImage on hashtree footers', () => {
  async function footed(): Promise<{ image: string; descriptor: AvbHashtreeDescriptor }> {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 600 * BLOCK);
    const { descriptor } = await addHashtreeFooter(image, await options());
    return { image, descriptor };
  }

  it('rejects changed data', async () => {
    const { image } = await footed();
    await flipFileByte(image, 100 * BLOCK + 5);

    const error = await captureRejection(() => verifyImage(image));
    expect(avbFailureReason(error)).toBe('hashtree');
    expect((error as Error).message).toMatch(/root digest of .*system\.img does not match the descriptor of 'system'/);
  });

  it('rejects a changed tree', async () => {
    const { image, descriptor } = await footed();
    await flipFileByte(image, descriptor.treeOffset + descriptor.treeSize - 1);

    const error = await captureRejection(() => verifyImage(image));
    expect(avbFailureReason(error)).toBe('hashtree');
    expect((error as Error).message).toMatch(/contains invalid data/);
  });

  it('rejects a footer whose original size disagrees with the descriptor', async () => {
    const { image } = await footed();
    const all = await readFile(image);
    all.writeBigUInt64BE(BigInt(700 * BLOCK), all.length - FOOTER_SIZE + 12);
    await writeFile(image, all);

    const error = await captureRejection(() => verifyImage(image));
    expect(avbFailureReason(error)).toBe('footer');
  });
});
